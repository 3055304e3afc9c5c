"""The lock files pin the whole dependency set, with hashes, and this environment is exactly it
(``make install`` installs ``requirements-dev.lock`` with ``--require-hashes``): what CI tested is
what ``make`` installs."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    """``{name: version}`` of a lock file for this interpreter and platform (a universal lock pins
    some packages per Python version, by marker); every pin must carry at least one hash."""
    found: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text()):
        if block.startswith("#") or "==" not in block:
            continue
        requirement = Requirement(block.split("\n", 1)[0].rstrip(" \\"))
        assert "--hash=sha256:" in block, f"{lock}: {requirement.name} has no hash"
        if requirement.marker is None or requirement.marker.evaluate():
            (version,) = (spec.version for spec in requirement.specifier)
            found[canonical(requirement.name)] = version
    return found


def declared(*, extra: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return {canonical(Requirement(r).name) for r in requirements}


def test_every_declared_dependency_is_pinned() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert declared() <= set(runtime), declared() - set(runtime)
    assert declared() | declared(extra="dev") <= set(dev)
    for name, version in runtime.items():
        assert dev.get(name) == version, f"{name}: runtime {version}, dev {dev.get(name)}"


def test_this_environment_is_the_dev_lock() -> None:
    for name, version in pins("requirements-dev.lock").items():
        assert metadata.version(name) == version, f"{name}: installed {metadata.version(name)}, locked {version}"

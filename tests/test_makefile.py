"""The Makefile's install stamps, read through ``make --dry-run`` (nothing is installed): ``make run``
installs the runtime lock only, ``make test`` the dev lock, and neither installs again while its
stamp is newer than ``pyproject.toml`` and the locks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dry_run(target: str, venv: Path) -> list[str]:
    """The commands ``make -n <target> VENV=<venv>`` would run, one per line."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


def installs(commands: list[str]) -> list[str]:
    """The ``-r <file>`` of each ``pip install`` among ``commands``, and ``-e .``."""
    found = []
    for line in commands:
        if " -m pip install " in line:
            found.append(line.split(" -r ", 1)[1] if " -r " in line else line.rsplit(" ", 2)[-1])
    return found


def stamp(path: Path, newer_than: list[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    latest = max(p.stat().st_mtime for p in newer_than) + 10
    os.utime(path, (latest, latest))


LOCKS = [ROOT / "pyproject.toml", ROOT / "requirements.lock", ROOT / "requirements-dev.lock"]


def test_run_installs_the_runtime_lock_only(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    commands = dry_run("run", venv)
    assert installs(commands) == ["requirements.lock", f"{venv}/build-requirements.lock", "."]
    assert commands[-1] == f"{venv}/bin/taskhub serve --host 127.0.0.1 --port 8000"
    assert f"touch {venv}/bin/.installed-runtime" in commands


def test_test_installs_the_dev_lock(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    commands = dry_run("test", venv)
    assert installs(commands) == ["requirements-dev.lock", f"{venv}/build-requirements.lock", "."]
    assert f"touch {venv}/bin/.installed {venv}/bin/.installed-runtime" in commands
    assert commands[-1] == f"{venv}/bin/pytest"


def test_fresh_stamps_install_nothing_again(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    stamp(venv / "bin" / ".installed-runtime", LOCKS)
    assert dry_run("run", venv) == [f"{venv}/bin/taskhub serve --host 127.0.0.1 --port 8000"]
    assert installs(dry_run("test", venv)) == ["requirements-dev.lock", f"{venv}/build-requirements.lock", "."]
    stamp(venv / "bin" / ".installed", LOCKS)
    assert dry_run("test", venv) == [f"{venv}/bin/pytest"]


def test_a_stale_stamp_installs_again(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    for name in (".installed-runtime", ".installed"):
        stamp(venv / "bin" / name, LOCKS)
        old = min(p.stat().st_mtime for p in LOCKS) - 10
        os.utime(venv / "bin" / name, (old, old))  # a lock changed after the install
    assert installs(dry_run("run", venv))[0] == "requirements.lock"
    assert installs(dry_run("test", venv))[0] == "requirements-dev.lock"

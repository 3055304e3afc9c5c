"""Schemathesis against the live ``/openapi.json`` of a real server, on SQLite and PostgreSQL, as a
user and as an admin.

Every phase runs: the coverage phase (boundary and invalid values of every parameter), fuzzing
with positive and negative data, and the stateful phase, which follows the document's links
(create -> get -> patch/put -> delete, the ETag going back as ``If-Match``). Each response must
pass: no 5xx, a documented status code, a documented content type, a body that matches the
documented schema, and the documented required headers. Nothing is silenced: the document
describes every response the service sends (``core/openapi.py``).

Budget in ``make test``: ``EXAMPLES`` per operation with a fixed seed (repeatable CI), about
20 s per backend. ``--deep``: a random seed and ``DEEP_EXAMPLES``; the seed is printed, and
``st run ... --seed N`` replays a finding.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import PASSWORD, deep_run
from tests.fuzz.conftest import FuzzTarget, server_alive

ST = str(Path(sys.executable).parent / "st")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)
EXAMPLES = 10
DEEP_EXAMPLES = 300
SEED = 20261201


def schemathesis_run(target: FuzzTarget, token: str, *filters: str, config: pytest.Config, min_links: int = 0) -> None:
    """Run ``st run`` with ``filters`` as ``token``'s bearer; fail with its report on any finding,
    or when the stateful phase covered fewer than ``min_links`` links (it proves nothing then)."""
    is_deep = deep_run(config)
    args = [
        ST,
        "run",
        f"{target.server.url}/openapi.json",
        "--checks",
        CHECKS,
        "--mode",
        "all",
        "--max-examples",
        str(DEEP_EXAMPLES if is_deep else EXAMPLES),
        "--generation-with-security-parameters",
        "false",
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--no-color",
        "--header",
        f"Authorization: Bearer {token}",
        *filters,
    ]
    if not is_deep:
        args += ["--seed", str(SEED)]
    run = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=1800 if is_deep else 300,
        check=False,
        cwd=target.log.parent,  # Schemathesis keeps a cache directory in its working directory
    )
    report = run.stdout[-20000:] + run.stderr[-5000:]
    assert server_alive(target), report
    server_log = target.log.read_text()[-5000:] if target.log.exists() else ""
    assert run.returncode == 0, f"{report}\n--- server log ---\n{server_log}"
    assert "Tested:" in run.stdout, report  # operations were actually selected and called
    covered = re.search(r"API Links:\s+(\d+) covered", run.stdout)
    assert (int(covered.group(1)) if covered else 0) >= min_links, report


def test_every_operation_as_a_user(fuzz_target: FuzzTarget, request: pytest.FixtureRequest) -> None:
    # Logout and sign-out-everywhere revoke the token the run is using: they run on their own (below).
    schemathesis_run(
        fuzz_target,
        fuzz_target.user_token,
        "--exclude-tag",
        "admin",
        "--exclude-operation-id",
        "logout",
        "--exclude-operation-id",
        "logout_all",
        config=request.config,
        min_links=8,  # the task lifecycle: create -> get/update/replace/delete, get -> update/...
    )


def test_logout(fuzz_target: FuzzTarget, request: pytest.FixtureRequest) -> None:
    """Logout with its own session: the first call revokes it, later ones must be documented 401s."""
    token = fuzz_target.login("user@fuzz.io")
    schemathesis_run(
        fuzz_target, token, "--include-operation-id", "logout", "--phases", "coverage,fuzzing", config=request.config
    )


def test_logout_all(fuzz_target: FuzzTarget, request: pytest.FixtureRequest) -> None:
    """Sign out everywhere with an account of its own (it cuts off every earlier token of that
    account, the run's shared user's included otherwise): later calls must be documented 401s."""
    with fuzz_target.server.client() as client:
        r = client.post(
            "/api/v1/auth/register", json={"email": "everywhere@fuzz.io", "password": PASSWORD, "name": "Everywhere"}
        )
    assert r.status_code == 201, r.text
    token = fuzz_target.login("everywhere@fuzz.io")
    schemathesis_run(
        fuzz_target, token, "--include-operation-id", "logout_all", "--phases", "coverage,fuzzing", config=request.config
    )


def test_admin_operations_as_a_user(fuzz_target: FuzzTarget, request: pytest.FixtureRequest) -> None:
    schemathesis_run(fuzz_target, fuzz_target.user_token, "--include-tag", "admin", config=request.config)


def test_admin_operations_as_an_admin(fuzz_target: FuzzTarget, request: pytest.FixtureRequest) -> None:
    """Last of the module: its stateful phase may deactivate or delete the user account."""
    schemathesis_run(fuzz_target, fuzz_target.admin_token, "--include-tag", "admin", config=request.config)

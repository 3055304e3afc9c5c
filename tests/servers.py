"""Real ``taskhub`` processes for tests: the command, a hermetic environment, and :func:`serve`,
which starts ``taskhub serve`` on a free port and waits until ``/health`` answers 200.

Used by the browser tests (``e2e/``), the integration tests (``integration/``) and the CLI tests,
so that all of them start, wait for and stop a server the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

#: The ``taskhub`` command of the interpreter running the tests (its venv), else the one on PATH.
TASKHUB = shutil.which("taskhub", path=str(Path(sys.executable).parent)) or shutil.which("taskhub") or "taskhub"

#: How long a server may take from exec to a healthy ``/health`` (seconds); embedded mode migrates first.
START_TIMEOUT = 30.0

# uvicorn's message when the port was taken between free_port() and its bind (another test process)
_PORT_TAKEN = b"address already in use"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def taskhub_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment for a ``taskhub`` process: this process's environment without any ``TASKHUB_*``
    variable (so a developer's shell cannot point a test at another database), plus ``data_dir``,
    cheap argon2 parameters and WARNING logs; ``overrides`` (``TASKHUB_*`` names) win."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKHUB_")}
    env.update(
        {
            "TASKHUB_DATA_DIR": str(data_dir),
            "TASKHUB_ARGON2_MEMORY_COST": "1024",
            "TASKHUB_ARGON2_TIME_COST": "1",
            "TASKHUB_LOG_LEVEL": "WARNING",
            "TASKHUB_METRICS_PORT": "0",  # `taskhub worker`'s own metrics server: only where a test asks
        }
    )
    env.update(overrides)
    return env


@dataclass
class ServerProcess:
    """A running ``taskhub serve``: base URL (``http://127.0.0.1:<port>``), process and its log file."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self) -> httpx.Client:
        """A synchronous client for this server (10 s timeout)."""
        return httpx.Client(base_url=self.url, timeout=10)

    def stop(self) -> None:
        """SIGTERM (uvicorn's graceful shutdown), SIGKILL after 10 s."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _start(data_dir: Path, env: Mapping[str, str], args: Sequence[str], cwd: Path) -> ServerProcess:
    port = free_port()
    log = data_dir / f"serve-{port}.log"
    with log.open("wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [TASKHUB, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=taskhub_env(data_dir, **env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(f"http://127.0.0.1:{port}", proc, log)


def _wait_healthy(server: ServerProcess, timeout: float) -> bool:
    """True once ``/health`` answers 200; False if the process exits first. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while server.proc.poll() is None:
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"taskhub serve did not become healthy within {timeout:g} s:\n{server.log.read_text()}")
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def serve(
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    args: Sequence[str] = (),
    cwd: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[ServerProcess]:
    """Run ``taskhub serve --host 127.0.0.1 --port <free port> *args`` until the block ends.

    The environment is :func:`taskhub_env` of ``data_dir`` with ``env`` on top; the working directory
    is ``data_dir`` unless ``cwd`` is given (so no ``.env`` file of the checkout is read). The log
    (stdout and stderr) is ``data_dir/serve-<port>.log``. Yields once ``/health`` answers 200; fails the
    test with the log if the process exits or stays unhealthy for ``timeout`` seconds. If another
    process took the port first, starts again on a new one (at most three times).
    """
    for _attempt in range(3):
        server = _start(data_dir, env or {}, args, cwd or data_dir)
        if _wait_healthy(server, timeout):
            break
        output = server.log.read_bytes()
        if _PORT_TAKEN not in output.lower():
            pytest.fail(f"taskhub serve exited with {server.proc.returncode}:\n{output.decode(errors='replace')}")
    else:
        pytest.fail(f"taskhub serve found no free port:\n{server.log.read_text()}")
    try:
        yield server
    finally:
        server.stop()

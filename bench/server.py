"""Start and stop a real server process (Taskhub or the floor) on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class ServerSpec:
    """What to run: ``app`` is ``taskhub`` or ``floor``; ``stack`` is ``uvicorn``, ``uvicorn-stock``
    (asyncio loop + h11) or ``granian``; ``env`` is added to the environment."""

    app: str = "taskhub"
    stack: str = "uvicorn"
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)

    def label(self) -> str:
        return f"{self.stack} x{self.workers}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def granian_available() -> bool:
    return shutil.which("granian", path=str(BIN)) is not None or _granian_extra() is not None


def _granian_extra() -> str | None:
    """A ``pip install --target`` directory holding granian (kept out of the project's venv)."""
    extra = os.environ.get("BENCH_GRANIAN_PATH", "/tmp/bench-granian")
    return extra if (Path(extra) / "granian").is_dir() else None


def _command(spec: ServerSpec, port: int) -> list[str]:
    py = sys.executable
    target = "taskhub.app:create_app" if spec.app == "taskhub" else "bench.floor:create_app"
    if spec.stack.startswith("uvicorn"):
        if spec.app == "taskhub" and spec.stack == "uvicorn":
            # the product's own command: uvicorn, factory, uvloop + httptools (auto), no access log
            return [str(BIN / "taskhub"), "serve", "--host", "127.0.0.1", "--port", str(port),
                    "--workers", str(spec.workers)]
        loop, http = ("asyncio", "h11") if spec.stack == "uvicorn-stock" else ("auto", "auto")
        return [py, "-m", "uvicorn", target, "--factory", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(spec.workers), "--no-access-log", "--no-proxy-headers",
                "--no-server-header", "--loop", loop, "--http", http, "--log-level", "warning"]
    if spec.stack == "granian":
        return [py, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(spec.workers), "--loop", "uvloop",
                "--no-ws", "--log-level", "warning", target]
    raise ValueError(f"unknown stack {spec.stack}")


class Server:
    """A server subprocess in its own session; logs go to ``log_path``."""

    def __init__(self, spec: ServerSpec, base_env: dict[str, str], workdir: Path, log_path: Path) -> None:
        self.spec = spec
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **base_env, **spec.env}
        paths = [str(REPO)]
        if spec.stack == "granian" and _granian_extra():
            paths.append(str(_granian_extra()))
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        if spec.app == "taskhub" and spec.stack != "uvicorn":
            # what `taskhub serve` sets for its own uvicorn: several workers turn the in-process cache off
            env["TASKHUB_WORKERS"] = str(spec.workers)
            env["TASKHUB_AUTO_MIGRATE"] = "false"
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            _command(spec, self.port), cwd=workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        path = "/health" if self.spec.app == "taskhub" else "/"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout}s; see {self.log_path}")

    def pids(self) -> list[int]:
        """The server's own process and its children (workers)."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True,
                             text=True, check=False).stdout.split()
        return [self.proc.pid, *[int(p) for p in out]]

    def cpu_seconds(self) -> float:
        """User + system CPU time consumed so far by the server and its workers."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
            except (OSError, IndexError, ValueError):
                continue
        return total / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group (start_new_session)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()

    def __enter__(self) -> Server:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

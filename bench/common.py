"""Shared state of one benchmark invocation: options, work directory, console, environment facts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.loadgen import Result, run_wrk
from bench.server import REPO, Server, ServerSpec

console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
SECRET = "bench-secret-" + "k" * 40


@dataclass
class Options:
    quick: bool
    users: int
    tasks_per_user: int
    duration: float
    repeats: int
    connections: int
    overload_connections: int
    workers: int
    stack: str
    pg_url: str
    sqlite: bool
    out: Path | None
    growth_sizes: list[int]
    workdir: Path
    redis_url: str = "redis://127.0.0.1:6379/0"
    extra: dict[str, Any] = field(default_factory=dict)


def base_env(opts: Options, database_url: str) -> dict[str, str]:
    """Server settings shared by every Taskhub run (the rate limiter is off; see RESULTS.md)."""
    return {
        "TASKHUB_ENV": "development",
        "TASKHUB_DATABASE_URL": database_url,
        "TASKHUB_DATA_DIR": str(opts.workdir / "data"),
        "TASKHUB_JWT_SECRET": SECRET,
        "TASKHUB_RATE_LIMIT_ENABLED": "false",
        "TASKHUB_AUTO_MIGRATE": "false",
        "TASKHUB_LOG_LEVEL": "INFO",
        "TASKHUB_LOG_FORMAT": "console",
        "TASKHUB_CACHE_TTL": "300",
    }


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


@contextmanager
def server(opts: Options, spec: ServerSpec, env: dict[str, str], tag: str) -> Iterator[Server]:
    (opts.workdir / "data").mkdir(parents=True, exist_ok=True)
    log = opts.workdir / f"server-{tag}.log"
    srv = Server(spec, env, opts.workdir, log)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def measure(
    srv: Server, name: str, scenario: str, users_file: Path, opts: Options, *,
    connections: int | None = None, repeats: int | None = None, duration: float | None = None,
    path: str | None = None, threads: int = 2, timeout_s: int = 10,
) -> Result:
    """``repeats`` wrk runs of ``scenario``; the result keeps every run (medians reported)."""
    conns = connections or opts.connections
    result = Result(name, conns)
    for i in range(repeats or opts.repeats):
        load = os.getloadavg()[0]
        cpu0 = srv.cpu_seconds()
        run = run_wrk(srv.url, scenario, users_file, connections=conns, seconds=duration or opts.duration,
                      path=path, threads=threads, timeout_s=timeout_s)
        run.load1 = load
        run.cpu_ms_per_req = 1000 * (srv.cpu_seconds() - cpu0) / max(1, run.requests)
        result.runs.append(run)
        console.log(f"  {name} c={conns} run {i + 1}: {run.rps:,.0f} req/s p50 {run.p50_ms:.1f} "
                    f"p95 {run.p95_ms:.1f} p99 {run.p99_ms:.1f} ms, server CPU {run.cpu_ms_per_req:.2f} ms/req, "
                    f"codes {run.codes}, "
                    f"errors {run.socket_errors}, timeouts {run.timeouts} (load avg before: {load:.1f})")
    return result


WARM_UP_SECONDS = [2.0]  # 1 s with --quick


def warm_up(srv: Server, users_file: Path, scenario: str = "list") -> None:
    """A short unmeasured run: fills the connection pool and the prepared-statement caches."""
    run_wrk(srv.url, scenario, users_file, connections=16, seconds=WARM_UP_SECONDS[0])


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "-"


def environment() -> dict[str, str]:
    """Machine and versions for the report."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass

    def cmd(args: list[str]) -> str:
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "-"

    info = {
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load average at start (1/5/15 min)": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {mem_gb} RAM, {platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "postgresql": cmd(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-tAc", "show server_version"]),
        "redis": cmd(["redis-server", "--version"]),
        "wrk": cmd(["wrk", "--version"]),
        "git": cmd(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
    }
    for pkg in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "granian", "sqlalchemy", "asyncpg",
                "aiosqlite", "pydantic", "structlog", "pyjwt", "argon2-cffi"):
        info[pkg] = _version(pkg)
    return info


def save_json(opts: Options, name: str, data: Any) -> Path:
    out = opts.workdir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(data, indent=2, default=str))
    return out

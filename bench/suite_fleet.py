"""The fleet suite (``python -m bench --fleet``): the ``mixed`` scenario through nginx over three
instances against one instance asked directly, with the CPU each layer spends per request.

The fleet is ``deploy/fleet/fleet.py`` with a database of its own on the machine's PostgreSQL
(``TASKHUB_FLEET_DATABASE=local``), the machine's Redis (database 5 unless
``TASKHUB_BENCH_REDIS_URL``) and RabbitMQ, no Prometheus, rate limits off. CPU per request is read
from ``/proc/<pid>/stat`` (user + system) before and after each run for: nginx (master and its
worker), the API instances, the PostgreSQL backends serving the fleet's database, and the relay and
workers (events from the writes). The machine is shared: other processes' CPU is not counted, but
they compete for the same two cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench import seed
from bench.common import SECRET, Options, console, progress
from bench.loadgen import Result, run_wrk
from bench.report import table
from bench.server import REPO

FLEET = REPO / "deploy" / "fleet" / "fleet.py"
LAYERS = ("nginx", "api", "database", "relay+workers")


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


@dataclass
class Fleet:
    env: dict[str, str]
    status: dict[str, Any]

    def pids(self, layer: str, database_pids: list[int]) -> list[int]:
        pids: dict[str, int] = {k: v for k, v in self.status["pids"].items() if isinstance(v, int)}
        if layer == "nginx":
            return [pids["nginx"], *_children(pids["nginx"])]
        if layer == "api":
            return [v for k, v in pids.items() if k.startswith("api-")]
        if layer == "relay+workers":
            return [v for k, v in pids.items() if k == "relay" or k.startswith("worker-")]
        return database_pids


async def _backend_pids(database_url: str) -> list[int]:
    name = database_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(seed.asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


def _measure(fleet: Fleet, url: str, name: str, users_file: Path, opts: Options) -> tuple[Result, dict[str, float]]:
    """``opts.repeats`` wrk runs of ``mixed`` at ``url``; medians, and CPU ms per request by layer."""
    result = Result(name, opts.connections)
    per_layer: dict[str, list[float]] = {layer: [] for layer in LAYERS}
    hz = os.sysconf("SC_CLK_TCK")
    for i in range(opts.repeats):
        db_pids = asyncio.run(_backend_pids(fleet.status["database_url"]))
        groups = {layer: fleet.pids(layer, db_pids) for layer in LAYERS}
        before = {layer: {p: _ticks(p) for p in pids} for layer, pids in groups.items()}
        run = run_wrk(url, "mixed", users_file, connections=opts.connections, seconds=opts.duration)
        # backends that appeared during the run count from zero
        after = asyncio.run(_backend_pids(fleet.status["database_url"]))
        groups["database"] = sorted(set(groups["database"]) | set(after))
        for layer, pids in groups.items():
            spent = sum(_ticks(p) - before[layer].get(p, 0) for p in pids) / hz
            per_layer[layer].append(1000 * spent / max(1, run.requests))
        result.runs.append(run)
        console.log(
            f"  {name} run {i + 1}: {run.rps:,.0f} req/s p50 {run.p50_ms:.1f} p95 {run.p95_ms:.1f} ms, "
            f"codes {run.codes}; "
            + ", ".join(f"{layer} {per_layer[layer][-1]:.2f}" for layer in LAYERS)
            + " CPU ms/req"
        )
    return result, {layer: statistics.median(v) for layer, v in per_layer.items()}


def run(opts: Options) -> tuple[str, dict[str, Any]]:
    """Bring a fleet up, seed it, measure both topologies, bring it down; (markdown, raw data)."""
    run_dir = tempfile.mkdtemp(prefix="taskhub-bench-fleet-")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKHUB_")},
        "TASKHUB_FLEET_DIR": run_dir,
        "TASKHUB_FLEET_PORT": "0",
        "TASKHUB_FLEET_DATABASE": "local",
        "TASKHUB_FLEET_PG_URL": opts.pg_url.rsplit("/", 1)[0] + "/postgres",
        "TASKHUB_FLEET_REDIS_URL": os.environ.get("TASKHUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/5"),
        "TASKHUB_FLEET_PROMETHEUS": "0",
        "TASKHUB_FLEET_RATE": "100000",
        "TASKHUB_FLEET_BURST": "100000",
        "TASKHUB_JWT_SECRET": SECRET,
        "TASKHUB_RATE_LIMIT_ENABLED": "false",
        "TASKHUB_LOG_LEVEL": "WARNING",
        "TASKHUB_ACCESS_LOG": "false",
    }

    def fleet_cmd(*args: str) -> str:
        done = subprocess.run([sys.executable, str(FLEET), *args], env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"fleet.py {' '.join(args)} failed: {done.stderr[-3000:]}")
        return done.stdout

    try:
        gateway = fleet_cmd("up").strip()
        fleet = Fleet(env, json.loads(fleet_cmd("status")))
        database_url = fleet.status["database_url"]
        total = opts.users * (opts.tasks_per_user + 1)
        with progress() as bar:
            task = bar.add_task(f"seeding the fleet ({opts.users} users x {opts.tasks_per_user} tasks)", total=total)
            users = asyncio.run(
                seed.seed_service(database_url, opts.users, opts.tasks_per_user, lambda n: bar.advance(task, n))
            )
        users_file = opts.workdir / "users-fleet.tsv"
        seed.write_users_file(users_file, users, SECRET)
        direct = f"http://127.0.0.1:{fleet.status['ports']['api-1']}"
        run_wrk(gateway, "list", users_file, connections=16, seconds=2)  # warm-up of every instance
        through, through_cpu = _measure(fleet, gateway, "mixed via nginx, 3 instances", users_file, opts)
        alone, alone_cpu = _measure(fleet, direct, "mixed, 1 instance directly", users_file, opts)
    finally:
        subprocess.run([sys.executable, str(FLEET), "down"], env=env, capture_output=True, check=False)

    rows = []
    for result, cpu in ((alone, alone_cpu), (through, through_cpu)):
        rows.append([
            result.name, f"{result.rps:,.0f}", f"{result.p50:.1f}", f"{result.p95:.1f}",
            *(f"{cpu[layer]:.2f}" for layer in LAYERS), f"{sum(cpu.values()):.2f}", f"{result.non2xx}",
        ])  # fmt: skip
    head = ["topology", "req/s", "p50 ms", "p95 ms", *(f"{layer} CPU ms/req" for layer in LAYERS)]
    body = table([*head, "total CPU ms/req", "non-2xx"], rows)
    body += (
        f"\n\n{opts.connections} connections, {opts.duration:g} s x {opts.repeats} runs (medians), "
        f"{opts.users} users x {opts.tasks_per_user} tasks, 2 shared cores. CPU = user + system time of "
        "each layer's processes per request answered. Load average at the end: "
        + " / ".join(f"{x:.1f}" for x in os.getloadavg())
        + ".\n"
    )
    raw = {
        "direct": {"result": alone.to_dict(), "cpu_ms_per_req": alone_cpu},
        "fleet": {"result": through.to_dict(), "cpu_ms_per_req": through_cpu},
    }
    return body, raw

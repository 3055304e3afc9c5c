"""Single-client latency of one request on three database topologies, in-process (no HTTP server,
no wrk): one PostgreSQL server, the same behind PgBouncer (transaction mode), and tasks sharded by
owner over two throw-away PostgreSQL servers (``taskhub.db.sharding``). A rough per-request cost
of each topology, not a throughput benchmark: rounds alternate the topologies so that load from
other processes hits all of them alike; the median of every request of a kind is reported.

    PYTHONPATH=. .venv/bin/python -m bench.topologies [--requests 100] [--rounds 3]

Needs the machine's PostgreSQL (``--pg-url``), ``pgbouncer`` and the PostgreSQL server binaries.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

from taskhub.app import create_app
from taskhub.config import Settings
from taskhub.db import migrate, sharding
from taskhub.db.session import make_engine
from tests.conftest import JWT_SECRET, Api, client_for
from tests.pg_instances import PgInstance, start_instance
from tests.pgbouncer import PgBouncer, start_pgbouncer

TOPOLOGIES = ("one server", "pgbouncer", "two shards")
KINDS = ("GET /tasks/{id}", "GET /tasks (no cache)", "PATCH /tasks/{id}")


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def prepare(topology: str, pg_url: str, shards: list[PgInstance], bouncer: PgBouncer) -> tuple[str, dict[str, object]]:
    name = "taskhub_topology_" + topology.replace(" ", "_")
    admin = await asyncpg.connect(dsn(pg_url))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    settings = Settings(database_url=url)
    engine = make_engine(url, settings)
    await migrate.upgrade(engine)
    if topology == "two shards":
        for shard in shards:
            conn = await asyncpg.connect(dsn(shard.url()))
            await conn.execute(f'CREATE DATABASE "{name}"')
            await conn.close()
        await sharding.shard_by_owner(engine, [s.url(name) for s in shards], lambda u: make_engine(u, settings))
    await engine.dispose()
    if topology == "pgbouncer":
        return bouncer.url(name), {"database_pgbouncer": True}
    return url, {}


async def run_round(url: str, extra: dict[str, object], requests: int) -> dict[str, list[float]]:
    settings = Settings(
        database_url=url, jwt_secret=JWT_SECRET, argon2_memory_cost=1024, argon2_time_cost=1,
        rate_limit_enabled=False, auto_migrate=False, log_level="WARNING", cache_ttl=0, purge_interval=0,
        access_log=False, data_dir=Path(tempfile.mkdtemp()), **extra,  # type: ignore[arg-type]
    )
    app = create_app(settings)
    async with LifespanManager(app), client_for(app) as client:
        api = Api(client)
        headers = await api.user(f"bench{time.monotonic_ns()}@x.io")
        ids = [(await api.task(headers, title=f"t{i}"))["id"] for i in range(50)]
        calls: dict[str, Callable[[int], Awaitable[httpx.Response]]] = {
            KINDS[0]: lambda i: client.get(f"/api/v1/tasks/{ids[i % 50]}", headers=headers),
            KINDS[1]: lambda i: client.get("/api/v1/tasks", headers=headers),
            KINDS[2]: lambda i: client.patch(f"/api/v1/tasks/{ids[i % 50]}", json={"description": str(i)}, headers=headers),
        }
        out: dict[str, list[float]] = {}
        for kind, call in calls.items():
            out[kind] = []
            for i in range(requests):
                started = time.perf_counter()
                response = await call(i)
                out[kind].append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
        return out


async def main(pg_url: str, requests: int, rounds: int) -> str:
    """Run the rounds; returns (and prints) the markdown table of median latencies per kind."""
    server = make_url(pg_url)
    shards = [start_instance("taskhub-bench-shard-") for _ in range(2)]
    bouncer = start_pgbouncer(server.host or "127.0.0.1", server.port or 5432)
    samples: dict[str, dict[str, list[float]]] = {t: {k: [] for k in KINDS} for t in TOPOLOGIES}
    try:
        targets = {t: await prepare(t, pg_url, shards, bouncer) for t in TOPOLOGIES}
        for _ in range(rounds):
            for topology in TOPOLOGIES:
                for kind, times in (await run_round(*targets[topology], requests)).items():
                    samples[topology][kind] += times
    finally:
        bouncer.stop()
        for shard in shards:
            shard.stop()
        admin = await asyncpg.connect(dsn(pg_url))
        for topology in TOPOLOGIES:
            await admin.execute(f'DROP DATABASE IF EXISTS "taskhub_topology_{topology.replace(" ", "_")}" WITH (FORCE)')
        await admin.close()
    lines = ["| topology | " + " | ".join(KINDS) + " |", "|---|" + "---|" * len(KINDS)]
    for topology in TOPOLOGIES:
        cells = [f"{statistics.median(samples[topology][k]) * 1000:.2f} ms" for k in KINDS]
        lines.append(f"| {topology} | " + " | ".join(cells) + " |")
    one = {k: statistics.median(samples["one server"][k]) for k in KINDS}
    lines.append("")
    for topology in TOPOLOGIES[1:]:
        lines.append(f"- {topology} / one server: " + ", ".join(
            f"{k} {statistics.median(samples[topology][k]) / one[k]:.2f}x "
            f"({(statistics.median(samples[topology][k]) - one[k]) * 1000:+.2f} ms)" for k in KINDS))
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--requests", type=int, default=100, help="requests of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.pg_url, args.requests, args.rounds))

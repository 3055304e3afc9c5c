"""``python -m bench`` (``make bench``): load benchmarks of Taskhub against a real server process.

Suites: the default (floor, scenarios on PostgreSQL and SQLite, cache and access-log variants,
overload), ``--growth`` (1k/100k/1M tasks, EXPLAIN, keyset vs offset), ``--stacks`` (serving stack,
workers and pool sizes), ``--profile`` (py-spy on list, get, create), ``--events`` (event pipeline:
relay -> RabbitMQ -> worker throughput, commit-to-handler and commit-to-SSE latency, cost of the outbox
on create), ``--replicas`` (replica-read share under mixed on a PostgreSQL HA cluster of its own),
``--topologies`` (one server vs PgBouncer vs two shards, per request), ``--fleet`` (nginx over three
instances vs one, CPU per request by layer), ``--split`` (the split deployment of issue 16 vs the
monolith, CPU per request by service). ``--quick`` is a CI smoke test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench.common import Options, console, environment, save_json
from bench.loadgen import wrk_available
from bench.report import table, write_section

HERE = Path(__file__).resolve().parent


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Options]:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke: tiny data, 1 s runs, one repeat")
    p.add_argument("--users", type=int, help="users to seed (default 100; quick 8)")
    p.add_argument("--tasks-per-user", type=int, help="tasks per user (default 100; quick 10)")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 5; quick 1)")
    p.add_argument("--repeats", type=int, help="runs per measurement, medians reported (default 3; quick 1)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--overload-connections", type=int, default=256)
    p.add_argument("--workers", type=int, default=1, help="server worker processes")
    p.add_argument("--stack", default="uvicorn", choices=["uvicorn", "uvicorn-stock", "granian"])
    p.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test",
                   help="an existing database; bench databases are created next to it")
    p.add_argument("--redis-url", default=os.environ.get("TASKHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
                   help="Redis for the Redis-backed runs (default $TASKHUB_TEST_REDIS_URL, else DB 0); "
                        "use a database number of your own on a shared Redis")
    p.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    p.add_argument("--growth", action="store_true", help="run the growth suite (PostgreSQL, up to 1M tasks)")
    p.add_argument("--growth-sizes", default="1000,100000,1000000")
    p.add_argument("--stacks", action="store_true", help="compare serving stacks, workers, pool sizes")
    p.add_argument("--profile", action="store_true", help="py-spy profiles of list, get and create")
    p.add_argument("--events", action="store_true",
                   help="event pipeline (issue 11): relay -> RabbitMQ -> worker events/s, commit-to-handler and "
                        "commit-to-SSE latency under mixed, cost of the outbox on create (needs RabbitMQ, "
                        "$BENCH_AMQP_URL or amqp://guest:guest@127.0.0.1:5672/, and Redis)")
    p.add_argument("--replicas", action="store_true",
                   help="replica-read share under mixed (issue 14): starts a PostgreSQL HA cluster of its own "
                        "(deploy/pg-cluster: etcd, Patroni, HAProxy) on free ports, stops it afterwards")
    p.add_argument("--topologies", action="store_true",
                   help="single-client cost per request: one PostgreSQL server vs PgBouncer vs two shards "
                        "(bench/topologies.py)")
    p.add_argument("--fleet", action="store_true",
                   help="mixed through nginx over 3 instances vs 1 instance, CPU per request by layer")
    p.add_argument("--split", action="store_true",
                   help="mixed against the monolith, the monolith behind nginx and the split deployment (nginx, "
                        "auth, users, tasks x2, notifications; issue 16), CPU per request by service")
    p.add_argument("--ab", metavar="REF", help="A/B: git revision REF's src against the working tree")
    p.add_argument("--ab-cache-ttl", default="300", help="TASKHUB_CACHE_TTL for the A/B servers")
    p.add_argument("--ab-scenarios", default="list,list-filtered,get,create,update,mixed")
    p.add_argument("--all", action="store_true", help="default suite + growth + stacks + profile + fleet")
    p.add_argument("--out", type=Path, help="markdown report (default bench/RESULTS.md; quick: bench/out/quick.md)")
    a = p.parse_args(argv)
    q = a.quick
    opts = Options(
        quick=q,
        users=a.users or (8 if q else 100),
        tasks_per_user=a.tasks_per_user if a.tasks_per_user is not None else (10 if q else 100),
        duration=a.duration or (1 if q else 5),
        repeats=a.repeats or (1 if q else 3),
        connections=a.connections if not q else min(a.connections, 16),
        overload_connections=a.overload_connections if not q else min(a.overload_connections, 64),
        workers=a.workers,
        stack=a.stack,
        pg_url=a.pg_url,
        sqlite=not a.no_sqlite,
        out=a.out or (HERE / "out" / "quick.md" if q else HERE / "RESULTS.md"),
        growth_sizes=[int(x) for x in a.growth_sizes.split(",")] if not q else [200, 2000],
        workdir=HERE / "out",
        redis_url=a.redis_url,
    )
    opts.workdir.mkdir(parents=True, exist_ok=True)
    if q:
        from bench import common

        common.WARM_UP_SECONDS[0] = 1.0
    if a.ab:
        opts.extra["ab"] = a.ab
        opts.extra["ab_cache_ttl"] = a.ab_cache_ttl
        opts.extra["ab_scenarios"] = a.ab_scenarios.split(",")
    return a, opts


def main(argv: list[str] | None = None) -> int:
    a, opts = parse(argv)
    if not wrk_available():
        console.print("[red]wrk is not installed: apt-get install -y wrk[/red]")
        return 2
    started = time.monotonic()
    assert opts.out is not None
    env = environment()
    write_section(opts.out, "environment", "## Machine and versions\n\n" + table(
        ["", ""], env.items()) + "\n")
    selected = [s for s, on in (("growth", a.growth), ("stacks", a.stacks), ("profile", a.profile),
                                ("ab", bool(a.ab)), ("events", a.events),
                                ("replicas", a.replicas), ("topologies", a.topologies), ("fleet", a.fleet),
                                ("split", a.split)) if on]
    suites = (["main", "growth", "stacks", "profile", "fleet"] if a.all else selected) or ["main"]
    if opts.quick and not selected and not a.all:
        suites = ["main"]
    try:
        run_suites(a, opts, suites)
    finally:
        import asyncio

        from bench import seed

        asyncio.run(seed.drop_created())
    console.print(f"done in {time.monotonic() - started:.0f} s; report: {opts.out}")
    return 0


def run_suites(a: argparse.Namespace, opts: Options, suites: list[str]) -> None:
    assert opts.out is not None
    for suite in suites:
        console.rule(f"[bold]suite: {suite}")
        if suite == "main":
            from bench import suite_main

            body, raw = suite_main.run(opts)
            title = "## Scenarios" + (" (quick smoke run)" if opts.quick else "")
        elif suite == "growth":
            from bench import suite_growth

            body, raw = suite_growth.run(opts)
            title = "## Growth (PostgreSQL)"
        elif suite == "stacks":
            from bench import suite_stacks

            body, raw = suite_stacks.run(opts)
            title = "## Serving stack, workers and pool size"
        elif suite == "events":
            from bench import suite_events

            body, raw = suite_events.run(opts)
            title = "## Events: outbox -> relay -> RabbitMQ -> worker, live streams (issue 11)"
        elif suite == "replicas":
            from bench import suite_replicas

            body, raw = suite_replicas.run(opts)
            title = "## Replica-read share under `mixed` (PostgreSQL cluster, issue 14)"
        elif suite == "topologies":
            import asyncio

            from bench import topologies

            rounds = 1 if opts.quick else 3
            requests = 20 if opts.quick else 100
            body = asyncio.run(topologies.main(opts.pg_url, requests, rounds))
            body = (f"Single client, in-process (no HTTP server, no wrk), {rounds} rounds x {requests} requests of "
                    "each kind per topology, topologies alternating; median of every request. "
                    "`bench/topologies.py`.\n\n" + body)
            raw = {"table": body}
            title = "## Topologies: one server, PgBouncer, two shards (cost per request)"
        elif suite == "fleet":
            from bench import suite_fleet

            body, raw = suite_fleet.run(opts)
            title = "## Fleet: nginx over 3 instances vs 1 instance"
        elif suite == "split":
            from bench import suite_split

            body, raw = suite_split.run(opts)
            title = "## Split deployment vs monolith: CPU per request by service (issue 16)"
        elif suite == "ab":
            from bench import suite_ab

            body, raw = suite_ab.run(opts)
            title = f"## A/B: {a.ab} vs working tree"
        else:
            from bench import suite_profile

            body, raw = suite_profile.run(opts)
            title = "## Profiles (py-spy)"
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        write_section(opts.out, suite, f"{title}\n\n_Generated by `python -m bench` on {stamp}._\n\n{body}")
        save_json(opts, suite, raw)
        console.print(body)


if __name__ == "__main__":
    sys.exit(main())

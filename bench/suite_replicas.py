"""``--replicas`` (issue 14): the replicas' share of reads under ``mixed``, on a real cluster.

Brings up a PostgreSQL HA cluster of its own with ``deploy/pg-cluster/pg_cluster.py`` (etcd +
Patroni: a primary and two streaming replicas in synchronous mode, HAProxy) in a fresh run
directory on ten free ports (``TASKHUB_PG_CLUSTER_DIR`` / ``TASKHUB_PG_CLUSTER_PORT_BASE``, so it
never meets another cluster on the machine), seeds a database through the writer, and runs
``taskhub serve --workers 2`` with Redis (``--redis-url``: read-your-writes floors and the shared
caches) in two configurations, interleaved in every round:

- **replicas**: ``TASKHUB_DATABASE_URL`` = the writer, ``TASKHUB_DATABASE_REPLICA_URLS`` = both replicas;
- **primary only**: the writer alone (the same cluster, so writes cost the same synchronous commit).

Which server answered each read statement comes from ``taskhub_db_read_statements_total{target}``
scraped from ``/metrics`` before and after each wrk run. The cluster is stopped and its data
deleted at the end (``pg_cluster.py down``).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench import seed
from bench.common import SECRET, Options, base_env, console, measure, progress, server, warm_up
from bench.loadgen import Result
from bench.report import table
from bench.server import REPO, ServerSpec

SCRIPT = REPO / "deploy" / "pg-cluster" / "pg_cluster.py"
METRIC = "taskhub_db_read_statements_total"
SCENARIOS = ("mixed", "get", "list")


def free_port_base(start: int = 26430, span: int = 10) -> int:
    """The first base >= ``start`` (in steps of ``span``) whose ``span`` ports are all free."""
    for base in range(start, 60000, span):
        ok = True
        for port in range(base, base + span):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no ten free ports")


def reads_by_target(url: str) -> dict[str, float]:
    """``taskhub_db_read_statements_total`` per target from the server's ``/metrics``."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for m in re.finditer(r'^' + METRIC + r'\{target="([^"]*)"\} ([0-9.e+]+)$', text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def run(opts: Options) -> tuple[str, dict[str, Any]]:
    """Run the suite; returns (markdown, raw data)."""
    run_dir = Path(tempfile.gettempdir()) / f"bench-pg-cluster-{os.getpid()}"
    cluster_env = {**os.environ, "TASKHUB_PG_CLUSTER_DIR": str(run_dir),
                   "TASKHUB_PG_CLUSTER_PORT_BASE": str(free_port_base())}
    console.log(f"pg-cluster in {run_dir}, ports from {cluster_env['TASKHUB_PG_CLUSTER_PORT_BASE']}")
    up = subprocess.run(["python3", str(SCRIPT), "up"], env=cluster_env, capture_output=True, text=True,
                        check=False, timeout=600)
    if up.returncode != 0:
        subprocess.run(["python3", str(SCRIPT), "down"], env=cluster_env, check=False, timeout=120)
        raise RuntimeError(f"pg-cluster up failed ({up.returncode}): {up.stderr[-2000:]}")
    writer = next(ln.split(": ", 1)[1] for ln in up.stdout.splitlines() if ln.startswith("writer: "))
    replicas = [ln.split(": ", 1)[1] for ln in up.stdout.splitlines() if ln.startswith("replica: ")]
    raw: dict[str, Any] = {"writer": writer, "replicas": replicas, "runs": []}
    try:
        name = seed.db_name("replicas")
        url = asyncio.run(seed.prepare_postgres(writer, name))
        with progress() as bar:
            task = bar.add_task(f"seeding the cluster ({opts.users} users x {opts.tasks_per_user} tasks)",
                                total=opts.users * (opts.tasks_per_user + 1))
            users = asyncio.run(seed.seed_service(url, opts.users, opts.tasks_per_user,
                                                  lambda n: bar.advance(task, n)))
        users_file = opts.workdir / "users-replicas.tsv"
        seed.write_users_file(users_file, users, SECRET)
        replica_urls = [make_url(u).set(database=name).render_as_string(hide_password=False) for u in replicas]
        base = {**base_env(opts, url), "TASKHUB_REDIS_URL": opts.redis_url, "TASKHUB_ACCESS_LOG": "false",
                "TASKHUB_LOG_LEVEL": "WARNING"}
        configs = {"replicas": {**base, "TASKHUB_DATABASE_REPLICA_URLS": ",".join(replica_urls)},
                   "primary only": base}
        spec = ServerSpec(stack=opts.stack, workers=2)
        results: dict[tuple[str, str], Result] = {}
        shares: dict[tuple[str, str], list[dict[str, float]]] = {}
        for r in range(opts.repeats):
            for config, env in (configs.items() if r % 2 == 0 else list(configs.items())[::-1]):
                console.rule(f"replicas round {r + 1}/{opts.repeats}: {config}")
                with server(opts, spec, env, f"replicas-{config.replace(' ', '-')}") as srv:
                    warm_up(srv, users_file)
                    for scenario in SCENARIOS:
                        before = reads_by_target(srv.url)
                        res = measure(srv, scenario, scenario, users_file, opts, repeats=1)
                        after = reads_by_target(srv.url)
                        delta = {t: after.get(t, 0.0) - before.get(t, 0.0) for t in after}
                        results.setdefault((config, scenario), Result(f"{scenario} ({config})",
                                                                      opts.connections)).runs += res.runs
                        shares.setdefault((config, scenario), []).append(delta)
                        total = sum(delta.values()) or 1.0
                        console.log("  reads by target: " + ", ".join(
                            f"{t} {v:,.0f} ({100 * v / total:.0f}%)" for t, v in sorted(delta.items())))
        raw["runs"] = [{"config": c, "scenario": s, "result": results[(c, s)].to_dict(), "reads": shares[(c, s)]}
                       for (c, s) in results]
    finally:
        seed.CREATED[:] = [c for c in seed.CREATED if c[0] != writer]  # the cluster's data goes with it
        down = subprocess.run(["python3", str(SCRIPT), "down"], env=cluster_env, capture_output=True, text=True,
                              check=False, timeout=300)
        console.log(f"pg-cluster down: exit {down.returncode}")
    return render(opts, raw, results, shares), raw


def _share(deltas: list[dict[str, float]]) -> tuple[float, float, list[float]]:
    """(median replica share %, reads per round median, each round's replica share %)."""
    per_round = []
    totals = []
    for d in deltas:
        total = sum(d.values())
        totals.append(total)
        per_round.append(100 * sum(v for t, v in d.items() if t != "primary") / total if total else float("nan"))
    ordered = sorted(per_round)
    return ordered[len(ordered) // 2], sorted(totals)[len(totals) // 2], per_round


def render(opts: Options, raw: dict[str, Any], results: dict[tuple[str, str], Result],
           shares: dict[tuple[str, str], list[dict[str, float]]]) -> str:
    md = [f"Cluster: `make pg-cluster`'s script (etcd + Patroni 4, PostgreSQL primary + 2 streaming replicas, "
          "`synchronous_mode: true`, HAProxy writer port) brought up for this run on its own ports and "
          f"directory; `taskhub serve --workers 2` with Redis (`{opts.redis_url}`), access log off; wrk 2 threads, "
          f"{opts.connections} connections, {opts.duration:g} s per run, {opts.repeats} rounds with the two "
          f"configurations interleaved, medians; {opts.users} users x {opts.tasks_per_user} tasks. Reads are "
          f"counted per statement by `{METRIC}` (the authentication read, the task or page read, the "
          "list's count; cache hits read nothing).\n"]
    rows = []
    for (config, scenario), res in sorted(results.items(), key=lambda kv: (SCENARIOS.index(kv[0][1]), kv[0][0])):
        med, total, per = _share(shares[(config, scenario)])
        targets: dict[str, float] = {}
        for d in shares[(config, scenario)]:
            for t, v in d.items():
                targets[t] = targets.get(t, 0.0) + v
        split = ", ".join(f"{'primary' if t == 'primary' else 'replica :' + t.split(':')[1].split('/')[0]} "
                          f"{100 * v / (sum(targets.values()) or 1):.0f}%" for t, v in sorted(targets.items()))
        rows.append([scenario, config, f"{res.rps:,.0f}", f"{res.p95:.0f}", f"{res.cpu_ms:.2f}",
                     f"{total:,.0f}", f"**{med:.1f}%**" if config == "replicas" else f"{med:.1f}%",
                     " / ".join(f"{x:.1f}" for x in per), split, res.codes])
    md.append(table(["scenario", "config", "req/s", "p95 ms", "server CPU ms/req", "read statements per run",
                     "replica share of reads (median)", "per round %", "split over all rounds", "codes"], rows) + "\n")
    return "\n".join(md)

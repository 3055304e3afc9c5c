"""A/B: the working tree's ``src`` against another git revision's, interleaved run by run.

``python -m bench --ab REF`` exports ``src/`` of REF with ``git archive`` into the work directory and
serves it (``PYTHONPATH`` first) next to the current tree, on the same seeded PostgreSQL database.
Runs alternate A, B, A, B... so that load from other processes on the machine hits both alike.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import tarfile
from typing import Any

from bench.common import Options, base_env, console, measure, server, warm_up
from bench.loadgen import Result
from bench.report import table
from bench.server import REPO, ServerSpec
from bench.suite_main import seed_db

SCENARIOS = ["list", "list-filtered", "get", "create", "update", "mixed"]


def export_src(ref: str, dest: Any) -> None:
    data = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], capture_output=True, check=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")


def run(opts: Options) -> tuple[str, dict[str, Any]]:
    ref = opts.extra["ab"]
    base_dir = opts.workdir / f"ab-{ref.replace('/', '_')}"
    export_src(ref, base_dir)
    url, users_file = asyncio.run(seed_db(opts, "postgresql"))
    ttl = opts.extra.get("ab_cache_ttl", "300")
    env = {**base_env(opts, url), "TASKHUB_CACHE_TTL": ttl}
    spec = ServerSpec(stack=opts.stack, workers=opts.workers)
    a_env = {**env, "PYTHONPATH": str(base_dir / "src")}
    res: dict[str, dict[str, Result]] = {"A": {}, "B": {}}
    scenarios = opts.extra.get("ab_scenarios", SCENARIOS)
    with server(opts, spec, a_env, "ab-a") as srv_a, server(opts, spec, env, "ab-b") as srv_b:
        for srv in (srv_a, srv_b):
            warm_up(srv, users_file)
        for _ in range(opts.repeats):
            for s in scenarios:
                for side, srv in (("A", srv_a), ("B", srv_b)):
                    r = measure(srv, s, s, users_file, opts, repeats=1)
                    res[side].setdefault(s, Result(s, opts.connections)).runs.extend(r.runs)
    rows = []
    for s in scenarios:
        a, b = res["A"][s], res["B"][s]
        rows.append([s, f"{a.rps:,.0f}", f"{b.rps:,.0f}", f"{100 * (b.rps / a.rps - 1):+.0f}%",
                     f"{a.cpu_ms:.2f}", f"{b.cpu_ms:.2f}", f"{100 * (b.cpu_ms / a.cpu_ms - 1):+.0f}%",
                     f"{a.p95:.1f}", f"{b.p95:.1f}", a.non2xx + a.errors, b.non2xx + b.errors])
    console.log(f"A = {ref}, B = working tree")
    md = [f"A = `{ref}`, B = the working tree; cache TTL {ttl}; {opts.connections} connections, "
          f"{opts.duration:g} s runs, A and B interleaved, median of {opts.repeats}.\n",
          table(["scenario", "A req/s", "B req/s", "B vs A", "A server CPU ms/req", "B server CPU ms/req",
                 "CPU B vs A", "A p95 ms", "B p95 ms", "A errors+non-2xx",
                 "B errors+non-2xx"], rows) + "\n"]
    return "\n".join(md), {k: {s: r.to_dict() for s, r in v.items()} for k, v in res.items()}

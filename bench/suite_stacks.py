"""Choosing the serving stack by measurement: server, worker processes and pool size (PostgreSQL).

Every configuration is compared with its own floor (the bare ASGI app served the same way) and with
the reference floor (uvicorn, one worker). The list cache is off in every configuration
(``TASKHUB_CACHE_TTL=0``): with several workers the in-process cache is disabled anyway, so this keeps
the comparison fair (the Redis cache is measured in the default suite).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.common import Options, base_env, console, measure, server, warm_up
from bench.loadgen import Result
from bench.report import table
from bench.server import ServerSpec, granian_available
from bench.suite_main import seed_db

SCENARIOS = ["list", "get", "mixed"]


def configs(opts: Options) -> list[tuple[str, ServerSpec, dict[str, str]]]:
    out = [
        ("uvicorn (uvloop+httptools) x1, pool 20+10", ServerSpec(stack="uvicorn", workers=1), {}),
        ("uvicorn (uvloop+httptools) x2, pool 20+10", ServerSpec(stack="uvicorn", workers=2), {}),
        ("uvicorn (asyncio+h11) x1, pool 20+10", ServerSpec(stack="uvicorn-stock", workers=1), {}),
    ]
    if granian_available():
        out += [
            ("granian (uvloop) x1, pool 20+10", ServerSpec(stack="granian", workers=1), {}),
            ("granian (uvloop) x2, pool 20+10", ServerSpec(stack="granian", workers=2), {}),
        ]
    pools = [("5+0", "5", "0"), ("50+0", "50", "0")] if not opts.quick else []
    for label, size, overflow in pools:
        env = {"TASKHUB_DATABASE_POOL_SIZE": size, "TASKHUB_DATABASE_MAX_OVERFLOW": overflow}
        out.append((f"uvicorn (uvloop+httptools) x1, pool {label}", ServerSpec(stack="uvicorn", workers=1), env))
        out.append((f"uvicorn (uvloop+httptools) x2, pool {label}", ServerSpec(stack="uvicorn", workers=2), env))
    return out


def run(opts: Options) -> tuple[str, dict[str, Any]]:
    url, users_file = asyncio.run(seed_db(opts, "postgresql"))
    env = {**base_env(opts, url), "TASKHUB_CACHE_TTL": "0"}
    floors: dict[tuple[str, int], Result] = {}
    rows: list[list[object]] = []
    raw: dict[str, Any] = {}
    ref: float | None = None
    for label, spec, extra in configs(opts):
        console.rule(label)
        key = (spec.stack, spec.workers)
        if key not in floors:
            fspec = ServerSpec("floor", spec.stack, spec.workers)
            with server(opts, fspec, env, f"stack-floor-{spec.stack}-{spec.workers}") as srv:
                warm_up(srv, users_file)
                floors[key] = measure(srv, f"floor {spec.label()}", "list", users_file, opts)
        floor = floors[key]
        if ref is None:
            ref = floor.rps
        results = []
        with server(opts, spec, {**env, **extra}, f"stack-{spec.stack}-{spec.workers}") as srv:
            warm_up(srv, users_file)
            for s in SCENARIOS:
                results.append(measure(srv, s, s, users_file, opts))
        raw[label] = {"floor": floor.to_dict(), "scenarios": [r.to_dict() for r in results]}
        for r in results:
            rows.append([label, r.name, f"{r.rps:,.0f}", f"{r.p50:.1f}", f"{r.p95:.1f}", f"{r.p99:.1f}",
                         r.errors + r.timeouts + r.non2xx, f"{floor.rps:,.0f}",
                         f"{100 * r.rps / floor.rps:.1f}%", f"{100 * r.rps / ref:.1f}%"])
    md = [__doc__.split("\n\n", 1)[1].strip() + "\n",
          f"{opts.connections} connections, {opts.duration:g} s per run, median of {opts.repeats}.\n",
          table(["configuration", "scenario", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors + non-2xx",
                 "own floor req/s", "% of own floor", "% of uvicorn x1 floor"], rows) + "\n"]
    return "\n".join(md), raw

"""Interleaved A/B of the database pool on get and create (x1, PostgreSQL, list cache off): the
default 10 + 40 overflow against 50 + 0 and against ``ssl=disable``, 3 rounds rotating the order.

    PYTHONPATH=. .venv/bin/python bench/pool_ab.py      # ~4 min; Redis URL from $TASKHUB_TEST_REDIS_URL

With more requests in flight than the pool keeps, every extra checkout opens a connection and closes
it on return (asyncpg ``connect``/``close`` in the profiles: bench/RESULTS.md, "Issue 9: closing run").
"""

import asyncio
import os
import statistics
from pathlib import Path

from bench import seed
from bench.common import Options, base_env, measure, server, warm_up
from bench.server import ServerSpec
from bench.suite_main import seed_db

HERE = Path(__file__).resolve().parent
o = Options(quick=False, users=50, tasks_per_user=100, duration=5, repeats=1, connections=64, overload_connections=256,
            workers=1, stack="uvicorn", pg_url="postgresql+asyncpg://postgres@127.0.0.1:5432/test", sqlite=False,
            out=None, growth_sizes=[], workdir=HERE / "out",
            redis_url=os.environ.get("TASKHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
url, users = asyncio.run(seed_db(o, "postgresql"))
configs = {
    # Named explicitly: the default became 50 + 0 after the run in RESULTS.md.
    "pool 10 + 40 overflow": {"TASKHUB_DATABASE_POOL_SIZE": "10", "TASKHUB_DATABASE_MAX_OVERFLOW": "40"},
    "pool 50 + 0 (default)": {"TASKHUB_DATABASE_POOL_SIZE": "50", "TASKHUB_DATABASE_MAX_OVERFLOW": "0"},
    "pool 10 + 40, ssl=disable": {
        "TASKHUB_DATABASE_URL": url + "?ssl=disable",
        "TASKHUB_DATABASE_POOL_SIZE": "10",
        "TASKHUB_DATABASE_MAX_OVERFLOW": "40",
    },
}
res = {c: {s: [] for s in ("get", "create")} for c in configs}
try:
    for r in range(3):
        items = list(configs.items())
        items = items[r % 3:] + items[:r % 3]
        for c, extra in items:
            with server(o, ServerSpec(), {**base_env(o, url), "TASKHUB_CACHE_TTL": "0", **extra}, "poolab") as srv:
                warm_up(srv, users)
                for s in ("get", "create"):
                    res[c][s].append(measure(srv, s, s, users, o, repeats=1).runs[0])
finally:
    asyncio.run(seed.drop_created())
def med(xs: list, a: str) -> float:
    return float(statistics.median(getattr(x, a) for x in xs))


print("| config | get req/s | get CPU ms/req | create req/s | create CPU ms/req |")
print("|---|---|---|---|---|")
for c in configs:
    g, k = res[c]["get"], res[c]["create"]
    per_get = " / ".join(f"{x.cpu_ms_per_req:.2f}" for x in g)
    print(f"| {c} | {med(g, 'rps'):,.0f} | {med(g, 'cpu_ms_per_req'):.2f} ({per_get}) | "
          f"{med(k,'rps'):,.0f} | {med(k,'cpu_ms_per_req'):.2f} ({' / '.join(f'{x.cpu_ms_per_req:.2f}' for x in k)}) |")

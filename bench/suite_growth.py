"""Growth: list latency at 1k, 100k and 1M tasks (PostgreSQL), EXPLAIN plans, keyset vs offset depth.

Data: a "typical" user with 100 tasks exists from the first size on; a "heavy" user with 10,000 tasks
joins when the table reaches 100k; the rest is other users with 100 tasks each. Seeded by the bulk
path (multi-row INSERT for users, COPY for tasks; see ``bench/seed.py``). The server runs with the
list cache off (``TASKHUB_CACHE_TTL=0``) so every request reaches the database; latency is measured
with wrk on one connection (service time, no queueing).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench import seed
from bench.common import SECRET, Options, base_env, console, measure, progress, server
from bench.loadgen import Result
from bench.report import table
from bench.server import ServerSpec

FILTERED = "/api/v1/tasks?status=todo&status=in_progress&priority=high&q=report"


async def _explain(url: str, owner: Any, query_args: dict[str, Any]) -> list[tuple[str, str]]:
    """Run the service's list for ``owner`` capturing its SQL, then EXPLAIN ANALYZE each statement."""
    from taskhub.config import Settings
    from taskhub.core.pagination import PageParams
    from taskhub.db.session import Database
    from taskhub.tasks import service as task_service
    from taskhub.tasks.schemas import TaskQuery

    db = Database(Settings(database_url=url, data_dir=Path("/tmp")))
    captured: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM tasks" in statement:
            captured.append((statement, parameters))

    event.listen(db.primary.sync_engine, "before_cursor_execute", grab)
    plans = []
    try:
        async with db.unit_of_work(readonly=True) as session:
            await task_service.list_page(session, TaskQuery(**query_args), PageParams(limit=20, page=None, cursor=None),
                                         owner_id=owner)
        event.remove(db.primary.sync_engine, "before_cursor_execute", grab)
        async with db.unit_of_work(readonly=True) as session:
            conn = await session.connection()
            for statement, params in captured:
                rows = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                plans.append((statement, "\n".join(r[0] for r in rows)))
    finally:
        await db.dispose()
    return plans


def _plan_summary(plan: str) -> tuple[str, str]:
    indexes = sorted(set(re.findall(r"(?:Index(?: Only)? Scan(?: Backward)? using|Bitmap Index Scan on) (\w+)", plan)))
    seq = "Seq Scan" in plan
    m = re.search(r"Execution Time: ([\d.]+) ms", plan)
    how = ", ".join(indexes) if indexes else ""
    if seq:
        how = (how + ", " if how else "") + "**Seq Scan**"
    return how or "-", m.group(1) if m else "?"


async def _cursor_at(url: str, owner: Any, offset: int) -> str:
    """The keyset cursor for the row just before ``offset`` in the default order (``-created_at``)."""
    from taskhub.core.pagination import encode_cursor
    from taskhub.core.timeutil import to_utc
    from taskhub.tasks.schemas import TaskQuery

    conn = await seed.asyncpg.connect(seed.asyncpg_dsn(url))
    try:
        row = await conn.fetchrow("SELECT created_at, id FROM tasks WHERE owner_id = $1 "
                                  "ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1", owner, offset - 1)
    finally:
        await conn.close()
    query = TaskQuery(sort="-created_at")
    return encode_cursor(query.sort, query.sort_key, to_utc(row["created_at"]), row["id"])


def run(opts: Options) -> tuple[str, dict[str, Any]]:
    typical_n = 20 if opts.quick else 100
    heavy_n = 1000 if opts.quick else 10_000
    seconds = 1 if opts.quick else 3
    url = asyncio.run(seed.prepare_postgres(opts.pg_url, seed.db_name("growth")))
    env = {**base_env(opts, url), "TASKHUB_CACHE_TTL": "0"}
    current = 0
    typical: seed.SeededUser | None = None
    heavy: seed.SeededUser | None = None
    rows: list[list[object]] = []
    plan_rows: list[list[object]] = []
    raw: dict[str, Any] = {"sizes": {}}
    full_plans: list[str] = []
    depth_rows: list[list[object]] = []
    counter = 0
    for size in opts.growth_sizes:
        owners: list[tuple[str, int]] = []
        to_add = size - current
        if typical is None:
            owners.append(("typical@example.com", typical_n))
            to_add -= typical_n
        if heavy is None and size >= 10 * heavy_n:
            owners.append(("heavy@example.com", heavy_n))
            to_add -= heavy_n
        while to_add > 0:
            n = min(typical_n, to_add)
            counter += 1
            owners.append((f"g{counter}@example.com", n))
            to_add -= n
        with progress() as bar:
            t = bar.add_task(f"growth: COPY to {size:,} tasks", total=sum(n for _, n in owners))
            seeded = asyncio.run(seed.seed_bulk(url, owners, lambda k, t=t: bar.advance(t, k),
                                                rng_seed=size))
        current += sum(n for _, n in owners)
        for su in seeded:
            if su.email == "typical@example.com":
                typical = su
            elif su.email == "heavy@example.com":
                heavy = su
        assert typical is not None
        who = [("typical (100 tasks)" if not opts.quick else f"typical ({typical_n})", typical)]
        if heavy is not None:
            who.append((f"heavy ({heavy_n:,} tasks)", heavy))
        results: list[Result] = []
        with server(opts, ServerSpec(stack=opts.stack, workers=1), env, f"growth-{size}") as srv:
            for label, user in who:
                users_file = opts.workdir / f"growth-user-{user.email}.tsv"
                seed.write_users_file(users_file, [user], SECRET)
                for qname, path in (("list", "/api/v1/tasks"), ("list-filtered", FILTERED)):
                    r = measure(srv, f"{qname} / {label}", "path", users_file, opts, connections=1, repeats=1,
                                duration=seconds, path=path, threads=1)
                    results.append(r)
                    rows.append([f"{current:,}", label, qname, f"{r.rps:,.0f}", f"{r.p50:.2f}", f"{r.p95:.2f}",
                                 f"{r.p99:.2f}", r.non2xx + r.errors])
            if heavy is not None and size == opts.growth_sizes[-1]:
                users_file = opts.workdir / "growth-user-heavy.tsv"
                seed.write_users_file(users_file, [heavy], SECRET)
                for page in (1, 10, 100, 250, heavy_n // 20):
                    offset = (page - 1) * 20
                    ro = measure(srv, f"offset page {page}", "path", users_file, opts, connections=1, repeats=1,
                                 duration=seconds, path=f"/api/v1/tasks?page={page}", threads=1)
                    if offset:
                        cursor = asyncio.run(_cursor_at(url, heavy.id, offset))
                        rc = measure(srv, f"cursor at {offset}", "path", users_file, opts, connections=1,
                                     repeats=1, duration=seconds, path=f"/api/v1/tasks?cursor={cursor}", threads=1)
                    else:
                        rc = ro
                    depth_rows.append([f"{offset:,}", page, f"{ro.p50:.2f}", f"{ro.p95:.2f}", f"{rc.p50:.2f}",
                                       f"{rc.p95:.2f}", ro.non2xx + rc.non2xx])
        raw["sizes"][size] = [r.to_dict() for r in results]
        for label, user in who:
            for qname, args in (("list", {}), ("list-filtered", {"status": ["todo", "in_progress"],
                                                                  "priority": ["high"], "q": "report"})):
                plans = asyncio.run(_explain(url, user.id, args))
                for statement, plan in plans:
                    kind = "count" if "count(" in statement.lower() else "page"
                    how, ms = _plan_summary(plan)
                    plan_rows.append([f"{current:,}", label, qname, kind, how, ms])
                    if size == opts.growth_sizes[-1] and label.startswith("heavy"):
                        full_plans.append(f"{qname} / {kind} ({label}, {current:,} rows):\n\n```\n{plan}\n```\n")
        console.log(f"growth size {current:,} done")
    md = [__doc__.split("\n\n", 1)[1].strip() + "\n"]
    md.append(table(["tasks in table", "user", "query", "req/s (1 conn)", "p50 ms", "p95 ms", "p99 ms", "errors"],
                    rows) + "\n")
    md.append("### EXPLAIN (ANALYZE, BUFFERS) of the statements the service runs\n")
    md.append(table(["tasks in table", "user", "query", "statement", "indexes used", "execution ms"], plan_rows)
              + "\n")
    if depth_rows:
        md.append(f"### Offset vs keyset paging deep into the heavy user's list ({current:,} rows in the table)\n")
        md.append(table(["rows skipped", "page", "offset p50 ms", "offset p95 ms", "cursor p50 ms", "cursor p95 ms",
                         "errors"], depth_rows) + "\n")
    if full_plans:
        md.append("<details><summary>Full plans at the largest size (heavy user)</summary>\n")
        md.extend(full_plans)
        md.append("</details>\n")
    raw["plans"] = plan_rows
    raw["depth"] = depth_rows
    return "\n".join(md), raw

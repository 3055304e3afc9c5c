"""The default suite: floor, every scenario on PostgreSQL and SQLite, cache variants, access-log cost,
overload at 256 connections, and the targets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench import seed
from bench.common import SECRET, Options, base_env, console, measure, progress, server, warm_up
from bench.loadgen import Result
from bench.report import fmt_codes, result_table, table
from bench.server import REPO, ServerSpec

SCENARIOS = ["list", "list-filtered", "get", "create", "update", "mixed", "login"]
READS = ["list", "list-filtered", "get"]


def redis_supported() -> bool:
    """True when the settings have ``TASKHUB_REDIS_URL`` (an older tree under ``--ab`` may not)."""
    return "redis_url" in (REPO / "src" / "taskhub" / "config.py").read_text()


def redis_up() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


async def seed_db(opts: Options, backend: str) -> tuple[str, Path]:
    """Fresh database for ``backend`` seeded through the services; returns (url, users file)."""
    total = opts.users * (opts.tasks_per_user + 1)
    if backend == "postgresql":
        url = await seed.prepare_postgres(opts.pg_url, seed.db_name("main"))
    else:
        url = await seed.prepare_sqlite(opts.workdir / "sqlite")
    with progress() as bar:
        task = bar.add_task(f"seeding {backend} ({opts.users} users x {opts.tasks_per_user} tasks)", total=total)
        users = await seed.seed_service(url, opts.users, opts.tasks_per_user,
                                        lambda n: bar.advance(task, n))
    users_file = opts.workdir / f"users-{backend}.tsv"
    seed.write_users_file(users_file, users, SECRET)
    return url, users_file


def run_scenarios(srv: Any, names: list[str], users_file: Path, opts: Options, *, suffix: str = "",
                  connections: int | None = None, repeats: int | None = None, duration: float | None = None,
                  timeout_s: int = 10) -> list[Result]:
    out = []
    for name in names:
        out.append(measure(srv, name + suffix, name, users_file, opts, connections=connections, repeats=repeats,
                           duration=duration, timeout_s=timeout_s))
    return out


def overload_seconds(opts: Options) -> float:
    """Longer than the pool timeout (10 s), so requests waiting that long for a connection show up."""
    return opts.duration if opts.quick else max(12.0, opts.duration)


def run(opts: Options) -> tuple[str, dict[str, Any]]:
    """Run the suite; returns (markdown, raw data)."""
    stack = ServerSpec(stack=opts.stack, workers=opts.workers)
    raw: dict[str, Any] = {}
    md: list[str] = []

    pg_url, pg_users = asyncio.run(seed_db(opts, "postgresql"))
    env = base_env(opts, pg_url)

    console.rule("floor")
    with server(opts, ServerSpec("floor", opts.stack, opts.workers), env, "floor") as srv:
        warm_up(srv, pg_users)
        floor = measure(srv, "floor (bare ASGI, fixed 20 items)", "list", pg_users, opts)
        floor_over = measure(srv, "floor", "list", pg_users, opts, connections=opts.overload_connections,
                             repeats=1, duration=overload_seconds(opts), timeout_s=30)
    raw["floor"] = floor.to_dict()

    console.rule("postgresql, defaults (in-process cache on, access log on)")
    with server(opts, stack, env, "pg") as srv:
        warm_up(srv, pg_users)
        pg = run_scenarios(srv, SCENARIOS, pg_users, opts)
        rss = srv.rss_mb()
        console.rule(f"overload: {opts.overload_connections} connections")
        over_names = ["list", "create"] if opts.quick else SCENARIOS
        over = [floor_over, *run_scenarios(srv, over_names, pg_users, opts, connections=opts.overload_connections,
                                           repeats=1, duration=overload_seconds(opts), timeout_s=30)]
    raw["postgresql"] = [r.to_dict() for r in pg]
    raw["overload"] = [r.to_dict() for r in over]

    console.rule("postgresql variants")
    with server(opts, stack, {**env, "TASKHUB_CACHE_TTL": "0"}, "pg-nocache") as srv:
        warm_up(srv, pg_users)
        nocache = run_scenarios(srv, ["list", "list-filtered"], pg_users, opts, suffix=" (cache off)")
    nolog: list[Result] = []
    if not opts.quick:
        with server(opts, stack, {**env, "TASKHUB_LOG_LEVEL": "WARNING"}, "pg-nolog") as srv:
            warm_up(srv, pg_users)
            nolog = run_scenarios(srv, ["list", "get"], pg_users, opts, suffix=" (access log off)")
    redis_note = ""
    redis_res: list[Result] = []
    if not redis_supported():
        redis_note = ("Redis cache: `TASKHUB_REDIS_URL` is not wired in `src/taskhub/app.py` at the time of "
                      "this run (no `redis` in app.py), so list-with-Redis was not measured.")
    elif not redis_up():
        redis_note = "Redis cache: not reachable on 127.0.0.1:6379, not measured."
    else:
        renv = {**env, "TASKHUB_REDIS_URL": opts.redis_url}
        with server(opts, stack, renv, "pg-redis") as srv:
            warm_up(srv, pg_users)
            redis_res = run_scenarios(srv, ["list"] if opts.quick else ["list", "list-filtered"], pg_users, opts,
                                      suffix=" (Redis cache)")
        redis_note = f"Redis cache: `TASKHUB_REDIS_URL={opts.redis_url}`."
    raw["variants"] = [r.to_dict() for r in [*nocache, *nolog, *redis_res]]

    chosen: list[Result] = []
    floor2: Result | None = None
    if not opts.quick and redis_supported() and redis_up():
        console.rule("chosen stack: 2 workers + Redis cache")
        spec2 = ServerSpec(stack=opts.stack, workers=2)
        with server(opts, ServerSpec("floor", opts.stack, 2), env, "floor-x2") as srv:
            warm_up(srv, pg_users)
            floor2 = measure(srv, "floor x2", "list", pg_users, opts)
        with server(opts, spec2, {**env, "TASKHUB_REDIS_URL": opts.redis_url}, "pg-x2-redis") as srv:
            warm_up(srv, pg_users)
            chosen = run_scenarios(srv, ["list", "list-filtered", "get", "mixed"], pg_users, opts,
                                   suffix=" (x2, Redis)")
        raw["chosen"] = [r.to_dict() for r in [floor2, *chosen]]

    sqlite_res: list[Result] = []
    if opts.sqlite:
        console.rule("sqlite (embedded)")
        sq_url, sq_users = asyncio.run(seed_db(opts, "sqlite"))
        with server(opts, stack, base_env(opts, sq_url), "sqlite") as srv:
            warm_up(srv, sq_users)
            sqlite_res = run_scenarios(srv, ["list", "create"] if opts.quick else SCENARIOS, sq_users, opts,
                                       repeats=1)
        raw["sqlite"] = [r.to_dict() for r in sqlite_res]

    f = floor.rps
    md.append(f"Server: `{stack.label()}` (`taskhub serve --workers {opts.workers}`: uvicorn, uvloop + "
              f"httptools, no uvicorn access log; Taskhub's own access-log line per request on, INFO). "
              f"Load: wrk, 2 threads, {opts.connections} connections, {opts.duration:g} s per run, median of "
              f"{opts.repeats} run(s); tokens rotate over {opts.users} users "
              f"({opts.tasks_per_user} tasks each, seeded through the services). Rate limiter off "
              f"(`TASKHUB_RATE_LIMIT_ENABLED=false`). Server RSS after the PostgreSQL scenarios: {rss:.0f} MB.\n")
    md.append("### Floor\n")
    md.append(result_table([floor], f) + "\n")
    md.append("### PostgreSQL (defaults: in-process cache on, TTL 300 s)\n")
    md.append(result_table(pg, f) + "\n")
    md.append("`login` is dominated by argon2id (m=19 MiB, t=2, p=1) run in worker threads; it is reported "
              "here but not part of the targets.\n")
    md.append("### Variants (PostgreSQL)\n")
    md.append(result_table([*nocache, *nolog, *redis_res], f) + "\n")
    by = {r.name: r for r in [*pg, *nocache, *nolog, *redis_res]}
    cache_lines = []
    for s in ("list", "list-filtered"):
        on, off = by.get(s), by.get(f"{s} (cache off)")
        if on and off:
            line = (f"- `{s}`: in-process cache on {on.rps:,.0f} req/s, {on.cpu_ms:.2f} ms CPU/req "
                    f"(p95 {on.p95:.1f} ms) vs off {off.rps:,.0f} req/s, {off.cpu_ms:.2f} ms CPU/req "
                    f"(p95 {off.p95:.1f} ms): "
                    f"on/off = {on.rps / off.rps:.2f}x req/s")
            rd = by.get(f"{s} (Redis cache)")
            if rd:
                line += (f"; Redis cache {rd.rps:,.0f} req/s, {rd.cpu_ms:.2f} ms CPU/req (p95 {rd.p95:.1f} ms) = "
                         f"{rd.rps / off.rps:.2f}x of off")
            cache_lines.append(line)
    for s in ("list", "get"):
        on, off = by.get(s), by.get(f"{s} (access log off)")
        if on and off:
            cache_lines.append(
                f"- access-log line on `{s}`: on {on.rps:,.0f} req/s, {on.cpu_ms:.2f} ms CPU/req vs off "
                f"(`TASKHUB_LOG_LEVEL=WARNING`) {off.rps:,.0f} req/s, {off.cpu_ms:.2f} ms CPU/req "
                f"({100 * (on.cpu_ms - off.cpu_ms) / off.cpu_ms:+.1f}% CPU/req with the log on; differences "
                "of this size are within the run-to-run noise of this machine, see the profile)")
    md.append("\n".join(cache_lines) + "\n")
    md.append(redis_note + "\n")
    if chosen and floor2 is not None:
        md.append("### Chosen stack: `taskhub serve --workers 2` with the Redis cache (PostgreSQL)\n")
        md.append("Two uvicorn workers on the two cores (see the stack comparison); with two workers the "
                  "in-process cache is off by design, so the list cache is Redis. Ratios are to the floor "
                  "served by two workers.\n")
        md.append(result_table([floor2, *chosen], floor2.rps) + "\n")
    if sqlite_res:
        md.append("### SQLite (embedded mode, same scenarios, one run each)\n")
        md.append(result_table(sqlite_res, f) + "\n")
    md.append(f"### Overload: {opts.overload_connections} connections (one {overload_seconds(opts):g} s run each, "
              "wrk timeout 30 s)\n")
    md.append(result_table(over, floor_over.rps) + "\n")
    md.append("### Targets (PostgreSQL, 64 connections)\n")
    trows = []
    configs = [("x1, in-process cache", "", f)]
    if chosen and floor2 is not None:
        configs.append(("x2, Redis cache", " (x2, Redis)", floor2.rps))
    for label, suffix, base in configs:
        for s, share in (("list", 5.0), ("get", 5.0), ("mixed", 4.0)):
            r = by.get(s + suffix) or next((c for c in chosen if c.name == s + suffix), None)
            if r is None:
                continue
            pct = 100 * r.rps / base
            p95_ok = r.p95 < 50 if s != "mixed" else True
            errs = r.errors + r.timeouts + r.non2xx
            trows.append([label, s, f"{r.p95:.1f} ms" + (" (< 50)" if s != "mixed" else ""), errs,
                          f"{pct:.1f}% (>= {share:g}%)",
                          "PASS" if (p95_ok and pct >= share and (errs == 0 or s == "mixed")) else "MISS"])
    md.append(table(["config", "scenario", "p95", "errors + non-2xx", "req/s vs floor", "verdict"], trows) + "\n")
    over_bad = [r for r in over if r.errors or r.timeouts or any(k.startswith("5") and k != "503"
                                                                  for k in r.codes)]
    n503 = sum(r.codes.get("503", 0) for r in over)
    md.append(f"503 answers (pool exhausted, with Retry-After): {n503}.\n")
    md.append("Overload verdict: " + ("every scenario kept answering without socket errors, timeouts or 500s."
              if not over_bad else "problems in " + "; ".join(
                  f"`{r.name}` ({fmt_codes(r.codes)}, errors {r.errors}, timeouts {r.timeouts})" for r in over_bad))
              + "\n")
    return "\n".join(md), raw

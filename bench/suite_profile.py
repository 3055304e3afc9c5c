"""py-spy profiles of the list, get and create paths under load (PostgreSQL, one worker).

The server runs under wrk load while ``py-spy record --format raw`` samples it (idle threads are
excluded, so samples approximate CPU time of the Python process). Summaries: self time by package
of the innermost Python frame, and the inclusive share of the heaviest functions.
"""

from __future__ import annotations

import asyncio
import collections
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import Options, base_env, console, server
from bench.loadgen import LUA
from bench.report import table
from bench.server import ServerSpec
from bench.suite_main import seed_db

PY_SPY = Path(sys.executable).parent / "py-spy"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _package(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/taskhub/" in path:
        parts = path.split("/taskhub/", 1)[1].split("/")
        return "taskhub." + parts[0].removesuffix(".py")
    m = re.search(r"python3\.\d+/(.+?)(/|\.py)", path)
    return "stdlib." + m.group(1) if m else path


BUCKETS: list[tuple[str, str]] = [
    ("outside the app: uvicorn/httptools/uvloop, event loop", "!FastAPI.__call__"),
    ("FastAPI + Starlette routing, middleware, dependency resolution (inclusive)", "APIRouter.app"),
    ("  dependency resolution: solve_dependencies (inclusive of the deps below)", "solve_dependencies"),
    ("  request.cookies parsing in solve_dependencies", "HTTPConnection.cookies"),
    ("auth: authenticate (JWT decode, cache lookup, user/jti query on a miss)", "authenticate"),
    ("  JWT decode (PyJWT)", "TokenCodec.decode"),
    ("owned task: task query (readable_task for get, writable_task for update)", "readable_task|writable_task"),
    ("list_page_json: cache lookup + list + count + serialization", "list_page_json"),
    ("  list query (repository.list_tasks)", "repository.py:list_tasks"),
    ("  count query (repository.count_tasks)", "count_tasks"),
    ("tasks service create (Core INSERT of task + outbox event)", "tasks/service.py:create"),
    ("tasks service update (_apply: snapshot, flush, outbox event)", "tasks/service.py:_apply"),
    ("ORM flush (INSERT/UPDATE statements)", "Session.flush"),
    ("request body parsing + validation", "_extract_form_body|request_body_to_args|Request.json|Request.body"),
    ("pydantic validate/serialize (model_validate, model_dump_json)", "model_validate|model_dump_json"),
    ("SQLAlchemy AsyncSession.execute (all queries, incl. driver)", "AsyncSession.execute"),
    ("SQLite reads inline on the loop (db/sqlite_inline)", "_InlineQueue.put_nowait"),
    ("BEGIN round trip (asyncpg Transaction.start)", "Transaction.start"),
    ("COMMIT (AsyncSession.commit)", "AsyncSession.commit"),
    ("session close / connection return to pool", "AsyncSession.close"),
    ("asyncpg driver (all frames)", "^asyncpg/"),
    ("access log line (structlog)", "^structlog/"),
    ("sync dependencies run in the thread pool (run_in_threadpool)", "run_in_threadpool|to_thread"),
]


def _is_idle(frames: list[tuple[str, str]]) -> bool:
    """A worker thread parked on its queue (py-spy does not always tell it is idle)."""
    if not frames:
        return True
    func, file = frames[-1]
    return (file.endswith(("threading.py", "queue.py")) and func.split(".")[-1] in ("wait", "get")) or (any(
        f[0] == "WorkerThread.run" for f in frames
    ) and file.endswith("threading.py"))


def summarize(raw: Path) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """(samples, self share by package, share of named buckets) from a py-spy raw file."""
    total = 0
    by_pkg: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        parsed = []
        for f in stack.split(";"):
            if f.startswith(("process ", "thread ")):
                continue
            m = _FRAME.match(f)
            parsed.append((m.group("func"), m.group("file")) if m else (f, "?"))
        if _is_idle(parsed):
            continue
        total += count
        by_pkg[_package(parsed[-1][1])] += count
        keys = [f"{_short(file)}:{func}" for func, file in parsed]
        for label, pattern in BUCKETS:
            if pattern.startswith("!"):
                hit = not any(pattern[1:] in k for k in keys)
            else:
                rx = re.compile(pattern)
                hit = any(rx.search(k) for k in keys)
            if hit:
                buckets[label] += count
    if not total:
        return 0, [], []
    pkgs = [(k, 100 * v / total) for k, v in by_pkg.most_common(14)]
    named = [(label, 100 * buckets[label] / total) for label, _ in BUCKETS]
    return total, pkgs, named


def _short(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "/taskhub/" in path:
        return path.split("/taskhub/", 1)[1]
    return path


def profile_one(opts: Options, srv: Any, scenario: str, users_file: Path, seconds: int) -> Path:
    out = opts.workdir / f"profile-{scenario}.txt"
    wrk = subprocess.Popen(
        ["wrk", "-t2", f"-c{opts.connections}", f"-d{seconds + 3}s", "--timeout=10s", "-s", str(LUA), srv.url,
         "--", scenario, str(users_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        subprocess.run([str(PY_SPY), "record", "--pid", str(srv.proc.pid), "--duration", str(seconds),
                        "--rate", "200", "--format", "raw", "--output", str(out)],
                       capture_output=True, check=True, timeout=seconds + 60)
    finally:
        wrk.communicate(timeout=seconds + 60)
    return out


def run(opts: Options) -> tuple[str, dict[str, Any]]:
    url, users_file = asyncio.run(seed_db(opts, "postgresql"))
    env = base_env(opts, url)
    seconds = 4 if opts.quick else 10
    md: list[str] = []
    raw: dict[str, Any] = {}
    plan = [("list", "300", "list (cache on: auth + cache hit)"),
            ("list", "0", "list (cache off: auth + query + count + serialization)"),
            ("get", "0", "get"), ("create", "0", "create"), ("update", "0", "update")]
    for scenario, ttl, title in plan:
        with server(opts, ServerSpec(stack="uvicorn", workers=1), {**env, "TASKHUB_CACHE_TTL": ttl},
                    f"profile-{scenario}") as srv:
            subprocess.run(["wrk", "-t2", "-c16", "-d2s", "-s", str(LUA), srv.url, "--", scenario,
                            str(users_file)], capture_output=True, check=False)
            console.log(f"profiling {title}")
            path = profile_one(opts, srv, scenario, users_file, seconds)
        dest = path.with_name(f"profile-{scenario}-ttl{ttl}.txt")
        path.rename(dest)
        total, pkgs, funcs = summarize(dest)
        raw[title] = {"samples": total, "packages": pkgs, "functions": funcs, "raw": str(dest)}
        rel = dest.relative_to(opts.workdir.parent.parent)
        md.append(f"### {title}\n\n{total} busy samples at 200 Hz over {seconds} s under {opts.connections} "
                  f"connections (idle worker threads dropped; raw stacks: `{rel}`).\n")
        md.append("Self time by package of the innermost Python frame:\n")
        md.append(table(["package", "% of samples"], [(k, f"{v:.1f}") for k, v in pkgs]) + "\n")
        md.append("Where the time goes (inclusive: a sample counts for every bucket on its stack):\n")
        md.append(table(["part of the request", "% of samples"], [(k, f"{v:.1f}") for k, v in funcs]) + "\n")
    return "\n".join(md), raw

"""The split suite (``python -m bench --split``): the ``mixed`` scenario against the monolith and against
the split deployment (issue 16), with the CPU each process spends per request.

Three topologies run side by side, all with EdDSA tokens from one key-set file and one Redis database
(``opts.redis_url``, i.e. ``$TASKHUB_TEST_REDIS_URL``). The monolith and the split deployment each have
a database of their own (seeded alike on ``opts.pg_url``'s server), so that each one's outbox relay
leader (which applies the writes' event handlers in-process, there being no broker) is one of its own
processes, and their user ids (hence their Redis keys) differ:

- ``monolith``: one ``taskhub serve`` (``--service all``), asked directly;
- ``monolith via nginx``: the gateway of ``deploy/nginx/split.conf.tmpl`` with every upstream pointing at
  that one process, so the extra proxy hop is measured apart from the split itself;
- ``split``: ``tests/split_topology.py``'s deployment: nginx, auth x1, users x1, tasks x2,
  notifications x1; the services other than auth verify tokens with the auth service's JWKS.

Runs alternate between the topologies (round 1: A, B, C; round 2: A, B, C; ...) so that the machine's
other load falls on all of them alike; medians over the rounds are reported. CPU per request is the
user + system time of each process (and its children) from ``/proc/<pid>/stat`` from just before a run
until the outbox is empty after it (the writes' events are handled after their commit, and a saturated
process defers them past the end of wrk), divided by the requests wrk counted; PostgreSQL is every
backend connected to the topology's database (the idle topology's backends are not counted). Redis (the
machine's, shared) is not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from tests.servers import serve
from tests.split_topology import SHAPE, start_gateway, start_split

from bench import seed
from bench.common import Options, console, progress
from bench.loadgen import Result, run_wrk
from bench.report import table
from bench.suite_fleet import _backend_pids, _children, _ticks
from taskhub.config import Settings
from taskhub.core.keys import LocalKeySet, ensure_key_set
from taskhub.core.security import TokenCodec

#: Process groups reported, in table order; a topology lacks some of them ("-").
COLUMNS = ("nginx", "monolith", "auth", "users", "tasks", "notifications", "PostgreSQL")


@dataclass
class Topology:
    """One deployment under test: its URL and the pids of each process group (PostgreSQL apart)."""

    name: str
    url: str
    database_url: str
    users_file: Path
    groups: dict[str, Callable[[], list[int]]]
    result: Result = field(init=False)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    backlog: list[int] = field(default_factory=list)  # unsent outbox events when wrk stopped, per run
    drain_s: list[float] = field(default_factory=list)  # seconds until the outbox was empty after wrk

    def __post_init__(self) -> None:
        self.result = Result(self.name, 0)

    def median_cpu(self) -> dict[str, float]:
        """CPU ms per request by group, median over the runs."""
        return {group: statistics.median(values) for group, values in self.cpu.items()}


def _with_children(pid: int) -> list[int]:
    return [pid, *_children(pid)]


def _write_users_file(path: Path, users: list[seed.SeededUser], keys_file: Path) -> None:
    """``seed.write_users_file`` with EdDSA tokens signed by the key-set file's newest key (what the
    auth service would issue at login); issuer and audience are the defaults the services check."""
    defaults = Settings(data_dir=Path("/tmp"))
    codec = TokenCodec(
        algorithm="EdDSA",
        issuer=defaults.jwt_issuer,
        audience=defaults.jwt_audience,
        ttl=86_400,
        keys=LocalKeySet(keys_file, access_token_ttl=86_400),
    )
    lines = []
    for u in users:
        token, _ = codec.encode(user_id=u.id, role="user")
        lines.append(f"{token}\t{u.email}\t{seed.PASSWORD}\t{','.join(str(i) for i in u.task_ids)}")
    path.write_text("\n".join(lines) + "\n")


def _seeded(kind: str, keys_file: Path, opts: Options) -> tuple[str, Path]:
    """A migrated database of its own (``taskhub_bench_<kind>_<pid>``, dropped at exit by
    ``seed.drop_created``) seeded through the services, and its wrk users file; (URL, file)."""
    database_url = asyncio.run(seed.prepare_postgres(opts.pg_url, seed.db_name(kind)))
    total = opts.users * (opts.tasks_per_user + 1)
    with progress() as bar:
        task = bar.add_task(f"seeding {kind} ({opts.users} users x {opts.tasks_per_user} tasks)", total=total)
        users = asyncio.run(
            seed.seed_service(database_url, opts.users, opts.tasks_per_user, lambda n: bar.advance(task, n))
        )
    users_file = opts.workdir / f"users-{kind}.tsv"
    _write_users_file(users_file, users, keys_file)
    return database_url, users_file


async def _unsent(database_url: str) -> int:
    """Outbox events not yet delivered (``events.relay.backlog``'s count)."""
    conn = await asyncpg.connect(seed.asyncpg_dsn(database_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
    finally:
        await conn.close()


def _drain(database_url: str, timeout: float = 120.0) -> float:
    """Seconds until the outbox has no unsent event (polled every 0.2 s). Raises: RuntimeError after
    ``timeout`` seconds (the relay is stuck: the CPU figures would be wrong)."""
    started = time.monotonic()
    while asyncio.run(_unsent(database_url)):
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the outbox of {database_url} did not drain within {timeout:g} s")
        time.sleep(0.2)
    return time.monotonic() - started


def _run_once(topology: Topology, opts: Options) -> None:
    """One wrk run of ``mixed`` against ``topology``; appends the run and each group's CPU ms/req."""
    groups = {name: pids() for name, pids in topology.groups.items()}
    groups["PostgreSQL"] = asyncio.run(_backend_pids(topology.database_url))
    before = {name: {p: _ticks(p) for p in pids} for name, pids in groups.items()}
    load = os.getloadavg()[0]
    run = run_wrk(topology.url, "mixed", topology.users_file, connections=opts.connections, seconds=opts.duration)
    run.load1 = load
    # The writes' events are handled by the relay leader after their commit: a saturated process
    # defers them past the end of wrk. Waiting for an empty outbox before reading the CPU counts
    # that work in the run that caused it, for every topology alike.
    topology.backlog.append(asyncio.run(_unsent(topology.database_url)))
    topology.drain_s.append(_drain(topology.database_url))
    # backends (and nginx workers) that appeared during the run count from zero
    groups["PostgreSQL"] = sorted(set(groups["PostgreSQL"]) | set(asyncio.run(_backend_pids(topology.database_url))))
    for name, current in topology.groups.items():
        groups[name] = sorted(set(groups[name]) | set(current()))
    hz = os.sysconf("SC_CLK_TCK")
    for name, pids in groups.items():
        spent = sum(_ticks(p) - before[name].get(p, 0) for p in pids) / hz
        topology.cpu.setdefault(name, []).append(1000 * spent / max(1, run.requests))
    topology.result.runs.append(run)
    console.log(
        f"  {topology.name}: {run.rps:,.0f} req/s p50 {run.p50_ms:.1f} p95 {run.p95_ms:.1f} ms, codes {run.codes}, "
        f"load {load:.1f}, outbox {topology.backlog[-1]} unsent at the end, drained in {topology.drain_s[-1]:.1f} s; "
        "CPU ms/req " + ", ".join(f"{name} {values[-1]:.2f}" for name, values in topology.cpu.items())
    )


def run(opts: Options) -> tuple[str, dict[str, Any]]:
    """Seed a database, start the three topologies, alternate ``opts.repeats`` rounds of ``mixed``
    over them, stop everything; returns (markdown, raw data). Raises what the servers' start raises."""
    tmp = Path(tempfile.mkdtemp(prefix="taskhub-bench-split-"))
    keys_file = tmp / "jwt_keys.json"  # the path start_split uses: it keeps an existing key set
    ensure_key_set(keys_file)
    mono_db, mono_users = _seeded("mono", keys_file, opts)
    split_db, split_users = _seeded("split", keys_file, opts)

    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        console.log("starting the split deployment (nginx, auth, users, tasks x2, notifications)")
        split = start_split(tmp, database_url=split_db, redis_url=opts.redis_url)
        stack.callback(split.stop)
        (tmp / "monolith").mkdir()
        mono = stack.enter_context(serve(tmp / "monolith", {**split.env, "TASKHUB_DATABASE_URL": mono_db}, timeout=60))
        address = mono.url.removeprefix("http://")
        mono_gateway = start_gateway({service: [address] for service in SHAPE}, tmp / "monolith-gateway")
        stack.callback(mono_gateway.stop)

        def pids_of(roots: list[int]) -> Callable[[], list[int]]:
            return lambda: [p for root in roots for p in _with_children(root)]

        def pid_of(root: int) -> Callable[[], list[int]]:
            return pids_of([root])

        topologies = [
            Topology("monolith (1 process)", mono.url, mono_db, mono_users, {"monolith": pid_of(mono.proc.pid)}),
            Topology("monolith via nginx", mono_gateway.url, mono_db, mono_users,
                     {"nginx": pid_of(mono_gateway.proc.pid), "monolith": pid_of(mono.proc.pid)}),
            Topology("split via nginx (auth, users, tasks x2, notifications)", split.url, split_db, split_users, {
                "nginx": pid_of(split.gateway.proc.pid),
                **{service: pids_of([s.proc.pid for s in procs]) for service, procs in split.services.items()},
            }),
        ]  # fmt: skip
        for topology in topologies:
            topology.result.connections = opts.connections
            run_wrk(topology.url, "list", topology.users_file, connections=16, seconds=2)  # pools, caches, JWKS fetch
            # the seeding's events (one per task) are handled before the first measured run
            console.log(f"  {topology.name}: seeded events delivered in {_drain(topology.database_url, 600):.1f} s")
        for round_no in range(opts.repeats):
            console.log(f"round {round_no + 1} of {opts.repeats}")
            for topology in topologies:
                _run_once(topology, opts)
        leaders = [
            f"{service}-{index + 1}"
            for service, procs in split.services.items()
            for index, proc in enumerate(procs)
            if _relay_leader(proc.url)
        ]
        verification = _verification_cost(keys_file)  # while the key file exists (the stack removes it)
    return _report(topologies, opts, leaders, verification)


def _verification_cost(keys_file: Path, tokens: int = 2000) -> dict[str, float]:
    """Milliseconds of one access-token verification in this process (``TokenCodec.decode``: signature,
    claims, memo), best of 3 passes over ``tokens`` distinct tokens: EdDSA and HS256 on a fresh codec (every
    token new to it, as the first request of a token at each instance), and EdDSA again on the same codec
    (memoized, as every later request of that token at that instance)."""
    defaults = Settings(data_dir=Path("/tmp"))

    def codec(algorithm: str) -> TokenCodec:
        keys = LocalKeySet(keys_file, access_token_ttl=900) if algorithm == "EdDSA" else None
        return TokenCodec(algorithm=algorithm, issuer=defaults.jwt_issuer, audience=defaults.jwt_audience,
                          ttl=900, keys=keys, secret=None if keys else "bench-" + "s" * 40)  # fmt: skip

    def per_token(make: Callable[[], TokenCodec], algorithm: str, *, fresh: bool) -> float:
        signer = codec(algorithm)
        batch = [signer.encode(user_id=uuid.uuid4(), role="user")[0] for _ in range(tokens)]
        verifier = make()
        best = float("inf")
        for _ in range(3):
            verifier = make() if fresh else verifier
            started = time.perf_counter()
            for token in batch:
                verifier.decode(token)
            best = min(best, (time.perf_counter() - started) * 1000 / tokens)
        return best

    eddsa = codec("EdDSA")
    return {
        "EdDSA, first use": per_token(lambda: codec("EdDSA"), "EdDSA", fresh=True),
        "HS256, first use": per_token(lambda: codec("HS256"), "HS256", fresh=True),
        "EdDSA, memoized": per_token(lambda: eddsa, "EdDSA", fresh=False),
    }


def _relay_leader(url: str) -> bool:
    """Whether the service at ``url`` holds the outbox relay's leadership (its ``/ready``): the leader
    applies the event handlers in-process (no broker here), so its CPU includes the writes' events."""
    ready = httpx.get(url + "/ready", timeout=5).json()
    return bool(ready["checks"]["broker"].get("relay_leader"))


def _report(
    topologies: list[Topology], opts: Options, leaders: list[str], verification: dict[str, float]
) -> tuple[str, dict[str, Any]]:
    rows = []
    totals: dict[str, float] = {}
    for t in topologies:
        cpu = t.median_cpu()
        totals[t.name] = sum(cpu.values())
        rows.append([
            t.name, f"{t.result.rps:,.0f}", f"{t.result.p50:.1f}", f"{t.result.p95:.1f}",
            *(f"{cpu[c]:.2f}" if c in cpu else "-" for c in COLUMNS), f"{totals[t.name]:.2f}", t.result.non2xx,
            " / ".join(str(b) for b in t.backlog), " / ".join(f"{d:.1f}" for d in t.drain_s),
        ])  # fmt: skip
    head = ["topology", "req/s", "p50 ms", "p95 ms", *(f"{c} CPU ms/req" for c in COLUMNS), "total CPU ms/req",
            "non-2xx", "outbox unsent at wrk's end (per run)", "drain s (per run)"]  # fmt: skip
    body = table(head, rows)
    mono, via, split = topologies
    body += (
        f"\n\nSame-run ratios (medians): split / monolith req/s {split.result.rps / mono.result.rps:.2f}, "
        f"total CPU per request {totals[split.name] / totals[mono.name]:.2f}; split / monolith via nginx "
        f"req/s {split.result.rps / via.result.rps:.2f}, total CPU per request "
        f"{totals[split.name] / totals[via.name]:.2f}. Outbox relay leader in the split (it applies the event "
        f"handlers of the writes in-process, there being no broker): {', '.join(leaders) or 'none'}.\n\n"
        f"`mixed` (50% list, 30% get, 10% create, 10% update, all under `/api/v1/tasks`), {opts.connections} "
        f"connections, {opts.duration:g} s x {opts.repeats} rounds, topologies alternating within each round "
        f"(medians), {opts.users} users x {opts.tasks_per_user} tasks, EdDSA tokens, 2 shared cores. CPU = user + "
        "system time of each process group per request answered, from before wrk starts until the outbox is "
        "empty after it stops (so the writes' event handling is counted); `tasks` is both instances together; "
        "PostgreSQL is every backend of the topology's database; Redis (shared) not counted. 1-minute load average "
        "before each run: "
        + ", ".join(f"{r.load1:.1f}" for t in topologies for r in t.result.runs)
        + "; at the end: "
        + " / ".join(f"{x:.1f}" for x in os.getloadavg())
        + ". `bench/suite_split.py`.\n\n"
        "One access-token verification in one process (`TokenCodec.decode`, best of 3 passes over 2,000 tokens): "
        + ", ".join(f"{name} {ms:.3f} ms" for name, ms in verification.items())
        + ".\n"
    )
    raw: dict[str, Any] = {t.name: {"result": t.result.to_dict(), "cpu_ms_per_req": t.median_cpu(),
                                    "cpu_runs": t.cpu} for t in topologies}  # fmt: skip
    for t in topologies:
        raw[t.name].update(outbox_unsent_at_end=t.backlog, drain_s=t.drain_s)
    raw["token verification ms"] = verification
    return body, raw

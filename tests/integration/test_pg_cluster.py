"""The PostgreSQL HA cluster of ``deploy/pg-cluster`` (issue 14, first bullet): etcd + Patroni with
one primary and two streaming replicas in synchronous mode, HAProxy's writer port following the
primary. Real processes on this machine; the failover test runs last in this module because it
changes which node is the primary."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.integration.conftest import PG_CLUSTER_SCRIPT, URL_LINE, PgCluster

pytestmark = pytest.mark.integration

FAILOVER_LIMIT_S = 60
REPO_ROOT = PG_CLUSTER_SCRIPT.parents[2]


async def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on ``url`` (an SQLAlchemy asyncpg URL, as the script prints it) in its own
    connection and transaction; the rows it returns, if any."""
    # Short timeouts: during a failover each failed attempt should cost little, so the measured
    # window is close to the real one.
    engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": 2, "command_timeout": 10})
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(sql), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


def port_of(url: str) -> int:
    match = URL_LINE.fullmatch(f"replica: {url}")
    assert match is not None, url
    return int(match.group(3))


def leader(status: dict[str, Any]) -> dict[str, Any]:
    (found,) = [m for m in status["members"] if m["role"] == "leader"]
    return found


async def new_table(writer: str) -> str:
    name = "pg_cluster_" + secrets.token_hex(4)
    await query(writer, f"create table {name} (id int primary key, note text not null)")
    return name


async def wait_for_row(url: str, table: str, row_id: int, within_s: float = 10) -> list[tuple[Any, ...]]:
    """Poll ``url`` for up to ``within_s`` seconds until ``table`` has ``row_id`` (replicas replay
    asynchronously, even the synchronous standby: it confirms the flush, not the replay)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            rows = await query(url, f"select id, note from {table} where id = :id", id=row_id)
        except DBAPIError as exc:  # the create table may not be replayed yet either
            if "does not exist" not in str(exc):
                raise
            rows = []
        if rows or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


class TestUp:
    def test_prints_the_writer_and_one_line_per_replica(self, pg_cluster: PgCluster) -> None:
        base = pg_cluster.base
        assert pg_cluster.lines[0] == f"writer: postgresql+asyncpg://postgres@127.0.0.1:{base}/taskhub"
        assert len(pg_cluster.lines) == 3 and all(line.startswith("replica: ") for line in pg_cluster.lines[1:])
        # Replicas are node URLs (node ports are base+4..base+6), never the writer's.
        ports = [port_of(url) for url in pg_cluster.replicas]
        assert len(set(ports)) == 2 and set(ports) <= {base + 4, base + 5, base + 6}

    def test_up_again_starts_nothing_and_prints_the_same(self, pg_cluster: PgCluster) -> None:
        before = pg_cluster.status()["processes"]
        lines = pg_cluster.lines
        pg_cluster.up()
        after = pg_cluster.status()["processes"]
        assert after == before
        assert all(p["running"] and p["pid"] for p in after.values()), after
        assert pg_cluster.lines == lines

    def test_make_pg_cluster_prints_exactly_the_url_lines(self, pg_cluster: PgCluster) -> None:
        # As a top-level `make` (no MAKELEVEL/MAKEFLAGS from an enclosing `make test`), the way a
        # developer or `make fleet`'s caller runs it: progress goes to stderr, stdout is parseable.
        env = {k: v for k, v in pg_cluster.env.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
        done = subprocess.run(
            ["make", "pg-cluster"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == pg_cluster.lines


class TestRouting:
    async def test_writer_reaches_the_patroni_leader_out_of_recovery(self, pg_cluster: PgCluster) -> None:
        expected = [(False, leader(pg_cluster.status())["port"])]
        for _ in range(6):  # every connection, not one that happened to be balanced onto the leader
            assert await query(pg_cluster.writer, "select pg_is_in_recovery(), inet_server_port()") == expected

    async def test_each_replica_url_reaches_a_server_in_recovery(self, pg_cluster: PgCluster) -> None:
        for url in pg_cluster.replicas:
            assert await query(url, "select pg_is_in_recovery(), inet_server_port()") == [(True, port_of(url))]

    async def test_reader_port_reaches_a_replica(self, pg_cluster: PgCluster) -> None:
        reader = pg_cluster.status()["reader"]
        ports = {port_of(url) for url in pg_cluster.replicas}
        seen = set()
        for _ in range(4):  # round-robin over both replicas
            ((in_recovery, port),) = await query(reader, "select pg_is_in_recovery(), inet_server_port()")
            assert in_recovery is True
            seen.add(port)
        assert seen == ports

    async def test_a_row_written_on_the_writer_appears_on_both_replicas(self, pg_cluster: PgCluster) -> None:
        table = await new_table(pg_cluster.writer)
        await query(pg_cluster.writer, f"insert into {table} values (1, 'written on the primary')")
        for url in pg_cluster.replicas:
            assert await wait_for_row(url, table, 1) == [(1, "written on the primary")]

    async def test_one_replica_is_a_synchronous_standby(self, pg_cluster: PgCluster) -> None:
        rows = await query(
            pg_cluster.writer, "select application_name, sync_state from pg_stat_replication order by sync_state"
        )
        assert [state for _, state in rows] == ["async", "sync"]
        (sync_name,) = [name for name, state in rows if state == "sync"]
        roles = {m["name"]: m["role"] for m in pg_cluster.status()["members"]}
        assert roles[sync_name] == "sync_standby"
        ((setting,),) = await query(pg_cluster.writer, "show synchronous_standby_names")
        assert sync_name in setting


class TestFailover:
    async def test_sigkill_of_the_primary_promotes_the_sync_standby_with_every_row(
        self, pg_cluster: PgCluster, capsys: pytest.CaptureFixture[str], record_property: Any
    ) -> None:
        status = pg_cluster.status()
        old = leader(status)
        (standby,) = [m for m in status["members"] if m["role"] == "sync_standby"]
        postmaster = status["processes"][f"postgres-{old['name']}"]["pid"]
        table = await new_table(pg_cluster.writer)
        await query(pg_cluster.writer, f"insert into {table} values (1, 'acknowledged before the crash')")

        os.kill(postmaster, signal.SIGKILL)
        killed = time.monotonic()
        errors: list[str] = []

        async def write(row_id: int) -> tuple[float, list[tuple[Any, ...]]] | None:
            # A write, not just a connection: the window ends when the new primary takes writes.
            try:
                rows = await query(
                    pg_cluster.writer,
                    f"insert into {table} values (:id, 'after the failover') "
                    f"returning pg_is_in_recovery(), inet_server_port(), (select note from {table} where id = 1)",
                    id=row_id,
                )
            except (OSError, TimeoutError, DBAPIError, InterfaceError, OperationalError) as exc:
                errors.append(type(exc.orig if isinstance(exc, DBAPIError) else exc).__name__)
                return None
            return time.monotonic(), rows

        # A new attempt every 0.25 s, each in its own connection, without waiting for the previous
        # one to time out: the window is then measured to about 0.25 s, not to a connect timeout.
        attempts: list[asyncio.Task[tuple[float, list[tuple[Any, ...]]] | None]] = []
        while not any(t.done() and t.result() for t in attempts):
            if time.monotonic() - killed > FAILOVER_LIMIT_S:
                pytest.fail(f"writer unavailable for more than {FAILOVER_LIMIT_S} s after the SIGKILL: {errors}")
            attempts.append(asyncio.create_task(write(100 + len(attempts))))
            await asyncio.sleep(0.25)
        results = [r for r in await asyncio.gather(*attempts) if r]
        first_success, rows = min(results, key=lambda r: r[0])
        window = first_success - killed

        # Patroni promoted the synchronous standby, which holds the acknowledged row.
        assert rows == [(False, standby["port"], "acknowledged before the crash")]
        record_property("failover_unavailable_s", round(window, 1))
        with capsys.disabled():
            print(
                f"\n[pg-cluster] SIGKILL of the primary: writer unavailable {window:.1f} s; "
                f"{len(errors)} of {len(attempts)} writes failed: {', '.join(sorted(set(errors)))}"
            )

        # `up` heals: the killed node rejoins as a streaming replica of the new primary.
        started = time.monotonic()
        pg_cluster.up()
        rejoin = time.monotonic() - started
        new_status = pg_cluster.status()
        assert leader(new_status)["name"] == standby["name"]
        assert {m["name"]: m["state"] for m in new_status["members"] if m["role"] != "leader"} == {
            old["name"]: "streaming",
            next(m["name"] for m in status["members"] if m["name"] not in (old["name"], standby["name"])): "streaming",
        }
        assert port_of(pg_cluster.writer) == pg_cluster.base
        assert sorted(port_of(url) for url in pg_cluster.replicas) == sorted(
            m["port"] for m in new_status["members"] if m["role"] != "leader"
        )
        first_id = 100 + [t.result() for t in attempts].index((first_success, rows))
        for url in pg_cluster.replicas:
            assert await wait_for_row(url, table, first_id) == [(first_id, "after the failover")]
        with capsys.disabled():
            print(f"[pg-cluster] old primary streaming again as a replica {rejoin:.1f} s after `up` was called")

"""What ``TASKHUB_DATABASE_PGBOUNCER`` relies on (``taskhub.db.session``): behind PgBouncer 1.18
in transaction mode, asyncpg's unnamed statements in autocommit keep their two halves
(Parse/Describe/Flush, then Bind/Execute/Sync) on one server connection, even when many clients
share few server connections; and named, cached statements do not survive there."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL, unavailable
from tests.pgbouncer import PgBouncer, start_pgbouncer

CLIENTS, STATEMENTS = 30, 40


@pytest.fixture(scope="module")
def small_bouncer() -> Iterator[PgBouncer]:
    """PgBouncer with 2 server connections for many clients: every statement competes for them."""
    server = make_url(PG_URL)
    try:
        bouncer = start_pgbouncer(server.host or "127.0.0.1", server.port or 5432, default_pool_size=2)
    except (FileNotFoundError, RuntimeError) as exc:
        unavailable(str(exc))
    yield bouncer
    bouncer.stop()


async def hammer(bouncer: PgBouncer, cache: int) -> tuple[int, list[str]]:
    """Each of CLIENTS connections runs STATEMENTS parameterized statements at once; (right answers, errors)."""
    dsn = bouncer.url(make_url(PG_URL).database or "postgres").replace("+asyncpg", "")
    conns = [await asyncpg.connect(dsn, statement_cache_size=cache) for _ in range(CLIENTS)]
    right, errors = 0, []

    async def client(conn: asyncpg.Connection, n: int) -> None:
        nonlocal right
        for i in range(STATEMENTS):
            try:
                value = await conn.fetchval("select $1::int * 1000 + $2::int", n, i % 7)
            except asyncpg.PostgresError as exc:
                errors.append(type(exc).__name__)
            else:
                right += value == n * 1000 + i % 7

    try:
        await asyncio.gather(*(client(conn, n) for n, conn in enumerate(conns)))
    finally:
        for conn in conns:
            await conn.close()
    return right, errors


async def test_unnamed_statements_in_autocommit_stay_on_one_server_connection(small_bouncer: PgBouncer) -> None:
    right, errors = await hammer(small_bouncer, cache=0)
    assert (right, errors) == (CLIENTS * STATEMENTS, [])


async def test_cached_named_statements_break_there(small_bouncer: PgBouncer) -> None:
    """Why the setting exists: asyncpg's default statement cache fails behind this PgBouncer."""
    right, errors = await hammer(small_bouncer, cache=100)
    assert errors and right < CLIENTS * STATEMENTS
    assert set(errors) <= {"InvalidSQLStatementNameError", "DuplicatePreparedStatementError"}

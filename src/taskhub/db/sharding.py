"""Sharding by owner (opt-in): the owner-keyed tables hash-partitioned by owner on other servers.

PostgreSQL's built-in path to sharding: on the application's database (the *coordinator*)
``tasks`` and ``idempotency_keys`` become tables ``PARTITION BY HASH`` of their owner column whose
partitions are ``postgres_fdw`` foreign tables, one per shard server; each shard holds a plain table
keyed by ``(owner, id)``. Tuple routing sends every insert to its owner's shard, and partition
pruning sends every statement that names the owner (all of Taskhub's per-user statements do) to
that one shard only. Users, tokens and the outbox stay on the coordinator.

The application code is the same on one server and on shards; what the schema change implies:

- keys include the distribution column: ``(owner_id, id)`` for tasks (also the ORM's identity, so
  ORM updates name the owner), ``(user_id, key)`` for idempotency keys. A partitioned table with
  foreign partitions can carry neither unique constraints nor foreign keys, so uniqueness is each
  shard's primary key (an owner lives on one shard), and an account's tasks are deleted explicitly
  before the account (``ON DELETE CASCADE`` cannot cross servers);
- a write spans the owner's shard and the coordinator (its outbox row); postgres_fdw commits the
  shard's transaction just before the coordinator's, not with two-phase commit (see
  ``docs/scaling.md``);
- queries without an owner (``/admin/tasks``, housekeeping) ask every shard (``async_capable``:
  in parallel).

:func:`shard_by_owner` makes the change on a migrated database (``taskhub shard-by-owner``); rows
already there move to their shards. Map to Citus: ``create_distributed_table('tasks', 'owner_id')``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CheckConstraint, Column, Index, MetaData, PrimaryKeyConstraint, Table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateIndex, CreateTable

from taskhub.db.models import Base


@dataclass(frozen=True)
class Sharded:
    """An owner-keyed table: its distribution column and the key each shard enforces."""

    table: str
    owner_column: str
    key: tuple[str, ...]


SHARDED = (
    Sharded("tasks", "owner_id", ("owner_id", "id")),
    Sharded("idempotency_keys", "user_id", ("user_id", "key")),
)
"""The tables keyed by owner, in the order they are converted."""


def server_name(index: int) -> str:
    """The coordinator's name (``CREATE SERVER``) for shard ``index`` (0-based)."""
    return f"taskhub_shard_{index}"


def partition_name(table: str, index: int) -> str:
    """The partition of ``table`` on shard ``index``: the foreign table and the shard's own table."""
    return f"{table}_shard_{index}"


def _source(name: str) -> Table:
    return Base.metadata.tables[name]


def _columns(source: Table) -> list[Column[Any]]:
    # Types and nullability only: no foreign key (the users table is on the coordinator) and no
    # default (the application sets every value).
    return [Column(c.name, c.type, nullable=c.nullable) for c in source.columns]


def shard_table(spec: Sharded, index: int) -> tuple[Table, list[Index]]:
    """The plain table shard ``index`` holds for ``spec``: the model's columns, its CHECK
    constraints, its indexes, and the primary key ``spec.key``."""
    source = _source(spec.table)
    name = partition_name(spec.table, index)
    checks = [
        CheckConstraint(c.sqltext, name=f"ck_{name}_{c.name}")
        for c in source.constraints
        if isinstance(c, CheckConstraint)
    ]
    table = Table(name, MetaData(), *_columns(source), PrimaryKeyConstraint(*spec.key, name=f"pk_{name}"), *checks)
    indexes = [Index(f"{ix.name}_shard_{index}", *[table.c[col.name] for col in ix.columns]) for ix in source.indexes]
    return table, indexes


def parent_table(spec: Sharded) -> Table:
    """The coordinator's table for ``spec``: the model's columns, ``PARTITION BY HASH (owner)``."""
    source = _source(spec.table)
    return Table(spec.table, MetaData(), *_columns(source), postgresql_partition_by=f"HASH ({spec.owner_column})")


def _ddl(element: Any) -> str:
    return str(element.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]


def _literal(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


async def _create_shard_tables(url: str, index: int, make: Any) -> None:
    engine: AsyncEngine = make(url)
    try:
        async with engine.begin() as conn:
            for spec in SHARDED:
                table, indexes = shard_table(spec, index)
                exists = await conn.scalar(text("select to_regclass(:name) is not null"), {"name": table.name})
                if not exists:
                    await conn.execute(text(_ddl(CreateTable(table))))
                    for ix in indexes:
                        await conn.execute(text(_ddl(CreateIndex(ix))))
    finally:
        await engine.dispose()


async def _define_servers(conn: AsyncConnection, shard_urls: Sequence[str]) -> None:
    await conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgres_fdw"))
    for index, url in enumerate(shard_urls):
        parsed = make_url(url)
        options = {
            "host": parsed.host or "127.0.0.1",
            "port": parsed.port or 5432,
            "dbname": parsed.database or "postgres",
            # A query without an owner (admin listing, housekeeping) scans the shards in parallel.
            "async_capable": "true",
            "fetch_size": "1000",
        }
        rendered = ", ".join(f"{key} {_literal(value)}" for key, value in options.items())
        server = f"CREATE SERVER IF NOT EXISTS {server_name(index)} FOREIGN DATA WRAPPER postgres_fdw"
        await conn.execute(text(f"{server} OPTIONS ({rendered})"))
        mapping = {"user": parsed.username or "postgres"}
        if parsed.password:
            mapping["password"] = parsed.password
        rendered = ", ".join(f"{key} {_literal(value)}" for key, value in mapping.items())
        await conn.execute(
            text(f"CREATE USER MAPPING IF NOT EXISTS FOR PUBLIC SERVER {server_name(index)} OPTIONS ({rendered})")
        )


async def _partition(conn: AsyncConnection, spec: Sharded, shards: int) -> None:
    already = await conn.scalar(
        text("select exists (select 1 from pg_partitioned_table where partrelid = to_regclass(:name))"),
        {"name": spec.table},
    )
    if already:
        return
    old = f"{spec.table}_unsharded"
    columns = ", ".join(c.name for c in _source(spec.table).columns)
    await conn.execute(text(f"ALTER TABLE {spec.table} RENAME TO {old}"))
    await conn.execute(text(_ddl(CreateTable(parent_table(spec)))))
    for index in range(shards):
        name = partition_name(spec.table, index)
        await conn.execute(
            text(
                f"CREATE FOREIGN TABLE {name} PARTITION OF {spec.table} "
                f"FOR VALUES WITH (MODULUS {shards}, REMAINDER {index}) "
                f"SERVER {server_name(index)} OPTIONS (table_name {_literal(name)})"
            )
        )
    await conn.execute(text(f"INSERT INTO {spec.table} ({columns}) SELECT {columns} FROM {old}"))  # noqa: S608
    await conn.execute(text(f"DROP TABLE {old}"))


async def shard_by_owner(coordinator: AsyncEngine, shard_urls: Sequence[str], make_engine: Any) -> None:
    """Move the owner-keyed tables (:data:`SHARDED`) of the migrated database behind ``coordinator``
    onto ``shard_urls`` (PostgreSQL databases, each reachable from the coordinator server with the
    URL's host, port, user and password). Idempotent: a table already partitioned is left alone.

    Shard tables are made first (each in its own transaction), then the coordinator's change runs in
    one transaction: foreign servers and user mappings, then per table: rename, partitioned
    parent, one foreign partition per shard, copy the rows, drop the old table.

    ``make_engine(url)`` builds an engine for a shard URL (the caller's settings).

    Raises:
        ValueError: fewer than one shard, or a non-PostgreSQL coordinator.
    """
    if not shard_urls:
        raise ValueError("give at least one shard URL")
    if coordinator.dialect.name != "postgresql":
        raise ValueError("sharding needs PostgreSQL (postgres_fdw)")
    for index, url in enumerate(shard_urls):
        await _create_shard_tables(url, index, make_engine)
    async with coordinator.begin() as conn:
        await _define_servers(conn, shard_urls)
        for spec in SHARDED:
            await _partition(conn, spec, len(shard_urls))

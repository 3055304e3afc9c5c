"""Databases for the benchmark: create, migrate, seed, and mint tokens.

Two seeding paths:

- ``seed_service``: the service's own code path — ``users.service.create_user`` (argon2 hash per
  user) and ``tasks.service.create`` (ORM insert + outbox event per task), in units of work of 100.
- ``seed_bulk``: for the growth sizes (up to 1M rows) — users by a multi-row INSERT (SQLAlchemy
  core) sharing one precomputed argon2 hash, tasks by PostgreSQL ``COPY`` (asyncpg
  ``copy_records_to_table``). No outbox rows are written on this path.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from taskhub.config import Settings
from taskhub.core.security import PasswordHasher, TokenCodec, normalize_email
from taskhub.db import migrate
from taskhub.db.session import Database, make_engine

PASSWORD = "bench-password-2026"
WORDS = ["report", "invoice", "deploy", "review", "meeting", "budget", "design", "backup", "release",
         "email", "call", "plan", "write", "test", "fix", "update", "clean", "book", "order", "read"]
TAGS = ["work", "home", "urgent", "later", "finance", "ops", "personal", "team"]
STATUSES = ["todo", "todo", "in_progress", "done"]
PRIORITIES = ["low", "medium", "medium", "high"]
RANK = {"low": 1, "medium": 2, "high": 3}

Advance = Callable[[int], None]
# Databases made by this process (dropped at the end); names carry the pid, so that two benchmark
# runs on one PostgreSQL (other clones, CI) never drop each other's database.
CREATED: list[tuple[str, str]] = []


def db_name(kind: str) -> str:
    return f"taskhub_bench_{kind}_{os.getpid()}"


@dataclass
class SeededUser:
    id: uuid.UUID
    email: str
    task_ids: list[uuid.UUID] = field(default_factory=list)


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def prepare_postgres(admin_url: str, name: str) -> str:
    """Drop and re-create database ``name`` next to ``admin_url``'s, migrate it; return its URL."""
    admin = await asyncpg.connect(asyncpg_dsn(admin_url), timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    CREATED.append((admin_url, name))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    await _migrate(url)
    return url


async def drop_created() -> None:
    """Drop every database this process created."""
    while CREATED:
        admin_url, name = CREATED.pop()
        admin = await asyncpg.connect(asyncpg_dsn(admin_url), timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _fresh_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        (directory / f"taskhub.db{suffix}").unlink(missing_ok=True)


async def prepare_sqlite(directory: Path) -> str:
    """A fresh, migrated SQLite file in ``directory``; returns its URL."""
    _fresh_dir(directory)
    url = f"sqlite+aiosqlite:///{(directory / 'taskhub.db').resolve()}"
    await _migrate(url)
    return url


async def _migrate(url: str) -> None:
    settings = Settings(database_url=url, data_dir=Path("/tmp"))
    engine = make_engine(url, settings)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def _hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(memory_cost=settings.argon2_memory_cost, time_cost=settings.argon2_time_cost,
                          parallelism=settings.argon2_parallelism)


def _task_data(rng: random.Random, now: datetime) -> dict[str, Any]:
    title = " ".join(rng.sample(WORDS, 3)).capitalize()
    return {
        "title": title,
        "description": f"Demo task about {title.lower()}.",
        "status": rng.choice(STATUSES),
        "priority": rng.choice(PRIORITIES),
        "due_date": now + timedelta(days=rng.randint(-20, 40)) if rng.random() < 0.7 else None,
        "tags": rng.sample(TAGS, rng.randint(0, 3)),
    }


async def seed_service(
    url: str, users: int, tasks_per_user: int, advance: Advance, *, keep_ids: int = 200
) -> list[SeededUser]:
    """Seed through the services (see module docstring); ``advance(n)`` reports progress."""
    from taskhub.core.cache import NullCache
    from taskhub.core.timeutil import utcnow
    from taskhub.tasks import service as task_service
    from taskhub.tasks.schemas import TaskCreate
    from taskhub.users import service as user_service

    settings = Settings(database_url=url, data_dir=Path("/tmp"))
    db = Database(settings)
    hasher = _hasher(settings)
    cache = NullCache()
    seeded: list[SeededUser] = []
    sqlite = db.dialect == "sqlite"
    try:
        async def make_user(n: int) -> SeededUser:
            email = f"bench{n}@example.com"
            async with db.unit_of_work() as session:
                user = await user_service.create_user(session, hasher, email=email, password=PASSWORD,
                                                      name=f"Bench User {n}")
            advance(1)
            return SeededUser(user.id, email)

        batch = 1 if sqlite else 8
        for start in range(1, users + 1, batch):
            seeded += await asyncio.gather(*(make_user(n) for n in range(start, min(start + batch, users + 1))))

        async def fill(su: SeededUser, seed: int) -> None:
            rng = random.Random(seed)
            from taskhub.users import repository as user_repo

            for start in range(0, tasks_per_user, 100):
                async with db.unit_of_work() as session:
                    user = await user_repo.get(session, su.id)
                    assert user is not None
                    now = utcnow()
                    count = min(100, tasks_per_user - start)
                    for _ in range(count):
                        result = await task_service.create(session, user, TaskCreate(**_task_data(rng, now)),
                                                           cache=cache)
                        if len(su.task_ids) < keep_ids:
                            su.task_ids.append(result.task.id)
                advance(count)

        width = 1 if sqlite else 4
        for start in range(0, len(seeded), width):
            group = seeded[start:start + width]
            await asyncio.gather(*(fill(su, start + i) for i, su in enumerate(group)))
    finally:
        await db.dispose()
    return seeded


async def seed_bulk(
    url: str,
    owners: list[tuple[str, int]],
    advance: Advance,
    *,
    keep_ids: int = 200,
    chunk: int = 50_000,
    rng_seed: int = 7,
) -> list[SeededUser]:
    """Bulk path (PostgreSQL): ``owners`` is ``[(email, n_tasks), ...]``; users by multi-row INSERT
    (one shared argon2 hash), tasks by COPY. Returns the users (with up to ``keep_ids`` task ids)."""
    from taskhub.core.timeutil import new_id
    from taskhub.users.models import User

    settings = Settings(database_url=url, data_dir=Path("/tmp"))
    hasher = _hasher(settings)
    password_hash = await hasher.hash(PASSWORD)
    now = datetime.now(UTC)
    rows = []
    seeded: list[SeededUser] = []
    for email, _ in owners:
        uid = new_id()
        seeded.append(SeededUser(uid, email))
        rows.append({"id": uid, "email": email, "email_normalized": normalize_email(email), "name": email,
                     "password_hash": password_hash, "role": "user", "is_active": True,
                     "tokens_valid_after": now - timedelta(minutes=5), "created_at": now, "updated_at": now})
    engine = make_engine(url, settings)
    try:
        async with engine.begin() as conn:
            for start in range(0, len(rows), 1000):
                await conn.execute(insert(User), rows[start:start + 1000])
    finally:
        await engine.dispose()

    rng = random.Random(rng_seed)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    columns = ["id", "owner_id", "title", "description", "status", "priority", "priority_rank", "due_date",
               "tags", "completed_at", "created_at", "updated_at", "version"]
    try:
        buffer: list[tuple[Any, ...]] = []
        base = now - timedelta(days=365)

        async def flush() -> None:
            if buffer:
                await conn.copy_records_to_table("tasks", records=buffer, columns=columns)
                advance(len(buffer))
                buffer.clear()

        for su, (_, n_tasks) in zip(seeded, owners, strict=True):
            step = timedelta(days=365) / max(1, n_tasks)
            for i in range(n_tasks):
                d = _task_data(rng, now)
                created = base + step * i
                tid = new_id()
                if len(su.task_ids) < keep_ids:
                    su.task_ids.append(tid)
                buffer.append((tid, su.id, d["title"], d["description"], d["status"], d["priority"],
                               RANK[d["priority"]], d["due_date"], json.dumps(d["tags"]),
                               created if d["status"] == "done" else None, created, created, 1))
                if len(buffer) >= chunk:
                    await flush()
        await flush()
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return seeded


def write_users_file(path: Path, users: list[SeededUser], secret: str, ttl: int = 86_400) -> None:
    """Mint an access token per user (the service's TokenCodec, same secret as the server) and write
    ``token<TAB>email<TAB>password<TAB>ids`` lines for the wrk script."""
    defaults = Settings(data_dir=Path("/tmp"))
    codec = TokenCodec(secret=secret, algorithm=defaults.jwt_algorithm, issuer=defaults.jwt_issuer,
                       audience=defaults.jwt_audience, ttl=ttl)
    lines = []
    for u in users:
        token, _ = codec.encode(user_id=u.id, role="user")
        ids = ",".join(str(i) for i in u.task_ids) or str(uuid.UUID(int=0))
        lines.append(f"{token}\t{u.email}\t{PASSWORD}\t{ids}")
    path.write_text("\n".join(lines) + "\n")

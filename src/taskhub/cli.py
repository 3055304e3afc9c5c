"""The ``taskhub`` command line (typer): serve, migrate, create-admin, reset-password, seed-demo,
purge, openapi, relay, worker, dlq, export-static, graphql-schema, keys."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from taskhub.config import ConfigurationError, Settings

app = typer.Typer(help="Taskhub: a multi-user task-management service.", no_args_is_help=True)


def _settings() -> Settings:
    """The settings from the environment; an invalid value ends the command with exit status 2 and
    pydantic's message, which names the variable (no traceback)."""
    try:
        return Settings()
    except ValidationError as exc:
        typer.echo(f"error: invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request")] = False,
    service: Annotated[
        str,
        typer.Option(
            envvar="TASKHUB_SERVICE", help="The part of the API to serve: all, auth, users, tasks or notifications"
        ),
    ] = "all",
) -> None:
    """Run the HTTP server (embedded mode migrates its SQLite database first).

    ``--service`` runs one service of split mode (docs/architecture.md, "Services"): only its routes,
    plus /health, /ready and /metrics; ``all`` (the default) is the single process.
    """
    import uvicorn

    from taskhub.api import SERVICES

    if service != "all" and service not in SERVICES:
        typer.echo(f"error: --service must be one of all, {', '.join(SERVICES)}", err=True)
        raise typer.Exit(2)
    os.environ["TASKHUB_SERVICE"] = service  # the app factory reads it (as every worker does)
    settings = _settings()
    try:
        settings.check_token_keys()
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if settings.is_sqlite and settings.auto_migrate is not False:
        asyncio.run(_migrate(settings))
    os.environ["TASKHUB_WORKERS"] = str(workers)
    os.environ["TASKHUB_AUTO_MIGRATE"] = "false"
    metrics_dir, made_metrics_dir = _metrics_directory(workers)
    if settings.log_format != "json":  # in JSON mode every output line is a JSON object
        part = "" if service == "all" else f" [{service} service]"
        typer.echo(f"Taskhub{part} on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    try:
        uvicorn.run(
            "taskhub.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=access_log,
            proxy_headers=False,
            server_header=False,
            log_config=None,  # uvicorn's loggers go through the app's structlog configuration
            log_level=settings.log_level.lower(),
        )
    finally:
        if made_metrics_dir and metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_directory(workers: int) -> tuple[str | None, bool]:
    """Set up prometheus-client's multiprocess mode for ``workers`` processes: the directory
    named by ``PROMETHEUS_MULTIPROC_DIR``, emptied of a previous run's files, or (several workers
    and none named) a fresh temporary one that ``serve`` removes when it stops. Every worker
    inherits the variable, so whichever answers ``/metrics`` reports the sum of all of them.
    Returns the directory (None: single-process mode) and whether it was made here."""
    from taskhub.core.metrics import MULTIPROC_ENV

    path = os.environ.get(MULTIPROC_ENV)
    made = False
    if not path:
        if workers == 1:
            return None, False
        path = tempfile.mkdtemp(prefix="taskhub-metrics-")
        made = True
    os.environ[MULTIPROC_ENV] = path  # before any worker imports prometheus_client
    from taskhub.core.metrics import prepare_directory

    prepare_directory(path)
    return path, made


async def _migrate(settings: Settings) -> None:
    from taskhub.db import migrate
    from taskhub.db.session import Database

    db = Database(settings)
    try:
        await migrate.upgrade(db.primary)
    finally:
        await db.dispose()


@app.command("migrate")
def migrate_cmd() -> None:
    """Upgrade the database to the latest schema (Alembic "upgrade head")."""
    settings = _settings()
    asyncio.run(_migrate(settings))
    typer.echo("database is at the latest revision")


async def _shard(settings: Settings, shard_urls: list[str]) -> None:
    from taskhub.db import sharding
    from taskhub.db.session import make_engine

    coordinator = make_engine(settings.resolved_database_url, settings)
    try:
        await sharding.shard_by_owner(coordinator, shard_urls, lambda url: make_engine(url, settings))
    finally:
        await coordinator.dispose()


@app.command("shard-by-owner")
def shard_by_owner(
    shard_urls: Annotated[
        list[str], typer.Argument(help="One PostgreSQL URL per shard (an existing, empty database on each)")
    ],
) -> None:
    """Move tasks and idempotency keys onto shard servers: hash partitions by owner, as postgres_fdw
    foreign tables of TASKHUB_DATABASE_URL (migrated first). Idempotent; see docs/scaling.md."""
    settings = _settings()
    if settings.is_sqlite:
        typer.echo("error: sharding needs PostgreSQL (TASKHUB_DATABASE_URL)", err=True)
        raise typer.Exit(2)
    asyncio.run(_shard(settings, shard_urls))
    typer.echo(f"tasks and idempotency keys are hash-partitioned by owner over {len(shard_urls)} shards")


def _cli_auth_cache(settings: Settings) -> Any:
    """The auth-decision cache a command invalidates after changing an account: the servers'
    shared one in Redis mode (they see the change at once), else none (each server's in-process
    cache forgets a decision after at most 30 s: ``auth/cache.py``)."""
    from taskhub.auth.cache import NullAuthCache, RedisAuthCache

    if settings.redis_url:
        from redis.asyncio import Redis

        return RedisAuthCache(Redis.from_url(settings.redis_url))
    return NullAuthCache()


async def _account(settings: Settings, email: str) -> tuple[str, bool] | None:
    """``(role, is_active)`` of the account ``email``, or None."""
    from taskhub.core.security import normalize_email
    from taskhub.db.session import Database
    from taskhub.users import repository as user_repo

    db = Database(settings)
    try:
        async with db.unit_of_work(readonly=True) as session:
            user = await user_repo.get_by_email(session, normalize_email(email))
            return None if user is None else (user.role, user.is_active)
    finally:
        await db.dispose()


async def _create_admin(settings: Settings, email: str, name: str, password: str | None, reset: bool) -> str:
    from taskhub.core.security import PasswordHasher
    from taskhub.db.session import Database
    from taskhub.users import service as user_service

    db = Database(settings)
    hasher = PasswordHasher.from_settings(settings)
    auth_cache = _cli_auth_cache(settings)
    try:
        async with db.unit_of_work() as session:
            grant = await user_service.grant_admin(
                session,
                hasher,
                email=email,
                name=name,
                password=password,
                reset_password=reset,
                auth_cache=auth_cache,
            )
    finally:
        await auth_cache.aclose()
        await db.dispose()
    if grant.created:
        return f"created admin {grant.email} ({grant.user_id})"
    done = [
        what
        for what, happened in (
            ("promoted to admin", grant.promoted),
            ("re-activated", grant.reactivated),
            ("password reset (its earlier tokens no longer work)", grant.password_reset),
        )
        if happened
    ]
    if not grant.password_reset:
        done.append("password unchanged (--reset-password sets a new one)")
    return f"existing user {grant.email}: " + ", ".join(done)


def _new_password(settings: Settings, *, env: bool) -> str:
    """The new password: ``TASKHUB_ADMIN_PASSWORD`` (when ``env``) or a hidden prompt typed twice
    (read from stdin when it is not a terminal: two lines)."""
    if env and settings.admin_password:
        return settings.admin_password
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="Admin email")],
    name: Annotated[str, typer.Option(help="Display name (new accounts only)")] = "Administrator",
    reset_password: Annotated[
        bool, typer.Option("--reset-password", help="Also set a new password on an existing account")
    ] = False,
) -> None:
    """Create an admin, or promote (and re-activate) an existing account, keeping its password
    unless --reset-password. An account that already is an active admin is left alone.
    Password: TASKHUB_ADMIN_PASSWORD or a prompt."""
    from taskhub.core.errors import DomainError

    settings = _settings()
    if settings.is_sqlite:
        asyncio.run(_migrate(settings))
    existing = asyncio.run(_account(settings, email))
    if existing == ("admin", True) and not reset_password:
        typer.echo(f"{email} is already an admin: nothing changed (--reset-password sets a new password)")
        return
    password = _new_password(settings, env=True) if existing is None or reset_password else None
    try:
        typer.echo(asyncio.run(_create_admin(settings, email, name, password, reset_password)))
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


async def _reset_password(settings: Settings, email: str, password: str) -> str:
    from taskhub.core.security import PasswordHasher
    from taskhub.db.session import Database
    from taskhub.users import service as user_service

    db = Database(settings)
    hasher = PasswordHasher.from_settings(settings)
    auth_cache = _cli_auth_cache(settings)
    try:
        async with db.unit_of_work() as session:
            user = await user_service.reset_password(
                session, hasher, email=email, password=password, auth_cache=auth_cache
            )
            return f"password of {user.email} reset; every token issued before no longer works"
    finally:
        await auth_cache.aclose()
        await db.dispose()


@app.command("reset-password")
def reset_password_cmd(email: Annotated[str, typer.Option(help="Email of the account (any role)")]) -> None:
    """Set a new password on any account and revoke its tokens, as a password change does.
    Password: a prompt typed twice (or two lines on stdin); the usual password rules apply."""
    from taskhub.core.errors import DomainError

    settings = _settings()
    if settings.is_sqlite:
        asyncio.run(_migrate(settings))
    if asyncio.run(_account(settings, email)) is None:
        typer.echo(f"error: no account with the email {email!r}", err=True)
        raise typer.Exit(1)
    password = _new_password(settings, env=False)
    try:
        typer.echo(asyncio.run(_reset_password(settings, email, password)))
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


async def _seed(settings: Settings, users: int, tasks: int, password: str) -> tuple[list[str], int]:
    from taskhub.core.cache import NullCache
    from taskhub.core.security import PasswordHasher, normalize_email
    from taskhub.core.timeutil import utcnow
    from taskhub.db.session import Database
    from taskhub.tasks import service as task_service
    from taskhub.tasks.schemas import TaskCreate
    from taskhub.users import repository as user_repo
    from taskhub.users import service as user_service

    db = Database(settings)
    hasher = PasswordHasher.from_settings(settings)
    rng = random.Random(42)  # noqa: S311 - demo data, not security
    words = [
        "report",
        "invoice",
        "deploy",
        "review",
        "meeting",
        "budget",
        "design",
        "backup",
        "release",
        "email",
        "call",
        "plan",
        "write",
        "test",
        "fix",
        "update",
        "clean",
        "book",
        "order",
        "read",
    ]
    tags = ["work", "home", "urgent", "later", "finance", "ops", "personal", "team"]
    emails: list[str] = []
    created = 0
    cache = NullCache()  # no server's cache to invalidate from here
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
        ) as progress:
            bar = progress.add_task("seeding", total=users * (tasks + 1))
            for u in range(1, users + 1):
                email = f"demo{u}@example.com"
                emails.append(email)
                async with db.unit_of_work() as session:
                    user = await user_repo.get_by_email(session, normalize_email(email))
                    if user is None:
                        user = await user_service.create_user(
                            session, hasher, email=email, password=password, name=f"Demo User {u}"
                        )
                    existing = (await task_service.stats(session, user)).total
                progress.advance(bar, 1 + min(existing, tasks))
                now = utcnow()
                missing = max(0, tasks - existing)  # re-running tops users up, never duplicates
                created += missing
                for start in range(0, missing, 100):
                    async with db.unit_of_work() as session:
                        for _ in range(start, min(start + 100, missing)):
                            title = " ".join(rng.sample(words, 3)).capitalize()
                            due = now + timedelta(days=rng.randint(-20, 40)) if rng.random() < 0.7 else None
                            data = TaskCreate(
                                title=title,
                                description=f"Demo task about {title.lower()}.",
                                status=rng.choice(["todo", "todo", "in_progress", "done"]),
                                priority=rng.choice(["low", "medium", "medium", "high"]),
                                due_date=due,
                                tags=rng.sample(tags, rng.randint(0, 3)),
                            )
                            await task_service.create(session, user, data, cache=cache)
                            progress.advance(bar)
    finally:
        await db.dispose()
    return emails, created


@app.command("seed-demo")
def seed_demo(
    users: Annotated[int, typer.Option(min=1, help="Number of demo users")] = 5,
    tasks: Annotated[int, typer.Option(min=0, help="Tasks per user")] = 50,
    password: Annotated[str, typer.Option(help="Password of every demo user")] = "demo-password-2026",  # noqa: S107
) -> None:
    """Fill the database with demo users (demo1@example.com, ...) and their tasks; re-running tops up."""
    settings = _settings()
    if settings.is_sqlite:
        asyncio.run(_migrate(settings))
    emails, created = asyncio.run(_seed(settings, users, tasks, password))
    typer.echo(
        f"seeded {len(emails)} users x {tasks} tasks ({created} tasks created now); sign in as {emails[0]} / {password}"
    )


@app.command()
def purge() -> None:
    """Delete expired denylist entries, refresh tokens and idempotency records now."""
    from taskhub.db.session import Database
    from taskhub.ops.housekeeping import purge_once

    settings = _settings()

    async def _run() -> dict[str, int]:
        db = Database(settings)
        try:
            return await purge_once(db, settings)
        finally:
            await db.dispose()

    deleted = asyncio.run(_run())
    typer.echo(
        f"deleted {deleted['tokens']} expired tokens, {deleted['idempotency_keys']} idempotency records, "
        f"{deleted['outbox_events']} sent outbox events and {deleted['processed_events']} processed-event records"
    )


async def _until_signalled() -> None:
    """Run until SIGINT/SIGTERM."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@app.command()
def relay() -> None:
    """Run the outbox relay alone (``serve`` runs one too unless TASKHUB_RELAY_ENABLED=false).

    Leader-elected: any number may run; one publishes, the others stand by. Live streams get its
    events through Redis (TASKHUB_REDIS_URL); without Redis run the relay inside ``serve``.
    """
    from taskhub.core.observability import configure_logging
    from taskhub.db.session import Database
    from taskhub.events.relay import Fanout, Relay, make_sink
    from taskhub.events.runtime import stream_channel
    from taskhub.ops.metrics import standalone_process

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)

    async def _run() -> None:
        from redis.asyncio import Redis

        db = Database(settings)
        redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        fanout: Fanout | None = None
        if redis is not None:
            channel = stream_channel(settings.broker_queue_prefix)

            async def publish(events: Any) -> None:
                from taskhub.events.stream import RedisFanout, StreamHub

                await RedisFanout(redis, channel, StreamHub()).publish(events)

            fanout = publish
        relay = Relay(db, settings, make_sink(db, settings), fanout=fanout)
        async with standalone_process(db, settings, service="taskhub-relay", redis=redis is not None):
            task = asyncio.create_task(relay.run())
            try:
                await _until_signalled()
            finally:
                task.cancel()
                await asyncio.wait([task], timeout=5)
                await relay.sink.close()
                if redis is not None:
                    await redis.aclose()
                await db.dispose()

    asyncio.run(_run())


@app.command()
def worker() -> None:
    """Consume the broker's queues (notifications, analytics) and run the reminder scheduler and
    the email sender. Needs TASKHUB_BROKER_URL; any number may run (see docs/operations.md)."""
    from taskhub.core.observability import configure_logging
    from taskhub.db.session import Database
    from taskhub.ops.metrics import standalone_process
    from taskhub.worker.consumer import Worker
    from taskhub.worker.loops import run_email_sender, run_scheduler

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.broker_url:
        typer.echo(
            "error: taskhub worker needs TASKHUB_BROKER_URL (embedded mode runs handlers inside serve)", err=True
        )
        raise typer.Exit(2)

    async def _run() -> None:
        db = Database(settings)
        async with standalone_process(db, settings, service="taskhub-worker"):
            consumer = Worker(db, settings)
            await consumer.start()
            loops = [
                asyncio.create_task(run_scheduler(db, settings)),
                asyncio.create_task(run_email_sender(db, settings)),
            ]
            typer.echo("worker consuming", err=True)
            try:
                await _until_signalled()
            finally:
                for task in loops:
                    task.cancel()
                await asyncio.wait(loops, timeout=5)
                await consumer.stop()
                await db.dispose()

    asyncio.run(_run())


dlq_app = typer.Typer(help="Dead-letter queues: messages that failed every attempt.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
ConsumerOption = Annotated[list[str] | None, typer.Option("--consumer", help="Only this consumer (repeatable)")]


def _dlq_consumers(consumer: list[str] | None) -> list[str]:
    from taskhub.events.dispatch import consumer_names

    names = list(consumer_names())
    chosen = consumer or names
    unknown = [c for c in chosen if c not in names]
    if unknown:
        typer.echo(f"error: unknown consumer {', '.join(unknown)} (known: {', '.join(names)})", err=True)
        raise typer.Exit(2)
    return chosen


@dlq_app.command("list")
def dlq_list(consumer: ConsumerOption = None) -> None:
    """Print each dead-lettered message as one JSON line: consumer, attempts, error, event."""
    from taskhub.worker.dlq import list_dead

    settings = _settings()
    if not settings.broker_url:
        typer.echo("error: TASKHUB_BROKER_URL is not set", err=True)
        raise typer.Exit(2)
    for dead in asyncio.run(list_dead(settings, _dlq_consumers(consumer))):
        line = {"consumer": dead.consumer, "attempts": dead.attempts, "error": dead.error, "event": dead.event}
        typer.echo(json.dumps(line))


@dlq_app.command("replay")
def dlq_replay(
    consumer: ConsumerOption = None,
    event_id: Annotated[str | None, typer.Option(help="Only the message of this event")] = None,
) -> None:
    """Move dead-lettered messages back to their queue (fix the cause first)."""
    from taskhub.worker.dlq import replay

    settings = _settings()
    if not settings.broker_url:
        typer.echo("error: TASKHUB_BROKER_URL is not set", err=True)
        raise typer.Exit(2)
    moved = asyncio.run(replay(settings, _dlq_consumers(consumer), event_id))
    typer.echo(f"replayed {moved} messages")


@app.command("export-static")
def export_static(
    directory: Annotated[Path, typer.Argument(help="Where to write the hashed files and manifest.json")],
) -> None:
    """Write the dashboard's content-hashed files and manifest.json to DIRECTORY (for a CDN or nginx).

    Idempotent and additive: unchanged files are not rewritten and older versions are kept, so a
    bucket or directory synced from it serves old and new pages alike during a deploy.
    """
    from taskhub.web.assets import AssetError, Catalog, packaged_root

    try:
        catalog = Catalog.scan(packaged_root())
        written, unchanged = catalog.export(directory)
    except (AssetError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{written} files written, {unchanged} unchanged, manifest.json in {directory}")


@app.command()
def openapi() -> None:
    """Print the OpenAPI schema (JSON) to stdout (no side effects: nothing is created or connected)."""
    from taskhub.app import create_app

    typer.echo(json.dumps(create_app(_settings()).openapi(), indent=2))


@app.command("graphql-schema")
def graphql_schema() -> None:
    """Print the GraphQL schema (SDL) of ``/graphql`` to stdout; ``docs/schema.graphql`` is this output."""
    from taskhub.graphql.schema import sdl

    typer.echo(sdl(), nl=False)


keys_app = typer.Typer(
    help="EdDSA access-token keys (TASKHUB_JWT_KEYS_FILE; docs/security.md, 'Access-token keys').",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


def _keys_file(settings: Settings) -> Path:
    try:
        return settings.resolve_jwt_keys_file()
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@keys_app.command("list")
def keys_list() -> None:
    """One line per key, oldest first: kid, state (signing, verifying until <time>, retirable)."""
    import time as _time

    from taskhub.core.keys import KeysUnavailable, read_key_set

    settings = _settings()
    try:
        keys = read_key_set(_keys_file(settings))
    except KeysUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    now = _time.time()
    for key in keys:
        retire_at = key.retire_at(settings.access_token_ttl)
        if retire_at is None:
            state = "signing"
        elif retire_at > now:
            state = f"verifying until {_iso(retire_at)}"
        else:
            state = "retirable"
        typer.echo(f"{key.kid}  created {_iso(key.created)}  {state}")


def _iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new signing key; the previous key keeps verifying for one access-token lifetime
    (plus 60 s of clock skew). Keys past that are pruned. Signing services pick the new key up
    within a second (they watch the file); verifiers learn it from the JWKS on first sight."""
    from taskhub.core.keys import KeysUnavailable, rotate

    settings = _settings()
    try:
        fresh, pruned = rotate(_keys_file(settings), access_token_ttl=settings.access_token_ttl)
    except KeysUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"signing with {fresh.kid}")
    for kid in pruned:
        typer.echo(f"retired {kid}")


@keys_app.command("retire")
def keys_retire(
    kid: Annotated[str | None, typer.Option(help="Retire this superseded key (default: every retirable key)")] = None,
    force: Annotated[
        bool, typer.Option(help="With --kid: retire it now, even if tokens it signed are still valid (leaked key)")
    ] = False,
) -> None:
    """Remove superseded keys whose tokens have all expired (or, with --kid --force, one key now)."""
    from taskhub.core.keys import KeysUnavailable, retire

    settings = _settings()
    try:
        removed = retire(_keys_file(settings), access_token_ttl=settings.access_token_ttl, kid=kid, force=force)
    except KeysUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for removed_kid in removed:
        typer.echo(f"retired {removed_kid}")
    if not removed:
        typer.echo("nothing to retire")


if __name__ == "__main__":  # pragma: no cover
    app()

"""Shared fixtures: every API test runs on SQLite and on the real PostgreSQL of this machine.

PostgreSQL: a fresh database ``taskhub_test_<random>`` is created on ``TASKHUB_TEST_POSTGRES_URL``
(default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``), migrated, and dropped at the end.
When it is unreachable the PostgreSQL run is skipped locally, but fails under ``CI=true``.

A test that only means something on PostgreSQL (pool settings, row locks) is marked
``@pytest.mark.postgres_only``: it is then generated for the ``postgresql`` backend only, so it
is neither run nor reported as skipped on SQLite; ``@pytest.mark.sharded_only`` likewise runs a
test on the ``sharded`` backend alone, and ``@pytest.mark.sqlite_only`` one whose behaviour no
database changes (quick-add parsing, calendar arithmetic) on SQLite alone.

The API suite (``tests/auth``, ``tasks``, ``users``, ``admin``) also runs on a third backend,
``pgbouncer``: the same PostgreSQL server behind a PgBouncer of the session's own in transaction
mode (``tests/pgbouncer.py``), with ``TASKHUB_DATABASE_PGBOUNCER=true``. The tests that touch
tasks (``tasks``, ``users``, ``admin``) also run on ``sharded``: the owner-keyed tables moved by
``taskhub.db.sharding`` onto two throw-away PostgreSQL servers (``tests/pg_instances.py``) as
``postgres_fdw`` partitions. The ``test_api.py`` modules of ``auth``, ``tasks``, ``users``, ``admin``
and ``graphql`` (the HTTP contract) run on ``split`` too: the deployment of issue 16 as
real processes (``tests/split_topology.py``: auth, users, two tasks and notifications services behind
nginx from ``deploy/nginx/split.conf.tmpl``, EdDSA tokens verified from the JWKS), on a PostgreSQL
database and the Redis database of ``TASKHUB_TEST_REDIS_URL``; there ``client`` talks HTTP to the
gateway and ``app`` is an in-process app on the same database and keys (for the helpers that reach
below HTTP: the first admin, the outbox). A test that needs the served process itself (a patched
method, custom settings on ``client``) is marked ``in_process`` and does not run on ``split``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from taskhub.app import create_app
from taskhub.config import Settings
from taskhub.core.keys import read_key_set
from taskhub.db import migrate, sharding
from taskhub.db.models import Base
from taskhub.db.session import make_engine
from tests.pg_instances import PgInstance, start_instance
from tests.pgbouncer import PgBouncer, start_pgbouncer
from tests.split_topology import SplitTopology, start_split

PG_URL = os.environ.get("TASKHUB_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
JWT_SECRET = "test-secret-" + "x" * 40
REDIS_URL = os.environ.get("TASKHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
PASSWORD = "correct horse battery staple"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--deep",
        action="store_true",
        help="long Schemathesis and Hypothesis runs (random, many more examples); also TASKHUB_FUZZ_DEEP=1",
    )


def deep_run(config: pytest.Config) -> bool:
    """True for the long fuzzing run (``--deep`` or ``TASKHUB_FUZZ_DEEP=1``)."""
    return bool(config.getoption("--deep")) or os.environ.get("TASKHUB_FUZZ_DEEP", "") in ("1", "true")


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis: repeatable (derandomized) in make test and CI; many random examples with --deep.
    settings.register_profile(
        "ci", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.register_profile(
        "deep", max_examples=5_000, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile("deep" if deep_run(config) else "ci")


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def unavailable(message: str) -> NoReturn:
    """A service the test needs is missing: fail under ``CI=true``, skip elsewhere."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def fresh_postgres_database(prefix: str) -> AsyncIterator[str]:
    """Create an empty database ``<prefix><8 hex>`` on :data:`PG_URL`, yield its SQLAlchemy URL, and
    drop it afterwards (``WITH (FORCE)``: connections a failed test left open do not keep it alive).

    An unreachable server is :func:`unavailable`.
    """
    name = prefix + secrets.token_hex(4)
    try:
        admin = await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL at {PG_URL} is unreachable: {exc!r}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@dataclass
class Backend:
    """A migrated, empty database for one backend: ``url`` is what the app uses, ``direct_url``
    the server itself (for test set-up and clean-up), ``settings`` extra settings the backend needs."""

    name: str
    url: str
    direct_url: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    shard_urls: list[str] = field(default_factory=list)
    split: SplitTopology | None = None

    def __post_init__(self) -> None:
        self.direct_url = self.direct_url or self.url


async def _truncate(url: str, tmp: Path) -> None:
    settings = Settings(database_url=url, data_dir=tmp)
    engine = make_engine(url, settings, immediate=False)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    # On the split backend the services keep running (their relays apply a test's last events), so
    # TRUNCATE's locks can deadlock with a handler's transaction: PostgreSQL aborts one of them and
    # the clean-up tries again.
    for attempt in range(10):
        try:
            async with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
                else:
                    for table in tables:
                        await conn.execute(text(f"DELETE FROM {table}"))
            break
        except DBAPIError as exc:
            if "deadlock detected" not in str(exc) or attempt == 9:
                raise
            await asyncio.sleep(0.1)
    await engine.dispose()


BACKENDS = ("sqlite", "postgresql")
API_SUITE = ("auth", "tasks", "users", "admin")
"""Test packages that also run behind PgBouncer (the HTTP API's own tests)."""
SPLIT_SUITE = (*API_SUITE, "graphql")
"""Test packages whose ``test_api.py`` (the HTTP contract) also runs on the split deployment."""
SHARDED_SUITE = ("tasks", "users", "admin")
"""Test packages that also run with the owner-keyed tables on two shards (the ones that touch tasks)."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize :func:`backend` over :data:`BACKENDS` (plus ``pgbouncer`` for the
    :data:`API_SUITE`), or over the PostgreSQL ones alone for ``postgres_only``.

    The parametrization is done here rather than with ``params=`` on the fixture so that a marker
    can narrow it; a ``postgres_only`` test that does not use ``backend`` is a collection error.
    """
    postgres_only = metafunc.definition.get_closest_marker("postgres_only") is not None
    sharded_only = metafunc.definition.get_closest_marker("sharded_only") is not None
    split_only = metafunc.definition.get_closest_marker("split_only") is not None
    if "backend" not in metafunc.fixturenames:
        if postgres_only or sharded_only or split_only:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: the marker needs the backend fixture")
        return
    if sharded_only or split_only:
        metafunc.parametrize("backend", ["sharded" if sharded_only else "split"], indirect=True, scope="session")
        return
    if metafunc.definition.get_closest_marker("sqlite_only") is not None:
        metafunc.parametrize("backend", ["sqlite"], indirect=True, scope="session")
        return
    names = list(BACKENDS)
    package = Path(str(metafunc.definition.fspath)).parent
    if package.parent == Path(__file__).parent and package.name in API_SUITE:
        names.append("pgbouncer")
    contract = Path(str(metafunc.definition.fspath)).name == "test_api.py"
    in_process = metafunc.definition.get_closest_marker("in_process") is not None
    if package.parent == Path(__file__).parent and package.name in SPLIT_SUITE and contract and not in_process:
        names.append("split")
    if package.parent == Path(__file__).parent and package.name in SHARDED_SUITE:
        names.append("sharded")
    if postgres_only:
        names.remove("sqlite")
    metafunc.parametrize("backend", names, indirect=True, scope="session")


@pytest_asyncio.fixture(scope="session")
async def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Backend]:
    """A migrated database per backend for the whole session."""
    tmp = tmp_path_factory.mktemp(f"db-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'test.db'}"
        settings = Settings(database_url=url, data_dir=tmp)
        engine = make_engine(url, settings)
        await migrate.upgrade(engine)
        await engine.dispose()
        yield Backend("sqlite", url)
        return
    async with fresh_postgres_database("taskhub_test_") as url:
        settings = Settings(database_url=url, data_dir=tmp)
        engine = make_engine(url, settings)
        await migrate.upgrade(engine)  # migrations go to the server itself, never through PgBouncer
        await engine.dispose()
        name = make_url(url).database
        assert name is not None
        if request.param == "pgbouncer":
            bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
            # The relay's leader lock is session state: it connects directly (docs/scaling.md).
            extra = {"database_pgbouncer": True, "relay_database_url": url}
            yield Backend("pgbouncer", bouncer.url(name), url, extra)
            return
        if request.param == "sharded":
            shards: list[PgInstance] = request.getfixturevalue("shard_servers")
            shard_urls = [shard.url(name) for shard in shards]
            for shard in shards:
                admin = await asyncpg.connect(_asyncpg_dsn(shard.url()), timeout=5)
                await admin.execute(f'CREATE DATABASE "{name}"')
                await admin.close()
            engine = make_engine(url, settings)
            await sharding.shard_by_owner(engine, shard_urls, lambda u: make_engine(u, settings))
            await engine.dispose()
            yield Backend("sharded", url, url, {}, shard_urls)
            return
        if request.param == "split":
            try:
                topology = start_split(tmp / "split", database_url=url, redis_url=REDIS_URL)
            except (FileNotFoundError, RuntimeError) as exc:
                unavailable(str(exc))
            extra = {
                "jwt_algorithm": "EdDSA",
                "jwt_secret": None,
                "jwt_keys_file": topology.keys_file,
                "redis_url": REDIS_URL,
                "relay_enabled": False,  # the services' relays deliver; this app only reads and writes rows
                "purge_interval": 0,
            }
            try:
                yield Backend("split", url, url, extra, split=topology)
            finally:
                topology.stop()
            return
        yield Backend("postgresql", url)


@pytest.fixture(scope="session")
def shard_servers() -> Iterator[list[PgInstance]]:
    """Two throw-away PostgreSQL servers of this session's own (``tests/pg_instances.py``): the shards."""
    started: list[PgInstance] = []
    try:
        for _ in range(2):
            started.append(start_instance("taskhub-shard-"))
    except (FileNotFoundError, RuntimeError) as exc:
        for instance in started:
            instance.stop()
        unavailable(str(exc))
    yield started
    for instance in started:
        instance.stop()


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncer]:
    """A PgBouncer of this session's own in transaction mode, in front of :data:`PG_URL`'s server."""
    server = make_url(PG_URL)
    try:
        bouncer = start_pgbouncer(server.host or "127.0.0.1", server.port or 5432, default_pool_size=3)
    except (FileNotFoundError, RuntimeError) as exc:
        unavailable(str(exc))
    yield bouncer
    bouncer.stop()


@pytest.fixture
def settings_factory(backend: Backend, tmp_path: Path) -> Callable[..., Settings]:
    """Make test settings for the current backend; keyword overrides win."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": backend.url,
            "data_dir": tmp_path,
            "jwt_secret": JWT_SECRET,
            "argon2_memory_cost": 1024,
            "argon2_time_cost": 1,
            "rate_limit_enabled": False,
            "auto_migrate": False,
            "log_level": "WARNING",
            **backend.settings,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest_asyncio.fixture
async def app_factory(backend: Backend, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start apps (lifespan included) for the current backend; tables are emptied afterwards.
    Keyword options go to :func:`create_app` (``tracing=``)."""
    managers: list[LifespanManager] = []

    async def start(settings: Settings, **options: Any) -> FastAPI:
        app = create_app(settings, **options)
        manager = LifespanManager(app)
        await manager.__aenter__()
        managers.append(manager)
        return app

    yield start
    for manager in managers:
        await manager.__aexit__(None, None, None)
    await _truncate(backend.direct_url, tmp_path)
    if backend.split is not None:
        await _flush_redis(REDIS_URL)


async def _flush_redis(url: str) -> None:
    """Empty this session's own Redis database (cached pages and decisions of emptied tables)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


def client_for(app: FastAPI) -> httpx.AsyncClient:
    """An HTTP client over the ASGI app (errors come back as responses, not exceptions)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest_asyncio.fixture
async def app(app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]) -> FastAPI:
    """The service with test settings (rate limits off, cheap argon2)."""
    started: FastAPI = await app_factory(settings_factory())
    return started


@pytest_asyncio.fixture
async def client(app: FastAPI, backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for :func:`app`; on ``split``, for the gateway of the split deployment."""
    if backend.split is not None:
        async with httpx.AsyncClient(base_url=backend.split.url, timeout=30) as c:
            yield c
        return
    async with client_for(app) as c:
        yield c


@dataclass
class AccessTokenKey:
    """The key the backend's services sign access tokens with: the HMAC secret, or on ``split`` the
    newest Ed25519 key of the key-set file (with its ``kid``)."""

    algorithm: str
    signing: Any
    verifying: Any
    kid: str | None = None

    def encode(self, claims: dict[str, Any]) -> str:
        """A token with ``claims`` as the service would sign it."""
        headers = {"kid": self.kid} if self.kid else None
        return jwt.encode(claims, self.signing, algorithm=self.algorithm, headers=headers)

    def decode(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token`` (Taskhub's issuer and audience)."""
        claims: dict[str, Any] = jwt.decode(
            token, self.verifying, algorithms=[self.algorithm], audience="taskhub-api", issuer="taskhub"
        )
        return claims


@pytest.fixture
def token_key(backend: Backend) -> AccessTokenKey:
    """:class:`AccessTokenKey` of the current backend."""
    if backend.split is not None:
        newest = read_key_set(backend.split.keys_file)[-1]
        return AccessTokenKey("EdDSA", newest.private, newest.private.public_key(), newest.kid)
    return AccessTokenKey("HS256", JWT_SECRET, JWT_SECRET)


class Api:
    """Small helpers over the HTTP API for tests: register, log in, make tasks."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def register(self, email: str, password: str = PASSWORD, name: str = "Test User") -> dict[str, Any]:
        r = await self.client.post("/api/v1/auth/register", json={"email": email, "password": password, "name": name})
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        r = await self.client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def user(self, email: str, password: str = PASSWORD, name: str = "Test User") -> dict[str, str]:
        """Register and log in; returns the Authorization header."""
        await self.register(email, password, name)
        tokens = await self.login(email, password)
        return {"Authorization": f"Bearer {tokens['access_token']}"}

    async def task(self, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
        body = {"title": "a task", **fields}
        r = await self.client.post("/api/v1/tasks", json=body, headers=headers)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    """:class:`Api` helpers bound to :func:`client`."""
    return Api(client)

"""The ``taskhub`` command line, run as a real process on a temporary data dir."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from taskhub.config import Settings
from taskhub.db import migrate, sharding
from taskhub.db.session import make_engine
from tests.conftest import fresh_postgres_database
from tests.pg_instances import PgInstance
from tests.servers import TASKHUB, free_port, serve, taskhub_env


def run(args: list[str], data_dir: Path, *, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """``taskhub *args`` with ``data_dir`` as data dir (embedded SQLite there), ``env`` on top of
    :func:`taskhub_env`, ``stdin`` as its input (not a terminal: prompts read lines from it); run
    inside ``data_dir`` (its parent while it does not exist) so that no ``.env`` file of the
    checkout is read."""
    return subprocess.run(
        [TASKHUB, *args],
        input=stdin,
        env=taskhub_env(data_dir, **env),
        cwd=data_dir if data_dir.is_dir() else data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_openapi_prints_schema(tmp_path: Path) -> None:
    result = run(["openapi"], tmp_path)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/tasks/{task_id}" in schema["paths"]


def test_production_refuses_without_secret(tmp_path: Path) -> None:
    result = run(["serve", "--port", str(free_port())], tmp_path, TASKHUB_ENV="production")
    assert result.returncode == 2
    assert "TASKHUB_JWT_SECRET" in result.stderr
    assert not (tmp_path / "jwt_secret").exists()


def test_serve_create_admin_and_seed(tmp_path: Path) -> None:
    """A real session: seed 3 users x 45 tasks, create an admin, then page and filter over HTTP."""
    seeded = run(["seed-demo", "--users", "3", "--tasks", "45"], tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    assert "seeded 3 users x 45 tasks (135 tasks created now)" in seeded.stdout
    again = run(["seed-demo", "--users", "3", "--tasks", "45"], tmp_path)
    assert "(0 tasks created now)" in again.stdout  # re-running tops up, never duplicates
    made = run(
        ["create-admin", "--email", "boss@example.com", "--name", "Boss"],
        tmp_path,
        TASKHUB_ADMIN_PASSWORD="a strong admin passphrase",
    )
    assert made.returncode == 0, made.stderr
    assert "created admin boss@example.com" in made.stdout
    weak = run(["create-admin", "--email", "weak@example.com"], tmp_path, TASKHUB_ADMIN_PASSWORD="password")
    assert weak.returncode == 1
    assert "too common" in weak.stderr

    with serve(tmp_path) as server, server.client() as c:
        tokens = c.post(
            "/api/v1/auth/login", json={"email": "demo2@example.com", "password": "demo-password-2026"}
        ).json()
        h = {"Authorization": f"Bearer {tokens['access_token']}"}
        first = c.get("/api/v1/tasks?limit=20&page=3", headers=h).json()
        assert first["total"] == 45 and len(first["items"]) == 5
        stats = c.get("/api/v1/tasks/stats", headers=h).json()
        todo = c.get("/api/v1/tasks?status=todo&limit=100", headers=h).json()
        assert todo["total"] == stats["by_status"]["todo"] == len(todo["items"])
        ids: list[str] = []
        body = c.get("/api/v1/tasks?limit=10&sort=due_date", headers=h).json()
        ids += [t["id"] for t in body["items"]]
        while body["next_cursor"]:
            body = c.get(f"/api/v1/tasks?limit=10&sort=due_date&cursor={body['next_cursor']}", headers=h).json()
            ids += [t["id"] for t in body["items"]]
        assert len(ids) == len(set(ids)) == 45
        admin = c.post(
            "/api/v1/auth/login", json={"email": "boss@example.com", "password": "a strong admin passphrase"}
        ).json()
        users = c.get("/api/v1/admin/users", headers={"Authorization": f"Bearer {admin['access_token']}"}).json()
        assert users["total"] == 4
        assert c.get("/").status_code == 200
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o777 == 0o600


def test_purge_runs_on_an_empty_database(tmp_path: Path) -> None:
    assert run(["migrate"], tmp_path).returncode == 0
    result = run(["purge"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "deleted 0 expired tokens, 0 idempotency records, 0 sent outbox events and 0 processed-event records"
    )


def test_openapi_has_no_side_effects_even_in_production(tmp_path: Path) -> None:
    """No data directory, no secret, no database: ``openapi`` only describes the API."""
    data_dir = tmp_path / "never-created"
    result = run(["openapi"], data_dir, TASKHUB_ENV="production")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["info"]["title"] == "Taskhub"
    assert not data_dir.exists()


def test_worker_and_dlq_need_a_broker(tmp_path: Path) -> None:
    for args in (["worker"], ["dlq", "list"], ["dlq", "replay"]):
        result = run(args, tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert "TASKHUB_BROKER_URL" in result.stderr


def test_dlq_refuses_an_unknown_consumer(tmp_path: Path) -> None:
    result = run(
        ["dlq", "list", "--consumer", "billing"], tmp_path, TASKHUB_BROKER_URL="amqp://guest:guest@127.0.0.1:1/"
    )
    assert result.returncode == 2
    assert "unknown consumer billing (known: notifications, analytics)" in result.stderr


async def test_shard_by_owner_moves_existing_tasks_onto_the_shards(
    tmp_path: Path, shard_servers: list[PgInstance]
) -> None:
    """A migrated database with data is sharded by the command; running it again changes nothing."""
    async with fresh_postgres_database("taskhub_cli_shard_") as url:
        env = {"TASKHUB_DATABASE_URL": url, "TASKHUB_ARGON2_MEMORY_COST": "1024", "TASKHUB_ARGON2_TIME_COST": "1"}
        settings = Settings(database_url=url, data_dir=tmp_path)
        engine = make_engine(url, settings)
        await migrate.upgrade(engine)
        seeded = run(["seed-demo", "--users", "4", "--tasks", "5"], tmp_path, **env)
        assert seeded.returncode == 0, seeded.stderr
        name = make_url(url).database
        assert name is not None
        shard_urls = []
        for shard in shard_servers:
            admin = await asyncpg.connect(shard.url().replace("+asyncpg", ""))
            await admin.execute(f'CREATE DATABASE "{name}"')
            await admin.close()
            shard_urls.append(shard.url(name))
        done = run(["shard-by-owner", *shard_urls], tmp_path, **env)
        assert done.returncode == 0, done.stderr
        assert "over 2 shards" in done.stdout
        # Again (in-process, same function): everything is there already, nothing changes.
        await sharding.shard_by_owner(engine, shard_urls, lambda u: make_engine(u, settings))
        await engine.dispose()
        coordinator = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            kinds = await coordinator.fetch(
                "select relname, relkind from pg_class where relname like 'tasks%' and relkind in ('r', 'p', 'f')"
            )
            assert sorted((r["relname"], r["relkind"]) for r in kinds) == [
                ("tasks", b"p"),
                ("tasks_shard_0", b"f"),
                ("tasks_shard_1", b"f"),
            ]
            assert await coordinator.fetchval("select count(*) from tasks") == 20
        finally:
            await coordinator.close()
        per_shard = []
        for index, shard_url in enumerate(shard_urls):
            conn = await asyncpg.connect(shard_url.replace("+asyncpg", ""))
            per_shard.append(await conn.fetchval(f"select count(*) from tasks_shard_{index}"))
            await conn.close()
        assert sum(per_shard) == 20 and all(n % 5 == 0 for n in per_shard)  # whole users per shard
        for shard in shard_servers:
            admin = await asyncpg.connect(shard.url().replace("+asyncpg", ""))
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()


def test_shard_by_owner_refuses_sqlite(tmp_path: Path) -> None:
    done = run(["shard-by-owner", "postgresql+asyncpg://postgres@127.0.0.1:1/x"], tmp_path)
    assert done.returncode == 2 and "needs PostgreSQL" in done.stderr


ADMIN_PW = "a strong admin passphrase"
NEW_PW = "a brand new passphrase"


def login(c: httpx.Client, email: str, password: str) -> httpx.Response:
    return c.post("/api/v1/auth/login", json={"email": email, "password": password})


def test_create_admin_on_existing_accounts(tmp_path: Path) -> None:
    """An existing admin is left alone unless --reset-password; an existing user is promoted with
    the password kept (and none is asked for); a reset follows the password rules and revokes the
    tokens issued before it."""
    made = run(["create-admin", "--email", "boss@example.com"], tmp_path, TASKHUB_ADMIN_PASSWORD=ADMIN_PW)
    assert made.returncode == 0, made.stderr
    with serve(tmp_path) as server, server.client() as c:
        body = {"email": "ann@example.com", "password": ADMIN_PW, "name": "Ann"}
        assert c.post("/api/v1/auth/register", json=body).status_code == 201

        again = run(["create-admin", "--email", "Boss@Example.com"], tmp_path, TASKHUB_ADMIN_PASSWORD=NEW_PW)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == (
            "Boss@Example.com is already an admin: nothing changed (--reset-password sets a new password)"
        )
        assert login(c, "boss@example.com", NEW_PW).status_code == 401

        # no TASKHUB_ADMIN_PASSWORD and nothing on stdin: no password is asked for
        promoted = run(["create-admin", "--email", "ann@example.com"], tmp_path)
        assert promoted.returncode == 0, promoted.stderr
        assert promoted.stdout.strip() == (
            "existing user ann@example.com: promoted to admin, password unchanged (--reset-password sets a new one)"
        )
        ann = login(c, "ann@example.com", ADMIN_PW).json()
        me = c.get("/api/v1/users/me", headers={"Authorization": f"Bearer {ann['access_token']}"}).json()
        assert (me["role"], me["name"]) == ("admin", "Ann")

        before = login(c, "boss@example.com", ADMIN_PW).json()
        reset = ["create-admin", "--email", "boss@example.com", "--reset-password"]
        weak = run(reset, tmp_path, TASKHUB_ADMIN_PASSWORD="password")
        assert weak.returncode == 1 and "too common" in weak.stderr
        assert login(c, "boss@example.com", ADMIN_PW).status_code == 200

        done = run(reset, tmp_path, TASKHUB_ADMIN_PASSWORD=NEW_PW)
        assert done.returncode == 0, done.stderr
        assert (
            done.stdout.strip() == "existing user boss@example.com: password reset (its earlier tokens no longer work)"
        )
        assert login(c, "boss@example.com", ADMIN_PW).status_code == 401
        after = login(c, "boss@example.com", NEW_PW)
        assert after.status_code == 200
        me = c.get("/api/v1/users/me", headers={"Authorization": f"Bearer {after.json()['access_token']}"}).json()
        assert (me["role"], me["is_active"]) == ("admin", True)
        # tokens issued before the reset (never used: no server cache holds a decision for them)
        old = c.get("/api/v1/users/me", headers={"Authorization": f"Bearer {before['access_token']}"})
        assert old.status_code == 401
        assert c.post("/api/v1/auth/refresh", json={"refresh_token": before["refresh_token"]}).status_code == 401


def test_reset_password_of_any_account(tmp_path: Path) -> None:
    """Prompted twice (two lines on stdin); unknown account, weak or mismatched passwords change
    nothing; a reset revokes the account's earlier tokens."""
    with serve(tmp_path) as server, server.client() as c:
        body = {"email": "cy@example.com", "password": ADMIN_PW, "name": "Cy"}
        assert c.post("/api/v1/auth/register", json=body).status_code == 201
        before = login(c, "cy@example.com", ADMIN_PW).json()

        unknown = run(["reset-password", "--email", "nobody@example.com"], tmp_path, stdin=f"{NEW_PW}\n{NEW_PW}\n")
        assert (unknown.returncode, unknown.stderr.strip()) == (
            1,
            "error: no account with the email 'nobody@example.com'",
        )
        reset = ["reset-password", "--email", "CY@example.com"]
        weak = run(reset, tmp_path, stdin="password\npassword\n")
        assert weak.returncode == 1 and "too common" in weak.stderr
        mismatch = run(reset, tmp_path, stdin=f"{NEW_PW}\nsomething else\n")
        assert mismatch.returncode != 0
        assert login(c, "cy@example.com", NEW_PW).status_code == 401

        done = run(reset, tmp_path, stdin=f"{NEW_PW}\n{NEW_PW}\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith(
            "password of cy@example.com reset; every token issued before no longer works"
        )
        assert login(c, "cy@example.com", ADMIN_PW).status_code == 401
        after = login(c, "cy@example.com", NEW_PW)
        assert after.status_code == 200
        me = c.get("/api/v1/users/me", headers={"Authorization": f"Bearer {after.json()['access_token']}"}).json()
        assert me["role"] == "user"
        old = c.get("/api/v1/users/me", headers={"Authorization": f"Bearer {before['access_token']}"})
        assert old.status_code == 401
        assert c.post("/api/v1/auth/refresh", json={"refresh_token": before["refresh_token"]}).status_code == 401


def test_serve_takes_the_service_from_taskhub_service(tmp_path: Path) -> None:
    """``TASKHUB_SERVICE`` (the documented setting) chooses the service when ``--service`` is absent."""
    with serve(tmp_path, {"TASKHUB_SERVICE": "notifications"}) as server, server.client() as c:
        assert c.get("/api/v1/tasks").status_code == 404  # not this service's route
        assert c.get("/api/v1/notifications").status_code == 401  # its own, asking for a token

"""Production mode with Redis: two instances share revocation, cache and rate limits; a Redis
outage costs speed, never correctness (issue "Redis in production mode")."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.integration.conftest import OwnRedis, seed_user
from tests.servers import ServerProcess

pytestmark = pytest.mark.integration


def login(c: httpx.Client, email: str, password: str) -> dict[str, str]:
    r = c.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_two_instances_share_revocation_cache_and_limits(
    pg_url: str, shared_redis: str, start_server: Callable[..., ServerProcess]
) -> None:
    email, password = seed_user(pg_url)
    env = {
        "TASKHUB_DATABASE_URL": pg_url,
        "TASKHUB_REDIS_URL": shared_redis,
        "TASKHUB_RATE_LIMIT_ANON": "1000 per minute",
    }
    a, b = start_server(**env), start_server(**env)
    with a.client() as ca, b.client() as cb:
        # Eleven logins spread over A and B: the shared per-account/per-IP budget of 10 is spent.
        codes = [
            (ca if i % 2 == 0 else cb)
            .post("/api/v1/auth/login", json={"email": email, "password": password})
            .status_code
            for i in range(11)
        ]
        assert codes == [200] * 10 + [429]
        last = cb.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert last.status_code == 429
        assert last.headers["ratelimit-remaining"] == "0" and int(last.headers["retry-after"]) >= 1

    # New budget for the rest (the limiter counts per minute).
    import redis as redis_lib

    redis_lib.Redis.from_url(shared_redis).flushdb()
    with a.client() as ca, b.client() as cb:
        h = login(ca, email, password)
        # A write on A is visible on B at once, even though B had the list cached.
        first = cb.get("/api/v1/tasks", headers=h)
        assert first.json()["total"] == 0 and first.headers["x-cache"] == "MISS"
        assert cb.get("/api/v1/tasks", headers=h).headers["x-cache"] == "HIT"
        created = ca.post("/api/v1/tasks", json={"title": "from A"}, headers=h)
        assert created.status_code == 201
        seen = cb.get("/api/v1/tasks", headers=h)
        assert seen.headers["x-cache"] == "MISS"
        assert [t["title"] for t in seen.json()["items"]] == ["from A"]
        cb.patch(f"/api/v1/tasks/{created.json()['id']}", json={"title": "renamed on B"}, headers=h)
        assert [t["title"] for t in ca.get("/api/v1/tasks", headers=h).json()["items"]] == ["renamed on B"]

        # A password change on A ends a session whose decision B has cached (the user's
        # generation in Redis changed; no denylist entry is involved).
        other = login(ca, email, password)
        for _ in range(2):
            assert cb.get("/api/v1/users/me", headers=other).status_code == 200
        changed = ca.post(
            "/api/v1/users/me/password",
            json={"current_password": password, "new_password": "a changed passphrase"},
            headers=h,
        )
        assert changed.status_code == 204
        assert cb.get("/api/v1/users/me", headers=other).status_code == 401
        password = "a changed passphrase"
        h = login(ca, email, password)

        # Logout on A: the token is refused on B.
        assert cb.get("/api/v1/users/me", headers=h).status_code == 200
        assert ca.post("/api/v1/auth/logout", headers=h).status_code == 204
        refused = cb.get("/api/v1/users/me", headers=h)
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]
        assert cb.get("/ready").json()["checks"]["cache"]["ok"] is True


def test_redis_outage_costs_speed_not_correctness(
    pg_url: str, own_redis: OwnRedis, start_server: Callable[..., ServerProcess]
) -> None:
    email, password = seed_user(pg_url, 2)
    server = start_server(TASKHUB_DATABASE_URL=pg_url, TASKHUB_REDIS_URL=own_redis.url)
    with server.client() as c:
        h = login(c, email, password)
        revoked = login(c, email, password)
        assert c.post("/api/v1/auth/logout", headers=revoked).status_code == 204
        c.post("/api/v1/tasks", json={"title": "before outage"}, headers=h)
        assert c.get("/api/v1/tasks", headers=h).json()["total"] == 1
        assert c.get("/api/v1/tasks", headers=h).headers["x-cache"] == "HIT"
        assert c.get("/ready").status_code == 200

        own_redis.stop()
        ready = c.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["cache"]["ok"] is False
        assert ready.json()["checks"]["database"]["ok"] is True
        # Still correct: revoked stays revoked (database check), writes show up, logins work.
        assert c.get("/api/v1/users/me", headers=revoked).status_code == 401
        assert c.post("/api/v1/tasks", json={"title": "during outage"}, headers=h).status_code == 201
        during = c.get("/api/v1/tasks", headers=h)
        assert during.status_code == 200
        assert sorted(t["title"] for t in during.json()["items"]) == ["before outage", "during outage"]
        fresh = login(c, email, password)
        assert c.get("/api/v1/users/me", headers=fresh).status_code == 200
        assert c.post("/api/v1/auth/logout", headers=fresh).status_code == 204
        assert c.get("/api/v1/users/me", headers=fresh).status_code == 401

        own_redis.start()
        for _ in range(50):
            if c.get("/ready").status_code == 200:
                break
            time.sleep(0.1)
        assert c.get("/ready").status_code == 200
        assert c.get("/api/v1/users/me", headers=revoked).status_code == 401
        assert c.get("/api/v1/users/me", headers=fresh).status_code == 401
        after = c.get("/api/v1/tasks", headers=h).json()
        assert after["total"] == 2

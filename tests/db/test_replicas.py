"""Replica choice from cached positions (``taskhub.db.replicas``) and the read floors the auth
caches keep (``taskhub.auth.cache``): no database needed here; the real cluster is in
``tests/integration/test_pg_replicas.py``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from taskhub.auth.cache import MemoryAuthCache, NullAuthCache, RedisAuthCache
from taskhub.core.breaker import CircuitBreaker
from taskhub.db.replicas import (
    ANY_POSITION,
    CAUGHT_UP,
    PRIMARY_ONLY,
    PositionTrail,
    Replica,
    ReplicaMonitor,
    lsn_to_int,
)
from tests.conftest import unavailable
from tests.integration.conftest import SHARED_REDIS, wait_for


def make_monitor(*positions: int | None, max_lag: float = 10.0) -> ReplicaMonitor:
    replicas = []
    for i, position in enumerate(positions):
        url = f"postgresql+asyncpg://u@127.0.0.1:{6000 + i}/db"
        replica = Replica(f"r{i}", url, create_async_engine(url), CircuitBreaker())
        replica.position, replica.polled_at = position, time.monotonic()
        replicas.append(replica)
    return ReplicaMonitor(replicas, "postgresql+asyncpg://u@127.0.0.1:5999/db", max_lag=max_lag)


class TestChoice:
    def test_only_replicas_at_or_past_the_floor(self) -> None:
        monitor = make_monitor(100, 200)
        assert {monitor.choose(150).name for _ in range(20)} == {"r1"}  # type: ignore[union-attr]
        assert {monitor.choose(ANY_POSITION).name for _ in range(50)} == {"r0", "r1"}  # type: ignore[union-attr]
        assert monitor.choose(201) is None

    def test_primary_only_never_picks_a_replica_not_even_a_promoted_one(self) -> None:
        monitor = make_monitor(CAUGHT_UP)
        assert monitor.choose(10**12) is not None  # a promoted node satisfies any real floor
        assert monitor.choose(PRIMARY_ONLY) is None

    def test_unknown_stale_or_broken_replicas_are_skipped(self) -> None:
        monitor = make_monitor(None, 500, 500)
        monitor.replicas[1].polled_at -= monitor.stale_after + 0.1  # no successful poll lately
        monitor.replicas[2].forget()  # a failed query: position dropped, breaker open
        assert monitor.choose(ANY_POSITION) is None
        monitor.replicas[2].position, monitor.replicas[2].polled_at = 500, time.monotonic()
        assert monitor.choose(ANY_POSITION) is None  # breaker still open
        monitor.replicas[2].breaker.reset()
        assert monitor.choose(ANY_POSITION).name == "r2"  # type: ignore[union-attr]

    def test_a_replica_behind_the_primary_by_more_than_max_lag_serves_nobody(self) -> None:
        monitor = make_monitor(100, 300, max_lag=5)
        now = time.monotonic()
        for age, position in ((9, 100), (6, 250), (3, 300)):
            monitor.trail.add(now - age, position)
        monitor.fresh_floor = monitor.trail.position_at(now - monitor.max_lag)
        assert monitor.fresh_floor == 250  # the primary's position 5 s ago (sampled 6 s ago)
        assert {monitor.choose(ANY_POSITION).name for _ in range(20)} == {"r1"}  # type: ignore[union-attr]
        assert monitor.choose(ANY_POSITION, exclude=(monitor.replicas[1],)) is None


class TestTrail:
    def test_position_at_is_the_last_sample_before(self) -> None:
        trail = PositionTrail(span=10)
        assert trail.position_at(5) == 0
        for at, position in ((1, 10), (2, 20), (3, 30)):
            trail.add(at, position)
        assert [trail.position_at(t) for t in (0.5, 1, 2.5, 99)] == [10, 10, 20, 30]

    def test_keeps_one_sample_older_than_its_span(self) -> None:
        trail = PositionTrail(span=2)
        for at in range(10):
            trail.add(at, at * 100)
        assert [at for at, _ in trail.samples] == [7, 8, 9]

    def test_lsn_text_to_bytes(self) -> None:
        assert lsn_to_int("0/0") == 0
        assert lsn_to_int("16/B374D848") == (0x16 << 32) + 0xB374D848


class TestMemoryFloors:
    async def test_floors_only_rise_and_expire(self) -> None:
        cache = MemoryAuthCache(positions_ttl=0.2)
        user, other = uuid.uuid4(), uuid.uuid4()
        assert (await cache.lookup("j", user)).read_floor == ANY_POSITION
        await cache.record_positions([user, other], 500)
        await cache.record_positions([user], 300)  # an older commit recorded late
        assert [(await cache.lookup("j", u)).read_floor for u in (user, other)] == [500, 500]
        await asyncio.sleep(0.25)
        assert (await cache.lookup("j", user)).read_floor == ANY_POSITION

    async def test_without_a_shared_store_reads_go_to_the_primary(self) -> None:
        cache = NullAuthCache()
        await cache.record_positions([uuid.uuid4()], 5)
        assert (await cache.lookup("j", uuid.uuid4())).read_floor == PRIMARY_ONLY


@pytest.fixture
def redis_client() -> Iterator[Redis]:
    sync = redis.Redis.from_url(SHARED_REDIS)
    try:
        sync.flushdb()
    except redis.RedisError as exc:
        unavailable(f"Redis at {SHARED_REDIS} is unreachable: {exc!r}")
    yield Redis.from_url(SHARED_REDIS)
    sync.flushdb()
    sync.close()


class TestRedisFloors:
    async def test_recorded_in_one_pipeline_read_in_the_lookups_and_never_lowered(self, redis_client: Redis) -> None:
        cache = RedisAuthCache(redis_client, store_decisions=False, track_positions=True)
        user = uuid.uuid4()
        assert (await cache.lookup("j", user)).read_floor == ANY_POSITION
        big = (0x16 << 32) + 0xB374D848
        await cache.record_positions([user], big)
        await cache.record_positions([user], 7)
        assert (await cache.lookup("j", user)).read_floor == big
        assert 86_000 < await redis_client.ttl(f"taskhub:ryw:{user.hex}") <= RedisAuthCache.POSITION_TTL
        await cache.aclose()

    async def test_unknown_while_redis_is_down_and_delivered_after(self, redis_client: Redis) -> None:
        cache = RedisAuthCache(redis_client, store_decisions=False, track_positions=True, retry_interval=0.05)
        user = uuid.uuid4()
        real_pipeline = redis_client.pipeline

        def broken(*args: object, **kwargs: object) -> object:
            raise redis.ConnectionError("down")

        redis_client.pipeline = broken  # type: ignore[method-assign]
        await cache.record_positions([user], 900)
        redis_client.pipeline = real_pipeline  # type: ignore[method-assign]
        # Until the floor is delivered nobody on this instance reads from a replica.
        assert (await cache.lookup("j", user)).read_floor == PRIMARY_ONLY
        await wait_for(lambda: not cache._pending_positions, "the floor delivered", within_s=5)
        assert (await cache.lookup("j", user)).read_floor == 900
        await cache.aclose()

    async def test_off_without_replicas(self, redis_client: Redis) -> None:
        cache = RedisAuthCache(redis_client)
        user = uuid.uuid4()
        await cache.record_positions([user], 900)
        assert await redis_client.exists(f"taskhub:ryw:{user.hex}") == 0
        assert (await cache.lookup("j", user)).read_floor == ANY_POSITION
        await cache.aclose()

"""Failover under a write load, through Taskhub (issue 14, "Failover"): a real ``taskhub serve``
writes through the cluster's writer port while clients create tasks; the primary's postmaster is
``SIGKILL``ed. Patroni promotes the synchronous standby, HAProxy moves the writer port, and the same
server process resumes writing without a restart. Every write it acknowledged (201) is on the new
primary: synchronous mode loses none. Writes answered 503 during the failover are allowed; a 500,
a lost acknowledged write or a server that never recovers is not.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from tests.integration.conftest import SHARED_REDIS, ClusterDatabase, cluster_sql
from tests.servers import ServerProcess

pytestmark = pytest.mark.integration

WRITERS = 4
PAUSE_S = 0.02  # between one writer's requests: ~100-150 writes/s in all, modest for 2 cores
BEFORE_S = 2.0  # load before the kill
AFTER_S = 3.0  # load after the first write acknowledged by the new primary
RECOVERY_LIMIT_S = 60


@dataclass
class Tally:
    attempted: int = 0
    acknowledged: dict[str, float] = field(default_factory=dict)  # title -> time of the 201
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[tuple[float, str]] = field(default_factory=list)  # (sent at, what)
    successes: list[tuple[float, float]] = field(default_factory=list)  # (sent at, answered at)


def test_sigkill_of_the_primary_under_write_load_loses_no_acknowledged_write(
    cluster_database: ClusterDatabase,
    start_server: Callable[..., ServerProcess],
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    db = cluster_database
    cluster = db.cluster
    server = start_server(
        TASKHUB_DATABASE_URL=db.writer,
        TASKHUB_DATABASE_REPLICA_URLS=",".join(db.replicas),
        TASKHUB_REDIS_URL=SHARED_REDIS,
        TASKHUB_RATE_LIMIT_ENABLED="false",
        TASKHUB_PURGE_INTERVAL="0",
        TASKHUB_ACCESS_LOG="false",
    )
    before = cluster.status()
    (old,) = [m for m in before["members"] if m["role"] == "leader"]
    (standby,) = [m for m in before["members"] if m["role"] == "sync_standby"]
    postmaster = before["processes"][f"postgres-{old['name']}"]["pid"]

    tally = Tally()
    killed_at: list[float] = []

    async def run() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            email = "failover@x.io"
            r = await client.post(
                "/api/v1/auth/register", json={"email": email, "password": "a long passphrase", "name": "F"}
            )
            assert r.status_code == 201, r.text
            r = await client.post("/api/v1/auth/login", json={"email": email, "password": "a long passphrase"})
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            recovered = asyncio.Event()
            stop_at: list[float] = []

            async def writer(n: int) -> None:
                i = 0
                while not stop_at or time.monotonic() < stop_at[0]:
                    title = f"w{n}-{i}"
                    i += 1
                    sent = time.monotonic()
                    tally.attempted += 1
                    try:
                        answer = await client.post("/api/v1/tasks", json={"title": title}, headers=headers)
                    except httpx.HTTPError as exc:
                        tally.failures.append((sent, type(exc).__name__))
                    else:
                        tally.statuses[answer.status_code] = tally.statuses.get(answer.status_code, 0) + 1
                        if answer.status_code == 201:
                            assert answer.json()["title"] == title
                            tally.acknowledged[title] = time.monotonic()
                            tally.successes.append((sent, time.monotonic()))
                            if killed_at and sent > killed_at[0] and not recovered.is_set():
                                recovered.set()
                                stop_at.append(time.monotonic() + AFTER_S)
                        else:
                            assert answer.status_code == 503, answer.text
                            assert answer.headers["retry-after"] == "1"
                            tally.failures.append((sent, "503"))
                    if killed_at and time.monotonic() - killed_at[0] > RECOVERY_LIMIT_S:
                        return
                    await asyncio.sleep(PAUSE_S)

            tasks = [asyncio.create_task(writer(n)) for n in range(WRITERS)]
            await asyncio.sleep(BEFORE_S)
            os.kill(postmaster, signal.SIGKILL)
            killed_at.append(time.monotonic())
            await asyncio.gather(*tasks)
            assert recovered.is_set(), f"no write succeeded within {RECOVERY_LIMIT_S} s: {tally.statuses}"

    asyncio.run(run())
    assert server.proc.poll() is None, "the server must survive the failover (no restart)"

    # Every acknowledged write is on the new primary, which is the old synchronous standby.
    rows = asyncio.run(cluster_sql(db.writer, "select title, inet_server_port(), pg_is_in_recovery() from tasks"))
    stored = {row[0] for row in rows}
    assert {(row[1], row[2]) for row in rows} == {(standby["port"], False)}
    lost = sorted(set(tally.acknowledged) - stored)
    unacknowledged_but_saved = len(stored - set(tally.acknowledged))
    answered_after = min(done for sent, done in tally.successes if sent > killed_at[0])
    window = answered_after - killed_at[0]
    # Once the new primary has acknowledged a write, every write sent later succeeds.
    after_recovery = [what for sent, what in tally.failures if sent > answered_after]
    row = (
        f"| SIGKILL of the primary's postmaster under {WRITERS} writers | {tally.attempted} | "
        f"{len(tally.acknowledged)} | {len(lost)} | {window:.1f} |"
    )
    record_property("failover_fault_row", row)
    with capsys.disabled():
        print(
            "\n[pg-failover] | fault | writes attempted | acknowledged | lost | seconds unavailable |\n"
            f"[pg-failover] {row}\n"
            f"[pg-failover] answers {dict(sorted(tally.statuses.items()))}, transport errors "
            f"{len([f for f in tally.failures if f[1] != '503'])}, saved without an acknowledgement "
            f"{unacknowledged_but_saved}"
        )
    assert lost == []
    assert set(tally.statuses) <= {201, 503}
    log = [line for line in server.log.read_text().splitlines() if "database_unavailable" in line]
    assert after_recovery == [], f"writes failed after the new primary took writes: {after_recovery}\n" + "\n".join(log)
    assert len(tally.acknowledged) > 20
    cluster.up()  # the old primary rejoins as a replica

#!/usr/bin/env python3
"""Taskhub's production topology as native processes on this machine (``make fleet``).

    fleet.py up            start what is not running (idempotent), wait until the gateway answers
                           ``/ready``, print ``http://127.0.0.1:<port>`` (the only stdout line)
    fleet.py down          stop every process by its recorded PID, drop what ``up`` created
                           (the local database or the PostgreSQL cluster, the exchange and queues
                           on RabbitMQ), delete the run directory
    fleet.py status        JSON: ports, PIDs (null: not running), URLs
    fleet.py restart NAME  SIGTERM one process (``api-2``, ``worker-1``, ...), wait for its exit,
                           start it again, wait until it is healthy (a rolling restart is one
                           ``restart`` per API instance)
    fleet.py render-nginx --upstream HOST:PORT ... --listen L --static-dir D
                           print the gateway configuration for other hosts (deploy/nginx/nginx.conf
                           is this, for docker compose)

The fleet: nginx (deploy/nginx/nginx.conf.tmpl) on one port in front of 3 ``taskhub serve``
instances, 2 ``taskhub worker`` processes, one ``taskhub relay``, the machine's Redis (a database
number of its own) and RabbitMQ (an exchange and queue prefix of its own), PostgreSQL, and a
Prometheus of its own scraping every process. Standard library only, so any ``python3`` runs it.

Split mode (``TASKHUB_FLEET_SPLIT=1``, ``make fleet SPLIT=1``; docs/operations.md, "Split mode"):
nginx from deploy/nginx/split.conf.tmpl routes by path to ``taskhub serve --service`` instances
(``auth-1``, ``users-1``, ``tasks-1``, ``tasks-2``, ``notifications-1``) instead of the 3 ``api-N``;
access tokens are EdDSA: the auth service signs with the key set ``<run dir>/jwt_keys.json`` (made
once by ``taskhub keys rotate``), the other services verify with its JWKS (``TASKHUB_JWT_JWKS_URL``),
the workers and the relay read the key set. The first ``up`` decides the mode; it is kept in
``state.json`` and a later ``up`` asking for the other mode is refused (``down`` first).

Settings, all optional, from the environment:

    TASKHUB_FLEET_DIR            run directory (configs, logs, PIDs, state); ./.fleet
    TASKHUB_FLEET_PORT           the gateway's port; 8080 (0: any free port, kept across ``up``)
    TASKHUB_FLEET_DATABASE       ``cluster``: the etcd + Patroni + HAProxy cluster of
                                 deploy/pg-cluster, in the run directory (writes to the primary,
                                 reads from the replicas); ``local``: a database of its own on
                                 the machine's PostgreSQL (faster to start); cluster
    TASKHUB_FLEET_PG_URL         the PostgreSQL server for ``local``; postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    TASKHUB_FLEET_PG_PORT_BASE   first of the cluster's ten ports; 15530
    TASKHUB_FLEET_REDIS_URL      redis://127.0.0.1:6379/1 (the fleet's own database number)
    TASKHUB_FLEET_AMQP_URL       amqp://guest:guest@127.0.0.1:5672/
    TASKHUB_FLEET_API_INSTANCES  3 (not in split mode: its shape is SPLIT_SHAPE);  TASKHUB_FLEET_WORKERS  2
    TASKHUB_FLEET_SPLIT          1: split mode (above); 0
    TASKHUB_FLEET_PROMETHEUS     1 (0: none, e.g. for the fault tests)
    TASKHUB_FLEET_STATIC_DIR     where ``taskhub export-static`` puts the dashboard's hashed files for
                                 nginx to serve; <run dir>/static
    TASKHUB_FLEET_RATE, TASKHUB_FLEET_BURST   nginx's per-IP limit (requests/s, burst); 500, 1000
    TASKHUB_FLEET_TASKHUB        the ``taskhub`` command; .venv/bin/taskhub of this checkout

Every other ``TASKHUB_*`` variable of the caller is handed to the Taskhub processes (the fleet's own
settings win, but for ``TASKHUB_JWT_SECRET``: the caller's is used when set, else one made once in
the run directory). A process is only ever signalled when its PID and its start time (``/proc/<pid>/stat``)
both match what was recorded, so a recycled PID is never hit. ``down`` drops only a database whose
name ``up`` recorded as created by itself, and deletes only a run directory carrying the fleet's
marker file. Exit codes: 0 ok, 1 not healthy in time, 2 bad setup.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NGINX_TEMPLATE = REPO / "deploy" / "nginx" / "nginx.conf.tmpl"
SPLIT_TEMPLATE = REPO / "deploy" / "nginx" / "split.conf.tmpl"
#: Instances per service in split mode (issue 16's topology), in start order: auth first, since
#: the others fetch its JWKS.
SPLIT_SHAPE = {"auth": 1, "users": 1, "tasks": 2, "notifications": 1}
PG_CLUSTER = REPO / "deploy" / "pg-cluster" / "pg_cluster.py"
ALERTS = REPO / "deploy" / "monitoring" / "alerts.yml"
MARKER = ".taskhub-fleet"  # `down` deletes only a directory carrying this file
STATE = "state.json"
START_TIMEOUT = 60.0  # seconds a process may take to become healthy
STOP_TIMEOUT = 45.0  # seconds after SIGTERM before SIGKILL (the API's drain takes up to 30 s)
_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
STARTED = time.monotonic()


class SetupError(Exception):
    """A prerequisite is missing or a port is taken (exit code 2)."""


class NotHealthy(Exception):
    """A process did not become healthy in time (exit code 1)."""


def log(message: str) -> None:
    # Progress goes to stderr: stdout carries only the URL line that callers parse.
    print(f"fleet [{time.monotonic() - STARTED:5.1f}s]: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- nginx configuration


def render_nginx(
    upstreams: list[str],
    *,
    listen: str,
    static_dir: str,
    temp_dir: str = "/var/cache/nginx",
    access_log: str = "/dev/stdout",
    error_log: str = "/dev/stderr",
    pid_file: str = "/var/run/nginx.pid",
    mime_types: str = "/etc/nginx/mime.types",
    worker_processes: str = "auto",
    rate: int = 500,
    burst: int = 1000,
) -> str:
    """deploy/nginx/nginx.conf.tmpl with every ``@NAME@`` filled in. The defaults suit the
    official nginx image (docker compose); the fleet puts every path in its run directory.

    Args:
        upstreams: the API instances, ``host:port`` each (``server`` lines of the upstream).
        listen: nginx's ``listen`` argument (``127.0.0.1:8080``, ``80``).
        static_dir: directory served at ``/static/`` (the dashboard's files).
        temp_dir: where nginx may put temporary files (it never needs to: bodies and answers
            stay in memory).
        rate, burst: the per-IP edge limit, requests per second and the burst above it.

    Raises:
        ValueError: a placeholder of the template has no value (the template and this function
            disagree).
    """
    values = {
        "WORKER_PROCESSES": worker_processes,
        "PID_FILE": pid_file,
        "ERROR_LOG": error_log,
        "ACCESS_LOG": access_log,
        "TEMP_DIR": temp_dir,
        "MIME_TYPES": mime_types,
        "LISTEN": listen,
        "STATIC_DIR": static_dir.rstrip("/"),
        "RATE_PER_SECOND": str(rate),
        "BURST": str(burst),
        # max_fails=1 fail_timeout=5s: one refused connection takes an instance out for 5 s.
        "UPSTREAM_SERVERS": "\n".join(f"        server {u} max_fails=1 fail_timeout=5s;" for u in upstreams),
    }

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise ValueError(f"no value for @{match.group(1)}@ in {NGINX_TEMPLATE}")
        return values[match.group(1)]

    return _PLACEHOLDER.sub(fill, NGINX_TEMPLATE.read_text())


def render_split_nginx(
    servers: dict[str, list[str]],
    *,
    listen: str,
    pid_file: str,
    temp_dir: str,
    server_options: str = "max_fails=1 fail_timeout=5s",
) -> str:
    """deploy/nginx/split.conf.tmpl with its ``${NAME}`` placeholders filled in (nginx's own
    ``$variables`` stay as they are).

    Args:
        servers: ``host:port`` of each instance, per service (every key of ``SPLIT_SHAPE``).
        listen: nginx's ``listen`` argument.
        pid_file, temp_dir: nginx's PID file and a writable directory for its temporary files.
        server_options: the parameters of each ``server`` line (tests turn failure counting off).

    Raises:
        ValueError: a service of ``SPLIT_SHAPE`` has no instance, or a placeholder of the template
            has no value (the template and this function disagree).
    """
    values = {"LISTEN": listen, "PID_FILE": pid_file, "TEMP_DIR": temp_dir}
    for service in SPLIT_SHAPE:
        if not servers.get(service):
            raise ValueError(f"split mode needs at least one {service} instance")
        values[f"{service.upper()}_SERVERS"] = "\n        ".join(
            f"server {address} {server_options};" for address in servers[service]
        )
    rendered = string.Template(SPLIT_TEMPLATE.read_text()).safe_substitute(values)
    if left := re.findall(r"\$\{([A-Z_]+)\}", rendered):
        raise ValueError(f"no value for ${{{left[0]}}} in {SPLIT_TEMPLATE}")
    return rendered


# ---------------------------------------------------------------- layout and state


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError as exc:
        raise SetupError(f"{name} must be an integer, not {raw!r}") from exc


@dataclass
class Layout:
    """Where the fleet lives and what it is made of, from the environment (module docstring)."""

    run_dir: Path
    gateway_port: int
    database: str
    pg_url: str
    pg_port_base: int
    redis_url: str
    amqp_url: str
    api_instances: int
    workers: int
    split: bool
    prometheus: bool
    static_dir: Path
    rate: int
    burst: int
    taskhub: str

    @classmethod
    def from_env(cls) -> Layout:
        database = os.environ.get("TASKHUB_FLEET_DATABASE", "cluster")
        if database not in ("cluster", "local"):
            raise SetupError(f"TASKHUB_FLEET_DATABASE must be cluster or local, not {database!r}")
        venv_taskhub = REPO / ".venv" / "bin" / "taskhub"
        taskhub = os.environ.get("TASKHUB_FLEET_TASKHUB") or (
            str(venv_taskhub) if venv_taskhub.exists() else shutil.which("taskhub") or ""
        )
        if not taskhub:
            raise SetupError("no taskhub command: run `make install` (or set TASKHUB_FLEET_TASKHUB)")
        run_dir = Path(os.environ.get("TASKHUB_FLEET_DIR") or Path.cwd() / ".fleet").resolve()
        return cls(
            run_dir=run_dir,
            gateway_port=_env_int("TASKHUB_FLEET_PORT", 8080),
            database=database,
            pg_url=os.environ.get("TASKHUB_FLEET_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"),
            pg_port_base=_env_int("TASKHUB_FLEET_PG_PORT_BASE", 15530),
            redis_url=os.environ.get("TASKHUB_FLEET_REDIS_URL", "redis://127.0.0.1:6379/1"),
            amqp_url=os.environ.get("TASKHUB_FLEET_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            api_instances=_env_int("TASKHUB_FLEET_API_INSTANCES", 3),
            workers=_env_int("TASKHUB_FLEET_WORKERS", 2),
            split=os.environ.get("TASKHUB_FLEET_SPLIT", "0") not in ("", "0", "false", "no"),
            prometheus=os.environ.get("TASKHUB_FLEET_PROMETHEUS", "1") not in ("0", "false", "no"),
            static_dir=Path(os.environ.get("TASKHUB_FLEET_STATIC_DIR") or run_dir / "static").resolve(),
            rate=_env_int("TASKHUB_FLEET_RATE", 500),
            burst=_env_int("TASKHUB_FLEET_BURST", 1000),
            taskhub=taskhub,
        )

    @property
    def pg_cluster_dir(self) -> Path:
        return self.run_dir / "pg-cluster"


@dataclass
class State:
    """What the first ``up`` chose and every later one reuses (``state.json``): ports, names."""

    fleet_id: str
    ports: dict[str, int]
    database_url: str = ""
    replica_urls: list[str] = field(default_factory=list)
    created_database: str | None = None  # a database of the machine's PostgreSQL made by `up`
    split: bool = False  # split mode (the services of SPLIT_SHAPE instead of api-N)

    def api_names(self) -> list[str]:
        """The HTTP instances' names, in start order: ``api-N``, or ``<service>-N`` when split."""
        prefixes = tuple(f"{service}-" for service in SPLIT_SHAPE) if self.split else ("api-",)
        return [name for name in self.ports if name.startswith(prefixes)]

    @property
    def exchange(self) -> str:
        return f"taskhub.fleet-{self.fleet_id}"

    @property
    def queue_prefix(self) -> str:
        return f"fleet-{self.fleet_id}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def load_state(layout: Layout) -> State | None:
    try:
        raw = json.loads((layout.run_dir / STATE).read_text())
    except (OSError, ValueError):
        return None
    return State(**raw)


def save_state(layout: Layout, state: State) -> None:
    path = layout.run_dir / STATE
    path.write_text(json.dumps(state.__dict__, indent=2) + "\n")


def new_state(layout: Layout) -> State:
    ports = {"gateway": layout.gateway_port or free_port()}
    shape = SPLIT_SHAPE if layout.split else {"api": layout.api_instances}
    for service, count in shape.items():
        for i in range(1, count + 1):
            ports[f"{service}-{i}"] = free_port()
    for i in range(1, layout.workers + 1):
        ports[f"worker-{i}"] = free_port()  # its /metrics
    ports["relay"] = free_port()  # its /metrics
    ports["prometheus"] = free_port()
    return State(fleet_id=secrets.token_hex(4), ports=ports, split=layout.split)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One ``up``/``down``/``restart`` at a time per run directory."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- processes


def _start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks after boot), None when gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


@dataclass
class Component:
    """A long-running process of the fleet: argv, environment, health URL and its PID file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    health: str | None  # GET answering 200 once the process is ready; None: being alive is enough
    barrier: bool = False  # the next processes start only once this one is healthy

    def pidfile(self, layout: Layout) -> Path:
        return layout.run_dir / "pids" / f"{self.name}.pid"

    def logfile(self, layout: Layout) -> Path:
        return layout.run_dir / "logs" / f"{self.name}.log"


def recorded_pid(layout: Layout, name: str) -> int | None:
    """The PID recorded for ``name`` when that process still runs (same PID and start time)."""
    try:
        pid_text, started = (layout.run_dir / "pids" / f"{name}.pid").read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _start_time(pid) == started else None


def spawn(layout: Layout, component: Component) -> int:
    """Start ``component`` in its own session; record PID and start time; return the PID."""
    logfile = component.logfile(layout)
    with logfile.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - argv built from fixed binaries and run-dir paths
            component.argv,
            cwd=layout.run_dir,
            env=component.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this script; not hit by the caller's Ctrl-C
        )
    started = None
    for _ in range(100):
        started = _start_time(proc.pid)
        if started is not None:
            break
        time.sleep(0.01)
    component.pidfile(layout).write_text(f"{proc.pid} {started}\n")
    log(f"started {component.name} (pid {proc.pid}, log {logfile})")
    return proc.pid


def stop(layout: Layout, names: list[str], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM every named process that is still the recorded one, wait for all; SIGKILL what is
    left after ``timeout`` seconds. PID files are removed."""
    alive = [(name, pid) for name in names if (pid := recorded_pid(layout, name)) is not None]
    for name, pid in alive:
        log(f"stopping {name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive := [(n, p) for n, p in alive if recorded_pid(layout, n) == p]:
        if time.monotonic() > deadline:
            for name, pid in alive:
                log(f"{name} (pid {pid}) still running {timeout:.0f} s after SIGTERM: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.05)
    for name in names:
        (layout.run_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback http only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def wait_healthy(layout: Layout, component: Component, pid: int, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if recorded_pid(layout, component.name) != pid:
            tail = component.logfile(layout).read_text(errors="replace")[-3000:]
            raise NotHealthy(f"{component.name} exited; the end of its log:\n{tail}")
        if component.health is None or http_status(component.health) == 200:
            return
        if time.monotonic() > deadline:
            raise NotHealthy(f"{component.name} not healthy within {timeout:.0f} s ({component.logfile(layout)})")
        time.sleep(0.1)


# ---------------------------------------------------------------- the database


def _psql_argv(url: str, sql: str) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    psql = shutil.which("psql") or "psql"
    return [
        psql,
        "-X",
        "-A",
        "-t",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 5432),
        "-U",
        parts.username or "postgres",
        "-d",
        parts.path.lstrip("/") or "postgres",
        "-c",
        sql,
    ]


def psql(url: str, sql: str) -> str:
    env = {**os.environ, "PGCONNECT_TIMEOUT": "5"}
    if password := urllib.parse.urlsplit(url).password:
        env["PGPASSWORD"] = urllib.parse.unquote(password)
    done = subprocess.run(_psql_argv(url, sql), capture_output=True, text=True, env=env, timeout=60, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SetupError(f"psql {sql!r} on {url} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _pg_cluster(layout: Layout, command: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TASKHUB_PG_CLUSTER_DIR": str(layout.pg_cluster_dir),
        "TASKHUB_PG_CLUSTER_PORT_BASE": str(layout.pg_port_base),
    }
    return subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(PG_CLUSTER), command], env=env, capture_output=True, text=True, check=False
    )


def ensure_database(layout: Layout, state: State) -> None:
    """Fill ``state.database_url`` (and replica URLs): the cluster's, or a database of the fleet's
    own on the machine's PostgreSQL, created the first time."""
    if layout.database == "cluster":
        log("PostgreSQL cluster (deploy/pg-cluster; the first start takes a minute)")
        done = _pg_cluster(layout, "up")
        if done.returncode != 0:
            raise SetupError(f"pg_cluster.py up failed ({done.returncode}):\n{done.stderr[-3000:]}")
        lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
        state.database_url = lines["writer"]
        state.replica_urls = [
            line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("replica: ")
        ]
        return
    name = state.created_database or f"taskhub_fleet_{state.fleet_id}"
    exists = psql(layout.pg_url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'")  # noqa: S608 - our own name
    if exists != "1":
        psql(layout.pg_url, f'CREATE DATABASE "{name}"')
        log(f"created database {name}")
    state.created_database = name
    state.database_url = _with_database(layout.pg_url, name)
    state.replica_urls = []


# Run by the fleet's own `taskhub` interpreter (it has aio_pika and knows the queue names).
_DELETE_BROKER_NAMES = """
import asyncio, sys
from taskhub.config import Settings
from taskhub.events import broker
from taskhub.events.dispatch import consumer_names

async def main(url, exchange, prefix):
    retries = len(Settings().worker_retry_delays)
    connection = await broker.connect(url)
    channel = await connection.channel()
    for consumer in consumer_names():
        names = broker.queue_names(prefix, consumer, retries)
        for queue in (names.main, names.dlq, *names.retries):
            try:
                await channel.queue_delete(queue)
            except Exception:
                channel = await connection.channel()
    await channel.exchange_delete(exchange)
    await connection.close()

asyncio.run(main(*sys.argv[1:]))
"""


def delete_broker_names(layout: Layout, state: State) -> None:
    """Delete the fleet's exchange and queues (``taskhub.fleet-<id>``, ``fleet-<id>.*``) on RabbitMQ."""
    python = Path(layout.taskhub).parent / "python"
    argv = [str(python), "-c", _DELETE_BROKER_NAMES, layout.amqp_url, state.exchange, state.queue_prefix]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    if done.returncode == 0:
        log(f"deleted exchange {state.exchange} and queues {state.queue_prefix}.*")
    else:
        log(f"could not delete the broker names {state.queue_prefix}.*: {done.stderr.strip()[-500:]}")


def drop_database(layout: Layout, state: State) -> None:
    if layout.pg_cluster_dir.exists():
        done = _pg_cluster(layout, "down")
        if done.returncode != 0:
            log(f"pg_cluster.py down failed ({done.returncode}): {done.stderr[-2000:]}")
    if state.created_database:
        # Only the name `up` recorded as made by itself (taskhub_fleet_<id>).
        psql(layout.pg_url, f'DROP DATABASE IF EXISTS "{state.created_database}" WITH (FORCE)')
        log(f"dropped database {state.created_database}")


# ---------------------------------------------------------------- the fleet's processes


def taskhub_env(layout: Layout, state: State) -> dict[str, str]:
    """The environment of every Taskhub process: the caller's, then the fleet's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKHUB_FLEET_")}
    env.update(
        {
            "TASKHUB_ENV": "production",
            "TASKHUB_DATA_DIR": str(layout.run_dir / "data"),
            # the caller's secret when given (a benchmark mints its own tokens), else the fleet's
            "TASKHUB_JWT_SECRET": env.get("TASKHUB_JWT_SECRET") or (layout.run_dir / "jwt_secret").read_text().strip(),
            "TASKHUB_METRICS_TOKEN": (layout.run_dir / "metrics_token").read_text().strip(),
            "TASKHUB_DATABASE_URL": state.database_url,
            "TASKHUB_DATABASE_REPLICA_URLS": ",".join(state.replica_urls),
            "TASKHUB_REDIS_URL": layout.redis_url,
            "TASKHUB_BROKER_URL": layout.amqp_url,
            "TASKHUB_BROKER_EXCHANGE": state.exchange,
            "TASKHUB_BROKER_QUEUE_PREFIX": state.queue_prefix,
            "TASKHUB_TRUSTED_PROXIES": "127.0.0.1/32",  # nginx, the only client of the instances
            "TASKHUB_LOG_FORMAT": "json",
            "TASKHUB_RELAY_ENABLED": "false",  # the relay runs as its own process
            "TASKHUB_AUTO_MIGRATE": "false",  # `up` migrates once, before any instance starts
            # 3 instances (5 when split) + 2 workers + relay, 10 + 10 connections each at most:
            # 160 < the cluster's 200.
            "TASKHUB_DATABASE_POOL_SIZE": env.get("TASKHUB_DATABASE_POOL_SIZE", "10"),
            "TASKHUB_DATABASE_MAX_OVERFLOW": env.get("TASKHUB_DATABASE_MAX_OVERFLOW", "10"),
        }
    )
    return env


def keys_file(layout: Layout) -> Path:
    """The split fleet's EdDSA key set (``taskhub keys rotate`` makes it in ``prepare_release``)."""
    return layout.run_dir / "jwt_keys.json"


def split_envs(layout: Layout, state: State, env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The environments of split mode: (signers, verifiers). The auth service, the workers and the
    relay read the key-set file; the other services verify with the auth service's JWKS
    (docs/security.md, "Access-token keys")."""
    eddsa = {**env, "TASKHUB_JWT_ALGORITHM": "EdDSA"}
    jwks = f"http://127.0.0.1:{state.ports['auth-1']}/.well-known/jwks.json"
    return {**eddsa, "TASKHUB_JWT_KEYS_FILE": str(keys_file(layout))}, {**eddsa, "TASKHUB_JWT_JWKS_URL": jwks}


def components(layout: Layout, state: State) -> list[Component]:
    """Every process of the fleet, in start order (stopped in reverse)."""
    env = taskhub_env(layout, state)
    verifier_env = env
    if state.split:
        env, verifier_env = split_envs(layout, state, env)
    result = []
    for name in state.api_names():
        port = state.ports[name]
        argv = [layout.taskhub, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        service = name.rsplit("-", 1)[0]
        if state.split:
            argv += ["--service", service]
        own_env = env if service in ("api", "auth") else verifier_env
        # auth first and alone: the other services fetch its JWKS when they start.
        result.append(Component(name, argv, own_env, f"http://127.0.0.1:{port}/health", barrier=service == "auth"))
    result.append(
        Component("relay", [layout.taskhub, "relay"], {**env, "TASKHUB_METRICS_PORT": str(state.ports["relay"])}, None)
    )
    for i in range(1, layout.workers + 1):
        metrics_env = {**env, "TASKHUB_METRICS_PORT": str(state.ports[f"worker-{i}"])}
        result.append(Component(f"worker-{i}", [layout.taskhub, "worker"], metrics_env, None))
    nginx = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if nginx is None:
        raise SetupError("nginx is not installed (apt-get install nginx)")
    conf = layout.run_dir / "nginx.conf"
    argv = [nginx, "-e", str(layout.run_dir / "logs" / "nginx-error.log"), "-c", str(conf), "-g", "daemon off;"]
    result.append(Component("nginx", argv, {"PATH": "/usr/sbin:/usr/bin:/bin"}, None))
    if layout.prometheus:
        prometheus = shutil.which("prometheus")
        if prometheus is None:
            raise SetupError("prometheus is not installed (apt-get install prometheus)")
        port = state.ports["prometheus"]
        argv = [
            prometheus,
            f"--config.file={layout.run_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={layout.run_dir / 'prometheus-data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        result.append(Component("prometheus", argv, {"PATH": "/usr/bin:/bin"}, f"http://127.0.0.1:{port}/-/ready"))
    return result


def prometheus_config(layout: Layout, state: State) -> str:
    """Prometheus's configuration: every instance, worker and the relay, every 5 s. In split mode
    the instances stay one job, ``taskhub-api`` (what deploy/monitoring/alerts.yml watches), with a
    ``service`` label per target group (``auth``, ``users``, ``tasks``, ``notifications``)."""

    def job(name: str, groups: dict[str, list[str]], token: bool) -> str:
        lines = [f"  - job_name: {name}", "    static_configs:"]
        for service, targets in groups.items():
            lines.append(f"      - targets: {json.dumps(targets)}")
            if service:
                lines += ["        labels:", f"          service: {service}"]
        if token:
            lines += ["    authorization:", f"      credentials_file: {layout.run_dir / 'metrics_token'}"]
        return "\n".join(lines)

    api: dict[str, list[str]] = {}
    for name in state.api_names():
        service = name.rsplit("-", 1)[0] if state.split else ""
        api.setdefault(service, []).append(f"127.0.0.1:{state.ports[name]}")
    workers = {"": [f"127.0.0.1:{state.ports[f'worker-{i}']}" for i in range(1, layout.workers + 1)]}
    jobs = [
        job("taskhub-api", api, token=True),
        job("taskhub-worker", workers, token=False),
        job("taskhub-relay", {"": [f"127.0.0.1:{state.ports['relay']}"]}, token=False),
        job("prometheus", {"": [f"127.0.0.1:{state.ports['prometheus']}"]}, token=False),
    ]
    head = f"global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\nrule_files:\n  - {ALERTS}\nscrape_configs:\n"
    return head + "\n".join(jobs) + "\n"


def prepare_run_dir(layout: Layout) -> State:
    for sub in ("pids", "logs", "data", "tmp", "prometheus-data"):
        (layout.run_dir / sub).mkdir(parents=True, exist_ok=True)
    (layout.run_dir / MARKER).touch()
    # nginx's workers run unprivileged: they must reach the static files below (secrets stay 0600).
    layout.run_dir.chmod(0o755)
    for secret in ("jwt_secret", "metrics_token"):
        path = layout.run_dir / secret
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48) + "\n")
            path.chmod(0o600)
    state = load_state(layout)
    if state is None:
        state = new_state(layout)
        if not port_free(state.ports["gateway"]):
            raise SetupError(f"port {state.ports['gateway']} is taken: set TASKHUB_FLEET_PORT (0: any free port)")
    elif state.split != layout.split:
        # Half of one mode and half of the other would share a gateway port and a database.
        running, asked = ("split", "single") if state.split else ("single", "split")
        raise SetupError(f"the fleet in {layout.run_dir} runs in {running} mode, not {asked}: `down` it first")
    save_state(layout, state)
    return state


def write_configs(layout: Layout, state: State) -> None:
    if state.split:
        servers: dict[str, list[str]] = {}
        for name in state.api_names():
            servers.setdefault(name.rsplit("-", 1)[0], []).append(f"127.0.0.1:{state.ports[name]}")
        (layout.run_dir / "tmp").mkdir(exist_ok=True)
        conf = render_split_nginx(
            servers,
            listen=f"127.0.0.1:{state.ports['gateway']}",
            pid_file=str(layout.run_dir / "nginx.pid"),
            temp_dir=str(layout.run_dir / "tmp"),
        )
    else:
        conf = render_nginx(
            [f"127.0.0.1:{state.ports[name]}" for name in state.api_names()],
            listen=f"127.0.0.1:{state.ports['gateway']}",
            static_dir=str(layout.static_dir),
            temp_dir=str(layout.run_dir / "tmp"),
            access_log=str(layout.run_dir / "logs" / "nginx-access.log"),
            error_log=str(layout.run_dir / "logs" / "nginx-error.log"),
            pid_file=str(layout.run_dir / "nginx.pid"),
            worker_processes="1",  # a single worker: the instances, not nginx, need the cores here
            rate=layout.rate,
            burst=layout.burst,
        )
    (layout.run_dir / "nginx.conf").write_text(conf)
    (layout.run_dir / "prometheus.yml").write_text(prometheus_config(layout, state))


def prepare_release(layout: Layout, state: State) -> None:
    """What a deploy does before the instances start: migrate the database, and export the
    dashboard's hashed files for nginx (additive: the files of a running version stay). In split
    mode: migrate, and make the EdDSA key set once (the split gateway sends the dashboard's files
    to the services, so there is nothing to export)."""
    env = taskhub_env(layout, state)
    steps: list[tuple[list[str], dict[str, str]]] = [([layout.taskhub, "migrate"], env)]
    if not state.split:
        steps.append(([layout.taskhub, "export-static", str(layout.static_dir)], env))
    elif not keys_file(layout).exists():
        # Development mode: production refuses a key file that does not exist yet, and this is
        # the step that makes it (mode 0600, one signing key).
        keys_env = {**split_envs(layout, state, env)[0], "TASKHUB_ENV": "development"}
        steps.append(([layout.taskhub, "keys", "rotate"], keys_env))
    for argv, step_env in steps:
        done = subprocess.run(argv, env=step_env, cwd=layout.run_dir, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise SetupError(f"{' '.join(argv[1:])} failed:\n{done.stdout}{done.stderr}")


def gateway_url(state: State) -> str:
    return f"http://127.0.0.1:{state.ports['gateway']}"


def up(layout: Layout) -> str:
    """Start whatever is not running; return the gateway URL once ``/ready`` answers 200 through it."""
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    if any(layout.run_dir.iterdir()) and not (layout.run_dir / MARKER).exists():
        raise SetupError(f"{layout.run_dir} is not empty and not a fleet's run directory")
    with locked(layout.run_dir / ".lock"):
        state = prepare_run_dir(layout)
        ensure_database(layout, state)
        save_state(layout, state)
        write_configs(layout, state)
        prepare_release(layout, state)
        started: list[tuple[Component, int]] = []
        for component in components(layout, state):
            if recorded_pid(layout, component.name) is not None:
                continue
            if component.name == "nginx":
                check = subprocess.run([*component.argv[:-2], "-t"], capture_output=True, text=True, check=False)  # noqa: S603
                if check.returncode != 0:
                    raise SetupError(f"nginx -t failed:\n{check.stderr}")
            started.append((component, spawn(layout, component)))
            if component.barrier:
                wait_healthy(layout, component, started[-1][1])
        for component, pid in started:
            wait_healthy(layout, component, pid)
        url = gateway_url(state)
        deadline = time.monotonic() + START_TIMEOUT
        while http_status(f"{url}/ready") != 200:
            if time.monotonic() > deadline:
                raise NotHealthy(f"the gateway {url} did not answer /ready with 200 in {START_TIMEOUT:.0f} s")
            time.sleep(0.1)
        return url


def restart(layout: Layout, name: str) -> None:
    """Stop ``name`` gracefully (SIGTERM, its drain), start it again, wait until healthy."""
    with locked(layout.run_dir / ".lock"):
        state = load_state(layout)
        if state is None:
            raise SetupError(f"no fleet in {layout.run_dir}")
        by_name = {c.name: c for c in components(layout, state)}
        if name not in by_name:
            raise SetupError(f"no process {name!r} (known: {', '.join(by_name)})")
        stop(layout, [name])
        component = by_name[name]
        wait_healthy(layout, component, spawn(layout, component))


def down(layout: Layout) -> None:
    """Stop every recorded process (reverse start order), drop what ``up`` created, delete the run
    directory. Does nothing to a directory without the fleet's marker."""
    if not (layout.run_dir / MARKER).exists():
        log(f"no fleet in {layout.run_dir}")
        return
    with locked(layout.run_dir / ".lock"):
        names = sorted(p.stem for p in (layout.run_dir / "pids").glob("*.pid"))
        order = ["prometheus", "nginx"] + [n for n in names if n.startswith("worker-")] + ["relay"]
        order += [n for n in names if n.startswith(("api-", *(f"{s}-" for s in SPLIT_SHAPE)))]
        # The gateway first (no new requests reach the instances), then everything else at once.
        stop(layout, [n for n in ("prometheus", "nginx") if n in names])
        stop(layout, [n for n in order if n in names] + [n for n in names if n not in order])
        state = load_state(layout)
        if state is not None:
            delete_broker_names(layout, state)
            drop_database(layout, state)
    shutil.rmtree(layout.run_dir)
    log(f"removed {layout.run_dir}")


def status(layout: Layout) -> dict[str, Any]:
    state = load_state(layout)
    if state is None:
        return {"running": False, "run_dir": str(layout.run_dir)}
    pids = {p.stem: recorded_pid(layout, p.stem) for p in sorted((layout.run_dir / "pids").glob("*.pid"))}
    return {
        "running": True,
        "split": state.split,
        "run_dir": str(layout.run_dir),
        "url": gateway_url(state),
        "ports": state.ports,
        "pids": pids,
        "database_url": state.database_url,
        "replica_urls": state.replica_urls,
        "broker": {"exchange": state.exchange, "queue_prefix": state.queue_prefix},
        "redis_url": layout.redis_url,
        "prometheus": f"http://127.0.0.1:{state.ports['prometheus']}" if layout.prometheus else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    sub.add_parser("status")
    restart_cmd = sub.add_parser("restart")
    restart_cmd.add_argument("name")
    render = sub.add_parser("render-nginx")
    render.add_argument("--upstream", action="append", required=True)
    render.add_argument("--listen", default="80")
    render.add_argument("--static-dir", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "render-nginx":
            print(render_nginx(args.upstream, listen=args.listen, static_dir=args.static_dir), end="")
            return 0
        layout = Layout.from_env()
        if args.command == "up":
            print(up(layout), flush=True)
        elif args.command == "down":
            down(layout)
        elif args.command == "restart":
            restart(layout, args.name)
        else:
            print(json.dumps(status(layout), indent=2))
    except SetupError as exc:
        log(f"error: {exc}")
        return 2
    except NotHealthy as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

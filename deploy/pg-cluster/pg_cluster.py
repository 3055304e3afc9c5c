#!/usr/bin/env python3
"""A real PostgreSQL HA cluster on this machine: etcd + Patroni (one primary, two streaming
replicas, synchronous mode) + HAProxy, for Taskhub's tests and ``make fleet``.

    pg_cluster.py up       start what is not running (idempotent), wait until the primary and both
                           replicas stream, print ``writer: <url>`` and one ``replica: <url>`` per replica
    pg_cluster.py status   JSON: ports, recorded PIDs, Patroni's view of the members, URLs
    pg_cluster.py down     stop every process by its recorded PID, then delete the run directory

Standard library only, so any ``python3`` runs it (the Makefile uses ``python3``). Settings, all
optional, from the environment:

    TASKHUB_PG_CLUSTER_DIR        run directory (configs, data, logs, PIDs); /tmp/taskhub-pg-cluster
    TASKHUB_PG_CLUSTER_PORT_BASE  first of the ten loopback ports it uses (see ``Layout``); 15430
    TASKHUB_PG_CLUSTER_DATABASE   database created for the application; taskhub
    TASKHUB_PG_CLUSTER_VENV       Patroni's virtualenv, kept across ``down``; /var/tmp/taskhub-patroni-venv
    TASKHUB_PG_CLUSTER_PYTHON     interpreter the virtualenv is made from; /usr/bin/python3
    TASKHUB_PG_CLUSTER_PG_BIN     PostgreSQL binaries; the newest /usr/lib/postgresql/*/bin
    TASKHUB_PG_CLUSTER_USER       user the processes run as when started by root; postgres
    TASKHUB_PG_CLUSTER_TIMEOUT    seconds ``up`` waits for a healthy cluster; 180

PostgreSQL refuses to run as root, so as root every process runs as ``postgres`` (which cannot read
root's home: hence a virtualenv made from Debian's interpreter outside it). Nothing touches the
machine's own PostgreSQL: every node has its own data directory, port and socket directory. A
process is only ever signalled after its ``/proc/<pid>/cmdline`` shows this run directory, so a
recycled PID is never hit. Exit codes: 0 ok, 1 cluster not healthy in time, 2 bad setup.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NODES = ("node1", "node2", "node3")
MARKER = ".taskhub-pg-cluster"  # `down` deletes only a directory carrying this file


class SetupError(Exception):
    """A prerequisite is missing or a port is taken: nothing to wait for (exit code 2)."""


class NotHealthy(Exception):
    """The cluster did not reach primary + two streaming replicas in time (exit code 1)."""


STARTED = time.monotonic()


def log(message: str) -> None:
    # Progress goes to stderr: stdout carries only the URL lines that callers parse.
    print(f"pg-cluster [{time.monotonic() - STARTED:5.1f}s]: {message}", file=sys.stderr, flush=True)


def default_pg_bin() -> Path:
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    return versions[-1] if versions else Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class Layout:
    """Where everything lives. Ports are ``base`` + offset, all on 127.0.0.1:

    +0 writer (HAProxy -> current primary)   +1 reader (HAProxy -> replicas, round-robin)
    +2 etcd client   +3 etcd peer   +4..+6 PostgreSQL node1..3   +7..+9 Patroni REST node1..3
    """

    run_dir: Path
    base: int
    database: str
    venv: Path
    python: Path
    pg_bin: Path
    user: str | None  # None: run as the invoking (non-root) user

    @classmethod
    def from_env(cls) -> Layout:
        env = os.environ
        base = int(env.get("TASKHUB_PG_CLUSTER_PORT_BASE", "15430"))
        if not 1024 <= base <= 65525:
            raise SetupError(f"TASKHUB_PG_CLUSTER_PORT_BASE={base} must leave ten ports in 1024..65535")
        database = env.get("TASKHUB_PG_CLUSTER_DATABASE", "taskhub")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", database):
            raise SetupError(f"TASKHUB_PG_CLUSTER_DATABASE={database!r} must be a lower-case SQL identifier")
        return cls(
            run_dir=Path(env.get("TASKHUB_PG_CLUSTER_DIR", "/tmp/taskhub-pg-cluster")).resolve(),  # noqa: S108
            base=base,
            database=database,
            venv=Path(env.get("TASKHUB_PG_CLUSTER_VENV", "/var/tmp/taskhub-patroni-venv")),  # noqa: S108
            python=Path(env.get("TASKHUB_PG_CLUSTER_PYTHON", "/usr/bin/python3")),
            pg_bin=Path(env.get("TASKHUB_PG_CLUSTER_PG_BIN", str(default_pg_bin()))),
            user=env.get("TASKHUB_PG_CLUSTER_USER", "postgres") if os.geteuid() == 0 else None,
        )

    @property
    def writer_port(self) -> int:
        return self.base

    @property
    def reader_port(self) -> int:
        return self.base + 1

    @property
    def etcd_port(self) -> int:
        return self.base + 2

    @property
    def etcd_peer_port(self) -> int:
        return self.base + 3

    def pg_port(self, node: str) -> int:
        return self.base + 4 + NODES.index(node)

    def rest_port(self, node: str) -> int:
        return self.base + 7 + NODES.index(node)

    def node_dir(self, node: str) -> Path:
        return self.run_dir / node

    def data_dir(self, node: str) -> Path:
        return self.run_dir / node / "data"

    @property
    def socket_dir(self) -> Path:
        return self.run_dir / "sockets"

    def url(self, port: int) -> str:
        """SQLAlchemy URL (asyncpg driver) for the application database behind ``port``."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/{self.database}"

    def fingerprint(self) -> dict[str, Any]:
        return {"base": self.base, "database": self.database, "pg_bin": str(self.pg_bin)}


@dataclass(frozen=True)
class Component:
    """A long-running process of the cluster, its PID file and how to recognise it in /proc."""

    name: str
    argv: list[str]
    ports: tuple[int, ...]
    signature: str  # a path in the run directory that its command line must contain

    def pidfile(self, layout: Layout) -> Path:
        return layout.run_dir / "pids" / f"{self.name}.pid"

    def logfile(self, layout: Layout) -> Path:
        return layout.run_dir / "logs" / f"{self.name}.log"


def components(layout: Layout) -> list[Component]:
    etcd_conf = layout.run_dir / "etcd.yml"
    haproxy_conf = layout.run_dir / "haproxy.cfg"
    patroni = str(layout.venv / "bin" / "patroni")
    result = [
        Component(
            "etcd",
            [_require("etcd"), "--config-file", str(etcd_conf)],
            (layout.etcd_port, layout.etcd_peer_port),
            str(etcd_conf),
        )
    ]
    for node in NODES:
        conf = layout.node_dir(node) / "patroni.yml"
        # The PostgreSQL port is not checked here: Patroni adopts a postmaster still running in its
        # data directory (checked separately in `check_ports`).
        result.append(Component(f"patroni-{node}", [patroni, str(conf)], (layout.rest_port(node),), str(conf)))
    result.append(
        Component(
            "haproxy",
            [_require("haproxy"), "-f", str(haproxy_conf)],
            (layout.writer_port, layout.reader_port),
            str(haproxy_conf),
        )
    )
    return result


def _require(binary: str) -> str:
    found = shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        package = {"etcd": "etcd-server"}.get(binary, binary)
        raise SetupError(f"{binary} is not installed (apt-get install {package})")
    return found


# ---------------------------------------------------------------- processes and PIDs


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""
    return "" if state == "Z" else raw.replace(b"\0", b" ").decode(errors="replace")


def ours(pid: int | None, signature: str) -> bool:
    """True when ``pid`` is alive and its command line names ``signature`` (guards PID reuse)."""
    return pid is not None and pid > 0 and signature in _cmdline(pid)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def running(layout: Layout, component: Component) -> int | None:
    pid = read_pid(component.pidfile(layout))
    return pid if ours(pid, component.signature) else None


def postmaster(layout: Layout, node: str) -> int | None:
    """PID of the postmaster in ``node``'s data directory (first line of postmaster.pid), if alive."""
    data_dir = layout.data_dir(node)
    pid = read_pid(data_dir / "postmaster.pid")
    return pid if ours(pid, str(data_dir)) else None


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_ports(layout: Layout, pending: list[Component]) -> None:
    taken = [f"{port} ({c.name})" for c in pending for port in c.ports if not port_free(port)]
    for node in NODES:
        if postmaster(layout, node) is None and not port_free(layout.pg_port(node)):
            taken.append(f"{layout.pg_port(node)} (postgresql {node})")
    if taken:
        raise SetupError(
            "ports in use by another program: "
            + ", ".join(taken)
            + f"; choose another TASKHUB_PG_CLUSTER_PORT_BASE (ten ports from {layout.base} are used)"
        )


def spawn(layout: Layout, component: Component) -> int:
    """Start ``component`` in its own session as the cluster user; record and return its PID."""
    env = {
        "PATH": f"{layout.venv / 'bin'}:{layout.pg_bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(layout.run_dir),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
    }
    logfile = component.logfile(layout)
    with logfile.open("ab") as out:
        # Popen(user=...) instead of runuser: the recorded PID is then the daemon itself, not a
        # runuser parent that would have to pass signals on.
        proc = subprocess.Popen(  # noqa: S603 - argv built from fixed binaries and run-dir paths
            component.argv,
            cwd=layout.run_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this script; not hit by the caller's Ctrl-C
            user=layout.user,
            group=_group(layout.user),
            extra_groups=[] if layout.user else None,
        )
    component.pidfile(layout).write_text(f"{proc.pid}\n")
    log(f"started {component.name} (pid {proc.pid}, log {logfile})")
    return proc.pid


def _group(user: str | None) -> int | None:
    return pwd.getpwnam(user).pw_gid if user else None


def stop(targets: list[tuple[int | None, str, str]], sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Send ``sig`` to every ``(pid, signature, name)`` that is still ours, then wait for all of
    them; SIGKILL whatever is left after ``timeout`` seconds."""
    alive = [(pid, signature, name) for pid, signature, name in targets if pid is not None and ours(pid, signature)]
    for pid, _, name in alive:
        log(f"stopping {name} (pid {pid}, {signal.Signals(sig).name})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive := [target for target in alive if ours(target[0], target[1])]:
        if time.monotonic() > deadline:
            for pid, _, name in alive:
                log(f"{name} (pid {pid}) still running {timeout:.0f} s after {signal.Signals(sig).name}: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.1)


# ---------------------------------------------------------------- files


def _chown(path: Path, layout: Layout) -> None:
    if layout.user:
        entry = pwd.getpwnam(layout.user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def render(template: str, target: Path, layout: Layout, **values: object) -> None:
    text = string.Template((HERE / template).read_text()).substitute(values)
    target.write_text(text)
    _chown(target, layout)


def prepare_run_dir(layout: Layout) -> None:
    """Create the run directory tree (owned by the cluster user) and render every config file."""
    run = layout.run_dir
    if run.exists() and any(run.iterdir()) and not (run / MARKER).exists():
        raise SetupError(f"{run} exists and was not made by pg_cluster.py; choose another TASKHUB_PG_CLUSTER_DIR")
    fingerprint_file = run / "layout.json"
    if fingerprint_file.exists():
        before = json.loads(fingerprint_file.read_text())
        if before != layout.fingerprint():
            raise SetupError(f"{run} holds a cluster made with {before}, not {layout.fingerprint()}: run `down` first")
    run.parent.mkdir(parents=True, exist_ok=True)
    dirs = [run, run / "pids", run / "logs", run / "etcd", layout.socket_dir]
    dirs += [layout.node_dir(node) for node in NODES]
    for path in dirs:
        path.mkdir(mode=0o700, exist_ok=True)
        _chown(path, layout)
    (run / MARKER).touch()
    fingerprint_file.write_text(json.dumps(layout.fingerprint()) + "\n")

    common = {"run_dir": run, "etcd_port": layout.etcd_port, "etcd_peer_port": layout.etcd_peer_port}
    render("etcd.yml.tmpl", run / "etcd.yml", layout, **common)
    for node in NODES:
        render(
            "patroni.yml.tmpl",
            layout.node_dir(node) / "patroni.yml",
            layout,
            **common,
            name=node,
            rest_port=layout.rest_port(node),
            pg_port=layout.pg_port(node),
            node_dir=layout.node_dir(node),
            data_dir=layout.data_dir(node),
            pg_bin=layout.pg_bin,
            socket_dir=layout.socket_dir,
        )

    # The same three servers in both blocks; each block's check URI decides which of them take traffic.
    servers = "\n".join(
        f"    server {node} 127.0.0.1:{layout.pg_port(node)} check port {layout.rest_port(node)}" for node in NODES
    )

    render(
        "haproxy.cfg.tmpl",
        run / "haproxy.cfg",
        layout,
        **common,
        writer_port=layout.writer_port,
        reader_port=layout.reader_port,
        writer_servers=servers,
        reader_servers=servers,
    )


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive flock on ``path``: two `up`/`down` runs on one directory take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_venv(layout: Layout) -> None:
    """Patroni's virtualenv, (re)built when requirements.txt changed. Made from Debian's interpreter
    so the cluster user can execute it; kept across `down` (it is a cache, not cluster data)."""
    requirements = (HERE / "requirements.txt").read_text()
    wanted = hashlib.sha256(requirements.encode()).hexdigest()
    stamp = layout.venv / ".requirements.sha256"
    with locked(layout.venv.with_name(layout.venv.name + ".lock")):
        if (layout.venv / "bin" / "patroni").exists() and stamp.exists() and stamp.read_text().strip() == wanted:
            return
        if not layout.python.exists():
            raise SetupError(f"{layout.python} not found (set TASKHUB_PG_CLUSTER_PYTHON)")
        log(f"making Patroni's virtualenv in {layout.venv}")
        shutil.rmtree(layout.venv, ignore_errors=True)
        # World-readable whatever the caller's umask: the cluster user runs Patroni from it.
        os.umask(0o022)
        pip = [str(layout.venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        for argv in (
            [str(layout.python), "-m", "venv", str(layout.venv)],
            [*pip, "-r", str(HERE / "requirements.txt")],
        ):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
            if done.returncode != 0:
                raise SetupError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
        stamp.write_text(wanted + "\n")


# ---------------------------------------------------------------- health


def http_json(url: str, timeout: float = 2.0) -> Any:
    """GET ``url`` and decode its JSON body (also for error statuses, which Patroni fills too)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback http only
            return json.load(response)
    except urllib.error.HTTPError as exc:
        return json.load(exc)


def etcd_healthy(layout: Layout) -> bool:
    try:
        return bool(http_json(f"http://127.0.0.1:{layout.etcd_port}/health").get("health") == "true")
    except (OSError, ValueError):
        return False


def members(layout: Layout) -> list[dict[str, Any]]:
    """Patroni's ``/cluster`` view, asked of the first node that answers; [] when none does."""
    for node in NODES:
        try:
            found = http_json(f"http://127.0.0.1:{layout.rest_port(node)}/cluster").get("members", [])
        except (OSError, ValueError):
            continue
        return list(found)
    return []


def psql(layout: Layout, port: int, sql: str, database: str = "postgres") -> str | None:
    """One statement through ``psql`` (trust auth on loopback); its unaligned output, or None on error."""
    argv = [str(layout.pg_bin / "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]
    argv += ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database, "-c", sql]
    env = {**os.environ, "PGCONNECT_TIMEOUT": "3"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=15, check=False)  # noqa: S603
    return done.stdout.strip() if done.returncode == 0 else None


def healthy(layout: Layout) -> tuple[str, list[str]] | str:
    """The writer URL and replica URLs once the cluster is fit for use, else what is still missing.

    Fit: three members; one leader `running`; two replicas `streaming`, one of them the
    `sync_standby`; the writer port reaches the leader out of recovery; every node serves the
    application database (replicas have replayed its creation). Creates that database through the
    writer port the first time it finds it missing.
    """
    found = members(layout)
    if len(found) != len(NODES):
        return f"{len(found)} of {len(NODES)} Patroni members registered"
    leaders = [m for m in found if m.get("role") == "leader" and m.get("state") == "running"]
    replicas = sorted((m for m in found if m.get("role") != "leader"), key=lambda m: str(m["name"]))
    if len(leaders) != 1:
        return "no running leader yet"
    if any(m.get("state") != "streaming" for m in replicas):
        return "replicas not streaming yet: " + ", ".join(f"{m['name']}={m.get('state')}" for m in replicas)
    if not any(m.get("role") == "sync_standby" for m in replicas):
        return "no synchronous standby yet"
    leader = leaders[0]
    if psql(layout, layout.writer_port, "select pg_is_in_recovery(), inet_server_port()") != f"f|{leader['port']}":
        return "writer port does not reach the leader yet"
    # `database` is a checked identifier (Layout.from_env), so quoting it into SQL is safe.
    exists = psql(layout, layout.writer_port, f"select 1 from pg_database where datname = '{layout.database}'")  # noqa: S608
    if exists is None:
        return "writer port does not answer"
    if exists != "1":
        log(f"creating database {layout.database}")
        psql(layout, layout.writer_port, f'create database "{layout.database}"')
        return f"database {layout.database} created"
    for member in replicas:
        if psql(layout, int(member["port"]), "select pg_is_in_recovery()", layout.database) != "t":
            return f"{member['name']} does not serve {layout.database} yet"
    return layout.url(layout.writer_port), [layout.url(int(m["port"])) for m in replicas]


# ---------------------------------------------------------------- commands


def up(layout: Layout, timeout: float) -> tuple[str, list[str]]:
    """Start whatever is not running, wait (``timeout`` seconds) for health, return the URLs."""
    for binary in ("postgres", "initdb", "pg_basebackup", "pg_rewind", "psql"):
        if not (layout.pg_bin / binary).exists():
            raise SetupError(f"{layout.pg_bin / binary} not found (set TASKHUB_PG_CLUSTER_PG_BIN)")
    ensure_venv(layout)
    with locked(layout.run_dir.with_name(layout.run_dir.name + ".lock")):
        prepare_run_dir(layout)
        every = components(layout)
        pending = [c for c in every if running(layout, c) is None]
        check_ports(layout, pending)
        deadline = time.monotonic() + timeout
        for component in pending:
            spawn(layout, component)
            if component.name == "etcd":
                # Patroni retries an unreachable etcd only every 5 s: start it once etcd answers.
                while not etcd_healthy(layout):
                    if running(layout, component) is None:
                        raise NotHealthy(f"etcd exited; see {component.logfile(layout)}")
                    if time.monotonic() > deadline:
                        raise NotHealthy("etcd did not become healthy")
                    time.sleep(0.2)
        if not pending:
            log("every process already running")
        last = ""
        while True:
            state = healthy(layout)
            if not isinstance(state, str):
                return state
            if state != last:
                log(f"waiting: {state}")
                last = state
            dead = [c.name for c in every if running(layout, c) is None]
            if dead:
                raise NotHealthy(f"exited: {', '.join(dead)}; see {layout.run_dir / 'logs'}")
            if time.monotonic() > deadline:
                raise NotHealthy(f"not healthy after {timeout:.0f} s: {state}; see {layout.run_dir / 'logs'}")
            time.sleep(0.5)


def down(layout: Layout) -> None:
    """Stop every recorded process (HAProxy, Patroni and their postmasters, etcd) and delete the run directory."""
    run = layout.run_dir
    if not run.exists():
        log(f"{run} does not exist: nothing to stop")
        return
    if not any(run.iterdir()):  # e.g. made by a caller for an `up` that failed before using it
        run.rmdir()
        log(f"removed empty {run}")
        return
    if not (run / MARKER).exists():
        raise SetupError(f"{run} was not made by pg_cluster.py; not touching it")
    with locked(run.with_name(run.name + ".lock")):

        def target(name: str) -> tuple[int | None, str, str]:
            signature = _signatures(layout)[name]
            return read_pid(run / "pids" / f"{name}.pid"), signature, name

        stop([target("haproxy")])
        # Patroni stops its postmaster on SIGTERM. All three at once: one at a time, each
        # remaining replica would first try to take over from the stopped leader.
        stop([target(f"patroni-{node}") for node in NODES], timeout=60)
        # A postmaster whose Patroni died first: SIGQUIT is PostgreSQL's immediate shutdown.
        stop([(postmaster(layout, n), str(layout.data_dir(n)), f"postgres-{n}") for n in NODES], signal.SIGQUIT)
        stop([target("etcd")])
        log(f"removing {run}")
        # One thread per data directory: deleting thousands of just-written files is latency-bound
        # here (about 2 s per node one after another, 1 s for all three at once).
        with ThreadPoolExecutor() as pool:
            list(pool.map(shutil.rmtree, [layout.node_dir(n) for n in NODES if layout.node_dir(n).exists()]))
        shutil.rmtree(run)
        # Unlinked while still held, once the data is gone: leaves nothing behind in the temp dir.
        run.with_name(run.name + ".lock").unlink(missing_ok=True)
    log(f"stopped; removed {run}")


def _signatures(layout: Layout) -> dict[str, str]:
    names = {"etcd": str(layout.run_dir / "etcd.yml"), "haproxy": str(layout.run_dir / "haproxy.cfg")}
    names.update({f"patroni-{n}": str(layout.node_dir(n) / "patroni.yml") for n in NODES})
    return names


def status(layout: Layout) -> dict[str, Any]:
    """Everything a caller (or a test) needs to find and kill a process: ports, PIDs, members, URLs."""
    processes: dict[str, dict[str, Any]] = {}
    for name, signature in _signatures(layout).items():
        pid = read_pid(layout.run_dir / "pids" / f"{name}.pid")
        processes[name] = {"pid": pid, "running": ours(pid, signature)}
    for node in NODES:
        processes[f"postgres-{node}"] = {
            "pid": postmaster(layout, node),
            "running": postmaster(layout, node) is not None,
        }
    found = members(layout)
    return {
        "run_dir": str(layout.run_dir),
        "ports": {
            "writer": layout.writer_port,
            "reader": layout.reader_port,
            "etcd": layout.etcd_port,
            "etcd_peer": layout.etcd_peer_port,
            **{f"postgres-{n}": layout.pg_port(n) for n in NODES},
            **{f"patroni-{n}": layout.rest_port(n) for n in NODES},
        },
        "data_dirs": {n: str(layout.data_dir(n)) for n in NODES},
        "processes": processes,
        "members": found,
        "writer": layout.url(layout.writer_port),
        "reader": layout.url(layout.reader_port),
        "replicas": [
            layout.url(int(m["port"])) for m in sorted(found, key=lambda m: str(m["name"])) if m.get("role") != "leader"
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("command", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    try:
        layout = Layout.from_env()
        if args.command == "up":
            writer, replicas = up(layout, float(os.environ.get("TASKHUB_PG_CLUSTER_TIMEOUT", "180")))
            print(f"writer: {writer}")
            for url in replicas:
                print(f"replica: {url}")
        elif args.command == "down":
            down(layout)
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

"""Throw-away PostgreSQL servers for tests (the shards of ``tests/conftest.py``'s ``sharded``
backend): ``initdb`` and ``pg_ctl`` in a temporary directory, on a free loopback port, with their
own socket directory and trust authentication on loopback only — never the machine's own server.
PostgreSQL refuses to run as root, so as root they run as ``postgres`` (like ``deploy/pg-cluster``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def pg_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<major>/bin`` (``TASKHUB_TEST_PG_BIN`` overrides)."""
    if os.environ.get("TASKHUB_TEST_PG_BIN"):
        return Path(os.environ["TASKHUB_TEST_PG_BIN"])
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    if not versions:
        raise FileNotFoundError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
    return versions[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgInstance:
    """A running throw-away server: ``port`` on 127.0.0.1, user ``postgres``, trust auth."""

    port: int
    root: Path
    user: str | None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy (asyncpg) URL of ``database`` on this server."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """``pg_ctl stop -m immediate`` (nothing here needs a clean shutdown), then delete everything."""
        if (self.data_dir / "postmaster.pid").exists():
            _run([str(pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"], self.user)
        shutil.rmtree(self.root, ignore_errors=True)


def _run(argv: list[str], user: str | None) -> subprocess.CompletedProcess[str]:
    entry = pwd.getpwnam(user) if user else None
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        user=user,
        group=entry.pw_gid if entry else None,
        extra_groups=[] if user else None,
        env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"},
    )


def start_instance(prefix: str = "taskhub-pg-") -> PgInstance:
    """``initdb`` and start a server; returns once it accepts connections.

    Raises:
        FileNotFoundError: no PostgreSQL binaries. RuntimeError: initdb or start failed (output).
    """
    binaries = pg_bin()
    user = "postgres" if os.geteuid() == 0 else None
    # Not pytest's tmp_path: it lives in root's 0700 directory, which the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    instance = PgInstance(_free_port(), root, user)
    init = _run(
        # --no-sync: a throw-away server need not wait for its files to reach the disk.
        [
            str(binaries / "initdb"),
            "--no-sync",
            "-D",
            str(instance.data_dir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
        ],
        user,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{init.stdout}{init.stderr}")
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={instance.port} -c unix_socket_directories={root} "
        "-c shared_buffers=16MB -c max_connections=100 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off"
    )
    started = _run(
        [str(binaries / "pg_ctl"), "-D", str(instance.data_dir), "-o", options, "-l", str(root / "log"), "-w", "start"],
        user,
    )
    if started.returncode != 0:
        log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
        instance.stop()
        raise RuntimeError(f"pg_ctl start failed:\n{started.stdout}{started.stderr}{log}")
    return instance

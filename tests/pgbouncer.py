"""A PgBouncer process of the test session's own, in transaction mode, in front of a PostgreSQL
server: the shipped ``deploy/pgbouncer/pgbouncer.ini.tmpl`` rendered into a temporary directory,
on a free port. PgBouncer refuses to run as root, so as root it runs as ``postgres``."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "pgbouncer" / "pgbouncer.ini.tmpl"


def pgbouncer_binary() -> str | None:
    """Debian's ``pgbouncer`` (in /usr/sbin, often not on a user's PATH), or None."""
    return shutil.which("pgbouncer", path=os.environ.get("PATH", "") + ":/usr/sbin")


@dataclass
class PgBouncer:
    """A running PgBouncer: ``port`` on 127.0.0.1, its directory (config, log) and process."""

    port: int
    run_dir: Path
    proc: subprocess.Popen[bytes]

    def url(self, database: str, user: str = "postgres") -> str:
        """The SQLAlchemy (asyncpg) URL of ``database`` through this PgBouncer."""
        return f"postgresql+asyncpg://{user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """SIGTERM (PgBouncer's immediate shutdown; SIGINT would wait for clients), then remove its files."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def log(self) -> str:
        path = self.run_dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_pgbouncer(server_host: str, server_port: int, *, default_pool_size: int = 20) -> PgBouncer:
    """Start PgBouncer (transaction mode, trust auth for ``postgres``) in front of
    ``server_host:server_port``; returns once it accepts connections.

    Raises:
        FileNotFoundError: pgbouncer is not installed. RuntimeError: it did not start (its log).
    """
    binary = pgbouncer_binary()
    if binary is None:
        raise FileNotFoundError("pgbouncer is not installed (apt-get install pgbouncer)")
    # Not pytest's tmp_path: it lives in root's 0700 directory, which the postgres user cannot enter.
    run_dir = Path(tempfile.mkdtemp(prefix="taskhub-pgbouncer-"))
    port = _free_port()
    values = {
        "server_host": server_host,
        "server_port": server_port,
        "listen_addr": "127.0.0.1",
        "listen_port": port,
        "default_pool_size": default_pool_size,
        "max_client_conn": 500,
        "auth_type": "trust",
        "auth_file": run_dir / "userlist.txt",
        "logfile": run_dir / "pgbouncer.log",
        "pidfile": run_dir / "pgbouncer.pid",
    }
    (run_dir / "pgbouncer.ini").write_text(string.Template(TEMPLATE.read_text()).substitute(values))
    (run_dir / "userlist.txt").write_text('"postgres" ""\n')  # trust still needs the user listed
    user = "postgres" if os.geteuid() == 0 else None
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (run_dir, *run_dir.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    proc = subprocess.Popen(
        [binary, str(run_dir / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        user=user,
        group=pwd.getpwnam(user).pw_gid if user else None,
        extra_groups=[] if user else None,
    )
    bouncer = PgBouncer(port, run_dir, proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return bouncer
        time.sleep(0.05)
    log = bouncer.log()
    bouncer.stop()
    raise RuntimeError(f"pgbouncer did not start:\n{log}")

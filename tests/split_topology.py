"""The split deployment as real processes, for the ``split`` backend (``tests/conftest.py``) and
``tests/split/``: ``taskhub serve --service`` with one auth, one users, two tasks and one
notifications instance, and nginx from ``deploy/nginx/split.conf.tmpl`` (rendered by ``deploy/fleet/fleet.py``) in front, on one PostgreSQL database and one
Redis database. Tokens are EdDSA: the auth service signs with the key-set file, the others verify
with its JWKS (``TASKHUB_JWT_JWKS_URL``).

Every process has its data and logs under the topology's temporary directory and is stopped by its
own handle (SIGTERM, then SIGKILL); nothing here touches a process it did not start.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from taskhub.core.keys import ensure_key_set
from tests.fleet import fleet
from tests.servers import ServerProcess, free_port, serve

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

#: Instances per service (the issue's topology): the same shape as ``make fleet SPLIT=1``.
SHAPE = fleet.SPLIT_SHAPE

#: Seconds the verifiers use a fetched JWKS, and the least seconds between unknown-kid refetches:
#: long enough that a test's burst of unknown kids is answered by exactly one fetch per instance.
JWKS_CACHE_TTL = 3600
JWKS_REFETCH_INTERVAL = 30

#: Seconds one service may take to answer /health (the machine's other work slows imports down).
START_TIMEOUT = 60.0


@dataclass
class Gateway:
    """A running nginx of this topology: its URL, process and directory."""

    url: str
    proc: subprocess.Popen[bytes]
    run_dir: Path

    def stop(self) -> None:
        """SIGTERM (nginx's fast shutdown), SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_gateway(servers: dict[str, list[str]], run_dir: Path) -> Gateway:
    """Render the template and run nginx in the foreground until :meth:`Gateway.stop`.

    Raises:
        RuntimeError: nginx exited or did not answer within 10 s (its error log in the message).
        FileNotFoundError: no nginx binary.
    """
    (run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = run_dir / "nginx.conf"
    conf.write_text(
        fleet.render_split_nginx(
            servers,
            listen=f"127.0.0.1:{port}",
            pid_file=str(run_dir / "nginx.pid"),
            temp_dir=str(run_dir / "tmp"),
            server_options="max_fails=0",  # a test stops services on purpose: never mark one down
        )
    )
    error_log = run_dir / "error.log"
    proc = subprocess.Popen(
        [NGINX, "-p", str(run_dir), "-c", str(conf), "-e", str(error_log), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    gateway = Gateway(f"http://127.0.0.1:{port}", proc, run_dir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(gateway.url + "/health", timeout=1).status_code == 200:
                return gateway
        time.sleep(0.05)
    gateway.stop()
    log = error_log.read_text() if error_log.exists() else ""
    raise RuntimeError(f"nginx did not start on port {port}:\n{log}")


@dataclass
class SplitTopology:
    """The running split deployment: the gateway's URL, each service's instances, the key file."""

    gateway: Gateway
    services: dict[str, list[ServerProcess]]
    keys_file: Path
    env: dict[str, str]
    _stack: contextlib.ExitStack = field(repr=False)

    @property
    def url(self) -> str:
        """The public address (nginx)."""
        return self.gateway.url

    def stop(self) -> None:
        """Stop nginx, then every service (in reverse start order)."""
        self.gateway.stop()
        self._stack.close()


def start_split(tmp: Path, *, database_url: str, redis_url: str) -> SplitTopology:
    """Start the topology on a migrated database; fails the test (with the log) if a service
    does not become healthy. Raises what :func:`start_gateway` raises."""
    keys_file = tmp / "jwt_keys.json"
    ensure_key_set(keys_file)
    env = {
        "TASKHUB_DATABASE_URL": database_url,
        "TASKHUB_REDIS_URL": redis_url,
        "TASKHUB_JWT_ALGORITHM": "EdDSA",
        "TASKHUB_JWT_KEYS_FILE": str(keys_file),
        "TASKHUB_JWKS_CACHE_TTL": str(JWKS_CACHE_TTL),
        "TASKHUB_JWKS_REFETCH_INTERVAL": str(JWKS_REFETCH_INTERVAL),
        "TASKHUB_RATE_LIMIT_ENABLED": "false",
        "TASKHUB_AUTO_MIGRATE": "false",
        "TASKHUB_TRUSTED_PROXIES": "127.0.0.1/32",
        "TASKHUB_ACCESS_LOG": "false",
        "TASKHUB_PURGE_INTERVAL": "0",
    }
    stack = contextlib.ExitStack()
    services: dict[str, list[ServerProcess]] = {}
    try:
        for service, count in SHAPE.items():  # auth first: the others fetch its JWKS when they start
            own = dict(env)
            if service != "auth":
                own["TASKHUB_JWT_JWKS_URL"] = services["auth"][0].url + "/.well-known/jwks.json"
            for index in range(count):
                # One after the other: started side by side on a busy 2-core machine, each took longer.
                data_dir = tmp / f"{service}-{index + 1}"
                data_dir.mkdir()
                server = stack.enter_context(serve(data_dir, own, args=["--service", service], timeout=START_TIMEOUT))
                services.setdefault(service, []).append(server)
        addresses = {name: [s.url.removeprefix("http://") for s in servers] for name, servers in services.items()}
        gateway = start_gateway(addresses, tmp / "gateway")
    except BaseException:
        stack.close()
        raise
    return SplitTopology(gateway, services, keys_file, env, stack)

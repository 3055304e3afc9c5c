"""Settings, read from ``TASKHUB_*`` environment variables and an optional ``.env`` file.

The names are part of the contract (see ``ARCHITECTURE.md``, "Configuration").
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ConfigurationError(RuntimeError):
    """Raised when the settings cannot run the service (e.g. production without a JWT secret)."""


# Characters an asset base URL's path may hold: RFC 3986 unreserved, "%", "/" and the sub-delims
# that are inert both in an HTML attribute and in a CSP source expression (no ; , ' quotes or space).
_ASSET_PATH = re.compile(r"[A-Za-z0-9._~%/!$&()*+=:@-]*")


def check_asset_base_url(value: str) -> str:
    """``TASKHUB_ASSET_BASE_URL`` validated and without a trailing ``/``.

    An ``http`` or ``https`` URL with a host, optionally a port and a path; no user info, query or
    fragment (the page appends ``/<file>`` to it and the CSP names it as a source expression).

    Raises:
        ValueError: naming the variable and what is wrong (pydantic reports it at start-up).
    """
    hint = (
        "TASKHUB_ASSET_BASE_URL must be an http(s) URL without query or fragment, e.g. https://cdn.example.com/taskhub"
    )
    parts = urlsplit(value.strip())
    try:
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number in 0..65535)
    except ValueError:
        raise ValueError(f"{hint}: the port of {value!r} is not valid") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{hint}: {value!r} has no http(s) scheme and host")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ValueError(f"{hint}: {value!r} has a query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{hint}: {value!r} carries user info")
    if not _ASSET_PATH.fullmatch(parts.path):
        raise ValueError(f"{hint}: the path of {value!r} holds characters outside RFC 3986's unreserved set")
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


class Settings(BaseSettings):
    """Every setting of Taskhub; durations in seconds, sizes in bytes.

    Raises:
        ConfigurationError: from :meth:`resolve_jwt_secret` when ``env`` is ``production`` and
            ``jwt_secret`` is unset (refusing default secrets outside development, OWASP ASVS 2.10).
    """

    model_config = SettingsConfigDict(env_prefix="TASKHUB_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./data")
    database_url: str | None = None
    database_replica_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per process, the seed's pool: at most 50 connections, 5 s wait. All 50 are pool_size, opened on
    # demand and kept: as overflow (the earlier 10 + 40) every checkout past the 10th opened and closed
    # a connection, 27% of a get's CPU at 64 requests in flight (bench/pool_ab.py, bench/RESULTS.md).
    database_pool_size: int = Field(default=50, ge=1)
    database_max_overflow: int = Field(default=0, ge=0)
    database_pool_timeout: float = Field(default=5.0, gt=0)  # seconds to wait for a free connection
    # PgBouncer in transaction mode between Taskhub and PostgreSQL: no prepared-statement caches,
    # unnamed statements (docs/scaling.md, "Pooling").
    database_pgbouncer: bool = False
    database_connect_timeout: float = Field(default=5.0, gt=0)  # seconds a new PostgreSQL connection may take
    # Read replicas (docs/scaling.md): a replica more than max_lag seconds behind the primary takes
    # no reads; every replica's replay position and the primary's position are polled this often.
    database_replica_max_lag: float = Field(default=10.0, gt=0)
    database_replica_poll_interval: float = Field(default=0.2, gt=0, le=5)
    redis_url: str | None = None
    jwt_secret: str | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512", "EdDSA"] = "HS256"
    # EdDSA (docs/security.md, "Access-token keys"): the signing service's private JWK set; unset in
    # development means <data_dir>/jwt_keys.json, made on first use. Verify-only services (split mode)
    # fetch the public keys from jwt_jwks_url instead and cache them.
    jwt_keys_file: Path | None = None
    jwt_jwks_url: str | None = None
    jwks_cache_ttl: float = Field(default=300.0, gt=0)  # seconds a fetched JWKS is used (and its max-age)
    jwks_refetch_interval: float = Field(default=10.0, ge=0)  # least seconds between unknown-kid refetches
    # Which part of the API this process serves (taskhub serve --service; docs/architecture.md).
    service: Literal["all", "auth", "users", "tasks", "notifications"] = "all"
    jwt_issuer: str = "taskhub"
    jwt_audience: str = "taskhub-api"
    access_token_ttl: int = Field(default=900, ge=1)
    refresh_token_ttl: int = Field(default=604800, ge=1)
    rate_limit_anon: str = "100 per 15 minutes"
    rate_limit_auth: str = "10 per minute"
    rate_limit_user: str = "1000 per minute"
    rate_limit_enabled: bool = True
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cache_ttl: int = Field(default=300, ge=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    body_timeout: float = Field(default=30.0, gt=0)  # seconds to receive a whole request body (else 408)
    idempotency_ttl: int = Field(default=86_400, ge=1)
    purge_interval: int = Field(default=3_600, ge=0)  # seconds between housekeeping runs; 0 = never
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "console"
    access_log: bool = True
    metrics_token: str | None = None  # GET /metrics wants "Authorization: Bearer <token>" when set
    metrics_port: int = Field(default=9464, ge=0, le=65535)  # `taskhub worker`'s /metrics port; 0: none
    drain_seconds: float = Field(default=0.0, ge=0)  # SIGTERM: seconds /ready says 503 before stopping
    admin_password: str | None = None
    # Argon2id cost, OWASP Password Storage Cheat Sheet minimum: m=19 MiB, t=2, p=1.
    argon2_memory_cost: int = Field(default=19_456, ge=8)  # KiB
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_parallelism: int = Field(default=1, ge=1)
    cookie_secure: bool = False
    workers: int = Field(default=1, ge=1)
    auto_migrate: bool | None = None
    # Events (docs/operations.md, "Events"). Without broker_url the relay delivers in-process.
    broker_url: str | None = None  # amqp://user:pass@host:5672/vhost
    broker_exchange: str = "taskhub.events"
    broker_queue_prefix: str = "taskhub"  # queues are <prefix>.<consumer>, .retry.<n>, .dlq
    relay_enabled: bool = True  # run the outbox relay inside `serve` (leader-elected)
    # A direct (session-mode) URL of the primary for the relay's leader connection: its leader lock is
    # a session advisory lock, which PgBouncer's transaction mode cannot hold. Required with
    # database_pgbouncer; defaults to database_url otherwise (docs/scaling.md, "Pooling").
    relay_database_url: str | None = None
    relay_batch_size: int = Field(default=200, ge=1, le=10_000)
    relay_poll_interval: float = Field(default=0.1, gt=0)  # seconds between outbox polls when idle
    outbox_retention: int = Field(default=86_400, ge=0)  # seconds sent events stay (stream resume)
    worker_prefetch: int = Field(default=32, ge=1)
    worker_concurrency: int = Field(default=8, ge=1)  # handlers in flight (never two for one task)
    worker_retry_delays: Annotated[list[float], NoDecode] = Field(default_factory=lambda: [1.0, 10.0, 60.0])
    scheduler_interval: float = Field(default=60.0, gt=0)  # seconds between due/overdue scans
    smtp_url: str | None = None  # smtp://user:pass@host:port (smtps:// for implicit TLS)
    smtp_from: str = "taskhub@localhost"
    sse_heartbeat: float = Field(default=15.0, gt=0)  # seconds between comment lines on idle streams
    # GraphQL at /graphql (docs/api.md, "GraphQL"). The IDE (GraphiQL on GET /graphql): None means
    # on in development, off in production. Depth counts nested selections (introspection fields
    # aside); cost is the estimate of taskhub.graphql.limits (fields, times `first` under a list).
    graphql_ide: bool | None = None
    graphql_introspection: bool = True
    graphql_max_depth: int = Field(default=6, ge=1)
    graphql_max_cost: int = Field(default=5_000, ge=1)
    # Where the dashboard's page loads its hashed assets from (a CDN), e.g. https://cdn.example.com/taskhub;
    # unset: /static on this app (docs/operations.md, "The front end on a CDN").
    asset_base_url: str | None = None

    @field_validator("database_replica_urls", "trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("worker_retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @field_validator("asset_base_url")
    @classmethod
    def _check_asset_base_url(cls, value: str | None) -> str | None:
        return None if not value else check_asset_base_url(value)

    @cached_property
    def trusted_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """``trusted_proxies`` parsed into networks."""
        return [ipaddress.ip_network(c, strict=False) for c in self.trusted_proxies]

    @property
    def resolved_database_url(self) -> str:
        """The primary database URL; SQLite file ``taskhub.db`` in the data dir when unset."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'taskhub.db').resolve()}"

    @property
    def graphql_ide_enabled(self) -> bool:
        """Whether ``GET /graphql`` serves GraphiQL: ``graphql_ide``, else only outside production."""
        return self.graphql_ide if self.graphql_ide is not None else self.env != "production"

    @property
    def is_sqlite(self) -> bool:
        """True when the primary database is SQLite (embedded mode)."""
        return self.resolved_database_url.startswith("sqlite")

    @property
    def signs_tokens(self) -> bool:
        """True when this process issues access tokens (the auth service, or everything in one)."""
        return self.service in ("all", "auth")

    @property
    def verifies_remotely(self) -> bool:
        """True when EdDSA keys come from the auth service's JWKS rather than the key-set file."""
        return self.jwt_algorithm == "EdDSA" and not self.signs_tokens and self.jwt_jwks_url is not None

    def resolve_jwt_keys_file(self) -> Path:
        """The EdDSA key-set file: ``jwt_keys_file``, or ``<data_dir>/jwt_keys.json`` in development.

        Raises:
            ConfigurationError: production mode without ``TASKHUB_JWT_KEYS_FILE``, or a configured file
                that does not exist (it is made only in development, never silently in production).
        """
        if self.jwt_keys_file is not None:
            if self.env == "production" and not self.jwt_keys_file.exists():
                raise ConfigurationError(f"TASKHUB_JWT_KEYS_FILE {self.jwt_keys_file} does not exist")
            return self.jwt_keys_file
        if self.env == "production":
            raise ConfigurationError(
                "TASKHUB_JWT_ALGORITHM=EdDSA in production needs TASKHUB_JWT_KEYS_FILE "
                "(or TASKHUB_JWT_JWKS_URL on a service other than auth)"
            )
        return self.data_dir / "jwt_keys.json"

    def check_token_keys(self) -> None:
        """Fail early when the configured access-token keys cannot be used.

        Raises:
            ConfigurationError: see :meth:`resolve_jwt_secret` and :meth:`resolve_jwt_keys_file`.
        """
        if self.jwt_algorithm != "EdDSA":
            self.resolve_jwt_secret()
        elif not self.verifies_remotely:
            self.resolve_jwt_keys_file()

    def resolve_jwt_secret(self) -> str:
        """Return the JWT signing secret.

        In development, a random 64-byte secret is generated once into ``<data_dir>/jwt_secret``
        (mode 0600) and reused after restarts, so tokens survive a restart.

        Raises:
            ConfigurationError: production mode without ``TASKHUB_JWT_SECRET``, or a secret
                shorter than 32 bytes (RFC 7518 section 3.2 wants a key at least as long as the hash).
        """
        if self.jwt_secret:
            if len(self.jwt_secret.encode()) < 32:
                raise ConfigurationError("TASKHUB_JWT_SECRET must be at least 32 bytes (RFC 7518 3.2)")
            return self.jwt_secret
        if self.env == "production":
            raise ConfigurationError("TASKHUB_ENV=production requires TASKHUB_JWT_SECRET to be set")
        path = self.data_dir / "jwt_secret"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(64)
        path.write_text(secret)
        path.chmod(0o600)
        return secret

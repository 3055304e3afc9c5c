"""Access-token keys: the HMAC secret (embedded default) or Ed25519 key pairs with a ``kid``.

Sources of the rules:
- RFC 8037 (OKP keys, ``EdDSA``), RFC 7517 (JWK sets, ``kid``), RFC 8725 section 3.1 (one configured
  algorithm per verifier: no ``alg`` switching, no ``none``);
- rotation after NIST SP 800-57 part 1 (a key stops signing when superseded and keeps verifying only
  for as long as tokens it signed can still be valid: one access-token lifetime plus the leeway).

Three providers answer the codec's two questions, "which key signs" and "which key verifies ``kid``":

- :class:`HmacKeys`: one shared secret, no ``kid`` (HS256/384/512, embedded mode).
- :class:`LocalKeySet`: the private JWK set file (``TASKHUB_JWT_KEYS_FILE``, default
  ``<data_dir>/jwt_keys.json``), read by the process that signs (the auth service, or ``all``). It
  re-reads the file when it changes, so ``taskhub keys rotate`` needs no restart.
- :class:`RemoteJwks`: the public JWK set fetched over HTTP (``TASKHUB_JWT_JWKS_URL``) by services that
  only verify. Fetched at start, again when older than ``TASKHUB_JWKS_CACHE_TTL``, and on an unknown
  ``kid`` at most once per ``TASKHUB_JWKS_REFETCH_INTERVAL`` (so a flood of made-up ``kid`` values
  costs the auth service one request per interval per process, not one per request).

The key-set file is a JWK set (``{"keys": [...]}``) of Ed25519 private keys, oldest first, each with
``kid``, ``alg`` and ``use`` and two members of Taskhub's own (JWK allows extra members, RFC 7517 4):
``created`` and ``superseded`` (Unix seconds; ``superseded`` is null for the signing key).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

log = structlog.get_logger("taskhub.keys")

#: Seconds a superseded key verifies beyond one access-token lifetime (clock skew between services).
RETIRE_LEEWAY = 60

#: The JWS algorithm of the asymmetric keys (RFC 8037 section 3.1).
EDDSA = "EdDSA"


class UnknownKey(LookupError):
    """No verification key for a token's ``kid`` (unknown, retired, or missing)."""

    def __init__(self, kid: str | None) -> None:
        super().__init__(f"no key for kid {kid!r}")
        self.kid = kid


class KeysUnavailable(RuntimeError):
    """This process has no key to sign with (a verify-only service), or the key file is unusable."""


class KeyProvider(Protocol):
    """What :class:`~taskhub.core.security.TokenCodec` asks of its keys."""

    def signing_key(self) -> tuple[str | None, Any]:
        """``(kid, key)`` to sign a new token with; ``kid`` is None for HMAC.
        Raises: KeysUnavailable."""

    def verification_key(self, kid: str | None) -> Any:
        """The key that verifies a token with this ``kid``. Raises: UnknownKey."""

    async def refresh_unknown(self, kid: str | None) -> bool:
        """Try to learn ``kid`` (bounded); True when a later :meth:`verification_key` may succeed."""

    async def ensure_fresh(self) -> None:
        """Refresh a stale cache before verifying (no-op for local keys)."""


class HmacKeys:
    """One shared secret: signs and verifies, ignores ``kid`` (none is written)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def signing_key(self) -> tuple[str | None, Any]:
        """``(None, secret)``."""
        return None, self._secret

    def verification_key(self, kid: str | None) -> Any:
        """The secret, whatever the ``kid``."""
        return self._secret

    async def refresh_unknown(self, kid: str | None) -> bool:
        """Never anything to learn."""
        return False

    async def ensure_fresh(self) -> None:
        """Nothing to refresh."""


@dataclass
class StoredKey:
    """One Ed25519 key of the key set: ``created``/``superseded`` are Unix seconds."""

    kid: str
    private: Ed25519PrivateKey
    created: float
    superseded: float | None = None

    def retire_at(self, access_token_ttl: int) -> float | None:
        """When the last token this key signed has expired (None: still signing)."""
        if self.superseded is None:
            return None
        return self.superseded + access_token_ttl + RETIRE_LEEWAY

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK (``kty``, ``crv``, ``x``, ``kid``, ``alg``, ``use``): no private member."""
        jwk: dict[str, Any] = OKPAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": EDDSA, "use": "sig"}

    def private_jwk(self) -> dict[str, Any]:
        """The private JWK as stored in the key-set file (``d`` included)."""
        jwk: dict[str, Any] = OKPAlgorithm.to_jwk(self.private, as_dict=True)
        return {
            **jwk,
            "kid": self.kid,
            "alg": EDDSA,
            "use": "sig",
            "created": self.created,
            "superseded": self.superseded,
        }


def new_key(now: float) -> StoredKey:
    """A fresh Ed25519 key; its ``kid`` is 16 random bytes, URL-safe base64 (22 characters)."""
    return StoredKey(kid=secrets.token_urlsafe(16), private=Ed25519PrivateKey.generate(), created=now)


def read_key_set(path: Path) -> list[StoredKey]:
    """The keys of the file at ``path``, oldest first.

    Raises:
        KeysUnavailable: missing file, not a JWK set, or a key that is not an Ed25519 private key.
    """
    try:
        document = json.loads(path.read_text())
        keys = []
        for jwk in document["keys"]:
            private = OKPAlgorithm.from_jwk(jwk)
            if not isinstance(private, Ed25519PrivateKey):
                raise KeysUnavailable(f"{path}: key {jwk.get('kid')!r} is not an Ed25519 private key")
            keys.append(StoredKey(str(jwk["kid"]), private, float(jwk["created"]), jwk.get("superseded")))
    except (OSError, ValueError, KeyError, TypeError, jwt.InvalidKeyError) as exc:
        raise KeysUnavailable(f"{path}: not a usable JWK set: {exc}") from exc
    if not keys:
        raise KeysUnavailable(f"{path}: the key set is empty")
    return keys


def write_key_set(path: Path, keys: list[StoredKey]) -> None:
    """Write ``keys`` to ``path`` atomically (a temporary file renamed over it), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"keys": [k.private_jwk() for k in keys]}, out, indent=2)
    os.replace(tmp, path)


def ensure_key_set(path: Path, now: float | None = None) -> list[StoredKey]:
    """The key set at ``path``, made with one new key when the file does not exist yet (development)."""
    if not path.exists():
        write_key_set(path, [new_key(now if now is not None else time.time())])
    return read_key_set(path)


def rotate(path: Path, *, access_token_ttl: int, now: float | None = None) -> tuple[StoredKey, list[str]]:
    """Add a new signing key; the previous one is superseded (it verifies until its tokens expire).
    Keys past their retirement are pruned in the same write. Without a file yet, makes it with one
    key. Returns the new key and the pruned kids."""
    now = now if now is not None else time.time()
    if not path.exists():
        return ensure_key_set(path, now)[0], []
    keys = read_key_set(path)
    for key in keys:
        if key.superseded is None:
            key.superseded = now
    keys, pruned = _split_retired(keys, access_token_ttl, now)
    fresh = new_key(now)
    write_key_set(path, [*keys, fresh])
    return fresh, pruned


def retire(
    path: Path, *, access_token_ttl: int, kid: str | None = None, force: bool = False, now: float | None = None
) -> list[str]:
    """Remove superseded keys whose tokens have all expired; returns the removed kids.

    With ``kid`` and ``force``, that superseded key goes now, whatever its age (a leaked key): tokens
    it signed are refused at once by the signing service and by verifiers once their JWKS cache ends.

    Raises:
        KeysUnavailable: ``kid`` names the signing key or no key of the set.
    """
    now = now if now is not None else time.time()
    keys = read_key_set(path)
    if kid is not None:
        target = next((k for k in keys if k.kid == kid), None)
        if target is None:
            raise KeysUnavailable(f"no key {kid!r} in {path}")
        if target.superseded is None:
            raise KeysUnavailable(f"key {kid!r} is the signing key: rotate first")
        if force:
            write_key_set(path, [k for k in keys if k.kid != kid])
            return [kid]
    kept, pruned = _split_retired(keys, access_token_ttl, now)
    if kid is not None and kid not in pruned:
        raise KeysUnavailable(f"key {kid!r} may still verify live tokens; add --force to retire it anyway")
    if pruned:
        write_key_set(path, kept)
    return pruned


def _split_retired(keys: list[StoredKey], ttl: int, now: float) -> tuple[list[StoredKey], list[str]]:
    kept = [k for k in keys if (k.retire_at(ttl) or now + 1) > now]
    return kept, [k.kid for k in keys if k not in kept]


class LocalKeySet:
    """Signs with the newest key of the key-set file and verifies with every key not yet retired.

    The file is checked for changes (its modification time) at most every ``reload_interval``
    seconds (1 s), so a rotation by ``taskhub keys rotate`` reaches every process that reads the same
    file within a second.
    """

    def __init__(self, path: Path, *, access_token_ttl: int, reload_interval: float = 1.0) -> None:
        self.path = path
        self.reload_interval = reload_interval
        self._ttl = access_token_ttl
        self._keys: list[StoredKey] = ensure_key_set(path)
        self._stamp = path.stat().st_mtime_ns
        self._checked = time.monotonic()

    def _reload_if_changed(self) -> None:
        if time.monotonic() - self._checked < self.reload_interval:
            return
        self._checked = time.monotonic()
        try:
            stamp = self.path.stat().st_mtime_ns
            if stamp != self._stamp:
                self._keys, self._stamp = read_key_set(self.path), stamp
        except (OSError, KeysUnavailable) as exc:  # keep the keys in memory rather than fail requests
            log.warning("key_set_reload_failed", path=str(self.path), error=str(exc))

    def live_keys(self) -> list[StoredKey]:
        """The keys that still verify (superseded ones until their retirement time), oldest first."""
        self._reload_if_changed()
        now = time.time()
        return [k for k in self._keys if (k.retire_at(self._ttl) or now + 1) > now]

    def signing_key(self) -> tuple[str | None, Any]:
        """``(kid, private key)`` of the newest key."""
        self._reload_if_changed()
        key = self._keys[-1]
        return key.kid, key.private

    def verification_key(self, kid: str | None) -> Any:
        """The public key of ``kid`` when it is live. Raises: UnknownKey."""
        for key in self.live_keys():
            if key.kid == kid:
                return key.private.public_key()
        raise UnknownKey(kid)

    def jwks(self) -> dict[str, Any]:
        """The public JWK set of the live keys (``GET /.well-known/jwks.json``)."""
        return {"keys": [k.public_jwk() for k in self.live_keys()]}

    async def refresh_unknown(self, kid: str | None) -> bool:
        """The file is the source: nothing to fetch."""
        return False

    async def ensure_fresh(self) -> None:
        """Reloaded on use (:meth:`_reload_if_changed`)."""


class RemoteJwks:
    """The public keys of the auth service, fetched from its JWKS URL and cached.

    Args:
        url: the JWKS document (``http://auth:8000/.well-known/jwks.json``).
        cache_ttl: seconds a fetched set is used before it is fetched again (on the next verification).
        refetch_interval: least seconds between two fetches caused by an unknown ``kid``.
        client: the HTTP client (its timeout bounds a fetch); one of its own when None.
    """

    def __init__(
        self, url: str, *, cache_ttl: float, refetch_interval: float, client: httpx.AsyncClient | None = None
    ) -> None:
        self.url = url
        self._cache_ttl = cache_ttl
        self._refetch_interval = refetch_interval
        self._client = client or httpx.AsyncClient(timeout=2.0)
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at = -float("inf")  # monotonic seconds of the last attempt (success or not)
        self._loaded_at = -float("inf")  # monotonic seconds of the last successful fetch
        self._refetched_at = -float("inf")  # monotonic seconds of the last unknown-kid refetch
        self._lock = asyncio.Lock()
        self.fetches = 0  # attempts so far (metrics and tests)

    def signing_key(self) -> tuple[str | None, Any]:
        """Verify-only. Raises: KeysUnavailable."""
        raise KeysUnavailable("this service only verifies tokens (TASKHUB_JWT_JWKS_URL); the auth service signs")

    def verification_key(self, kid: str | None) -> Any:
        """The cached public key of ``kid``. Raises: UnknownKey."""
        key = self._keys.get(kid) if kid is not None else None
        if key is None:
            raise UnknownKey(kid)
        return key

    async def fetch(self) -> bool:
        """Fetch the set now (one at a time); True on success. A failure keeps the keys known so far
        (already issued tokens keep verifying while the auth service is down)."""
        async with self._lock:
            return await self._fetch_locked()

    async def _fetch_locked(self) -> bool:
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            response = await self._client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            keys: dict[str, Ed25519PublicKey] = {}
            for jwk in response.json()["keys"]:
                if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
                    continue  # not an Ed25519 public key: never usable by this verifier
                public = OKPAlgorithm.from_jwk(jwk)
                if isinstance(public, Ed25519PublicKey) and isinstance(jwk.get("kid"), str):
                    keys[jwk["kid"]] = public
        except (httpx.HTTPError, ValueError, KeyError, TypeError, jwt.InvalidKeyError) as exc:
            log.warning("jwks_fetch_failed", url=self.url, error=repr(exc))
            return False
        self._keys = keys
        self._loaded_at = time.monotonic()
        return True

    async def refresh_unknown(self, kid: str | None) -> bool:
        """Fetch again for an unknown ``kid`` unless an unknown ``kid`` already caused a fetch less
        than ``refetch_interval`` seconds ago; concurrent callers wait for the same fetch."""
        if kid is None:
            return False
        started = time.monotonic()
        async with self._lock:
            if self._fetched_at >= started:  # another request fetched while this one waited
                return kid in self._keys
            if started - self._refetched_at < self._refetch_interval:
                return False
            self._refetched_at = started
            await self._fetch_locked()
        return kid in self._keys

    async def ensure_fresh(self) -> None:
        """Fetch when the cached set is older than ``cache_ttl`` (and no attempt is under way)."""
        now = time.monotonic()
        if now - self._loaded_at < self._cache_ttl or now - self._fetched_at < self._refetch_interval:
            return
        async with self._lock:
            if time.monotonic() - self._fetched_at >= self._refetch_interval:
                await self._fetch_locked()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        with contextlib.suppress(Exception):
            await self._client.aclose()

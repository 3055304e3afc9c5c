"""Password hashing (argon2id via pwdlib) and JWT access tokens (PyJWT).

Rules and their sources:
- argon2id with OWASP's minimum cost (Password Storage Cheat Sheet) unless configured higher;
- passwords of 8..128 characters, no composition rules, rejected when common
  (NIST SP 800-63B section 5.1.1.2);
- only the configured algorithm is accepted when decoding (RFC 8725 section 3.1: no ``none``,
  no algorithm switching): HS256/384/512 with one secret, or EdDSA (Ed25519) with a ``kid`` naming
  the key (``core/keys``); ``iss``, ``aud``, ``exp``, ``iat``, ``sub`` and ``jti`` are required.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
import unicodedata
import uuid
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import jwt
from anyio import to_thread
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from taskhub.core.errors import Unauthorized
from taskhub.core.keys import EDDSA as EDDSA_ALGORITHM
from taskhub.core.keys import HmacKeys, KeyProvider, UnknownKey

if TYPE_CHECKING:
    from taskhub.config import Settings


class PasswordHasher:
    """argon2id hashing run in a worker thread, so the event loop keeps serving.

    Args:
        memory_cost: KiB of memory per hash. time_cost: passes. parallelism: lanes.
    """

    def __init__(self, *, memory_cost: int, time_cost: int, parallelism: int) -> None:
        self._hash = PasswordHash(
            (Argon2Hasher(memory_cost=memory_cost, time_cost=time_cost, parallelism=parallelism),)
        )
        self._dummy: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordHasher:
        """The hasher at the configured argon2 cost (``TASKHUB_ARGON2_*``)."""
        return cls(
            memory_cost=settings.argon2_memory_cost,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
        )

    async def _dummy_hash(self) -> str:
        # A real hash to verify against when the account does not exist, so that a wrong email
        # costs the same time as a wrong password (OWASP Authentication Cheat Sheet). Made on
        # first use, not at construction: building the hasher must not cost a hash.
        if self._dummy is None:
            self._dummy = await to_thread.run_sync(self._hash.hash, secrets.token_urlsafe(16))
        return self._dummy

    async def hash(self, password: str) -> str:
        """Return the PHC-format argon2id hash of ``password``."""
        return await to_thread.run_sync(self._hash.hash, password)

    async def verify(self, password: str, hashed: str | None) -> bool:
        """True when ``password`` matches ``hashed``; with ``hashed=None`` burns the same time, False."""
        if hashed is None:
            await to_thread.run_sync(self._hash.verify, password, await self._dummy_hash())
            return False
        try:
            return await to_thread.run_sync(self._hash.verify, password, hashed)
        except Exception:  # malformed stored hash: treat as a mismatch, never a 500
            return False


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of 10,000 common passwords of 8+ characters (from zxcvbn's frequency lists)."""
    text = resources.files("taskhub.core").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def normalize_email(email: str) -> str:
    """Comparison form of an email: Unicode NFKC-normalized, case-folded, trimmed.

    Idempotent, so a normalized email names the same account as the text it came from: NFKC runs
    again after case folding (which can leave NFKC) and trimming comes last (NFKC can turn a
    character into a space and a combining mark: U+00B8 becomes U+0020 U+0327).
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email).casefold()).strip()


def password_problem(password: str, email: str | None = None) -> str | None:
    """Why ``password`` is not acceptable (NIST SP 800-63B 5.1.1.2), or None when it is."""
    if len(password) < 8:
        return "must be at least 8 characters"
    if len(password) > 128:
        return "must be at most 128 characters"
    if email is not None and normalize_email(password) == normalize_email(email):
        return "must not be the same as the email"
    if password.strip().lower() in common_passwords():
        return "is too common; choose a less guessable password"
    return None


def new_refresh_token() -> str:
    """An opaque refresh token: 256 random bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex digest of an opaque token; only this is stored (tokens are high-entropy)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """Verified claims of an access token. ``iat``/``exp`` are Unix seconds (``iat`` fractional).

    ``sid`` is the login session: the refresh-token family the token was issued with, so that
    revoking the family (logout, reuse detection) also ends its access tokens.
    """

    sub: uuid.UUID
    role: str
    jti: str
    iat: float
    exp: int
    sid: uuid.UUID | None = None


_CACHE_SIZE = 10_000


class TokenCodec:
    """Issues and verifies JWT access tokens with one configured algorithm.

    Args:
        keys: where the signing key and the verification keys come from (``core/keys``); a plain
            ``secret`` is shorthand for :class:`~taskhub.core.keys.HmacKeys`.
        algorithm: the one algorithm written and accepted (``HS256``/``HS384``/``HS512``/``EdDSA``).

    Raises:
        Unauthorized: from :meth:`decode`/:meth:`verify` for any invalid, expired or malformed token,
            a token of another algorithm, or one whose ``kid`` names no live key.
    """

    def __init__(
        self,
        *,
        algorithm: str,
        issuer: str,
        audience: str,
        ttl: int,
        secret: str | None = None,
        keys: KeyProvider | None = None,
    ) -> None:
        if keys is None:
            if secret is None:
                raise ValueError("TokenCodec needs a secret or a key provider")
            keys = HmacKeys(secret)
        self.keys = keys
        self._algorithm = algorithm
        self._issuer = issuer
        self._audience = audience
        self.ttl = ttl
        self._verified: dict[str, tuple[AccessClaims, str | None]] = {}

    def encode(
        self, *, user_id: uuid.UUID, role: str, session_id: uuid.UUID | None = None, now: float | None = None
    ) -> tuple[str, AccessClaims]:
        """Return ``(token, claims)`` for a new access token valid ``ttl`` seconds.

        ``iat`` carries milliseconds (RFC 7519 NumericDate may be non-integer), so a token issued
        right after a password change is not mistaken for one issued before it. With asymmetric keys
        the header names the signing key's ``kid``.

        Raises:
            KeysUnavailable: this process only verifies (a service other than auth, in split mode).
        """
        issued = math.floor((now if now is not None else time.time()) * 1000) / 1000
        claims = AccessClaims(
            sub=user_id, role=role, jti=uuid.uuid4().hex, iat=issued, exp=math.ceil(issued + self.ttl), sid=session_id
        )
        payload: dict[str, Any] = {
            "sub": str(user_id),
            "role": role,
            "jti": claims.jti,
            "iat": claims.iat,
            "exp": claims.exp,
            "iss": self._issuer,
            "aud": self._audience,
        }
        if session_id is not None:
            payload["sid"] = str(session_id)
        kid, key = self.keys.signing_key()
        headers = {"kid": kid} if kid is not None else None
        return jwt.encode(payload, key, algorithm=self._algorithm, headers=headers), claims

    def decode(self, token: str) -> AccessClaims:
        """Verify signature, algorithm, ``kid``, ``iss``, ``aud`` and ``exp``; return the claims.

        Verified claims are memoized by the exact token string (signature included, so a forged
        token can never hit) for up to ``_CACHE_SIZE`` tokens; ``exp`` and the key's being still live
        (not retired) are re-checked on every hit. Revocation is not decided here (see
        ``auth.service.authenticate``). Keys are only those already known: :meth:`verify` may fetch.

        Raises:
            Unauthorized: see the class.
        """
        try:
            return self._decode_known(token)
        except UnknownKey as exc:
            raise Unauthorized("The access token is invalid.") from exc

    async def verify(self, token: str) -> AccessClaims:
        """:meth:`decode`, after refreshing stale remote keys; a ``kid`` not known yet triggers one
        bounded JWKS refetch (``core/keys.RemoteJwks.refresh_unknown``) and a second try.

        Raises:
            Unauthorized: see the class.
        """
        await self.keys.ensure_fresh()
        try:
            return self._decode_known(token)
        except UnknownKey as exc:
            if await self.keys.refresh_unknown(exc.kid):
                return self.decode(token)
            raise Unauthorized("The access token is invalid.") from exc

    def _decode_known(self, token: str) -> AccessClaims:
        cached = self._verified.get(token)
        if cached is not None:
            claims, kid = cached
            if kid is not None:
                self.keys.verification_key(kid)  # raises UnknownKey once the key is retired
            if claims.exp > time.time():
                return claims
            self._verified.pop(token, None)
            raise Unauthorized("The access token has expired.")
        claims, kid = self._decode(token)
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = (claims, kid)
        return claims

    def _decode(self, token: str) -> tuple[AccessClaims, str | None]:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != self._algorithm:
                raise jwt.InvalidAlgorithmError("the token's algorithm is not the configured one")
            kid = header.get("kid")
            if kid is not None and not isinstance(kid, str):
                raise jwt.InvalidTokenError("kid must be a string")
            key = self.keys.verification_key(kid)
            payload = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["sub", "role", "jti", "iat", "exp", "iss", "aud"]},
            )
            claims = AccessClaims(
                sub=uuid.UUID(str(payload["sub"])),
                role=str(payload["role"]),
                jti=str(payload["jti"]),
                iat=float(payload["iat"]),
                exp=int(payload["exp"]),
                sid=uuid.UUID(str(payload["sid"])) if "sid" in payload else None,
            )
            return claims, kid if self._algorithm == EDDSA_ALGORITHM else None
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The access token has expired.") from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthorized("The access token is invalid.") from exc

    def verified_subject(self, token: str) -> str | None:
        """The ``sub`` (hex) of ``token`` when it verifies (:meth:`decode`), else None.

        Used by the rate limiter to key requests by user; revocation is not checked here.
        """
        try:
            return self.decode(token).sub.hex
        except Unauthorized:
            return None

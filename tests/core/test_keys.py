"""EdDSA access tokens with a ``kid``, the JWKS document, rotation and retirement, verification
from a fetched JWKS with bounded refetches, and algorithm confusion (docs/security.md,
"Access-token keys")."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from typer.testing import CliRunner

from taskhub.cli import app as cli
from taskhub.config import ConfigurationError, Settings
from taskhub.core.errors import Unauthorized
from taskhub.core.keys import (
    RETIRE_LEEWAY,
    KeysUnavailable,
    LocalKeySet,
    RemoteJwks,
    read_key_set,
    retire,
    rotate,
)
from taskhub.core.security import TokenCodec
from tests.conftest import Api, client_for
from tests.helpers import ctx_of
from tests.servers import free_port

pytestmark = pytest.mark.asyncio
H = dict[str, str]
JWKS = "/.well-known/jwks.json"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed_hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWS made by hand (PyJWT refuses to use an asymmetric key as an HMAC secret)."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


def hand_signed_eddsa(header: dict[str, Any], claims: dict[str, Any], key: Ed25519PrivateKey) -> str:
    """An EdDSA JWS made by hand (PyJWT refuses to write some of the headers under test)."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return signing_input + "." + b64(key.sign(signing_input.encode()))


def claims_for(user_id: str, **overrides: Any) -> dict[str, Any]:
    now = round(time.time(), 3)  # not floored: the account was made within this second
    return {
        "sub": user_id,
        "role": "admin",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": int(now) + 600,
        "iss": "taskhub",
        "aud": "taskhub-api",
        **overrides,
    }


def bearer(token: str) -> H:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def eddsa_app(app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]) -> FastAPI:
    """The single process with EdDSA tokens and its key set in the test's data dir."""
    app: FastAPI = await app_factory(settings_factory(jwt_algorithm="EdDSA", jwt_secret=None))
    keys = ctx_of(app).tokens.keys
    assert isinstance(keys, LocalKeySet)
    keys.reload_interval = 0  # see rotations at once (1 s in service)
    return app


def key_file(app: FastAPI) -> Path:
    keys = ctx_of(app).tokens.keys
    assert isinstance(keys, LocalKeySet)
    return keys.path


class TestEdDSATokens:
    async def test_token_names_its_key_and_the_jwks_publishes_only_public_keys(self, eddsa_app: FastAPI) -> None:
        async with client_for(eddsa_app) as client:
            api = Api(client)
            h = await api.user("k1@x.io")
            token = h["Authorization"][7:]
            header = jwt.get_unverified_header(token)
            stored = read_key_set(key_file(eddsa_app))
            assert header == {"alg": "EdDSA", "kid": stored[0].kid, "typ": "JWT"}
            assert (await client.get("/api/v1/users/me", headers=h)).json()["email"] == "k1@x.io"

            r = await client.get(JWKS)
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/jwk-set+json"
            assert r.headers["cache-control"] == "public, max-age=300"
            document = r.json()
            assert [set(k) for k in document["keys"]] == [{"kty", "crv", "x", "kid", "alg", "use"}]
            jwk = document["keys"][0]
            assert (jwk["kty"], jwk["crv"], jwk["kid"], jwk["alg"], jwk["use"]) == (
                "OKP",
                "Ed25519",
                stored[0].kid,
                "EdDSA",
                "sig",
            )
            # The published key verifies the token; the SPEC claims are all there.
            public = jwt.PyJWK(jwk).key
            claims = jwt.decode(token, public, algorithms=["EdDSA"], audience="taskhub-api", issuer="taskhub")
            assert set(claims) == {"sub", "role", "jti", "iat", "exp", "iss", "aud", "sid"}
        assert key_file(eddsa_app).stat().st_mode & 0o777 == 0o600

    async def test_hmac_mode_publishes_no_keys(self, client: httpx.AsyncClient) -> None:
        r = await client.get(JWKS)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"

    async def test_algorithm_confusion_and_foreign_keys_are_refused(self, eddsa_app: FastAPI) -> None:
        async with client_for(eddsa_app) as client:
            api = Api(client)
            user = await api.register("k2@x.io")
            stored = read_key_set(key_file(eddsa_app))[0]
            public = stored.private.public_key()
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            claims = claims_for(user["id"])
            forged = [
                # HS256 keyed with the public key (raw, PEM, and its JWK "x" text): RFC 8725 3.1.
                hand_signed_hs256({"alg": "HS256", "typ": "JWT", "kid": stored.kid}, claims, raw),
                hand_signed_hs256({"alg": "HS256", "typ": "JWT", "kid": stored.kid}, claims, pem),
                hand_signed_hs256({"alg": "HS256", "typ": "JWT", "kid": stored.kid}, claims, b64(raw).encode()),
                # No signature at all.
                jwt.encode(claims, None, algorithm="none", headers={"kid": stored.kid}),
                # Right kid, another key.
                jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": stored.kid}),
                # Unknown kid, and none.
                jwt.encode(claims, stored.private, algorithm="EdDSA", headers={"kid": "no-such-key"}),
                jwt.encode(claims, stored.private, algorithm="EdDSA"),
                # A kid that is not a string.
                hand_signed_eddsa({"alg": "EdDSA", "typ": "JWT", "kid": 7}, claims, stored.private),
            ]
            for token in forged:
                r = await client.get("/api/v1/users/me", headers=bearer(token))
                assert r.status_code == 401, token
                assert r.json()["detail"] == "The access token is invalid."
            # The control: the same claims signed by the right key pass.
            good = jwt.encode(claims, stored.private, algorithm="EdDSA", headers={"kid": stored.kid})
            assert (await client.get("/api/v1/users/me", headers=bearer(good))).status_code == 200

    async def test_an_hmac_service_refuses_eddsa_tokens(self, api: Api, client: httpx.AsyncClient) -> None:
        user = await api.register("k3@x.io")
        token = jwt.encode(claims_for(user["id"]), Ed25519PrivateKey.generate(), algorithm="EdDSA")
        r = await client.get("/api/v1/users/me", headers=bearer(token))
        assert r.status_code == 401


class TestRotation:
    async def test_old_key_verifies_until_retired_then_its_tokens_are_refused(self, eddsa_app: FastAPI) -> None:
        path = key_file(eddsa_app)
        async with client_for(eddsa_app) as client:
            api = Api(client)
            old = await api.user("r1@x.io")
            old_kid = read_key_set(path)[0].kid
            assert (await client.get("/api/v1/users/me", headers=old)).status_code == 200

            fresh, pruned = rotate(path, access_token_ttl=900)
            assert pruned == []
            new = bearer((await api.login("r1@x.io"))["access_token"])
            assert jwt.get_unverified_header(new["Authorization"][7:])["kid"] == fresh.kid
            for h in (old, new):  # both verify: the old key's tokens may still be valid
                assert (await client.get("/api/v1/users/me", headers=h)).status_code == 200
            published = [k["kid"] for k in (await client.get(JWKS)).json()["keys"]]
            assert published == [old_kid, fresh.kid]

            # Not retirable while its tokens may be valid (900 s + leeway), unless forced.
            assert retire(path, access_token_ttl=900) == []
            with pytest.raises(KeysUnavailable, match="--force"):
                retire(path, access_token_ttl=900, kid=old_kid)
            with pytest.raises(KeysUnavailable, match="signing key"):
                retire(path, access_token_ttl=900, kid=fresh.kid, force=True)
            # Once every token it signed has expired, retirement removes it.
            later = time.time() + 900 + RETIRE_LEEWAY + 1
            assert retire(path, access_token_ttl=900, now=later) == [old_kid]
            r = await client.get("/api/v1/users/me", headers=old)  # memoized before: refused now
            assert r.status_code == 401
            assert (await client.get("/api/v1/users/me", headers=new)).status_code == 200
            assert [k["kid"] for k in (await client.get(JWKS)).json()["keys"]] == [fresh.kid]

    async def test_superseded_keys_stop_verifying_on_their_own_after_the_token_lifetime(
        self, app_factory: Callable[..., Any], settings_factory: Callable[..., Settings]
    ) -> None:
        """Automatic pruning: a superseded key is left out of verification and of the JWKS once its
        retirement time has passed, even while the file still lists it."""
        app = await app_factory(settings_factory(jwt_algorithm="EdDSA", jwt_secret=None, access_token_ttl=900))
        path = key_file(app)
        ctx_of(app).tokens.keys.reload_interval = 0  # type: ignore[attr-defined]
        async with client_for(app) as client:
            old = await Api(client).user("r2@x.io")
            old_kid = read_key_set(path)[0].kid
            # Rotated long ago (as if): superseded more than a lifetime and the leeway back.
            rotate(path, access_token_ttl=900, now=time.time() - 900 - RETIRE_LEEWAY - 5)
            assert read_key_set(path)[0].kid == old_kid  # still in the file
            assert old_kid not in [k["kid"] for k in (await client.get(JWKS)).json()["keys"]]
            assert (await client.get("/api/v1/users/me", headers=old)).status_code == 401

    async def test_cli_rotate_list_retire(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TASKHUB_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("TASKHUB_JWT_ALGORITHM", "EdDSA")
        runner = CliRunner()
        made = runner.invoke(cli, ["keys", "rotate"])  # no key set yet: makes it with one key
        assert made.exit_code == 0, made.output
        (only,) = read_key_set(tmp_path / "jwt_keys.json")
        assert made.output == f"signing with {only.kid}\n"
        first = runner.invoke(cli, ["keys", "rotate"])
        assert first.exit_code == 0, first.output
        keys = read_key_set(tmp_path / "jwt_keys.json")
        assert keys[0].kid == only.kid
        assert len(keys) == 2 and first.output == f"signing with {keys[1].kid}\n"
        listed = runner.invoke(cli, ["keys", "list"])
        lines = listed.output.splitlines()
        assert lines[0].startswith(keys[0].kid) and "verifying until" in lines[0]
        assert lines[1].startswith(keys[1].kid) and lines[1].endswith("signing")
        nothing = runner.invoke(cli, ["keys", "retire"])
        assert (nothing.exit_code, nothing.output) == (0, "nothing to retire\n")
        refused = runner.invoke(cli, ["keys", "retire", "--kid", keys[0].kid])
        assert refused.exit_code == 1 and "--force" in refused.output
        forced = runner.invoke(cli, ["keys", "retire", "--kid", keys[0].kid, "--force"])
        assert (forced.exit_code, forced.output) == (0, f"retired {keys[0].kid}\n")
        assert [k.kid for k in read_key_set(tmp_path / "jwt_keys.json")] == [keys[1].kid]

    async def test_production_needs_a_key_file_or_a_jwks_url(self, tmp_path: Path) -> None:
        base: dict[str, Any] = {"env": "production", "jwt_algorithm": "EdDSA", "data_dir": tmp_path}
        with pytest.raises(ConfigurationError, match="TASKHUB_JWT_KEYS_FILE"):
            Settings(**base).check_token_keys()
        with pytest.raises(ConfigurationError, match="does not exist"):
            Settings(**base, jwt_keys_file=tmp_path / "missing.json").check_token_keys()
        Settings(**base, service="tasks", jwt_jwks_url="http://auth/.well-known/jwks.json").check_token_keys()
        with pytest.raises(ConfigurationError, match="TASKHUB_JWT_KEYS_FILE"):  # auth signs: a URL is not enough
            Settings(**base, service="auth", jwt_jwks_url="http://auth/.well-known/jwks.json").check_token_keys()
        assert not (tmp_path / "jwt_keys.json").exists()  # production never makes keys by itself


class CountingTransport(httpx.AsyncBaseTransport):
    """Sends requests to an ASGI app and counts the JWKS fetches it answered."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await self.inner.handle_async_request(request)


class TestRemoteJwks:
    def verifier(self, transport: CountingTransport, *, refetch_interval: float) -> TokenCodec:
        keys = RemoteJwks(
            "http://auth" + JWKS,
            cache_ttl=300,
            refetch_interval=refetch_interval,
            client=httpx.AsyncClient(transport=transport),
        )
        return TokenCodec(keys=keys, algorithm="EdDSA", issuer="taskhub", audience="taskhub-api", ttl=900)

    async def test_unknown_kids_cause_one_bounded_refetch(self, eddsa_app: FastAPI) -> None:
        transport = CountingTransport(eddsa_app)
        codec = self.verifier(transport, refetch_interval=3600)
        async with client_for(eddsa_app) as client:
            token = (await Api(client).user("j1@x.io"))["Authorization"][7:]
        assert (await codec.verify(token)).role == "user"  # first sight: one fetch
        assert transport.requests == 1
        private = read_key_set(key_file(eddsa_app))[0].private
        bogus = [
            jwt.encode(claims_for(str(uuid.uuid4())), private, algorithm="EdDSA", headers={"kid": f"bogus-{i}"})
            for i in range(50)
        ]
        results = await asyncio.gather(*(codec.verify(t) for t in bogus), return_exceptions=True)
        assert all(isinstance(r, Unauthorized) for r in results)
        assert transport.requests == 2  # fifty unknown kids: one refetch, then the interval holds
        assert (await codec.verify(token)).role == "user"  # known keys still verify
        assert transport.requests == 2

    async def test_a_rotated_key_is_learned_with_one_fetch(self, eddsa_app: FastAPI) -> None:
        transport = CountingTransport(eddsa_app)
        codec = self.verifier(transport, refetch_interval=0)
        async with client_for(eddsa_app) as client:
            api = Api(client)
            old = (await api.user("j2@x.io"))["Authorization"][7:]
            await codec.verify(old)
            rotate(key_file(eddsa_app), access_token_ttl=900)
            new = (await api.login("j2@x.io"))["access_token"]
        before = transport.requests
        claims = await asyncio.gather(*(codec.verify(new) for _ in range(20)))
        assert {c.jti for c in claims} == {claims[0].jti}
        assert transport.requests == before + 1  # twenty concurrent requests waited for one fetch
        assert (await codec.verify(old)).role == "user"  # the superseded key still verifies

    async def test_auth_service_down_keeps_known_keys(self, eddsa_app: FastAPI) -> None:
        transport = CountingTransport(eddsa_app)
        codec = self.verifier(transport, refetch_interval=0)
        async with client_for(eddsa_app) as client:
            token = (await Api(client).user("j3@x.io"))["Authorization"][7:]
        await codec.verify(token)
        keys = codec.keys
        assert isinstance(keys, RemoteJwks)

        # The auth service goes away: its port refuses connections.
        keys.url = f"http://127.0.0.1:{free_port()}{JWKS}"
        keys._client = httpx.AsyncClient(timeout=2)
        assert await keys.fetch() is False
        assert (await codec.verify(token)).role == "user"  # verification stays local
        with pytest.raises(KeysUnavailable):  # and a verify-only service never signs
            codec.encode(user_id=uuid.uuid4(), role="user")

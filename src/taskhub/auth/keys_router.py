"""``GET /.well-known/jwks.json``: the public keys that verify access tokens (auth service).

Served only with ``TASKHUB_JWT_ALGORITHM=EdDSA`` by a process that signs (``--service auth`` or
``all``); with an HMAC secret there is nothing public to publish (404). The answer may be cached by
anyone for ``TASKHUB_JWKS_CACHE_TTL`` seconds (``Cache-Control: public, max-age``): verifiers refetch
sooner only for a ``kid`` they do not know (``core/keys.RemoteJwks``).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Response

from taskhub.context import Ctx
from taskhub.core.errors import NotFound
from taskhub.core.keys import LocalKeySet
from taskhub.core.openapi import problem_responses

JWKS_PATH = "/.well-known/jwks.json"
JWKS_MEDIA_TYPE = "application/jwk-set+json"  # RFC 7517 section 8.5.1

router = APIRouter(tags=["auth"])


@router.get(
    JWKS_PATH,
    responses={
        200: {"content": {JWKS_MEDIA_TYPE: {"schema": {"type": "object"}}}, "description": "The public JWK set"},
        **problem_responses(404),
    },
)
async def jwks(ctx: Ctx) -> Response:
    """The public JWK set (RFC 7517) of the live Ed25519 keys: the signing key and superseded keys
    whose tokens may still be valid. Private members are never included. 404 under HMAC signing."""
    keys = ctx.tokens.keys
    if not isinstance(keys, LocalKeySet):
        raise NotFound("Access tokens are not signed with public-key cryptography here (TASKHUB_JWT_ALGORITHM).")
    document: dict[str, Any] = keys.jwks()
    max_age = int(ctx.settings.jwks_cache_ttl)
    return Response(
        orjson.dumps(document),
        media_type=JWKS_MEDIA_TYPE,
        headers={"Cache-Control": f"public, max-age={max_age}"},
    )

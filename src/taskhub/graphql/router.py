"""``/graphql``: the HTTP endpoint (POST, and GET for queries) and, outside production, GraphiQL."""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.requests import Request
from starlette.responses import HTMLResponse
from strawberry.fastapi import GraphQLRouter

from taskhub.config import Settings
from taskhub.graphql.context import GraphQLContext, graphql_context
from taskhub.graphql.schema import build_schema

GRAPHQL_PATH = "/graphql"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def ide_csp(html: str) -> str:
    """The Content-Security-Policy of the GraphiQL page: its scripts and styles from unpkg.com
    (strawberry's page loads GraphiQL from there, so the IDE needs that network access), its inline
    scripts by hash only, requests to this origin only, no framing."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return (
        "default-src 'none'; "
        f"script-src https://unpkg.com {hashes}; "
        "style-src https://unpkg.com 'unsafe-inline'; "
        "img-src 'self' data:; font-src https://unpkg.com data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


class TaskhubGraphQLRouter(GraphQLRouter[GraphQLContext, None]):
    """Strawberry's router with a CSP of its own for the GraphiQL page (the API default allows nothing)."""

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        """GraphiQL, with :func:`ide_csp`."""
        html = self.graphql_ide_html
        return HTMLResponse(html, headers={"Content-Security-Policy": ide_csp(html)})


def graphql_router(settings: Settings) -> GraphQLRouter[GraphQLContext, None]:
    """The ``/graphql`` routes for ``settings``: GraphiQL only with ``settings.graphql_ide_enabled``
    (off in production by default); no subscriptions (no WebSocket protocols); not in the OpenAPI
    document (the schema is ``taskhub graphql-schema``)."""
    return TaskhubGraphQLRouter(
        build_schema(settings),
        path=GRAPHQL_PATH,
        graphql_ide="graphiql" if settings.graphql_ide_enabled else None,
        context_getter=graphql_context,
        subscription_protocols=(),
        include_in_schema=False,
    )

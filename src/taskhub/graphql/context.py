"""The per-request GraphQL context: the caller (authenticated lazily, once) and units of work.

Authentication is the REST one (:func:`taskhub.auth.dependencies.current_user` with the Bearer
token of the ``Authorization`` header; never a query string): a missing, invalid or revoked
token fails each field that needs the caller with the ``unauthorized`` problem instead of failing
the whole HTTP request, as GraphQL clients expect errors in the body.

Fields of one operation may resolve concurrently, and an ``AsyncSession`` is not safe for
concurrent use: every root field opens its own short unit of work (:meth:`read` or, for a
mutation field, :meth:`write`: one transaction per mutation).
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from strawberry.fastapi import BaseContext

from taskhub.auth.dependencies import bearer, current_user
from taskhub.context import AppContext, get_context, read_unit, write_unit
from taskhub.users.models import User


class GraphQLContext(BaseContext):
    """What resolvers reach through ``info.context``."""

    def __init__(self, conn: Request, token: str | None) -> None:
        super().__init__()
        self.conn = conn
        self.token = token
        self.app: AppContext = get_context(conn)
        self._viewer: asyncio.Future[User] | None = None

    async def viewer(self) -> User:
        """The authenticated caller (authenticated on first use, once per request).

        Raises:
            Unauthorized: no token, or one that does not verify or was revoked.
        """
        if self._viewer is None:
            self._viewer = asyncio.ensure_future(current_user(self.conn, self.token))
        return await self._viewer

    def read(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A read-only unit of work at the caller's read floor (call after :meth:`viewer`)."""
        return read_unit(self.conn)

    def write(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A unit of work on the primary that commits when the block ends (one per mutation)."""
        return write_unit(self.conn)


async def graphql_context(conn: Request, token: Annotated[str | None, Depends(bearer)]) -> GraphQLContext:
    """The FastAPI dependency that makes a :class:`GraphQLContext` for each request."""
    return GraphQLContext(conn, token)

"""GraphQL errors carry the REST problem details in ``extensions``.

Resolvers raise the same typed :class:`~taskhub.core.errors.DomainError` subclasses the services
raise for REST; :class:`ProblemErrors` turns each into a GraphQL error whose ``message`` is the
problem's ``detail`` and whose ``extensions`` hold ``code`` (the problem slug in upper snake case,
e.g. ``TASK_NOT_FOUND``), ``type`` (the problem type URI), ``title``, ``status`` (the HTTP status
REST would answer) and, for validation failures, ``errors`` naming the fields
(``loc`` = argument path, e.g. ``["input", "title"]``).

Errors before execution (syntax, unknown fields, wrong argument types, the depth and cost limits)
get status 400; unexpected exceptions a bare ``INTERNAL_SERVER_ERROR`` (500) whose cause is logged,
never sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from strawberry.extensions import SchemaExtension
from strawberry.utils.str_converters import to_camel_case

from graphql import GraphQLError
from taskhub.core.errors import (
    PROBLEM_BASE,
    DomainError,
    ServiceUnavailable,
    UnprocessableEntity,
    clean_validation_errors,
)

log = structlog.get_logger("taskhub.graphql")

M = TypeVar("M", bound=BaseModel)

INVALID_QUERY = "invalid-query"
"""Problem slug of documents that do not parse or validate against the schema (status 400)."""
QUERY_TOO_DEEP = "query-too-deep"
QUERY_TOO_COSTLY = "query-too-costly"
INTERNAL = "internal-server-error"

# strawberry's QueryDepthLimiter reports a plain GraphQLError with this message (no extensions);
# tests/graphql pins the mapping, so a changed message in a new strawberry release fails there.
_DEPTH_MESSAGE = "exceeds maximum operation depth"


def problem_extensions(
    *, status: int, slug: str, title: str, errors: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The ``extensions`` of a GraphQL error for the problem ``slug`` (see the module docstring)."""
    extensions: dict[str, Any] = {
        "code": slug.upper().replace("-", "_"),
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
    }
    if errors is not None:
        extensions["errors"] = [dict(e) for e in errors]
    return extensions


def validate(model: type[M], data: Mapping[str, Any], *, loc: Sequence[str] = ()) -> M:
    """``model`` validated from GraphQL argument values ``data`` (snake_case keys): the REST rules.

    Raises:
        UnprocessableEntity: naming each failing field as a GraphQL argument path: ``loc`` then
            the field in camelCase (``["input", "dueDate"]``).
    """
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = clean_validation_errors(exc.errors())
        for error in errors:
            error["loc"] = [*loc, *(to_camel_case(p) if isinstance(p, str) else p for p in error["loc"])]
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors)
        raise UnprocessableEntity(f"Invalid input: {fields}", errors=errors) from None


def rename_locs(exc: DomainError, renames: Mapping[tuple[str, ...], list[str]]) -> DomainError:
    """``exc`` with the REST ``loc`` of its field errors replaced by GraphQL argument paths
    (``("query", "cursor")`` -> ``["after"]``); returns ``exc`` for ``raise ... from``."""
    if exc.errors is not None:
        exc.errors = [{**e, "loc": renames.get(tuple(e["loc"]), e["loc"])} for e in exc.errors]
    return exc


def _problem_error(error: GraphQLError, message: str, extensions: dict[str, Any]) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions=extensions,
    )


def to_problem(error: GraphQLError) -> GraphQLError:
    """``error`` with problem ``extensions`` (see the module docstring)."""
    original = error.original_error
    if isinstance(original, PoolTimeoutError):
        # As REST answers it (core/errors.py): the service is busy, not broken.
        original = ServiceUnavailable(
            "The service is busy (no database connection became free in time); retry shortly."
        )
    if isinstance(original, DomainError):
        extensions = problem_extensions(
            status=original.status, slug=original.slug, title=original.title, errors=original.errors
        )
        return _problem_error(error, original.detail, extensions)
    if error.extensions and "type" in error.extensions:
        return error  # made with its problem already (the cost limit)
    if error.path is None:
        # Before execution: parse and validation errors, variables that do not coerce, limits.
        if _DEPTH_MESSAGE in error.message:
            return _problem_error(
                error, error.message, problem_extensions(status=400, slug=QUERY_TOO_DEEP, title="Query too deep")
            )
        return _problem_error(
            error, error.message, problem_extensions(status=400, slug=INVALID_QUERY, title="Invalid query")
        )
    return _problem_error(
        error, "Internal server error", problem_extensions(status=500, slug=INTERNAL, title="Internal Server Error")
    )


def is_unexpected(error: GraphQLError) -> bool:
    """True for an error raised by a resolver that no problem type describes (a bug: logged)."""
    original = error.original_error
    return (
        error.path is not None
        and original is not None
        and not isinstance(original, DomainError | PoolTimeoutError | GraphQLError)
    )


class ProblemErrors(SchemaExtension):
    """Give every error of a result its problem ``extensions`` (:func:`to_problem`)."""

    def on_operation(self) -> Iterator[None]:
        """After the operation: rewrite the result's errors."""
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [to_problem(error) for error in errors]

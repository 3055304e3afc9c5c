"""Service boundaries (docs/architecture.md, "Services"): which code each service runs, and the
documented exceptions where one service's code reaches another's tables in the shared database.

A small AST check rather than import-linter: the rule is per imported module *and* per importing
module (an exception names both), and every exception must still be in use, so the list in the
docs cannot silently go stale in either direction.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from fastapi import routing

import taskhub
from taskhub.api import SERVICES, routers_for

SRC = Path(taskhub.__file__).parent

#: Top-level packages and the service that owns them (its tables, its routes).
OWNER = {
    "auth": "auth",
    "users": "users",
    "admin": "users",
    "tasks": "tasks",
    "analytics": "tasks",
    "notifications": "notifications",
    "graphql": "tasks",  # /graphql is mounted by the tasks service (app.create_app)
}

#: Modules any service may import from another: the HTTP contract's types and the auth client
#: (token verification, the caller dependencies, the revocation cache in Redis).
CONTRACT = ("schemas", "errors", "dependencies", "cache")

#: The documented exceptions: (importing module, imported module) -> why. Each is a read or write of
#: another service's table in the one shared database (docs/architecture.md, "What each service owns").
EXCEPTIONS = {
    ("auth.repository", "taskhub.users.models"): "authentication reads the account row with the denylist",
    ("auth.service", "taskhub.users.repository"): "login and refresh read the account by email or id",
    ("auth.service", "taskhub.users.models"): "the account is the principal's type",
    ("auth.cache", "taskhub.users.models"): "cached authentication decisions hold the account",
    ("auth.dependencies", "taskhub.users.models"): "the account is the principal's type",
    ("auth.router", "taskhub.users.service"): "registration creates the account row (users.service)",
    ("tasks.service", "taskhub.users.models"): "the acting account is the caller's type (no query)",
    ("tasks.service", "taskhub.users.repository"): "a due day is read in the owner's time zone, share-locked",
    ("users.service", "taskhub.tasks.service"): "account deletion erases the owner's tasks in its transaction",
    ("notifications.repository", "taskhub.tasks.models"): "reminders scan due dates and read titles (read-only)",
    ("notifications.repository", "taskhub.users.models"): "the email outbox reads the recipient (read-only)",
    ("graphql.schema", "taskhub.notifications.service"): "the viewer's notifications in a GraphQL query",
    ("graphql.schema", "taskhub.users.models"): "the viewer is the caller's type",
    ("graphql.types", "taskhub.users.models"): "a task's owner and the viewer are accounts",
    ("graphql.context", "taskhub.users.models"): "the viewer is the caller's type",
}

#: Besides its own packages, where a service's routes may come from (operations, the dashboard).
SHARED_ROUTES = {"ops", "web"}
EXTRA_ROUTES = {"tasks": {"events"}}  # the SSE stream of task events


def cross_service_imports() -> set[tuple[str, str]]:
    """Every (importing module, imported module) pair that crosses from one service to another."""
    found: set[tuple[str, str]] = set()
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if len(parts) < 2 or parts[0] not in OWNER:
            continue
        importer = ".".join(parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module or not node.module.startswith("taskhub."):
                continue
            targets = [node.module]
            if len(node.module.split(".")) == 2:  # `from taskhub.users import service`
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                package = target.split(".")[1]
                if package in OWNER and OWNER[package] != OWNER[parts[0]]:
                    found.add((importer, target))
    return found


def test_services_cross_only_through_contracts_or_documented_exceptions() -> None:
    crossings = cross_service_imports()
    undocumented = sorted(
        (importer, target)
        for importer, target in crossings
        if target.split(".")[-1] not in CONTRACT and (importer, target) not in EXCEPTIONS
    )
    assert undocumented == [], "a service reaches into another's code: use its HTTP API or events, or document it"
    stale = sorted(set(EXCEPTIONS) - crossings)
    assert stale == [], "documented exceptions that no longer exist: remove them here and in docs/architecture.md"


def test_the_exceptions_are_the_ones_documented() -> None:
    doc = (SRC.parent.parent / "docs" / "architecture.md").read_text()
    for importer, target in EXCEPTIONS:
        assert f"`{importer}` → `{target.removeprefix('taskhub.')}`" in doc, (importer, target)


def test_core_and_db_belong_to_no_service() -> None:
    """Shared libraries import no service package (db/models.py only collects the tables for Alembic)."""
    for package in ("core", "db"):
        for path in (SRC / package).rglob("*.py"):
            if path.name == "models.py" and package == "db":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("taskhub."):
                    assert node.module.split(".")[1] not in OWNER, (path, node.module)


def contexts(service: str) -> list[routing.RouteContext]:
    """The flattened routes (path, methods, endpoint) of ``service``."""
    api, root = routers_for(service)
    return list(routing.iter_route_contexts([*api.routes, *root.routes]))


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_mounts_only_its_own_routes(service: str) -> None:
    allowed = {p for p, owner in OWNER.items() if owner == service} | SHARED_ROUTES | EXTRA_ROUTES.get(service, set())
    packages = set()
    for route in contexts(service):
        module = inspect.getmodule(route.endpoint)
        assert module is not None
        packages.add(module.__name__.split(".")[1])
    assert packages <= allowed, packages - allowed


def test_the_services_together_serve_exactly_the_single_process_routes() -> None:
    def routes(service: str) -> set[tuple[str, frozenset[str]]]:
        return {(r.path, frozenset(r.methods or ())) for r in contexts(service)}

    split: set[tuple[str, frozenset[str]]] = set().union(*(routes(s) for s in SERVICES))
    assert split == routes("all")
    owners: dict[str, str] = {}
    for service in SERVICES:
        for path, _ in routes(service):
            if path.startswith("/api/v1/"):
                assert owners.setdefault(path, service) == service, f"{path} served by two services"


@pytest.mark.parametrize("service", [*SERVICES, "all"])
def test_graphql_is_served_by_the_tasks_service(service: str) -> None:
    from taskhub.app import create_app
    from taskhub.config import Settings

    app = create_app(Settings(service=service, jwt_secret="x" * 40))
    paths = {r.path for r in routing.iter_route_contexts(app.routes)}
    assert ("/graphql" in paths) == (service in ("tasks", "all"))

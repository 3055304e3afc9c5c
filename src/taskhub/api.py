"""The URL map: every domain router under ``/api/v1``, plus operations and the dashboard.

One codebase, several deployables (``docs/architecture.md``, "Services"): :func:`routers_for` gives
the routers one service mounts (``taskhub serve --service``); ``all`` (the default) mounts everything
in the order below. Every service also mounts the operations routes (``/health``, ``/ready``,
``/metrics``, ``/docs``, ``/openapi.json``) and the dashboard (``/``, ``/static/``: its page is
rendered per instance with hashed file names, so the gateway sends it to any service).
"""

from fastapi import APIRouter

from taskhub.admin.router import router as admin_users_router
from taskhub.analytics.router import router as analytics_router
from taskhub.auth.keys_router import router as keys_router
from taskhub.auth.router import router as auth_router
from taskhub.core.openapi import unique_id
from taskhub.events.stream import router as events_router
from taskhub.notifications.router import router as notifications_router
from taskhub.ops.docs import router as docs_router
from taskhub.ops.metrics import router as metrics_router
from taskhub.ops.router import router as ops_router
from taskhub.tasks.admin_router import router as admin_tasks_router
from taskhub.tasks.router import router as tasks_router
from taskhub.urls import API_PREFIX
from taskhub.users.router import router as users_router
from taskhub.web.router import router as web_router

SERVICES = ("auth", "users", "tasks", "notifications")
"""The deployable services of split mode, besides ``all`` (the single process)."""

#: Per service: its routers under ``/api/v1`` and its routers at the root, in mounting order.
#: ``/tasks/stats/history`` (analytics) comes before ``/tasks/{task_id}``.
_API_ROUTERS: dict[str, tuple[APIRouter, ...]] = {
    "auth": (auth_router,),
    "users": (users_router, admin_users_router),
    "tasks": (analytics_router, tasks_router, events_router, admin_tasks_router),
    "notifications": (notifications_router,),
}
_ROOT_ROUTERS: dict[str, tuple[APIRouter, ...]] = {"auth": (keys_router,)}
_SHARED = (ops_router, metrics_router, docs_router, web_router)


def routers_for(service: str) -> tuple[APIRouter, APIRouter]:
    """``(api_router, root_router)`` of ``service`` (one of :data:`SERVICES`, or ``all``).

    Raises:
        ValueError: an unknown service name.
    """
    if service != "all" and service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; one of all, {', '.join(SERVICES)}")
    # Operation ids are the endpoint names (core.openapi.unique_id): the OpenAPI links and the
    # fuzzers name them. Routes included into these routers keep the routers' function, so the app's
    # generate_unique_id_function alone would not reach them.
    api = APIRouter(prefix=API_PREFIX, generate_unique_id_function=unique_id)
    root = APIRouter(generate_unique_id_function=unique_id)
    for name in SERVICES if service == "all" else (service,):
        for router in _API_ROUTERS[name]:
            api.include_router(router)
        for router in _ROOT_ROUTERS.get(name, ()):
            root.include_router(router)
    for router in _SHARED:
        root.include_router(router)
    return api, root

"""The URL map: every domain router under ``/api/v1``, plus operations and the dashboard."""

from fastapi import APIRouter

from taskhub.admin.router import router as admin_router
from taskhub.analytics.router import router as analytics_router
from taskhub.auth.router import router as auth_router
from taskhub.events.stream import router as events_router
from taskhub.notifications.router import router as notifications_router
from taskhub.ops.docs import router as docs_router
from taskhub.ops.metrics import router as metrics_router
from taskhub.ops.router import router as ops_router
from taskhub.tasks.router import router as tasks_router
from taskhub.urls import API_PREFIX
from taskhub.users.router import router as users_router
from taskhub.web.router import router as web_router

api_router = APIRouter(prefix=API_PREFIX)
api_router.include_router(auth_router)
api_router.include_router(users_router)
api_router.include_router(analytics_router)  # /tasks/stats/history, before /tasks/{task_id}
api_router.include_router(tasks_router)
api_router.include_router(notifications_router)
api_router.include_router(events_router)
api_router.include_router(admin_router)

root_router = APIRouter()
root_router.include_router(ops_router)
root_router.include_router(metrics_router)
root_router.include_router(docs_router)
root_router.include_router(web_router)

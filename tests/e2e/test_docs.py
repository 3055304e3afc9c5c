"""``/docs`` in Chromium: Swagger UI renders every operation under its Content-Security-Policy."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Server, watch

pytestmark = pytest.mark.e2e


def test_swagger_ui_works_under_its_csp(server: Server, page: Any) -> None:
    probe = watch(page)
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=15_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/tasks/{task_id}" in [p.replace("\u200b", "") for p in paths]
    assert probe.errors == []  # a CSP violation is a console error

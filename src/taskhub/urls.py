"""The API's base path, in one place (SPEC "Conventions": ``/api/v1``)."""

API_PREFIX = "/api/v1"


def api_path(path: str) -> str:
    """``path`` (starting with ``/``) under the API prefix, e.g. ``api_path("/tasks/1")``."""
    return API_PREFIX + path

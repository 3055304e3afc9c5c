"""Typed errors of the users domain."""

from taskhub.core.errors import Conflict, NotFound, Unauthorized


class EmailTaken(Conflict):
    """409: another account already uses this email (compared case-insensitively, NFKC)."""

    slug, title = "email-taken", "Email already registered"


class UserNotFound(NotFound):
    """404: no such user."""

    slug, title = "user-not-found", "User not found"


class LastAdmin(Conflict):
    """409: the last active admin cannot demote, deactivate or delete themselves."""

    slug, title = "last-admin", "Last active admin"


class WrongPassword(Unauthorized):
    """401: ``current_password`` does not match (re-authentication for sensitive changes)."""

    slug, title = "wrong-password", "Current password is incorrect"

"""Typed errors of authentication."""

from taskhub.core.errors import Forbidden, Unauthorized


class InvalidCredentials(Unauthorized):
    """401: wrong email or password; one message for both (OWASP Authentication Cheat Sheet)."""

    slug, title = "invalid-credentials", "Invalid credentials"


class AccountDisabled(Forbidden):
    """403: the account is deactivated."""

    slug, title = "account-disabled", "Account disabled"


class InvalidRefreshToken(Unauthorized):
    """401: unknown, expired or revoked refresh token."""

    slug, title = "invalid-refresh-token", "Invalid refresh token"


class RefreshTokenReused(Unauthorized):
    """401: an already-used refresh token came back; its family was revoked (theft assumed).

    ``persist`` makes the unit of work commit the revocation even though the request fails.
    """

    slug, title = "refresh-token-reused", "Refresh token reuse detected"
    persist = True

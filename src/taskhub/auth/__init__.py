"""Authentication: registration, login, refresh-token rotation, logout, the CurrentUser dependency."""

"""Accounts: the ``/users/me`` endpoints and the user records every other domain refers to."""

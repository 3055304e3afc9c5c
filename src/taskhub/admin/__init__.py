"""Administration endpoints over the users and tasks services (role ``admin`` only)."""

"""The web dashboard: static files served with a strict Content-Security-Policy."""

from services import postgres_server, postgres_url  # noqa: F401 - the real PostgreSQL fixtures (tests/services.py)

"""The HTTP API: FastAPI app factory, routes, wire schemas."""

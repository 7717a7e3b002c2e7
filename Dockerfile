# Circuitboard app image: one image for every role. docker-compose.single.yml runs it as one container (API, worker
# thread, SQLite: the CMD below); docker-compose.yml runs it as `circuitboard serve` (API), `circuitboard worker`
# (GPU workers), `circuitboard db upgrade` and `circuitboard prepare` beside Redis and PostgreSQL.
# The Python environment is installed by the Makefile's own script (scripts/install-python.sh), so the image and
# `make setup` get the same pins and packages (psycopg for PostgreSQL included).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends make git nodejs npm curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md Makefile ./
COPY scripts ./scripts
COPY backend ./backend
COPY frontend ./frontend
COPY models/presets ./models/presets

# Same steps as `make setup`: Python environment (torch==2.13.0 pin), then the front-end bundle.
RUN PYTHON=python3 VENV=/app/.venv bash scripts/install-python.sh
RUN cd frontend && npm ci --no-audit --no-fund && npm run build

ENV CIRCUITBOARD_MODELS_DIR=/models \
    CIRCUITBOARD_DATABASE_URL=sqlite:////data/circuitboard.sqlite \
    PATH=/app/.venv/bin:$PATH

EXPOSE 8000
# The server binds 0.0.0.0 inside the container. Where it is published decides the mode: tell it with
# CIRCUITBOARD_PUBLIC_HOST (docker-compose.yml does). Unset, a plain `docker run -p 8000:8000` counts as
# reachable from the network: shared mode, accounts required (`docker exec ... circuitboard users add NAME`),
# and only the Host names in CIRCUITBOARD_ALLOWED_HOSTS (besides localhost) are served.
# First start prepares the default preset (model conversion, corpus, transcoders, atlas) into the models volume;
# later starts find it there and load in seconds.
CMD ["bash", "-c", "circuitboard prepare --preset ${CIRCUITBOARD_PRESET:-gemma-3-270m} && circuitboard serve 0.0.0.0 8000 --preset ${CIRCUITBOARD_PRESET:-gemma-3-270m}"]

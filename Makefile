# Circuitboard — every target is idempotent and quick when nothing changed.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PRESET ?= gemma-3-270m
BUDGET ?= default
HOST ?= 127.0.0.1
PORT ?= 8000
STAMPS := .stamps
FRONTEND_SRC := $(shell find frontend/src frontend/index.html frontend/theme-boot.js frontend/package.json frontend/package-lock.json frontend/build.mjs 2>/dev/null)

.PHONY: setup run test test-fast lint bench prepare serve clean help

help:
	@echo "make run    - set up, prepare the default model ($(PRESET)) and its transcoders, serve http://$(HOST):$(PORT)"
	@echo "make test   - set up and run every test suite"
	@echo "make lint   - ruff (check + format), mypy, the layering rules, eslint"
	@echo "make bench  - benchmarks under bench/"

$(STAMPS):
	@mkdir -p $(STAMPS)

# Python: torch pinned to the CPU wheel on local disk here (on a Linux GPU box the same pin gets CUDA).
$(STAMPS)/venv: pyproject.toml scripts/install-python.sh | $(STAMPS)
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/install-python.sh
	@touch $@

# Front end: d3 + esbuild from npm, bundled into frontend/dist (served by the API, no CDN).
$(STAMPS)/frontend: $(FRONTEND_SRC) | $(STAMPS)
	@if [ -f frontend/package.json ]; then \
	  cd frontend && (npm ci --no-audit --no-fund || npm install --no-audit --no-fund) && npm run build; \
	else echo "no frontend/package.json yet"; fi
	@touch $@

setup: $(STAMPS)/venv $(STAMPS)/frontend

prepare: setup
	$(VENV)/bin/circuitboard prepare --preset $(PRESET) --budget $(BUDGET)

serve: setup
	@echo "Circuitboard at http://$(HOST):$(PORT)"
	$(VENV)/bin/circuitboard serve $(HOST) $(PORT) --preset $(PRESET)

run: prepare serve

$(STAMPS)/chromium: scripts/install-chromium.sh | $(STAMPS)
	bash scripts/install-chromium.sh
	@touch $@

# Redis and PostgreSQL for the distributed tests (tests/services.py runs private loopback instances).
$(STAMPS)/services: scripts/install-services.sh | $(STAMPS)
	bash scripts/install-services.sh
	@touch $@

test: lint $(STAMPS)/chromium $(STAMPS)/services
	$(VENV)/bin/pytest tests -q

test-fast: setup $(STAMPS)/services
	$(VENV)/bin/pytest tests -q -m "not slow and not browser"

lint: setup
	$(VENV)/bin/ruff check backend tests bench scripts
	$(VENV)/bin/ruff format --check backend tests bench scripts
	$(VENV)/bin/mypy
	$(PY) scripts/check_layering.py
	cd frontend && npm run --silent lint

bench: setup
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(STAMPS) frontend/dist

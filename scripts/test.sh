#!/usr/bin/env bash
# Set everything up and run the whole check: ruff, mypy --strict, then the test suite (no network needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export LITELLM_LOCAL_MODEL_COST_MAP=True
.venv/bin/ruff check pi_builder_middleware plugins adapters tests benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"

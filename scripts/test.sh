#!/usr/bin/env bash
# Set everything up and run the whole check: ruff (lint and format), the layer contracts (lint-imports), mypy --strict,
# then the test suite (no network needed),
# then the LiteLLM adapter's legacy tests in each older-LiteLLM venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export LITELLM_LOCAL_MODEL_COST_MAP=True
.venv/bin/ruff check pi_builder_middleware plugins adapters testing tools tests benchmarks
.venv/bin/ruff format --check pi_builder_middleware plugins adapters testing tools tests benchmarks
# The installed layout as one tree (build/layout), for import-linter and mypy (pyproject mypy_path).
.venv/bin/python scripts/layout.py
(cd build/layout && ../../.venv/bin/lint-imports ../../pyproject.toml)
.venv/bin/mypy
# In parallel, one pytest-xdist worker per CPU; --dist loadscope keeps each module in one worker, so a module-scoped
# fixture (the chaos quick bench, the LiteLLM proxy processes) is set up once, not once per worker.
.venv/bin/python -m pytest -q -p no:cacheprovider -n auto --dist loadscope "$@"
# The LiteLLM adapter's legacy path (set_custom_routing_strategy) against each pinned older LiteLLM; only
# tests/adapters/litellm_legacy (tests/adapters/conftest.py keeps each LiteLLM suite to its own LiteLLM).
source scripts/litellm-legacy.sh
for entry in "${LITELLM_LEGACY[@]}"; do
  "${entry%%=*}/bin/python" -m pytest -q -p no:cacheprovider tests/adapters/litellm_legacy
done

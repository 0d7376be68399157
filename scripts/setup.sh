#!/usr/bin/env bash
# Create .venv (if missing) and install the project with every extra; the .venv-litellm-legacy* venvs with
# older LiteLLM releases (scripts/litellm-legacy.sh); install redis-server (tests/state) when
# missing and possible (root + apt-get). Idempotent; otherwise needs only python3.11 + pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[all,dev]"
# LangChain's standard tests for chat models (tests/adapters/langchain/test_lc_standard_tests.py). Without
# its dependencies: it caps vcrpy below 9, which tests/cassettes need; what its unit tests use (syrupy,
# pytest-benchmark) comes with the dev extra.
.venv/bin/python -m pip install --quiet --no-deps "langchain-tests>=1.1.9,<1.2"
# The LiteLLM adapter on older LiteLLM (tests/adapters/litellm_legacy): a small venv per pinned release.
source scripts/litellm-legacy.sh
for entry in "${LITELLM_LEGACY[@]}"; do
  venv="${entry%%=*}"
  if [ ! -x "$venv/bin/python" ]; then
    "$PY" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e ".[sim]" "litellm==${entry#*=}" "pytest>=8" "pytest-asyncio>=0.23" \
    "pytest-timeout>=2.3"
done
# A real redis-server for the shared-state tests (tests/state; under CI they fail without it).
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "setup: redis-server not found and cannot be installed here (not root, or no apt-get);" \
         "install it to run tests/state" >&2
  fi
fi

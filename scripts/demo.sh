#!/usr/bin/env bash
# Set everything up and run the live demo (simulated providers over local HTTP, no network needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export LITELLM_LOCAL_MODEL_COST_MAP=True
.venv/bin/pi-builder demo "$@"

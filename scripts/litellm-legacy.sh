# Sourced by setup.sh and test.sh: the older LiteLLM releases the adapter's legacy path (LiteLLM before
# 1.109: set_custom_routing_strategy; adapters/litellm/_legacy.py) is tested with, each in a venv of its own
# (venv=version): the oldest supported release (_legacy.MIN_LEGACY_VERSION) and the newest legacy one. The
# newest runs last: 1.80's exit handlers print warnings after pytest's summary line.
# shellcheck disable=SC2034  # used by the scripts that source this file
LITELLM_LEGACY=(".venv-litellm-legacy-oldest=1.80.0" ".venv-litellm-legacy=1.108.14")

"""The strategy-name compatibility cases (``tests/adapters/litellm_compat_names.py``) on LiteLLM 1.80-1.108."""

from __future__ import annotations

from litellm_compat_names import *  # noqa: F403  # the shared cases, collected here

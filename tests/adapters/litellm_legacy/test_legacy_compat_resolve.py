"""The model-resolution compatibility cases (``tests/adapters/litellm_compat_resolve.py``) on LiteLLM 1.80-1.108."""

from __future__ import annotations

from litellm_compat_resolve import *  # noqa: F403  # the shared cases, collected here

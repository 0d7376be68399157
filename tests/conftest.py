"""Suite-wide settings: no network lookups from litellm, ever."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

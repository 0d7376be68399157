"""Which LiteLLM adapter suite belongs to the installed LiteLLM, decided without importing it.

``litellm/`` needs LiteLLM >= 1.109 (``register_plugin``, ``RoutingContext``); ``litellm_legacy/`` runs in
``.venv-litellm-legacy`` with an older one (``set_custom_routing_strategy``; see scripts/setup.sh and
scripts/test.sh). The other suite is not collected at all.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version


def _litellm_release() -> tuple[int, int] | None:
    try:
        match = re.match(r"(\d+)\.(\d+)", version("litellm"))
    except PackageNotFoundError:
        return None
    return (int(match[1]), int(match[2])) if match else None


_release = _litellm_release()
collect_ignore = ["litellm"] if _release is not None and _release < (1, 109) else ["litellm_legacy"]

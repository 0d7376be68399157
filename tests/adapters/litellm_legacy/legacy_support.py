"""Settings for the legacy-LiteLLM adapter tests; the helpers both suites use are in ``litellm_support``."""

from __future__ import annotations

from pi_builder_middleware import FailoverConfig

# Trips on 2 consecutive failures (the failure-rate trip is kept out of the way), ejects for 0.3 s.
FAST_BREAKER = FailoverConfig.preset(
    "aggressive", base_ejection_s=0.3, jitter=0.0, recovery_successes=1, minimum_calls=50
)
NEVER_TRIP = FailoverConfig.preset("conservative", consecutive_failures=1000, minimum_calls=1000)

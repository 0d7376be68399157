"""The LiteLLM feature compatibility cases (``tests/adapters/litellm_compat_features.py``) on LiteLLM 1.80-1.108."""

from __future__ import annotations

from litellm_compat_features import (  # the shared cases, collected here
    build,
    test_a_fallback_kind_does_not_handle_other_errors,
    test_a_retry_policy_overrides_num_retries_per_error,
    test_a_stream_falls_back_when_the_group_fails_before_the_first_chunk,
    test_context_window_and_content_policy_fallbacks,
    test_cooldowns_take_a_failing_deployment_out,
    test_fallbacks_answer_from_the_fallback_group,
    test_num_retries_retries_a_failing_group,
)

__all__ = [
    "build",
    "test_a_fallback_kind_does_not_handle_other_errors",
    "test_a_retry_policy_overrides_num_retries_per_error",
    "test_a_stream_falls_back_when_the_group_fails_before_the_first_chunk",
    "test_context_window_and_content_policy_fallbacks",
    "test_cooldowns_take_a_failing_deployment_out",
    "test_fallbacks_answer_from_the_fallback_group",
    "test_num_retries_retries_a_failing_group",
]

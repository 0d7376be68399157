"""The LiteLLM feature compatibility cases (``tests/adapters/litellm_compat_features.py``) on LiteLLM >= 1.110."""

from __future__ import annotations

from litellm_compat_features import (
    build,
    test_a_fallback_kind_does_not_handle_other_errors,
    test_a_provider_over_its_budget_gets_no_more_traffic,
    test_a_retry_policy_overrides_num_retries_per_error,
    test_a_stream_falls_back_when_the_group_fails_before_the_first_chunk,
    test_context_window_and_content_policy_fallbacks,
    test_cooldowns_take_a_failing_deployment_out,
    test_fallbacks_answer_from_the_fallback_group,
    test_num_retries_retries_a_failing_group,
    test_order_groups_use_the_first_order_while_it_is_healthy,
    test_pre_call_checks_leave_out_a_deployment_whose_context_window_is_too_small,
    test_rpm_limits_with_pre_call_checks_keep_a_full_deployment_out,
    test_tag_filtering_sends_a_tagged_request_to_its_tag,
    test_usage_based_routing_v2_limits_keep_a_full_deployment_out,
    test_usage_based_routing_v2_with_every_deployment_full_answers_its_rate_limit_error,
)

__all__ = [
    "build",
    "test_a_fallback_kind_does_not_handle_other_errors",
    "test_a_provider_over_its_budget_gets_no_more_traffic",
    "test_a_retry_policy_overrides_num_retries_per_error",
    "test_a_stream_falls_back_when_the_group_fails_before_the_first_chunk",
    "test_context_window_and_content_policy_fallbacks",
    "test_cooldowns_take_a_failing_deployment_out",
    "test_fallbacks_answer_from_the_fallback_group",
    "test_num_retries_retries_a_failing_group",
    "test_order_groups_use_the_first_order_while_it_is_healthy",
    "test_pre_call_checks_leave_out_a_deployment_whose_context_window_is_too_small",
    "test_rpm_limits_with_pre_call_checks_keep_a_full_deployment_out",
    "test_tag_filtering_sends_a_tagged_request_to_its_tag",
    "test_usage_based_routing_v2_limits_keep_a_full_deployment_out",
    "test_usage_based_routing_v2_with_every_deployment_full_answers_its_rate_limit_error",
]

"""Names shared by every telemetry sink: span, attribute, metric and label names, and the label values of a provider.

Attribute names follow the OpenTelemetry GenAI semantic conventions where one exists (``gen_ai.*``,
``error.type``, ``server.address``); what the conventions do not cover lives under ``pi_builder.*``.
"""

from __future__ import annotations

from pi_builder_middleware.enums import CircuitState, HealthStatus
from pi_builder_middleware.models import Provider, RoutingDecision

__all__ = [
    "ATTEMPT",
    "ATTEMPT_HEDGE",
    "ATTEMPT_LOST",
    "BREAKER_EVENTS",
    "CIRCUIT_VALUE",
    "DECISION_CHAIN",
    "DECISION_PANIC",
    "DECISION_PROVIDER",
    "DECISION_REASON",
    "DECISION_STRATEGY",
    "DECISION_TRIAL",
    "ERROR_KIND",
    "ERROR_TYPE",
    "EVENT_DETAIL",
    "HEALTH_VALUE",
    "OPERATION",
    "OPERATION_CHAT",
    "PROVIDER_ID",
    "PROVIDER_NAME",
    "REQUEST_MODEL",
    "REQUEST_SPAN",
    "REQUEST_STREAM",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "USAGE_INPUT",
    "USAGE_OUTPUT",
    "api_provider",
    "decision_reason",
    "error_type",
    "request_model",
]

# -- GenAI semantic conventions ------------------------------------------------------------------
OPERATION = "gen_ai.operation.name"
OPERATION_CHAT = "chat"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
USAGE_INPUT = "gen_ai.usage.input_tokens"
USAGE_OUTPUT = "gen_ai.usage.output_tokens"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"

# -- the project's own ---------------------------------------------------------------------------
REQUEST_SPAN = "pi_builder.request"
PROVIDER_ID = "pi_builder.provider.id"
ATTEMPT = "pi_builder.attempt"
ATTEMPT_HEDGE = "pi_builder.attempt.hedge"  # started beside the loop's attempt (hedged requests)
ATTEMPT_LOST = "pi_builder.attempt.lost_race"  # cancelled: another attempt of the request answered first
ERROR_KIND = "pi_builder.error.kind"
EVENT_DETAIL = "pi_builder.detail"
DECISION_STRATEGY = "pi_builder.decision.strategy"
DECISION_REASON = "pi_builder.decision.reason"
DECISION_PROVIDER = "pi_builder.decision.provider"
DECISION_CHAIN = "pi_builder.decision.chain"
DECISION_TRIAL = "pi_builder.decision.trial"
DECISION_PANIC = "pi_builder.decision.panic"

#: Span event name per failover event kind (the event log's kinds that matter to a trace).
BREAKER_EVENTS = {
    "blacklist": "pi_builder.breaker.open",
    "half_open": "pi_builder.breaker.half_open",
    "recovery": "pi_builder.breaker.closed",
    "rate_limited": "pi_builder.cooldown",
    "switch": "pi_builder.failover",
    "ejection_capped": "pi_builder.ejection_capped",
}

#: Breaker state as a number: the scale of LiteLLM's ``litellm_deployment_state`` (0 healthy, 1 partial, 2 outage).
CIRCUIT_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
#: Health status as a number (larger is worse; unknown counts as healthy).
HEALTH_VALUE = {status: status.rank for status in HealthStatus}


def api_provider(provider: Provider) -> str:
    """The vendor of a provider's model: the prefix of ``model`` before ``/`` (LiteLLM's ``openai/gpt-4o``), else ""."""
    model = provider.model
    if model and "/" in model:
        return model.split("/", 1)[0]
    return ""


def request_model(provider: Provider) -> str:
    """The model a provider is asked for (``model`` without its vendor prefix), else its id."""
    model = provider.model
    if not model:
        return provider.id
    return model.split("/", 1)[1] if "/" in model else model


def error_type(error: BaseException | None) -> str:
    """``error.type``: the exception's class name (never its message: it may quote keys or prompts)."""
    return type(error).__name__ if error is not None else "_OTHER"


def decision_reason(decision: RoutingDecision) -> str:
    """A low-cardinality reason for a decision (a metric label).

    One of panic, trial, passing_over, probing, exploring, other, ranked.
    """
    if decision.panic:
        return "panic"
    note = decision.note
    if note:
        for prefix in ("passing over", "probing", "exploring"):
            if note.startswith(prefix):
                return prefix.replace(" ", "_")
        return "other"
    return "trial" if decision.trial else "ranked"

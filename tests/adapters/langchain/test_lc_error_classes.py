"""LangChain's standard model errors (``langchain_core.exceptions``) are classified by type."""

from __future__ import annotations

import httpx
import pytest
from langchain_core import exceptions as lc
from langchain_openai.chat_models import base as lc_openai
from pi_builder_middleware.plugins.classify import classify as classify_by_rules
from pi_builder_middleware.plugins.classify_langchain import classify_model_error

from pi_builder_middleware import ErrorKind, Middleware, Provider


@pytest.fixture
def mw() -> Middleware:
    return Middleware([Provider(id="a"), Provider(id="b")], load_entrypoints=False)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (lc.ModelRateLimitError("slow down"), ErrorKind.RATE_LIMITED),
        (lc.ModelAPIError("boom"), ErrorKind.SERVER_ERROR),
        (lc.ModelConnectionError("refused"), ErrorKind.CONNECTION),
        (lc.ModelTimeoutError("late"), ErrorKind.TIMEOUT),
        (lc.ContextOverflowError("too long"), ErrorKind.CONTEXT_WINDOW),
        (lc.ModelRefusalError(), ErrorKind.CONTENT_POLICY),
        (lc.ModelAuthenticationError("bad key"), ErrorKind.AUTH),
        (lc.ModelPermissionDeniedError("no"), ErrorKind.AUTH),
        (lc.ModelNotFoundError("which model?"), ErrorKind.AUTH),
        (lc.ModelInvalidRequestError("bad field"), ErrorKind.BAD_REQUEST),
    ],
)
def test_each_standard_error_has_its_kind_without_any_message_or_status(mw, error, kind):
    assert mw.classify(error, "a") is kind


def test_the_rules_alone_could_not_read_them():
    # what the type-based plugin adds: bare standard errors carry no status and no telling text
    assert classify_by_rules(lc.ModelConnectionError("x")) is ErrorKind.UNKNOWN
    assert classify_by_rules(lc.ModelRateLimitError("x")) is ErrorKind.UNKNOWN


def test_type_wins_over_a_misleading_status_and_message(mw):
    class ProviderRateLimit(lc.ModelRateLimitError):
        status_code = 500  # a gateway that wraps a 429 in a 500

    assert mw.classify(ProviderRateLimit("internal server error"), "a") is ErrorKind.RATE_LIMITED


def test_a_5xx_that_says_overloaded_by_status_is_overloaded(mw):
    class Unavailable(lc.ModelAPIError):
        status_code = 503

    assert mw.classify(Unavailable("x"), "a") is ErrorKind.OVERLOADED


def test_invalid_request_about_content_policy_stays_request_specific(mw):
    error = lc.ModelInvalidRequestError("rejected by the content_policy filter")
    assert mw.classify(error, "a") is ErrorKind.CONTENT_POLICY


def _response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions"))


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (lc_openai.OpenAIRateLimitError(message="x", response=_response(429), body=None), ErrorKind.RATE_LIMITED),
        (lc_openai.OpenAIAPIError(message="x", response=_response(500), body=None), ErrorKind.SERVER_ERROR),
        (lc_openai.OpenAIAPIError(message="x", response=_response(503), body=None), ErrorKind.OVERLOADED),
        (
            lc_openai.OpenAIContextOverflowError(message="x", response=_response(400), body=None),
            ErrorKind.CONTEXT_WINDOW,
        ),
        (lc_openai.OpenAIInvalidRequestError(message="x", response=_response(400), body=None), ErrorKind.BAD_REQUEST),
        (lc_openai.OpenAIAuthenticationError(message="x", response=_response(401), body=None), ErrorKind.AUTH),
        (lc_openai.OpenAIConnectionError(message="x", request=_response(500).request), ErrorKind.CONNECTION),
        (lc_openai.OpenAITimeoutError(_response(500).request), ErrorKind.TIMEOUT),
    ],
)
def test_a_provider_package_raising_them_is_classified_by_the_standard_type(mw, error, kind):
    assert classify_model_error(error) is kind
    assert mw.classify(error, "a") is kind


def test_other_errors_are_left_to_the_provider_specific_rules(mw):
    assert classify_model_error(TimeoutError()) is None
    assert classify_model_error(lc.OutputParserException("not json")) is None
    assert mw.classify(TimeoutError(), "a") is ErrorKind.TIMEOUT  # the fallback rules still answer


def test_blocking_the_plugin_falls_back_to_the_rules(monkeypatch):
    monkeypatch.setenv("PI_BUILDER_BLOCK_PLUGINS", "pi_builder_middleware.plugins.classify_langchain")
    mw = Middleware([Provider(id="a")], load_entrypoints=False)
    assert mw.classify(lc.ModelConnectionError("x"), "a") is ErrorKind.UNKNOWN
    assert (
        mw.classify(lc_openai.OpenAIRateLimitError(message="x", response=_response(429), body=None), "a")
        is ErrorKind.RATE_LIMITED
    )

"""Built-in classifier for LangChain's standard model errors (``langchain_core.exceptions``, langchain-core >= 1.7).

Provider packages raise these alongside (as subclasses of) their SDK's own errors, e.g.
``langchain_openai``'s ``OpenAIRateLimitError(openai.RateLimitError, ModelRateLimitError)``, so any
package that raises them is classified by type, without reading messages. The classes are recognised
by name and module, so langchain-core is never imported here. Errors that are none of these are left
to the provider-specific rules of :mod:`pi_builder_middleware.plugins.classify` (asked next).
"""

from __future__ import annotations

from pi_builder_middleware import ErrorKind, Provider, hookimpl, status_code_of

from .classify import classify as classify_by_rules

__all__ = ["LANGCHAIN_ERRORS_MODULE", "classify_model_error"]

#: Where LangChain's standard model errors live.
LANGCHAIN_ERRORS_MODULE = "langchain_core.exceptions"

_KINDS = {
    "ContextOverflowError": ErrorKind.CONTEXT_WINDOW,
    "ModelRefusalError": ErrorKind.CONTENT_POLICY,
    "ModelRateLimitError": ErrorKind.RATE_LIMITED,
    "ModelAPIError": ErrorKind.SERVER_ERROR,
    "ModelConnectionError": ErrorKind.CONNECTION,
    "ModelTimeoutError": ErrorKind.TIMEOUT,
    "ModelAuthenticationError": ErrorKind.AUTH,
    "ModelPermissionDeniedError": ErrorKind.AUTH,
    "ModelNotFoundError": ErrorKind.AUTH,
    "ModelInvalidRequestError": ErrorKind.BAD_REQUEST,
}


def classify_model_error(error: BaseException) -> ErrorKind | None:
    """The kind of a ``langchain_core.exceptions.ModelError`` subclass; None for any other error.

    The most specific standard class in the error's MRO decides. A server error (``ModelAPIError``)
    that carries HTTP 503/529 is :attr:`ErrorKind.OVERLOADED`; an invalid request
    (``ModelInvalidRequestError``) that the provider-specific rules read as a context-window or
    content-policy rejection is that, else :attr:`ErrorKind.BAD_REQUEST`.
    """
    for cls in type(error).__mro__:
        if cls.__module__ != LANGCHAIN_ERRORS_MODULE:
            continue
        kind = _KINDS.get(cls.__name__)
        if kind is None:
            continue  # ModelError itself, LangChainException: nothing standard to say
        if kind is ErrorKind.SERVER_ERROR and status_code_of(error) in (503, 529):
            return ErrorKind.OVERLOADED
        if kind is ErrorKind.BAD_REQUEST:
            refined = classify_by_rules(error)
            if refined.is_request_specific:
                return refined
        return kind
    return None


@hookimpl(trylast=True)
def pbm_classify_error(error: BaseException, provider: Provider) -> ErrorKind | None:
    """LangChain's standard model errors by type; None (the provider-specific rules decide) for others."""
    return classify_model_error(error)

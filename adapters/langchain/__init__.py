"""LangChain adapter: health-aware routing and failover as a Runnable or a chat model.

::

    from pi_builder_middleware.adapters.langchain import HealthAwareFallbacks

    llm = HealthAwareFallbacks(
        models={"openai/gpt-4o": ChatOpenAI(model="gpt-4o", max_retries=0),
                "anthropic/sonnet": ChatAnthropic(model="claude-sonnet-4-5", max_retries=0)},
        strategy="cost-optimal", failover="balanced",  # or middleware=mw (provider ids = these keys)
    )
    chain = prompt | llm | StrOutputParser()

Unlike ``with_fallbacks``, every call asks the middleware for the order, so a provider whose breaker is
open is not even tried; every attempt is recorded (latency, time to first chunk, tokens from
``usage_metadata``, cost, error); errors the classifier marks as the request's fault (400) propagate at
once; when everything fails, :class:`~pi_builder_middleware.AllProvidersFailedError` lists each attempt.
Streams fail over while the caller has seen nothing (leading empty chunks, such as OpenAI's role chunk,
are held back); a failure after that raises :class:`~pi_builder_middleware.StreamInterruptedError`
instead of ending with a silently truncated answer. ``first_chunk_timeout_s`` fails over a provider too
slow to start streaming.

:class:`HealthAwareChatModel` does the same as a ``BaseChatModel`` (agents, ``bind_tools``,
``with_structured_output``); both share one routing loop. :class:`HealthAwareModelMiddleware` (needs
``langchain`` >= 1.4, imported on first use) does it inside ``create_agent`` agents, as an
``AgentMiddleware`` choosing the model of each model call. Both pass the caller's config on to the
wrapped models (callbacks, tags, metadata and ``configurable`` values, so ``configurable_fields`` /
``configurable_alternatives`` on the wrapped models follow ``config={"configurable": {...}}``);
``HealthAwareChatModel`` takes it from its ``invoke``/``ainvoke``/``stream``/``astream`` (and
``batch``/``abatch``), since LangChain's ``_generate`` hooks do not receive it.

Provider SDK retries delay failover
-----------------------------------
Chat models retry on their own before raising (``ChatOpenAI``/``ChatAnthropic`` default to
``max_retries=2`` with exponential backoff). The wrapper only sees the error after all of them, so an
outage costs every call several round trips and seconds of backoff before it fails over, and the breaker
learns late. Create wrapped models with ``max_retries=0`` (and a client ``timeout``): failing over to a
healthy provider is the retry. ``ChatLiteLLM`` needs ``max_retries=0`` *and*
``model_kwargs={"max_retries": 0}`` (the SDK client inside LiteLLM retries a 503 twice otherwise).

A provider whose breaker is open is skipped; when every provider is open, cooling down or filtered out,
the call raises :class:`~pi_builder_middleware.NoProviderAvailableError` at once (fail fast) instead
of trying providers known to be down.

Waiting out an outage of every provider
---------------------------------------
``max_wait_s`` (default 0: fail at once) makes a call that found nobody available, or whose every
attempt failed over, sleep until the first provider may take a call again (its breaker's ejection or
429 cooldown ends; at least a 50 ms backoff that doubles each time it decides the wait) and try a new
pass, until ``max_wait_s`` after the call started; if nobody is back before then it gives up at once.
The final :class:`~pi_builder_middleware.AllProvidersFailedError` lists every pass's attempts; errors
that do not fail over and streams broken after their first chunk still propagate at once. Set it to
the request's time budget (the client's timeout, less a margin for the last attempt) so that an
all-down spell shorter than that costs a few trial calls instead of the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._loop import FirstChunkTimeoutError
from ._setup import ProvidersArg
from .chat_model import HealthAwareChatModel
from .fallbacks import HealthAwareFallbacks

if TYPE_CHECKING:
    from .agent import HealthAwareModelMiddleware

__all__ = [
    "FirstChunkTimeoutError",
    "HealthAwareChatModel",
    "HealthAwareFallbacks",
    "HealthAwareModelMiddleware",
    "ProvidersArg",
]


def __getattr__(name: str) -> Any:
    # The agent middleware needs ``langchain`` (agents), not only langchain-core: imported on first use.
    if name == "HealthAwareModelMiddleware":
        from .agent import HealthAwareModelMiddleware

        return HealthAwareModelMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

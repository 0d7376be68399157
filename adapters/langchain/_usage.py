"""Token usage of one attempt: from the LLM runs inside it (callbacks), else from its output or chunks."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import patch_config

__all__ = ["UsageHandler", "UsageSum", "returns_usage", "usage_of", "with_usage_handler"]


def returns_usage(runnable: Runnable[Any, Any]) -> bool:
    """Whether the runnable's own output carries its usage (a chat model, possibly bound, e.g. ``bind_tools``).

    For those the attempt needs no :class:`UsageHandler`, which saves LangChain's callback work per call.
    """
    while isinstance(runnable, RunnableBinding):
        runnable = runnable.bound
    return isinstance(runnable, BaseChatModel)


def _tokens(message: Any) -> tuple[int, int] | None:
    if isinstance(message, AIMessage):
        usage = message.usage_metadata
        if usage:
            return int(usage.get("input_tokens", 0) or 0), int(usage.get("output_tokens", 0) or 0)
    return None


def usage_of(output: Any) -> tuple[int, int]:
    """``(input_tokens, output_tokens)`` from an AIMessage's ``usage_metadata`` (also inside ``{"raw": ...}``)."""
    if isinstance(output, dict):
        output = output.get("raw")
    return _tokens(output) or (0, 0)


class UsageSum:
    """Adds up ``usage_metadata`` over the chunks of a stream (LangChain's usage is additive per chunk)."""

    __slots__ = ("input_tokens", "output_tokens")

    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0

    def tokens(self) -> tuple[int, int]:
        """``(input_tokens, output_tokens)`` so far."""
        return self.input_tokens, self.output_tokens

    def add(self, chunk: Any) -> None:
        """Count ``chunk``'s tokens, if it carries any."""
        tokens = _tokens(chunk)
        if tokens is not None:
            self.input_tokens += tokens[0]
            self.output_tokens += tokens[1]


class UsageHandler(BaseCallbackHandler):
    """Sums the usage of the outermost LLM runs inside one attempt.

    This sees tokens that never reach the attempt's output (``with_structured_output``, chains that
    end in a parser). LLM runs nested inside another LLM run (a wrapper model calling a real one) are
    skipped so their tokens are not counted twice.
    """

    run_inline = True  # called on the caller's thread/loop: no executor hop for a few additions

    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.seen = False
        self._top_llm_runs: set[UUID] = set()
        self._inside_llm: set[UUID] = set()

    def _started(self, run_id: UUID, parent_run_id: UUID | None, *, llm: bool) -> None:
        if parent_run_id is not None and (parent_run_id in self._top_llm_runs or parent_run_id in self._inside_llm):
            self._inside_llm.add(run_id)
        elif llm:
            self._top_llm_runs.add(run_id)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._started(run_id, parent_run_id, llm=True)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._started(run_id, parent_run_id, llm=True)

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._started(run_id, parent_run_id, llm=False)

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._started(run_id, parent_run_id, llm=False)

    def on_llm_end(
        self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        if run_id not in self._top_llm_runs:
            return
        for generations in response.generations:
            for generation in generations:
                tokens = _tokens(getattr(generation, "message", None))
                if tokens is not None:
                    self.seen = True
                    self.input_tokens += tokens[0]
                    self.output_tokens += tokens[1]


def with_usage_handler(config: RunnableConfig) -> tuple[RunnableConfig, UsageHandler]:
    """``config`` with a fresh :class:`UsageHandler` added to its (inheritable) callbacks."""
    handler = UsageHandler()
    callbacks = config.get("callbacks")
    if callbacks is None or isinstance(callbacks, list):
        patched = config.copy()
        patched["callbacks"] = [*(callbacks or ()), handler]
        return patched, handler
    manager = callbacks.copy()
    manager.add_handler(handler, inherit=True)
    return patch_config(config, callbacks=manager), handler

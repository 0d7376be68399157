"""What LangChain's standard chat-model contract asks of ``HealthAwareChatModel``: tools and tracing params.

``bind_tools`` returns a ``RunnableBinding`` (what LangChain's standard tests and tools expect) whose
kwargs carry the tools in OpenAI format (LangChain's common tool format, which every provider's own
``bind_tools`` accepts), ``tool_choice`` and any further ``bind_tools`` options. At call time those
kwargs are taken off again and each wrapped model gets them through its *own* ``bind_tools``, so
every provider formats the tools its way. The per-model bindings made when ``bind_tools`` was called
are kept (a few, most recent first) for the calls through that binding.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.utils.function_calling import convert_to_openai_tool

from pi_builder_middleware import Middleware

from ._setup import derive

__all__ = [
    "TOOL_OPTIONS_KEY",
    "ToolBindings",
    "ToolSpec",
    "ls_params_of",
    "openai_tools",
    "split_tool_kwargs",
    "standard_ls_params",
    "unwrap",
]

#: Binding kwarg holding ``bind_tools`` options other than ``tool_choice`` (e.g. ``parallel_tool_calls``).
TOOL_OPTIONS_KEY = "pbm_tool_options"


class ToolSpec:
    """What one ``bind_tools`` call asked for: tools, ``tool_choice`` (None: not given) and further options."""

    __slots__ = ("options", "tool_choice", "tools")

    def __init__(self, tools: Sequence[Any], tool_choice: Any, options: Mapping[str, Any]) -> None:
        self.tools = tools
        self.tool_choice = tool_choice
        self.options = dict(options)

    def bind_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for each model's own ``bind_tools``."""
        kwargs = dict(self.options)
        if self.tool_choice is not None:
            kwargs["tool_choice"] = self.tool_choice
        return kwargs

    def same_as(self, other: ToolSpec) -> bool:
        return self.tools is other.tools and self.tool_choice == other.tool_choice and self.options == other.options


def openai_tools(tools: Sequence[Any]) -> list[Any]:
    """Tools in OpenAI format where LangChain can convert them; others (provider built-ins) as given."""
    out: list[Any] = []
    for tool in tools:
        try:
            out.append(convert_to_openai_tool(tool))
        except Exception:  # e.g. a provider's built-in tool dict: that provider's bind_tools knows it
            out.append(tool)
    return out


def split_tool_kwargs(kwargs: dict[str, Any]) -> tuple[ToolSpec | None, dict[str, Any]]:
    """``(tools asked for, the remaining call kwargs)``; ``(None, kwargs)`` when no tools are bound."""
    if "tools" not in kwargs:
        return None, kwargs
    rest = dict(kwargs)
    tools = rest.pop("tools")
    tool_choice = rest.pop("tool_choice", None)
    options = rest.pop(TOOL_OPTIONS_KEY, None) or {}
    if not tools:
        return None, rest
    return ToolSpec(tools, tool_choice, options), rest


class ToolBindings:
    """The wrapped models bound to recent tool specs (``make(bound_models)`` builds what a call runs on)."""

    __slots__ = ("_entries", "_lock", "limit")

    def __init__(self, limit: int = 16) -> None:
        self.limit = limit
        self._entries: OrderedDict[int, tuple[ToolSpec, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def derive(self, models: Mapping[str, Runnable[Any, Any]], spec: ToolSpec) -> dict[str, Runnable[Any, Any]]:
        """Every model's own ``bind_tools(spec)``; NotImplementedError names a model that has none."""
        return derive(models, "bind_tools", (spec.tools,), spec.bind_kwargs())

    def remember(self, spec: ToolSpec, value: Any) -> None:
        with self._lock:
            self._entries[id(spec.tools)] = (spec, value)  # the spec keeps its tools alive: the id stays theirs
            self._entries.move_to_end(id(spec.tools))
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)

    def get(self, spec: ToolSpec, build: Callable[[], Any]) -> Any:
        """What was remembered for ``spec``, else ``build()`` (not remembered: bound some other way)."""
        with self._lock:
            entry = self._entries.get(id(spec.tools))
        if entry is not None and entry[0].same_as(spec):
            return entry[1]
        return build()


def unwrap(model: Runnable[Any, Any]) -> Runnable[Any, Any]:
    """The model under ``RunnableBinding`` layers (e.g. ``bind_tools``)."""
    while isinstance(model, RunnableBinding):
        model = model.bound
    return model


def ls_params_of(model: Runnable[Any, Any], stop: list[str] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The standard LangSmith params of a wrapped chat model, or {} when it is no chat model or they fail."""
    inner = unwrap(model)
    if not isinstance(inner, BaseChatModel):
        return {}
    try:
        params = inner._get_ls_params(stop=stop, **kwargs)
    except Exception:  # a provider's tracing helper must never break a call
        return {}
    return dict(params)


def standard_ls_params(
    models: Mapping[str, Runnable[Any, Any]], middleware: Middleware, stop: list[str] | None, kwargs: Mapping[str, Any]
) -> LangSmithParams:
    """Standard tracing params of the model a call would start with (the first key whose provider is available).

    Its own ``ls_provider``/``ls_model_name`` where it is a chat model (else ``pi_builder_middleware`` and
    the key); a per-call ``model`` override wins. Each attempt's own run (a child of the wrapper's) carries
    the params of the provider that served it.
    """
    _spec, rest = split_tool_kwargs(dict(kwargs))
    pid = _preferred(models, middleware)
    own = ls_params_of(models[pid], stop, rest)
    params = LangSmithParams(
        ls_provider=str(own.get("ls_provider") or "pi_builder_middleware"),
        ls_model_name=str(own.get("ls_model_name") or pid),
        ls_model_type="chat",
    )
    if isinstance(rest.get("model"), str):
        params["ls_model_name"] = rest["model"]
    temperature = own.get("ls_temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        params["ls_temperature"] = float(temperature)
    max_tokens = own.get("ls_max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        params["ls_max_tokens"] = max_tokens
    stops = stop if stop else own.get("ls_stop")
    if isinstance(stops, list) and stops:
        params["ls_stop"] = [str(item) for item in stops]
    return params


def _preferred(models: Mapping[str, Runnable[Any, Any]], middleware: Middleware) -> str:
    """The first model key whose provider may take a call now (the first key when none may)."""
    failover = middleware.failover
    for pid in models:
        try:
            if failover.unavailable_reason(pid) is None:
                return pid
        except Exception:  # removed from the middleware meanwhile: not this one
            continue
    return next(iter(models))

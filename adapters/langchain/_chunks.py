"""Stream heads: empty chunks are held back, and a thread bounds the wait for the first chunk of a sync stream."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from contextvars import Context
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables.utils import coro_with_context

__all__ = [
    "HeadTimeout",
    "aclose_quietly",
    "apull_head",
    "close_quietly",
    "is_empty_chunk",
    "pull_head",
    "pull_head_in_thread",
]


class HeadTimeout(TimeoutError):
    """Raised by :func:`pull_head_in_thread` when no non-empty chunk arrived in time."""


def is_empty_chunk(chunk: Any) -> bool:
    """Whether a chunk carries nothing a reader would see (OpenAI's leading role chunk, an empty string).

    Such chunks are held back until the first real one, so a stream that breaks before its first
    token can still fail over without the caller having seen anything.
    """
    if isinstance(chunk, str):
        return not chunk
    if isinstance(chunk, BaseMessage):
        return not chunk.content and not chunk.additional_kwargs and not getattr(chunk, "tool_call_chunks", None)
    return False


def pull_head(iterator: Iterator[Any], context: Context) -> tuple[list[Any], bool]:
    """Chunks up to and including the first non-empty one; ``True`` second if the stream ended first."""
    head: list[Any] = []
    while True:
        try:
            chunk = context.run(next, iterator)
        except StopIteration:
            return head, True
        head.append(chunk)
        if not is_empty_chunk(chunk):
            return head, False


class _Handoff:
    __slots__ = ("abandoned", "done", "error", "lock", "result")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.abandoned = False
        self.result: tuple[list[Any], bool] | None = None
        self.error: BaseException | None = None


def pull_head_in_thread(iterator: Iterator[Any], context: Context, timeout_s: float) -> tuple[list[Any], bool]:
    """:func:`pull_head` bounded by ``timeout_s`` (raises :class:`HeadTimeout`).

    A sync iterator cannot be interrupted, so it is pulled on a daemon thread. When the caller gives
    up, the thread closes the iterator as soon as the slow call returns (releasing its connection).
    """
    box = _Handoff()
    ctx = context.copy()  # the caller's context is reset on its way out while the thread may still run

    def work() -> None:
        result: tuple[list[Any], bool] | None = None
        error: BaseException | None = None
        try:
            result = pull_head(iterator, ctx)
        except BaseException as exc:  # handed to the caller, who re-raises it
            error = exc
        with box.lock:
            box.result, box.error = result, error
            abandoned = box.abandoned
            box.done.set()
        if abandoned:
            close = getattr(iterator, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    threading.Thread(target=work, name="pbm-langchain-first-chunk", daemon=True).start()
    box.done.wait(timeout_s)
    with box.lock:
        if not box.done.is_set():
            box.abandoned = True
            raise HeadTimeout(f"no chunk within {timeout_s} s")
    if box.error is not None:
        raise box.error
    assert box.result is not None
    return box.result


async def apull_head(iterator: AsyncIterator[Any], context: Context) -> tuple[list[Any], bool]:
    """Async :func:`pull_head`."""
    head: list[Any] = []
    while True:
        try:
            chunk = await coro_with_context(anext(iterator), context)
        except StopAsyncIteration:
            return head, True
        head.append(chunk)
        if not is_empty_chunk(chunk):
            return head, False


def close_quietly(iterator: object) -> None:
    """Close a sync iterator (a stream given up on), ignoring what closing raises."""
    close = getattr(iterator, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


async def aclose_quietly(iterator: object) -> None:
    """Close an async iterator (a stream given up on), ignoring what closing raises."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()

"""The aiohttp application for one simulated provider (OpenAI chat-completions API).

Routes: ``POST /v1/chat/completions`` (and ``/chat/completions``), ``GET /v1/models`` (and
``/models``), ``GET /health``. A request may carry ``x-sim-outcome: <outcome>`` to force its outcome,
which is handy for one-off cases; everything else follows the provider's behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from typing import Any

from aiohttp import web

from .behaviour import Decision
from .models import SimOutcome
from .state import ProviderState
from .wire import (
    completion_chunk,
    completion_id,
    completion_payload,
    concurrency_limit_response,
    error_response,
    estimate_prompt_tokens,
    models_payload,
    openai_error,
    response_pieces,
    sse,
    tool_call_for,
    usage_payload,
)

__all__ = ["OUTCOME_HEADER", "ProviderServer"]

OUTCOME_HEADER = "x-sim-outcome"
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


def _call_id(completion: str) -> str:
    """The id of the tool call in completion ``completion`` (stable, like the completion's own id)."""
    return "call_" + completion.removeprefix("chatcmpl-")[:24]


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _parse_chat_request(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _BadRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        ) from None
    if not isinstance(body, dict):
        raise _BadRequest("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _BadRequest("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty array.", "messages")
    return body


def _max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _drop_connection(request: web.Request, *, reset: bool) -> None:
    """Close the client's connection; ``reset`` sends a TCP RST instead of a clean FIN."""
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


class ProviderServer:
    """Serves one provider on its own port; runs inside the simulator's event loop."""

    def __init__(self, state: ProviderState, *, seed: int, host: str) -> None:
        self.state = state
        self._seed = seed
        self._host = host
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port: int | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def start(self) -> int:
        """Bind and start serving; returns the port."""
        runner = web.AppRunner(
            self._app(),
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=0.5,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self.state.spec.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Cancel in-flight handlers (hangs included), then close the listener and connections."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _not_found(self, request: web.Request) -> web.Response:
        body = openai_error(f"Invalid URL ({request.method} {request.path})", "invalid_request_error")
        return web.json_response(body, status=404)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(models_payload(self.state.spec.models, int(time.time())))

    async def _health(self, request: web.Request) -> web.Response:
        if self.state.is_up():
            return web.json_response({"status": "ok", "provider": self.state.name})
        body = openai_error("The server is overloaded or not ready yet.", "server_error")
        return web.json_response(body, status=503)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await self._serve_chat(request)
        finally:
            if task is not None:
                self._tasks.discard(task)

    @staticmethod
    def _api_key(request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        return header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""

    async def _serve_chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = _parse_chat_request(await request.read())
            forced_name = request.headers.get(OUTCOME_HEADER)
            override = None
            if forced_name is not None:
                try:
                    override = SimOutcome(forced_name.strip().lower())
                except ValueError:
                    choices = ", ".join(o.value for o in SimOutcome)
                    message = f"unknown {OUTCOME_HEADER} {forced_name!r}; use one of {choices}"
                    raise _BadRequest(message) from None
        except _BadRequest as exc:
            decision = self.state.begin(stream=False, model="", override=SimOutcome.BAD_REQUEST)
            invalid = openai_error(exc.message, "invalid_request_error", exc.param)
            return web.json_response(invalid, status=400, headers=self._headers(decision))

        model = str(body["model"])
        stream = body.get("stream") is True
        api_key = self._api_key(request)
        bad_key = self.state.spec.api_key is not None and api_key != self.state.spec.api_key
        if bad_key:
            override = SimOutcome.AUTHENTICATION
        decision = self.state.begin(stream=stream, model=model, override=override)
        try:
            return await self._answer(request, body, decision, model, api_key, wait=not bad_key)
        finally:
            self.state.finish(decision)

    async def _answer(
        self, request: web.Request, body: dict[str, Any], decision: Decision, model: str, api_key: str, *, wait: bool
    ) -> web.StreamResponse:
        if decision.rejected_at is not None:
            err = concurrency_limit_response(model, decision.rejected_at)
            return web.json_response(err.body, status=err.status, headers={**self._headers(decision), **err.headers})
        wait_s = decision.wait_s() if wait else 0.0
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        outcome, stream = decision.outcome, decision.stream

        if outcome is SimOutcome.SUCCESS:
            if stream:
                return await self._stream(request, body, decision, model)
            return self._complete(body, decision, model)
        if outcome is SimOutcome.TIMEOUT:
            await asyncio.sleep(decision.hang_s)
            _drop_connection(request, reset=False)
            return web.Response()
        if outcome is SimOutcome.CONNECTION_RESET:
            _drop_connection(request, reset=True)
            return web.Response()
        if outcome is SimOutcome.MALFORMED_BODY:
            return await self._malformed(request, decision, model, stream)
        if outcome is SimOutcome.STREAM_CUT:
            if stream:
                return await self._stream(request, body, decision, model, cut=True)
            return await self._cut_body(request, body, decision, model)
        err = error_response(outcome, model, decision.retry_after_s, api_key)
        return web.json_response(err.body, status=err.status, headers={**self._headers(decision), **err.headers})

    def _headers(self, decision: Decision) -> dict[str, str]:
        return {
            "x-sim-provider": self.state.name,
            "x-sim-request": str(decision.n),
            "x-request-id": f"req_{self.state.name}_{decision.n}",
            "openai-processing-ms": str(round(decision.wait_s() * 1000)),
            "openai-version": "2020-10-01",
        }

    def _content(self, body: dict[str, Any], decision: Decision) -> tuple[list[str], str, int]:
        tokens = decision.completion_tokens
        limit = _max_tokens(body)
        finish_reason = "stop"
        if limit is not None and limit < tokens:
            tokens, finish_reason = limit, "length"
        pieces = response_pieces(self.state.name, decision.n, tokens)
        return pieces, finish_reason, estimate_prompt_tokens(body["messages"])

    def _completion_body(self, body: dict[str, Any], decision: Decision, model: str) -> dict[str, Any]:
        pieces, finish_reason, prompt_tokens = self._content(body, decision)
        cid = completion_id(self._seed, self.state.name, decision.n)
        return completion_payload(
            cid=cid,
            created=int(time.time()),
            model=model,
            content="".join(pieces),
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(pieces),
            tool_call=tool_call_for(body, _call_id(cid)),
        )

    def _complete(self, body: dict[str, Any], decision: Decision, model: str) -> web.Response:
        return web.json_response(self._completion_body(body, decision, model), headers=self._headers(decision))

    async def _cut_body(
        self, request: web.Request, body: dict[str, Any], decision: Decision, model: str
    ) -> web.StreamResponse:
        data = json.dumps(self._completion_body(body, decision, model)).encode()
        resp = web.StreamResponse(headers={**self._headers(decision), "Content-Type": "application/json"})
        resp.content_length = len(data)
        await resp.prepare(request)
        await resp.write(data[: len(data) // 2])
        _drop_connection(request, reset=False)
        return resp

    async def _malformed(
        self, request: web.Request, decision: Decision, model: str, stream: bool
    ) -> web.StreamResponse:
        cid = completion_id(self._seed, self.state.name, decision.n)
        broken = f'{{"id": "{cid}", "object": "chat.completion", "model": "{model}", "choices": [{{"index'
        if not stream:
            return web.Response(
                body=broken.encode(),
                headers={**self._headers(decision), "Content-Type": "application/json"},
            )
        resp = web.StreamResponse(headers={**self._headers(decision), **_SSE_HEADERS})
        await resp.prepare(request)
        await resp.write(sse(broken))
        await resp.write(sse("[DONE]"))
        await resp.write_eof()
        return resp

    async def _stream(
        self, request: web.Request, body: dict[str, Any], decision: Decision, model: str, *, cut: bool = False
    ) -> web.StreamResponse:
        pieces, finish_reason, prompt_tokens = self._content(body, decision)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        common: dict[str, Any] = {
            "cid": completion_id(self._seed, self.state.name, decision.n),
            "created": int(time.time()),
            "model": model,
            "include_usage": include_usage,
        }
        resp = web.StreamResponse(headers={**self._headers(decision), **_SSE_HEADERS})
        await resp.prepare(request)
        role = {"role": "assistant", "content": "", "refusal": None}
        await resp.write(sse(completion_chunk(delta=role, **common)))
        tool_call = None if cut else tool_call_for(body, _call_id(common["cid"]))
        if tool_call is not None:  # the name first, then the arguments, as OpenAI streams a tool call
            function = tool_call["function"]
            head = {**tool_call, "index": 0, "function": {"name": function["name"], "arguments": ""}}
            await resp.write(sse(completion_chunk(delta={"tool_calls": [head]}, **common)))
            arguments = {"index": 0, "function": {"arguments": function["arguments"]}}
            await resp.write(sse(completion_chunk(delta={"tool_calls": [arguments]}, **common)))
            pieces, finish_reason = [], "tool_calls"
        for index, piece in enumerate(pieces):
            if cut and index >= decision.stream_cut_after_chunks:
                _drop_connection(request, reset=False)
                return resp
            if index and decision.token_interval_s > 0:
                await asyncio.sleep(decision.token_interval_s)
            await resp.write(sse(completion_chunk(delta={"content": piece}, **common)))
        if cut:
            _drop_connection(request, reset=False)
            return resp
        await resp.write(sse(completion_chunk(delta={}, finish_reason=finish_reason, **common)))
        if include_usage:
            usage = usage_payload(prompt_tokens, len(pieces) or decision.completion_tokens)
            await resp.write(sse(completion_chunk(delta=None, usage=usage, **common)))
        await resp.write(sse("[DONE]"))
        await resp.write_eof()
        return resp

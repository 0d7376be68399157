"""Record the cassettes in ``cassettes/``.

Default (replica) mode, no network needed::

    python -m tests.cassettes._recorder            # all exchanges
    python -m tests.cassettes._recorder openai_chat_429_retry_after

starts an aiohttp server on 127.0.0.1 that answers each exchange of ``_exchanges.py`` exactly as the
provider documents it (status, headers, JSON body or server-sent events written event by event), makes
LiteLLM call it (``litellm.acompletion`` with ``api_base`` pointing at the replica) inside vcrpy in
record mode, and rewrites each recorded request to the real endpoint (``https://api.openai.com`` /
``https://api.anthropic.com``) so replay matches LiteLLM's default URLs.

Live mode re-records, against the real providers, the exchanges that can be provoked on demand
(success, streaming, context window, bad key)::

    OPENAI_API_KEY=... ANTHROPIC_API_KEY=... python -m tests.cassettes._recorder --live

429 / 500 / 529 cannot be asked for, so they stay replica recordings. Keys are removed from the
recording (``authorization``, ``x-api-key``, ``api-key``, organisation/project headers, cookies) and each
file is checked for the key before it is kept.
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import argparse
import asyncio
import datetime as dt
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as a path: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "tests.cassettes"

from aiohttp import web

from ._exchanges import BY_NAME, EXCHANGES, Exchange, render_headers
from ._helpers import CASSETTE_DIR, find_secrets, make_vcr

# Response headers that identify an account on the real providers.
ACCOUNT_HEADERS = frozenset(
    {"openai-organization", "openai-project", "anthropic-organization-id", "set-cookie", "cookie"}
)
MAX_RECORDED_REQUEST_BODY = 4096


class Replica:
    """A local stand-in for api.openai.com and api.anthropic.com answering one exchange at a time."""

    def __init__(self) -> None:
        self.exchange: Exchange | None = None
        self.seen: list[str] = []
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/messages", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        exchange = self.exchange
        if exchange is None or urlsplit(exchange.url).path != request.path:
            return web.json_response({"error": "replica has no exchange for this path"}, status=404)
        await request.read()
        self.seen.append(f"{request.method} {request.path}")
        headers = render_headers(exchange.headers, dt.datetime.now(dt.UTC))
        if not exchange.stream:
            return web.Response(status=exchange.status, headers=headers, body=exchange.body)
        response = web.StreamResponse(status=exchange.status, headers=headers)
        await response.prepare(request)
        for event in exchange.events:
            await response.write(event)
        await response.write_eof()
        return response


def _call_kwargs(exchange: Exchange, *, api_base: str | None, api_key: str) -> dict[str, Any]:
    prompt = exchange.prompt
    if api_base is None and exchange.status == 400:
        # Live: really exceed the context window (roughly one token per repetition).
        prompt = "hello " * (131_000 if exchange.provider == "openai" else 210_000)
    kwargs: dict[str, Any] = {
        "model": exchange.model,
        "messages": [{"role": "user", "content": prompt}],
        "api_key": api_key,
        "max_tokens": 64,
        "stream": exchange.stream,
        "num_retries": 0,
        "max_retries": 0,
        **exchange.call_kwargs,
    }
    if api_base is not None:
        kwargs["api_base"] = api_base
    else:
        # Live: ask for gzip only, which vcrpy can decode (it cannot decode the zstd aiohttp offers).
        kwargs["extra_headers"] = {"accept-encoding": "gzip"}
    return kwargs


async def _drive_litellm(kwargs: dict[str, Any]) -> str:
    import litellm

    try:
        response = await litellm.acompletion(**kwargs)
        if kwargs["stream"]:
            parts = [chunk.choices[0].delta.content or "" async for chunk in response if chunk.choices]
            return "stream: " + "".join(parts)
        return "ok: " + str(response.choices[0].message.content)
    except Exception as exc:  # the error *is* the recording for 4xx/5xx exchanges
        return f"{type(exc).__name__}: {str(exc)[:100]}"


def _to_real_endpoint(exchange: Exchange) -> Any:
    real = urlsplit(exchange.url)

    def rewrite(request: Any) -> Any:
        recorded = urlsplit(request.uri)
        request.uri = recorded._replace(scheme=real.scheme, netloc=real.netloc).geturl()
        if "host" in request.headers:
            request.headers["host"] = real.netloc
        return request

    return rewrite


def _shrink_body(request: Any) -> Any:
    body = request.body
    if body is not None and len(body) > MAX_RECORDED_REQUEST_BODY:
        request.body = body[:MAX_RECORDED_REQUEST_BODY] + b"...[truncated by _recorder.py]"
    return request


def _drop_account_headers(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers", {})
    for key in [k for k in headers if k.lower() in ACCOUNT_HEADERS]:
        del headers[key]
    return response


async def record(exchange: Exchange, out_dir: Path, *, replica: Replica | None) -> str:
    """Record one exchange into ``out_dir/<name>.yaml``; returns what LiteLLM made of it."""
    path = out_dir / f"{exchange.name}.yaml"
    path.unlink(missing_ok=True)
    if replica is not None:
        replica.exchange = exchange
        # LiteLLM appends /chat/completions to an OpenAI base and /v1/messages to an Anthropic one.
        api_base = f"{replica.base}/v1" if exchange.provider == "openai" else replica.base
        api_key = exchange.fake_key
        source = "local replica (tests/cassettes/_recorder.py), provider's published wire format"
    else:
        api_base = None
        env = "OPENAI_API_KEY" if exchange.provider == "openai" else "ANTHROPIC_API_KEY"
        api_key = exchange.live_key or os.environ[env]
        source = f"live {urlsplit(exchange.url).netloc}"

    def before_request(request: Any) -> Any:
        return _shrink_body(_to_real_endpoint(exchange)(request))

    recorder = make_vcr(
        record_mode="all",
        before_record_request=before_request,
        before_record_response=_drop_account_headers,
    )

    with recorder.use_cassette(str(path)) as cassette:
        cassette.get_metadata(
            "provenance",
            {
                "source": source,
                "exchange": exchange.name,
                "recorded_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
                "recorded_with": f"litellm {version('litellm')}, vcrpy {version('vcrpy')}",
                **({"note": exchange.note} if exchange.note else {}),
            },
        )
        outcome = await _drive_litellm(_call_kwargs(exchange, api_base=api_base, api_key=api_key))
    if replica is not None and replica.seen[-1:] != [f"POST {urlsplit(exchange.url).path}"]:
        raise RuntimeError(f"{exchange.name}: the replica was not called as expected: {replica.seen[-1:]}")
    if len(cassette.data) != 1:
        raise RuntimeError(f"{exchange.name}: expected 1 interaction, recorded {len(cassette.data)}")
    status = cassette.data[0][1]["status"]["code"]
    if status != exchange.status:
        path.unlink()
        raise RuntimeError(f"{exchange.name}: expected HTTP {exchange.status}, got {status}; file deleted")
    text = path.read_text()
    leaks = find_secrets(text) + ([api_key] if api_key in text and api_key != exchange.fake_key else [])
    if leaks:
        path.unlink()
        raise RuntimeError(f"{exchange.name}: secrets in the recording ({len(leaks)}); file deleted")
    header = f"# {exchange.name}: recorded from the {source}. See cassettes/README.md.\n"
    path.write_text(header + text)
    return outcome


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("names", nargs="*", help="exchanges to record (default: all)")
    parser.add_argument("--live", action="store_true", help="record against the real providers")
    parser.add_argument("--out", type=Path, default=CASSETTE_DIR, help="output folder")
    args = parser.parse_args(argv)

    unknown = [name for name in args.names if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown exchange(s) {unknown}; known: {sorted(BY_NAME)}")
    chosen = [BY_NAME[name] for name in args.names] if args.names else list(EXCHANGES)
    args.out.mkdir(parents=True, exist_ok=True)

    replica: Replica | None = None
    if args.live:
        skipped = [e.name for e in chosen if not e.live]
        chosen = [e for e in chosen if e.live]
        for e in skipped:
            print(f"skip  {e}: cannot be provoked on a live provider; keeping the replica recording")
        needed = {
            "OPENAI_API_KEY" if e.provider == "openai" else "ANTHROPIC_API_KEY" for e in chosen if e.live_key is None
        }
        missing = sorted(var for var in needed if not os.environ.get(var))
        if missing:
            parser.error(f"--live needs {', '.join(missing)}")
    else:
        replica = Replica()
        await replica.start()
    try:
        for exchange in chosen:
            outcome = await record(exchange, args.out, replica=replica)
            print(f"wrote {args.out / exchange.name}.yaml  -> {outcome}")
    finally:
        if replica is not None:
            await replica.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

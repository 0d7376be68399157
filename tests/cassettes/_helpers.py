"""Replay the provider cassettes in ``cassettes/`` through real LiteLLM code.

Reusable from any test folder::

    from cassettes._helpers import model_list, replay   # tests/ is on sys.path via tests/conftest.py

    with replay("openai_chat_429_retry_after") as cassette:
        with pytest.raises(litellm.RateLimitError):
            await router.acompletion(model="gpt", messages=[...])
    assert cassette.play_count == 1

``replay`` matches requests on method + scheme + host + path, so LiteLLM's default endpoints
(``https://api.openai.com/v1/chat/completions``, ``https://api.anthropic.com/v1/messages``) hit the
cassette with no ``api_base`` override. Several names replay together (interactions are tried in the
order given), e.g. an OpenAI 429 followed by an Anthropic success for a fallback test.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import vcr
import yaml
from vcr.cassette import Cassette
from vcr.persisters.filesystem import CassetteNotFoundError
from vcr.serialize import deserialize

CASSETTE_DIR = Path(__file__).resolve().parents[2] / "cassettes"
FILTER_HEADERS = ("authorization", "x-api-key", "api-key")
MATCH_ON = ("method", "scheme", "host", "path")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

__all__ = [
    "CASSETTE_DIR",
    "EXPECTED",
    "FILTER_HEADERS",
    "MATCH_ON",
    "Expected",
    "NetworkAttemptError",
    "block_network",
    "cassette_names",
    "cassette_path",
    "find_secrets",
    "load_cassette",
    "make_vcr",
    "model_list",
    "replay",
]


@dataclass(frozen=True)
class Expected:
    """What LiteLLM 1.110.2 makes of a cassette (asserted by test_replay.py)."""

    provider: str
    status: int
    # Class name in ``litellm`` (``litellm.RateLimitError`` ...); None for a success.
    exception: str | None = None
    # ``Retry-After`` as sent, found on ``exc.response.headers["retry-after"]`` (also on
    # ``exc.litellm_response_headers``); None when the provider sends none.
    retry_after: str | None = None
    stream: bool = False


EXPECTED: dict[str, Expected] = {
    "openai_chat_200": Expected("openai", 200),
    "openai_chat_200_stream": Expected("openai", 200, stream=True),
    "openai_chat_429_retry_after": Expected("openai", 429, "RateLimitError", retry_after="20"),
    "openai_chat_500_server_error": Expected("openai", 500, "InternalServerError"),
    "openai_chat_400_context_length_exceeded": Expected("openai", 400, "ContextWindowExceededError"),
    "openai_chat_401_invalid_api_key": Expected("openai", 401, "AuthenticationError"),
    "anthropic_messages_200": Expected("anthropic", 200),
    "anthropic_messages_200_stream": Expected("anthropic", 200, stream=True),
    "anthropic_messages_429_retry_after": Expected("anthropic", 429, "RateLimitError", retry_after="30"),
    "anthropic_messages_500_api_error": Expected("anthropic", 500, "InternalServerError"),
    "anthropic_messages_529_overloaded": Expected("anthropic", 529, "InternalServerError"),
    "anthropic_messages_400_prompt_too_long": Expected("anthropic", 400, "ContextWindowExceededError"),
    "anthropic_messages_401_authentication_error": Expected("anthropic", 401, "AuthenticationError"),
}


def model_list() -> list[dict[str, Any]]:
    """A fresh Router ``model_list`` whose deployments match the cassettes: ``gpt`` (id ``openai-1``)
    and ``claude`` (id ``anthropic-1``), with the placeholder keys the cassettes were recorded with."""
    return [
        {
            "model_name": "gpt",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-fake-openai"},
            "model_info": {"id": "openai-1"},
        },
        {
            "model_name": "claude",
            "litellm_params": {"model": "anthropic/claude-3-5-sonnet-20241022", "api_key": "sk-ant-fake"},
            "model_info": {"id": "anthropic-1"},
        },
    ]


def cassette_path(name: str) -> Path:
    """Path of the cassette called ``name`` (with or without ``.yaml``)."""
    return CASSETTE_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")


def cassette_names() -> list[str]:
    """Names of every cassette in ``cassettes/``, sorted."""
    return sorted(path.stem for path in CASSETTE_DIR.glob("*.yaml"))


def load_cassette(name: str) -> dict[str, Any]:
    """The cassette file as plain data (``interactions``, ``metadata``), for asserting on its content."""
    data: dict[str, Any] = yaml.safe_load(cassette_path(name).read_text())
    return data


# The placeholder keys used when recording; nothing else key-like may appear in a cassette.
PLACEHOLDER_KEYS = frozenset({"sk-fake-openai", "sk-ant-fake"})
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}")
_SECRET_HEADER = re.compile(r"^\s*-?\s*['\"]?(authorization|x-api-key|api-key)['\"]?\s*:", re.I | re.M)
_BEARER = re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]{8,}")


def find_secrets(text: str) -> list[str]:
    """Key-like things in a cassette's text: secret headers, ``sk-``/``sk-ant-`` keys, bearer tokens."""
    found = [f"{m.group(1)} header" for m in _SECRET_HEADER.finditer(text)]
    found += [m.group(0) for m in _KEY_LIKE.finditer(text) if m.group(0) not in PLACEHOLDER_KEYS]
    found += [m.group(0) for m in _BEARER.finditer(text)]
    return found


class _ManyFilesPersister:
    """Loads ``a.yaml|b.yaml`` as one cassette; never writes (replay is read-only)."""

    @classmethod
    def load_cassette(cls, cassette_path: str, serializer: Any) -> tuple[list[Any], list[Any]]:
        requests: list[Any] = []
        responses: list[Any] = []
        for part in str(cassette_path).split("|"):
            path = Path(part)
            if not path.is_file():
                raise CassetteNotFoundError(f"no cassette at {path}")
            loaded = deserialize(path.read_text(), serializer)
            requests.extend(loaded[0])
            responses.extend(loaded[1])
        return requests, responses

    @staticmethod
    def save_cassette(cassette_path: str, cassette_dict: dict[str, Any], serializer: Any) -> None:
        raise RuntimeError(f"replay cassettes are read-only; re-record with _recorder.py ({cassette_path})")


def make_vcr(**overrides: Any) -> vcr.VCR:
    """The project's vcrpy configuration: YAML, secrets filtered, matched on method+scheme+host+path."""
    config: dict[str, Any] = {
        "serializer": "yaml",
        "cassette_library_dir": str(CASSETTE_DIR),
        "record_mode": "none",
        "match_on": MATCH_ON,
        "filter_headers": list(FILTER_HEADERS),
        "decode_compressed_response": True,
    }
    config.update(overrides)
    return vcr.VCR(**config)


class NetworkAttemptError(ConnectionRefusedError):
    """A test under ``block_network()`` tried to reach a host other than loopback."""


def _host_of(address: object) -> str | None:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return None  # AF_UNIX paths and the like


@contextlib.contextmanager
def block_network() -> Iterator[list[str]]:
    """Refuse connections and DNS look-ups for non-loopback hosts; yields the attempts made.

    Loopback stays open so the provider simulator and redis-server keep working.
    """
    attempts: list[str] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def guard(host: str | None) -> None:
        if host is not None and host not in LOOPBACK_HOSTS:
            attempts.append(host)
            raise NetworkAttemptError(f"test tried to reach {host}; replay must not touch the network")

    def connect(self: socket.socket, address: Any) -> None:
        guard(_host_of(address))
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        guard(_host_of(address))
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        guard(host.decode() if isinstance(host, bytes) else host)
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    try:
        yield attempts
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo


@contextlib.contextmanager
def replay(
    *names: str,
    allow_playback_repeats: bool = False,
    network: bool = False,
    **vcr_overrides: Any,
) -> Iterator[Cassette]:
    """Replay the named cassettes (``record_mode="none"``); yields vcrpy's ``Cassette``.

    Use ``cassette.play_count`` / ``cassette.all_played`` to prove the calls were served from it.
    A request with no matching (unplayed) interaction raises inside LiteLLM, which wraps it (usually
    as ``litellm.InternalServerError`` / ``APIConnectionError`` whose message says "Can't play back").
    ``allow_playback_repeats=True`` serves each interaction any number of times. Unless
    ``network=True``, connecting to anything but loopback fails and is reported on exit.
    """
    if not names:
        raise ValueError("replay() needs at least one cassette name")
    for name in names:
        if not cassette_path(name).is_file():
            raise FileNotFoundError(f"no cassette {cassette_path(name)}; known: {', '.join(cassette_names())}")
    recorder = make_vcr(**vcr_overrides)
    recorder.register_persister(_ManyFilesPersister)
    path = "|".join(str(cassette_path(name)) for name in names)
    guard = contextlib.nullcontext([]) if network else block_network()
    with (
        guard as attempts,
        recorder.use_cassette(path, allow_playback_repeats=allow_playback_repeats) as cassette,
    ):
        yield cassette
    if attempts:
        raise AssertionError(f"replay of {', '.join(names)} tried to reach the network: {attempts}")

"""Real LiteLLM proxy processes (``litellm --config ...``) in front of the provider simulator, for the proxy tests."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pi_builder_middleware.testing import SimProvider, Simulator

MASTER_KEY = "sk-pbm-proxy-test-0123456789"
LITELLM = Path(sys.executable).with_name("litellm")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_proxy() -> None:
    """Fail (not skip) with what to install when the proxy cannot start here."""
    # Not imported here: importing litellm.proxy.proxy_server changes LiteLLM's process-wide state for the
    # tests that follow; the proxy process itself reports anything else missing (wait_ready shows its log).
    needed = ("fastapi", "uvicorn", "apscheduler", "backoff")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:  # pragma: no cover - a setup problem, reported as such
        pytest.fail(f"the LiteLLM proxy's dependencies are missing ({', '.join(missing)}); pip install -e '.[proxy]'")
    if not LITELLM.exists():  # pragma: no cover
        pytest.fail(f"no litellm command next to {sys.executable}")


def config_yaml(urls: dict[str, str], section: dict[str, Any], *, prometheus: bool = False) -> str:
    """A complete proxy config: group ``chat`` = one deployment per simulated provider, id = provider name;
    ``prometheus``: LiteLLM's own Prometheus callback too (it mounts ``/metrics``)."""
    lines = ["model_list:"]
    for name, url in urls.items():
        lines += [
            "  - model_name: chat",
            f'    litellm_params: {{model: openai/sim-model, api_base: "{url}", api_key: sk-fake, '
            "max_retries: 0, timeout: 5}",
            f"    model_info: {{id: {name}}}",
        ]
    lines += [
        "router_settings:",
        "  num_retries: 2",
        "  retry_after: 0",
        "  disable_cooldowns: true",
        "litellm_settings:",
        '  callbacks: ["pi_builder_middleware.adapters.litellm.proxy.handler"]',
    ]
    if prometheus:
        lines += ['  success_callback: ["prometheus"]', '  failure_callback: ["prometheus"]']
    lines += ["  pi_builder_middleware:"]
    lines += [f"    {key}: {value}" for key, value in section.items()]
    return "\n".join(lines) + "\n"


class Proxy:
    """One ``litellm --config`` process on a free port; ``stop()`` ends it (and only it)."""

    def __init__(self, directory: Path, config: str, name: str = "proxy") -> None:
        self.port = free_port()
        self.path = directory / f"{name}.yaml"
        self.path.write_text(config)
        self.log = directory / f"{name}.log"
        env = {
            **os.environ,
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONUNBUFFERED": "1",
        }
        for key in [k for k in env if k.startswith("PBM_")]:
            del env[key]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(LITELLM), "--config", str(self.path), "--port", str(self.port), "--host", "127.0.0.1"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=directory,
            )
        self.client = self._client()

    def _client(self) -> Any:
        import openai

        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}", api_key=MASTER_KEY, max_retries=0, timeout=30)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the proxy exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/liveliness", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the proxy did not become ready in {timeout_s} s:\n{self.tail()}")

    def chat(self) -> str:
        """One chat call through the proxy; the deployment id that answered."""
        raw = self.client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "Say hello."}]
        )
        raw.parse()
        return str(raw.headers.get("x-litellm-model-id"))

    def served(self, n: int) -> Counter[str]:
        return Counter(self.chat() for _ in range(n))

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def proxy_sim() -> Iterator[Simulator]:
    """Two simulated providers, alpha and beta, for the proxy tests of one module."""
    simulator = Simulator([SimProvider(name="alpha"), SimProvider(name="beta")], seed=0).start()
    yield simulator
    simulator.stop()


def scrape(proxy: Proxy) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The proxy's ``/metrics`` (needs ``config_yaml(..., prometheus=True)``), parsed: name -> [(labels, value)]."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    request = urllib.request.Request(
        f"http://127.0.0.1:{proxy.port}/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    assert MASTER_KEY not in text and "sk-fake" not in text  # no key (master key, provider keys) in any label
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for lbls, v in found.get(name, []) if all(lbls.get(k) == want for k, want in labels.items()))

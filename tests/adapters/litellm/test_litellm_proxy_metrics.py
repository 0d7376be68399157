"""The proxy's ``/metrics`` (LiteLLM's own Prometheus callback mounts it) carries the ``pi_builder_*`` series the
proxy handler exports, with labels that join LiteLLM's deployment series; scraped over HTTP from a real
``litellm --config`` process and parsed with ``prometheus_client.parser``."""

from __future__ import annotations

import time

import pytest
from pi_builder_middleware.testing import Simulator
from proxy_support import Proxy, config_yaml, require_proxy, scrape, value

pytestmark = pytest.mark.timeout(600)


def test_the_proxys_metrics_show_the_failed_deployments_breaker_open(proxy_sim: Simulator, tmp_path) -> None:
    require_proxy()
    urls = {name: proxy_sim.base_url(name) for name in ("alpha", "beta")}
    proxy = Proxy(
        tmp_path,
        config_yaml(
            urls, {"strategy": "health-shuffle", "failover": "aggressive", "base_ejection_s": 30}, prometheus=True
        ),
    )
    try:
        proxy.wait_ready()
        assert sum(proxy.served(6).values()) == 6  # the first request installs the middleware
        proxy_sim.down("alpha")
        served = proxy.served(20)
        assert sum(served.values()) == 20  # no client error: LiteLLM's retries reach beta
        deadline = time.monotonic() + 30
        found = scrape(proxy)
        while value(found, "pi_builder_breaker_state", model_id="alpha") != 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            found = scrape(proxy)
        alpha = {"model_id": "alpha", "model_group": "chat", "api_provider": "openai"}
        assert value(found, "pi_builder_breaker_state", **alpha) == 2  # open
        assert value(found, "pi_builder_breaker_state", model_id="beta") == 0  # closed
        assert value(found, "pi_builder_attempts_total", outcome="failure", model_id="alpha") >= 1
        assert value(found, "pi_builder_attempts_total", outcome="success", model_id="beta") >= 20
        # LiteLLM's own deployment series on the same endpoint, joinable on model_id
        assert any(
            lbls.get("model_id") == "alpha"
            for name, samples in found.items()
            if name.startswith("litellm_")
            for lbls, _ in samples
        )
    finally:
        proxy.stop()
        proxy_sim.up("alpha")

"""The middleware in a real LiteLLM proxy process, enabled from config.yaml alone, in front of the simulator.

Clients use the ``openai`` SDK against ``litellm --config ...``; the proxy's answer header
``x-litellm-model-id`` names the deployment that served each call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from pi_builder_middleware.testing import SimOutcome, Simulator
from proxy_support import Proxy, config_yaml, require_proxy, scrape, value
from redis_support import RedisServer, require_redis_server

pytestmark = pytest.mark.timeout(600)


def _urls(proxy_sim: Simulator) -> dict[str, str]:
    return {name: proxy_sim.base_url(name) for name in ("alpha", "beta")}


@pytest.fixture(scope="module")
def proxy(proxy_sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    require_proxy()
    directory = tmp_path_factory.mktemp("proxy")
    started = Proxy(
        directory,
        config_yaml(_urls(proxy_sim), {"strategy": "health-shuffle", "failover": "aggressive", "base_ejection_s": 2}),
    )
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def _until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.05)


def test_a_provider_down_loses_its_traffic_without_client_errors_and_gets_it_back(
    proxy: Proxy, proxy_sim: Simulator
) -> None:
    warm = proxy.served(10)  # the first request installs the middleware on the proxy's Router
    assert sum(warm.values()) == 10 and set(warm) <= {"alpha", "beta"}
    assert warm["alpha"] >= 1  # health-shuffle (config.yaml) spreads the traffic: alpha has its share
    proxy_sim.provider("alpha").reset_stats()
    proxy_sim.provider("alpha").down()
    try:
        during = proxy.served(20)  # no client error: every call returns (the retry goes to beta)
        assert during == {"beta": 20}
        # traffic leaves alpha within a few requests: the breaker opens after 2 failures (aggressive); a
        # shuffle without health would have sent about half of the 20 (and their retries) there
        reached = proxy_sim.stats("alpha").total
        assert 1 <= reached <= 4, reached
        # while alpha is ejected nothing more goes there
        before = proxy_sim.stats("alpha").total
        assert proxy.served(10) == {"beta": 10}
        assert proxy_sim.stats("alpha").total - before <= 1  # at most one trial call once the ejection ends
    finally:
        proxy_sim.provider("alpha").up()
    served_after: list[str] = []

    def alpha_is_back() -> bool:
        served_after.append(proxy.chat())
        return served_after[-1] == "alpha"

    _until(alpha_is_back, 60.0, "alpha takes traffic again after recovery")
    assert all(s in {"alpha", "beta"} for s in served_after)


def test_the_proxy_log_has_no_middleware_errors(proxy: Proxy) -> None:
    proxy.served(2)
    log = proxy.log.read_text(errors="replace")
    assert "could not install" not in log and "pi-builder-middleware: hook" not in log


def test_two_proxies_share_a_trip_through_redis(proxy_sim: Simulator, tmp_path: Path) -> None:
    require_proxy()
    redis = RedisServer(require_redis_server(), tmp_path)
    redis.start()
    section = {
        "failover": "aggressive",
        "base_ejection_s": 30,
        "redis_url": redis.url,
        "redis_cluster": "proxy-test",
    }
    first = Proxy(tmp_path, config_yaml(_urls(proxy_sim), section), "first")
    second = Proxy(tmp_path, config_yaml(_urls(proxy_sim), section, prometheus=True), "second")
    try:
        first.wait_ready()
        second.wait_ready()
        assert sum(first.served(4).values()) == 4 and sum(second.served(4).values()) == 4  # both installed
        proxy_sim.provider("alpha").reset_stats()
        proxy_sim.provider("alpha").down()
        try:
            # The first proxy trips alpha's breaker (2 failures, aggressive): calls by deployment id go to alpha.
            for _ in range(2):
                with pytest.raises(openai.APIStatusError):
                    first.client.chat.completions.create(model="alpha", messages=[{"role": "user", "content": "hi"}])
            assert proxy_sim.stats("alpha").by_outcome.get(SimOutcome.SERVICE_UNAVAILABLE, 0) == 2
            # the trip travels through Redis (pub/sub): the second proxy's breaker for alpha opens (2 = open)
            deadline = time.monotonic() + 30
            while value(scrape(second), "pi_builder_breaker_state", model_id="alpha") != 2:
                assert time.monotonic() < deadline, "the second proxy never saw the first one's trip"
                time.sleep(0.1)
            before = proxy_sim.stats("alpha").total
            assert second.served(12) == {"beta": 12}
            # the second proxy never sent to alpha: it saw the first one's trip
            assert proxy_sim.stats("alpha").total == before, proxy_sim.stats("alpha").by_outcome
        finally:
            proxy_sim.provider("alpha").up()
    finally:
        first.stop()
        second.stop()
        redis.stop()

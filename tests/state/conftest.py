from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis_support import RedisServer, require_redis_server

from pi_builder_middleware import FailoverConfig, ManualClock, Middleware, Provider
from pi_builder_middleware.state import StateStore

PROVIDERS = ("x", "y", "z")
_clusters = itertools.count()


@pytest.fixture
def wall() -> ManualClock:
    """Shared wall-clock time for in-process replicas (what time.time is across hosts)."""
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def fast_failover() -> FailoverConfig:
    return FailoverConfig.preset("aggressive", base_ejection_s=10.0, jitter=0.0, recovery_successes=1)


MakeReplica = Callable[..., Middleware]


@pytest.fixture
def make_replica(fast_failover) -> Iterator[MakeReplica]:
    """Build Middleware replicas over one store; closed at teardown."""
    made: list[Middleware] = []

    def make(
        store: StateStore,
        *,
        clock: Callable[[], float] | None = None,
        providers=PROVIDERS,
        failover: FailoverConfig | None = None,
    ) -> Middleware:
        mw = Middleware(
            [Provider(id=p) for p in providers],
            strategy="failover",
            failover=failover or fast_failover,
            clock=clock or ManualClock(0.0),
            state_store=store,
            load_entrypoints=False,
            seed=1,
        )
        made.append(mw)
        return mw

    yield make
    for mw in made:
        mw.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """One real redis-server for the session; each test uses its own cluster name on it."""
    server = RedisServer(require_redis_server(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[Any]:
    """A client on the session server that writes bytes as they are: what anything else there could write."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=False)
    yield client
    client.close()


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisServer]:
    """A redis-server only this test uses (it may kill and restart it)."""
    server = RedisServer(require_redis_server(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cluster() -> str:
    """A fresh namespace, so tests sharing the session server never see each other's state."""
    return f"test-{next(_clusters)}"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every store thread a test started is stopped by the time it ends (Middleware.close / fixtures)."""
    yield
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("pbm-redis") and t.is_alive()]
    assert not leaked, f"store threads still running after the test: {leaked}"

"""RedisStateStore: breaker state shared by replicas in different processes or hosts.

Every local transition is written by one Lua script call that keeps the newest transition per provider
in a hash ``<prefix>:<cluster>:breakers`` (the longest cooldown in ``...:cooldowns``), refreshes the
hash's TTL and publishes the update on ``<prefix>:<cluster>:updates`` — only if it is newer than what
the hash holds, so a replica that resyncs stale news after an outage cannot overwrite fresher state.

Two daemon threads per store, not an asyncio task: the middleware serves sync code (LiteLLM's sync
``completion``, Flask workers, ``Middleware.execute``) as much as async code, may be built with no event
loop running, and a blocked or busy loop would delay every remote trip; the sync redis-py client is
also the mature one. The request path only puts updates on a bounded queue; the *publisher* thread
writes them, the *listener* thread subscribes, reads the hashes after (re)subscribing, and applies
remote updates (each under the receiving manager's lock, briefly).

Redis unreachable (at start or mid-run): requests carry on with local state, the outage is logged once
and counted in ``stats()``, updates made meanwhile are not queued up (bounded memory); on reconnect the
store reads the hashes and republishes every attached replica's latest view, so both sides converge.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError
from .state import BreakerUpdate, ReplicaSet, StateReplica

if TYPE_CHECKING:
    import redis

__all__ = ["RedisStateStore"]

log = logging.getLogger("pi_builder_middleware.redis_store")

# KEYS[1] hash; ARGV: field, payload, mode ('b' transition, 'c' cooldown), ttl ms, channel.
_WRITE_IF_NEWER = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, cur = pcall(cjson.decode, old)
  if ok and type(cur) == 'table' then
    local new = cjson.decode(ARGV[2])
    local t = tonumber(cur['sent_at']) or 0
    if ARGV[3] == 'c' then
      if t + (tonumber(cur['cooldown_for_s']) or 0) >= new['sent_at'] + new['cooldown_for_s'] then return 0 end
    elseif t > new['sent_at'] or (t == new['sent_at'] and tostring(cur['origin']) >= new['origin']) then
      return 0
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('PUBLISH', ARGV[5], ARGV[2])
return 1
"""

_STOP = object()


class RedisStateStore(ReplicaSet):
    """Shares breaker transitions through Redis (pub/sub for speed, hashes for late joiners).

    ``url`` as for ``redis.Redis.from_url`` (its password never appears in stats or logs).
    ``cluster`` and ``prefix`` namespace the keys so several apps can share one Redis; replicas
    share state only with the same pair. ``ttl_s``: the hashes expire that long after the last
    transition (a cluster quiet for longer starts from CLOSED). ``reconnect_max_s`` caps the backoff
    between reconnection attempts. Needs ``pip install 'pi-builder-middleware[redis]'``.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        cluster: str = "default",
        prefix: str = "pbm",
        ttl_s: float = 3600.0,
        connect_timeout_s: float = 1.0,
        reconnect_max_s: float = 2.0,
        max_queue: int = 10_000,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        for field, value in (("cluster", cluster), ("prefix", prefix)):
            if not isinstance(value, str) or not value or any(c.isspace() for c in value):
                raise ConfigError(field, f"must be a non-empty name without spaces (got {value!r})")
        for field, number in (("ttl_s", ttl_s), ("connect_timeout_s", connect_timeout_s),
                              ("reconnect_max_s", reconnect_max_s), ("max_queue", max_queue)):
            if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
                raise ConfigError(field, f"must be a number > 0 (got {number!r})")
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigError("state_store", "RedisStateStore needs redis-py: pip install "
                                             "'pi-builder-middleware[redis]'") from None
        self.url = _redacted(url)
        self.cluster = cluster
        self.breakers_key = f"{prefix}:{cluster}:breakers"
        self.cooldowns_key = f"{prefix}:{cluster}:cooldowns"
        self.channel = f"{prefix}:{cluster}:updates"
        self._ttl_ms = int(ttl_s * 1000)
        self._reconnect_max_s = float(reconnect_max_s)
        super().__init__(wall_clock)
        self._errors_caught: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        try:
            # No silent retries: a lost connection must surface here so the store resyncs after it.
            self._client: redis.Redis = redis.Redis.from_url(
                url, decode_responses=True, socket_connect_timeout=connect_timeout_s,
                socket_timeout=max(connect_timeout_s, 1.0), socket_keepalive=True, health_check_interval=5,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ConfigError("url", f"not a Redis URL ({exc}); e.g. redis://localhost:6379/0") from None
        self._script = self._client.register_script(_WRITE_IF_NEWER)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self._lifecycle = threading.Lock()
        self._stop = threading.Event()
        self._up = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connected = False
        self._down_logged = False
        self._needs_resync = False
        self._counts = dict.fromkeys(("errors", "published", "stale", "received", "applied", "malformed",
                                      "dropped", "resyncs", "disconnects", "apply_errors"), 0)
        self._last_error: str | None = None
        self._logged: set[str] = set()

    # -- StateStore ----------------------------------------------------------------------------
    def attach(self, replica: StateReplica) -> None:
        """Deliver updates to ``replica``; starts the background threads with the first one."""
        for update in self._add_replica(replica):
            self._apply(replica, update)
        with self._lifecycle:
            if not self._threads:
                self._stop.clear()
                self._threads = [threading.Thread(target=self._listen_loop, name="pbm-redis-listener", daemon=True),
                                 threading.Thread(target=self._publish_loop, name="pbm-redis-publisher", daemon=True)]
                for thread in self._threads:
                    thread.start()

    def detach(self, replica: StateReplica) -> None:
        """Stop delivering to ``replica``; the threads stop (after sending what is queued) with the last one."""
        if self._remove_replica(replica):
            self._shutdown()

    def publish(self, update: BreakerUpdate) -> None:
        """Queue ``update`` for the publisher thread (no I/O; dropped and counted if the queue is full)."""
        try:
            self._queue.put_nowait(update)
        except queue.Full:
            self._count("dropped")
            self._needs_resync = True  # the next resync republishes the latest state instead

    def stats(self) -> dict[str, Any]:
        """Connection state and counters; the URL is shown without its password."""
        with self._lock:
            return {"backend": "redis", "url": self.url, "cluster": self.cluster, "connected": self._connected,
                    "last_error": self._last_error, "queued": self._queue.qsize(),
                    "replicas": len(self._replicas), **self._counts}

    def close(self) -> None:
        """Detach every replica, stop the threads and close the connections."""
        with self._lock:
            self._replicas.clear()
        self._shutdown()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` until the store has synced with Redis; True if it has."""
        return self._up.wait(timeout_s)

    # -- background threads --------------------------------------------------------------------
    def _listen_loop(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call, unused-ignore]
                pubsub.subscribe(self.channel)  # before reading the hashes: nothing falls in between
                self._sync()
                delay = 0.05
                while not self._stop.is_set():
                    if self._needs_resync:
                        self._sync()
                    message = pubsub.get_message(timeout=0.1)
                    if message is not None and message.get("type") == "message":
                        self._receive(message["data"])
            except self._errors_caught as exc:
                self._down(exc)
            except Exception as exc:  # never let the thread die: keep local state working, retry later
                if self._once("listener"):
                    log.exception("Redis state store listener error (logged once)")
                self._down(exc)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):  # the connection may already be broken
                        pubsub.close()
            self._stop.wait(delay)
            delay = min(delay * 2, self._reconnect_max_s)

    def _publish_loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is _STOP:
                return
            assert isinstance(item, BreakerUpdate)
            if not self._connected:
                self._count("dropped")  # the resync after reconnecting republishes the latest state
                continue
            try:
                written = self._script(keys=[self.cooldowns_key if item.is_cooldown else self.breakers_key],
                                       args=[item.provider_id, item.to_json(), "c" if item.is_cooldown else "b",
                                             self._ttl_for(item), self.channel])
                self._count("published" if written else "stale")
            except Exception as exc:
                self._down(exc)
                self._needs_resync = True

    def _sync(self) -> None:
        """Read both hashes, apply them, then republish every replica's latest view."""
        self._needs_resync = False
        payloads = [*self._client.hgetall(self.breakers_key).values(),
                    *self._client.hgetall(self.cooldowns_key).values()]
        for payload in payloads:
            self._receive(payload)
        self._mark_up()  # before collecting the views: a transition made after this is queued and sent
        with self._lock:
            replicas = list(self._replicas)
            self._counts["resyncs"] += 1
        for replica in replicas:
            for update in replica.shared_updates():
                self.publish(update)

    def _receive(self, payload: str | bytes) -> None:
        try:
            update = BreakerUpdate.from_json(payload)
        except ValueError:
            self._count("malformed")
            return
        with self._lock:
            self._counts["received"] += 1
            if not self._latest.merge(update):
                return  # already seen (e.g. read back from the hash): replicas have it
            replicas = list(self._replicas)
        for replica in replicas:
            if replica.replica_id != update.origin:
                self._apply(replica, update)

    def _apply(self, replica: StateReplica, update: BreakerUpdate) -> None:
        try:
            if replica.apply_update(update):
                self._count("applied")
        except Exception:  # a broken observer of the receiving replica; counted, logged the first time
            self._count("apply_errors")
            if self._once("apply"):
                log.exception("applying a shared %s update for %r failed (logged once)", update.kind.value,
                              update.provider_id)

    # -- bookkeeping ---------------------------------------------------------------------------
    def _ttl_for(self, update: BreakerUpdate) -> int:
        return max(self._ttl_ms, int((update.cooldown_for_s + update.open_for_s) * 1000) + 60_000)

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _once(self, what: str) -> bool:
        with self._lock:
            first = what not in self._logged
            self._logged.add(what)
        return first

    def _down(self, exc: BaseException) -> None:
        self._up.clear()
        with self._lock:
            self._counts["errors"] += 1
            self._last_error = type(exc).__name__
            first = not self._down_logged
            self._down_logged = True
        if first:  # once per outage: a dead Redis must not flood the logs
            log.warning("Redis state store %s unreachable (%s); breakers keep working on local state and "
                        "resync when it is back", self.url, type(exc).__name__)
        with self._lock:  # after logging, so whoever sees "disconnected" in stats also finds the log line
            if self._connected:
                self._counts["disconnects"] += 1
            self._connected = False

    def _mark_up(self) -> None:
        with self._lock:
            recovered = self._down_logged
            self._down_logged = False
        if recovered:
            log.warning("Redis state store %s reachable again; resynced breaker state", self.url)
        with self._lock:
            self._connected = True
        self._up.set()

    def _shutdown(self) -> None:
        with self._lifecycle:
            threads, self._threads = self._threads, []
            if not threads:
                return
            self._stop.set()
            # after what is queued (the publisher sends that first); if full, it stops once the queue runs dry
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_STOP)
            for thread in threads:
                if thread is threading.current_thread():
                    continue  # closed from a callback on our own thread: it ends when the callback returns
                thread.join(timeout=5.0)
                if thread.is_alive():
                    log.warning("Redis state store thread %s did not stop within 5 s", thread.name)
            with self._lock:
                self._connected = False
            self._up.clear()
            self._client.close()


def _redacted(url: str) -> str:
    """``url`` without password or query string (which may carry one)."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port is not None:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return "<invalid url>"
    if parts.password is not None or parts.username is not None:
        netloc = f"{parts.username or ''}:***@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

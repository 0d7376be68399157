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

Nothing read from Redis is trusted: every hash entry and channel message goes through one check
(:meth:`RedisStateStore._valid`: UTF-8, strict JSON, the wire rules of :meth:`BreakerUpdate.check`,
stored under its own provider in the right hash), and a key of another type is skipped. What fails is
skipped, counted in ``stats()["malformed_reasons"]`` and logged once per reason; it never stops the
entries around it, the resync or the connection. A write Redis refuses (out of memory, read-only) is
counted and logged once, not taken for an outage; a resync ``reconnect_max_s`` later sends it again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._redis_script import REPAIRED_ENTRY, REPLACED_KEY, WRITE_IF_NEWER, script_args
from .errors import ConfigError
from .state import MAX_SHARED_S, BreakerUpdate, MalformedReason, MalformedUpdate, ReplicaSet, StateReplica

if TYPE_CHECKING:
    import redis

__all__ = ["RedisStateStore"]

log = logging.getLogger("pi_builder_middleware.redis_store")

_STOP = object()


class RedisStateStore(ReplicaSet):
    """Shares breaker transitions through Redis (pub/sub for speed, hashes for late joiners).

    ``url`` as for ``redis.Redis.from_url`` (its user info, password or token, never appears in stats or
    logs).
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
        for field, number in (
            ("ttl_s", ttl_s),
            ("connect_timeout_s", connect_timeout_s),
            ("reconnect_max_s", reconnect_max_s),
            ("max_queue", max_queue),
        ):
            if isinstance(number, bool) or not isinstance(number, int | float) or not 0 < number < math.inf:
                raise ConfigError(field, f"must be a finite number > 0 (got {number!r})")
        if ttl_s > MAX_SHARED_S:
            raise ConfigError("ttl_s", f"must be at most {MAX_SHARED_S:.0f} s (a year; got {ttl_s!r})")
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigError(
                "state_store", "RedisStateStore needs redis-py: pip install 'pi-builder-middleware[redis]'"
            ) from None
        self.url = _redacted(url)
        self.cluster = cluster
        self.breakers_key = f"{prefix}:{cluster}:breakers"
        self.cooldowns_key = f"{prefix}:{cluster}:cooldowns"
        self.channel = f"{prefix}:{cluster}:updates"
        self._ttl_ms = int(ttl_s * 1000)
        self._reconnect_max_s = float(reconnect_max_s)
        super().__init__(wall_clock)
        self._errors_caught: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._refused: type[BaseException] = redis.ResponseError  # Redis answered "no" to one command
        try:
            # No silent retries: a lost connection must surface here so the store resyncs after it.
            # Bytes, not decoded replies: a value that is not UTF-8 is one invalid entry, not a broken reply.
            self._client: redis.Redis = redis.Redis.from_url(
                url,
                decode_responses=False,
                socket_connect_timeout=connect_timeout_s,
                socket_timeout=max(connect_timeout_s, 1.0),
                socket_keepalive=True,
                health_check_interval=5,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ConfigError("url", f"not a Redis URL ({exc}); e.g. redis://localhost:6379/0") from None
        self._script = self._client.register_script(WRITE_IF_NEWER)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self._lifecycle = threading.Lock()
        self._stop = threading.Event()
        self._up = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connected = False
        self._down_logged = False
        self._needs_resync = False
        self._resync_at = math.inf  # time.monotonic() of a resync after a refused write
        self._counts = dict.fromkeys(
            (
                "errors",
                "published",
                "stale",
                "received",
                "applied",
                "malformed",
                "dropped",
                "resyncs",
                "disconnects",
                "apply_errors",
                "write_errors",
                "repaired",
            ),
            0,
        )
        self._malformed_reasons: dict[str, int] = {}
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
                self._threads = [
                    threading.Thread(target=self._listen_loop, name="pbm-redis-listener", daemon=True),
                    threading.Thread(target=self._publish_loop, name="pbm-redis-publisher", daemon=True),
                ]
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
            return {
                "backend": "redis",
                "url": self.url,
                "cluster": self.cluster,
                "connected": self._connected,
                "last_error": self._last_error,
                "queued": self._queue.qsize(),
                "replicas": len(self._replicas),
                **self._counts,
                "malformed_reasons": dict(self._malformed_reasons),
            }

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
                pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call, unused-ignore]  # untyped before redis-py 8
                pubsub.subscribe(self.channel)  # before reading the hashes: nothing falls in between
                self._sync()
                delay = 0.05
                while not self._stop.is_set():
                    if self._needs_resync or time.monotonic() >= self._resync_at:
                        self._sync()
                    message = pubsub.get_message(timeout=0.1)
                    if message is not None and message.get("type") == "message":
                        self._receive(message["data"], self.channel)
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
            key = self.cooldowns_key if item.is_cooldown else self.breakers_key
            try:
                result = self._script(
                    keys=[key],
                    args=script_args(
                        item.provider_id,
                        item.to_json(),
                        item.is_cooldown,
                        self._ttl_for(item),
                        self.channel,
                        self.wall_time(),
                    ),
                )
            except Exception as exc:
                if isinstance(exc, self._errors_caught) and not isinstance(exc, self._refused):
                    self._down(exc)  # the connection is gone: resync when it is back
                    self._needs_resync = True
                else:  # this one write failed (refused by Redis, or a bad update): the next ones may not
                    self._write_failed(item, exc)
                continue
            self._written(item, key, result)

    def _sync(self) -> None:
        """Read both hashes, apply them, then republish every replica's latest view."""
        self._needs_resync = False
        self._resync_at = math.inf
        entries = [
            (self.breakers_key, False, self._read_hash(self.breakers_key)),
            (self.cooldowns_key, True, self._read_hash(self.cooldowns_key)),
        ]
        for key, cooldowns, fields in entries:
            for field, payload in fields.items():
                self._receive(payload, key, field=field, cooldowns=cooldowns)
        self._mark_up()  # before collecting the views: a transition made after this is queued and sent
        with self._lock:
            replicas = list(self._replicas)
            self._counts["resyncs"] += 1
        for replica in replicas:
            for update in replica.shared_updates():
                self.publish(update)

    def _read_hash(self, key: str) -> dict[bytes | str, bytes | str]:
        """The hash's fields and values; none (counted as malformed) if the key holds another type."""
        key_type = self._client.type(key)
        if key_type not in (b"hash", b"none"):
            self._skip(MalformedUpdate(MalformedReason.KEY_TYPE, f"the key holds a {key_type!r}, not a hash"), key)
            return {}
        return self._client.hgetall(key)

    def _valid(
        self, payload: bytes | str, source: str, *, field: bytes | str | None = None, cooldowns: bool | None = None
    ) -> BreakerUpdate | None:
        """The update in ``payload`` read from ``source`` if it keeps every rule, else None (skipped, counted).

        The one check for everything read from Redis: the channel's messages (no ``field``) and hash
        entries (``field``, and ``cooldowns`` for which hash), on first sync and on every resync.
        """
        try:
            update = BreakerUpdate.from_json(payload, wall_now=self.wall_time())
            if field is not None and _as_bytes(field) != _as_bytes(update.provider_id):
                raise MalformedUpdate(MalformedReason.PLACE, "stored under another provider's field")
            if cooldowns is not None and update.is_cooldown is not cooldowns:
                raise MalformedUpdate(MalformedReason.PLACE, f"a {update.kind.value} update in the wrong hash")
        except MalformedUpdate as exc:
            self._skip(exc, source)
            return None
        return update

    def _receive(
        self, payload: bytes | str, source: str, *, field: bytes | str | None = None, cooldowns: bool | None = None
    ) -> None:
        update = self._valid(payload, source, field=field, cooldowns=cooldowns)
        if update is None:
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
                log.exception(
                    "applying a shared %s update for %r failed (logged once)", update.kind.value, update.provider_id
                )

    # -- bookkeeping ---------------------------------------------------------------------------
    def _ttl_for(self, update: BreakerUpdate) -> int:
        longest = update.cooldown_for_s + update.open_for_s
        if not 0 <= longest <= 2 * MAX_SHARED_S:  # also NaN: never let a number break the write
            longest = 2 * MAX_SHARED_S
        return max(self._ttl_ms, int(longest * 1000) + 60_000)

    def _skip(self, exc: MalformedUpdate, source: str) -> None:
        reason = exc.reason.value
        with self._lock:
            self._counts["malformed"] += 1
            self._malformed_reasons[reason] = self._malformed_reasons.get(reason, 0) + 1
        if self._once(f"malformed {reason}"):
            log.warning(
                "Redis state store %s: skipped an invalid entry from %s (%s); counted in "
                "stats()['malformed_reasons'], further %r ones are not logged",
                self.url,
                source,
                exc.detail,
                reason,
            )

    def _written(self, update: BreakerUpdate, key: str, result: object) -> None:
        self._count("published" if result else "stale")
        if result not in (REPAIRED_ENTRY, REPLACED_KEY):
            return
        self._count("repaired")
        if result == REPLACED_KEY and self._once("replaced key"):
            log.warning(
                "Redis state store %s: %s held another type than a hash; replaced it (logged once)", self.url, key
            )
        elif result == REPAIRED_ENTRY and self._once("repaired entry"):
            log.warning(
                "Redis state store %s: overwrote an invalid entry for %r in %s (logged once)",
                self.url,
                update.provider_id,
                key,
            )

    def _write_failed(self, update: BreakerUpdate, exc: Exception) -> None:
        with self._lock:
            self._counts["write_errors"] += 1
            self._last_error = type(exc).__name__
        self._resync_at = min(self._resync_at, time.monotonic() + self._reconnect_max_s)
        if self._once(f"write {type(exc).__name__}"):
            log.warning(
                "Redis state store %s: writing a %s update for %r failed (%s: %s); sent again with the "
                "next resync, the connection stays up (logged once per error type)",
                self.url,
                update.kind.value,
                update.provider_id,
                type(exc).__name__,
                str(exc)[:200],
            )

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
            log.warning(
                "Redis state store %s unreachable (%s); breakers keep working on local state and "
                "resync when it is back",
                self.url,
                type(exc).__name__,
            )
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


def _as_bytes(text: bytes | str) -> bytes:
    return text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text


def _redacted(url: str) -> str:
    """``url`` without its user info or query string (which may carry a password)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return "<invalid url>"
    if "@" in parts.netloc:  # user:password, :password, or a token alone in the user slot: all secret
        netloc = f"***@{netloc}"
    return f"{parts.scheme}://{netloc}{parts.path}"  # urlunsplit would drop the // of unix:///path

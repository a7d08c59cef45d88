"""The stream policy: `EventStream`, a reconnecting reader of an EventStreams endpoint.

It keeps exactly one connection open at a time, resumes with
`Last-Event-ID` (rewinding timestamp positions a few seconds), drops
events it has already delivered (by `meta.id`), backs off with jitter
(honouring `Retry-After` up to a cap), reconnects a connection that went
silent (idle watchdog) and drops an event that grows beyond
`max_event_bytes`. It reaches the network only through its `transport`
(`harness.eventstreams.transport`).
"""

from __future__ import annotations

import contextlib
import math
import queue
import random
import signal
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import orjson

from harness.errors import StreamError
from harness.eventstreams.arrivals import Arrivals
from harness.eventstreams.connection import Connection, RetryableError
from harness.eventstreams.ids import DEFAULT_URL, USER_AGENT, event_key, resume_id
from harness.eventstreams.sse import DEFAULT_MAX_EVENT_BYTES, EventTooLarge, ReceivedEvent
from harness.eventstreams.transport import Timeout, Transport, Urllib3Transport
from harness.eventstreams.urls import check_url

__all__ = ["DEFAULT_RETRY_AFTER_CAP", "EventStream", "StreamStats"]

DEFAULT_RETRY_AFTER_CAP: Final = 300.0
_INBOX_EVENTS: Final = 10_000
_INBOX_BYTES: Final = 64 << 20


class _Inbox:
    """Hands events from a connection's reader thread to the consumer.

    Bounded in events and in payload characters (one item always fits);
    after `close()` the reader's `put` returns at once instead of blocking.
    """

    def __init__(self, max_items: int = _INBOX_EVENTS, max_chars: int = _INBOX_BYTES) -> None:
        self._items: deque[Any] = deque()
        self._chars = 0
        self._max_items, self._max_chars = max_items, max_chars
        self._closed = False
        self._changed = threading.Condition()

    def put(self, item: Any) -> bool:
        """Queue `item`; False if the inbox was closed (the item is dropped)."""
        size = len(item.data) if isinstance(item, ReceivedEvent) else 0
        with self._changed:
            while self._items and not self._closed and (
                    len(self._items) >= self._max_items or self._chars + size > self._max_chars):
                self._changed.wait()
            if self._closed:
                return False
            self._items.append((item, size))
            self._chars += size
            self._changed.notify_all()
            return True

    def get(self, timeout: float) -> Any:
        """The next item; raises `queue.Empty` after `timeout` seconds without one."""
        with self._changed:
            if not self._changed.wait_for(lambda: bool(self._items), timeout):
                raise queue.Empty
            item, size = self._items.popleft()
            self._chars -= size
            self._changed.notify_all()
            return item

    def close(self) -> int:
        """Close; the number of events that were still queued (dropped)."""
        with self._changed:
            self._closed = True
            dropped = sum(isinstance(item, ReceivedEvent) for item, _ in self._items)
            self._items.clear()
            self._changed.notify_all()
            return dropped


@dataclass
class StreamStats:
    """What an `EventStream` did so far; a caller may read it any time."""

    connections: int = 0
    reconnects: int = 0
    failures: int = 0
    duplicates: int = 0
    errors: int = 0  # `event: error` frames received
    watchdog: int = 0  # connections dropped for silence
    oversized: int = 0  # events dropped for exceeding max_event_bytes
    last_problem: str | None = None  # the latest failure, in words (no credentials)
    next_retry_at: float | None = None  # time.monotonic() of the next attempt while waiting


_EOF = object()


@dataclass
class EventStream:
    """Reconnecting reader of an EventStreams endpoint.

    Iterate `events()`; it yields `ReceivedEvent`s and, every `tick`
    seconds without one, `None` (so a caller can flush or stop). Call
    `stop()` from any thread to end it.

    Limits: a connection that completes no line (keepalive comments count)
    for `idle_timeout` seconds is dropped and resumed, however many bytes
    of an unfinished line trickle in, and a server that sends no response
    head within twice `idle_timeout` counts as a failed attempt; a `Retry-After` longer than
    `retry_after_cap` seconds counts as `retry_after_cap`, an invalid one not at all;
    an event longer than `max_event_bytes` is dropped (counted in
    `stats.oversized`) and the connection resumed after it; `max_failures`
    consecutive attempts without a new event end the stream with a
    `StreamError` (None: never). While it waits to retry,
    `stats.last_problem` says why and `stats.next_retry_at` until when.

    Requests go through `transport` (default: `Urllib3Transport`, the network).
    """

    url: str = DEFAULT_URL
    user_agent: str = USER_AGENT
    since: str | None = None
    last_id: str | None = None
    seen: Iterable[str] = ()
    idle_timeout: float = 30.0
    connect_timeout: float = 10.0
    rewind_seconds: float = 5.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP
    max_failures: int | None = None  # consecutive failed attempts before giving up
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    dedup_window: int = 100_000
    tick: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    stats: StreamStats = field(default_factory=StreamStats)
    transport: Transport = field(default_factory=Urllib3Transport, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_url(self.url)
        self._check_options()
        self._seen: OrderedDict[str, None] = OrderedDict((uid, None) for uid in self.seen)
        self._stop = threading.Event()
        self._connection: Connection | None = None
        self.arrivals = Arrivals()  # receive times; what has been handed on
        self.stopped_by = ""  # the signal that ended the stream (stopped_by_signals)
        # A connection that brings nothing new halves the rewind; one that
        # brings more new events than repeats doubles it back towards
        # `rewind_seconds`. A server that drops us sooner than the rewind
        # window re-sends therefore cannot stall the stream.
        self._rewind_ms = self.rewind_seconds * 1000

    def _check_options(self) -> None:
        if self.max_failures is not None and (isinstance(self.max_failures, bool)
                                              or self.max_failures < 1):
            raise StreamError(f"max_failures must be >= 1 (or None: never give up),"
                              f" got {self.max_failures!r}")
        if self.max_event_bytes < 1:
            raise StreamError(f"max_event_bytes must be >= 1, got {self.max_event_bytes!r}")
        for name in ("idle_timeout", "connect_timeout", "tick"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise StreamError(f"{name} must be > 0 seconds, got {value!r}")
        for name in ("rewind_seconds", "backoff_base", "backoff_cap", "retry_after_cap"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise StreamError(f"{name} must be finite and >= 0, got {value!r}")

    def stop(self) -> None:
        self._stop.set()
        connection = self._connection
        if connection is not None:
            connection.close()

    @contextlib.contextmanager
    def stopped_by_signals(self) -> Iterator[None]:
        """While inside: SIGINT and SIGTERM end the stream (as if it had ended, so that
        everything received is kept) instead of the process; `stopped_by` names the
        signal. A second signal interrupts as usual. Main thread only."""

        def handler(signum: int, frame: FrameType | None) -> None:
            restore()
            self.stopped_by = signal.Signals(signum).name
            self.stop()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        try:
            yield
        finally:
            restore()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "User-Agent": self.user_agent}
        if self.last_id is not None:
            rewind_ms = int(self._rewind_ms)
            headers["Last-Event-ID"] = (resume_id(self.last_id, rewind_ms) if rewind_ms
                                        else self.last_id)
        return headers

    def _target(self) -> str:
        if self.since is None or self.last_id is not None:
            return self.url
        sep = "&" if urlsplit(self.url).query else "?"
        return f"{self.url}{sep}{urlencode({'since': self.since})}"

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt `attempt + 1`: jittered exponential backoff,
        or the server's `Retry-After` if longer, capped at `retry_after_cap`."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** min(attempt, 32))
        delay = self.rng.uniform(0.5, 1.0) * ceiling
        return max(delay, min(retry_after or 0.0, self.retry_after_cap))

    def _is_duplicate(self, event: ReceivedEvent) -> bool:
        try:
            value = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            value = None
        uid = event_key(value, event.sse_id)
        if uid is None:
            return False
        if uid in self._seen:
            self.stats.duplicates += 1
            return True
        self._seen[uid] = None
        if len(self._seen) > self.dedup_window:
            self._seen.popitem(last=False)
        return False

    def events(self) -> Iterator[ReceivedEvent | None]:
        attempt = 0  # consecutive attempts that failed or brought nothing new
        while not self._stop.is_set():
            retry_after = None
            self.stats.next_retry_at = None
            try:
                # Twice the idle timeout: the watchdog drops a silent stream first.
                connection = Connection(self.transport, self._target(), self._headers(),
                                        Timeout(self.connect_timeout, 2 * self.idle_timeout),
                                        max_event_bytes=self.max_event_bytes,
                                        arrivals=self.arrivals)
            except RetryableError as exc:
                self.stats.failures += 1
                self.stats.last_problem = str(exc)
                retry_after = exc.retry_after
            else:
                self.stats.connections += 1
                if self.stats.connections > 1:
                    self.stats.reconnects += 1
                repeats = self.stats.duplicates
                new = yield from self._drain(connection)
                repeats = self.stats.duplicates - repeats
                if new:
                    attempt = 0
                    if new > repeats:
                        self._rewind_ms = min(max(self._rewind_ms * 2, 1.0),
                                              self.rewind_seconds * 1000)
                    continue
                self._rewind_ms = self._rewind_ms / 2 if self._rewind_ms >= 2 else 0.0
            if self._stop.is_set():
                return
            attempt += 1
            if self.max_failures is not None and attempt >= self.max_failures:
                raise StreamError(f"giving up after {attempt} attempts without progress;"
                                  f" last: {self.stats.last_problem}")
            yield from self._sleep(self._backoff(attempt - 1, retry_after))
        self.stats.next_retry_at = None

    def _sleep(self, seconds: float) -> Iterator[None]:
        deadline = time.monotonic() + seconds
        self.stats.next_retry_at = deadline
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._stop.wait(min(self.tick, max(deadline - time.monotonic(), 0.0)))
            yield None

    def _drain(self, connection: Connection) -> Generator[ReceivedEvent | None, None, int]:
        """Deliver one connection's events; returns how many new ones arrived."""
        self._connection = connection
        inbox = _Inbox()
        reader = threading.Thread(target=_pump, args=(connection, inbox), daemon=True,
                                  name="sse-reader")
        reader.start()
        delivered = 0
        last_activity = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    item = inbox.get(timeout=self.tick)
                except queue.Empty:
                    last_activity = max(last_activity, connection.last_progress)
                    if time.monotonic() - last_activity > self.idle_timeout:
                        self.stats.watchdog += 1
                        self.stats.last_problem = (f"no complete line for {self.idle_timeout:g}"
                                                   " s; reconnecting")
                        return delivered
                    yield None
                    continue
                last_activity = time.monotonic()
                if item is _EOF:
                    return delivered
                if isinstance(item, BaseException):
                    self._connection_ended(item)
                    return delivered
                if item.kind == "error":
                    self.stats.errors += 1
                    self.stats.last_problem = f"server sent event: error: {item.data[:200]}"
                    self.arrivals.settle()
                    continue
                if self._is_duplicate(item):
                    self.arrivals.settle()
                    continue
                delivered += 1
                if item.sse_id:
                    self.last_id = item.sse_id
                yield item
                self.arrivals.settle()  # the consumer has handled it: it asks for the next
            return delivered
        finally:
            self._connection = None
            self.arrivals.settle(inbox.close())
            connection.close()
            reader.join(timeout=1)

    def _connection_ended(self, exc: BaseException) -> None:
        """Account for the failure that ended a connection."""
        if isinstance(exc, EventTooLarge):
            self.stats.oversized += 1
            self.stats.last_problem = f"{exc}; resuming"
            if exc.sse_id:
                self.last_id = exc.sse_id  # resume after the dropped event
            return
        self.stats.last_problem = f"connection lost: {exc}"


def _pump(connection: Connection, inbox: _Inbox) -> None:
    try:
        for event in connection.events():
            if not inbox.put(event):
                connection.arrivals.settle()  # dropped with its closed connection
    except Exception as exc:  # any transport failure ends this connection
        inbox.put(exc)
        return
    inbox.put(_EOF)

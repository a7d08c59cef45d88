"""EventStreams client: one HTTP connection (the transport) and a reconnecting stream on top.

`Connection` is a single GET of an SSE endpoint parsed by sseclient-py.
`EventStream` is what the recorder and live mode consume: it keeps exactly
one connection open at a time, resumes with `Last-Event-ID` (rewinding
timestamp positions a few seconds, SPEC 5), drops events it has already
delivered (by `meta.id`), backs off with jitter (honouring `Retry-After`),
and reconnects a connection that went silent (idle watchdog).
"""

from __future__ import annotations

import codecs
import contextlib
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import sseclient
import urllib3

from harness import __version__
from harness.errors import StreamError
from harness.eventstreams.ids import event_key, resume_id

DEFAULT_URL = "https://stream.wikimedia.org/v2/stream/recentchange"
USER_AGENT = (f"wikistream-harness/{__version__}"
              " (https://github.com/wikistream-harness/wikistream-harness; replay/benchmark"
              " harness for Bytewax flows)")
_FATAL_STATUSES = {400, 401, 404, 405, 410}


class RetryableError(Exception):
    """One connection attempt failed; the stream backs off and tries again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """One server-sent event as received: raw data, raw id, arrival time."""

    kind: str  # "message" or "error"
    data: str
    sse_id: str | None
    received: float


def public_url(url: str) -> str:
    """The URL without user:password, fit to store in a recording's manifest."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StreamError(f"--url {url!r}: only http:// and https:// URLs are accepted")
    return url


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _utf8_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Re-encode a byte stream as valid UTF-8 (invalid bytes backslash-escaped).

    sseclient-py decodes strictly and a single bad byte would otherwise end
    the stream at the same event on every reconnect.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield text.encode()
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail.encode()


class Connection:
    """A single streaming GET of an SSE endpoint."""

    def __init__(self, http: urllib3.PoolManager, url: str, headers: dict[str, str],
                 connect_timeout: float) -> None:
        try:
            self._response = http.request(
                "GET", url, headers=headers, preload_content=False, redirect=True,
                timeout=urllib3.Timeout(connect=connect_timeout, read=None), retries=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise RetryableError(f"cannot connect to {url}: {exc}") from None
        status = self._response.status
        if status != 200:
            retry_after = _retry_after(self._response.headers.get("Retry-After"))
            self.close()
            if status in _FATAL_STATUSES:
                raise StreamError(f"{url}: server answered HTTP {status}")
            hint = " (Wikimedia requires a User-Agent)" if status == 403 else ""
            raise RetryableError(f"{url}: HTTP {status}{hint}", retry_after)
        content_type = self._response.headers.get("Content-Type", "")
        if not content_type.startswith("text/event-stream"):
            self.close()
            raise RetryableError(f"{url}: wrong content type {content_type!r}"
                                 " (expected text/event-stream)")
        self.last_bytes = time.monotonic()  # any bytes, comments included: for the watchdog

    def _chunks(self) -> Iterator[bytes]:
        read = self._response.read1 if hasattr(self._response, "read1") else self._response.read
        while True:
            chunk = read(65536)
            if not chunk:
                return
            self.last_bytes = time.monotonic()
            yield chunk

    def events(self) -> Iterator[ReceivedEvent]:
        client = sseclient.SSEClient(_utf8_chunks(self._chunks()))
        for event in client.events():
            yield ReceivedEvent(event.event, event.data, event.id, time.time())

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed, or the socket is gone
            self._response.shutdown()
        self._response.release_conn()
        self._response.close()


@dataclass
class StreamStats:
    connections: int = 0
    reconnects: int = 0
    failures: int = 0
    duplicates: int = 0
    errors: int = 0  # `event: error` frames received
    watchdog: int = 0  # connections dropped for silence
    last_problem: str | None = None


_EOF = object()


@dataclass
class EventStream:
    """Reconnecting reader of an EventStreams endpoint.

    Iterate `events()`; it yields `ReceivedEvent`s and, every `tick`
    seconds without one, `None` (so a caller can flush or stop). Call
    `stop()` from any thread to end it.
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
    max_failures: int | None = None  # consecutive failed attempts before giving up
    dedup_window: int = 100_000
    tick: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    stats: StreamStats = field(default_factory=StreamStats)

    def __post_init__(self) -> None:
        check_url(self.url)
        self._seen: OrderedDict[str, None] = OrderedDict((uid, None) for uid in self.seen)
        self._stop = threading.Event()
        self._http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED")
        self._connection: Connection | None = None
        # A connection that brings nothing new halves the rewind; one that
        # brings more new events than repeats doubles it back towards
        # `rewind_seconds`. A server that drops us sooner than the rewind
        # window re-sends therefore cannot stall the stream.
        self._rewind_ms = self.rewind_seconds * 1000

    def stop(self) -> None:
        self._stop.set()
        connection = self._connection
        if connection is not None:
            connection.close()

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
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** min(attempt, 32))
        delay = self.rng.uniform(0.5, 1.0) * ceiling
        return max(delay, retry_after or 0.0)

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
            try:
                connection = Connection(self._http, self._target(), self._headers(),
                                        self.connect_timeout)
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

    def _sleep(self, seconds: float) -> Iterator[None]:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._stop.wait(min(self.tick, max(deadline - time.monotonic(), 0.0)))
            yield None

    def _drain(self, connection: Connection) -> Generator[ReceivedEvent | None, None, int]:
        """Deliver one connection's events; returns how many new ones arrived."""
        self._connection = connection
        inbox: queue.Queue[Any] = queue.Queue(maxsize=10_000)
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
                    last_activity = max(last_activity, connection.last_bytes)
                    if time.monotonic() - last_activity > self.idle_timeout:
                        self.stats.watchdog += 1
                        self.stats.last_problem = f"no data for {self.idle_timeout:g} s"
                        return delivered
                    yield None
                    continue
                last_activity = time.monotonic()
                if item is _EOF:
                    return delivered
                if isinstance(item, BaseException):
                    self.stats.last_problem = f"connection lost: {item}"
                    return delivered
                if item.kind == "error":
                    self.stats.errors += 1
                    self.stats.last_problem = f"server sent event: error: {item.data[:200]}"
                    continue
                if self._is_duplicate(item):
                    continue
                delivered += 1
                if item.sse_id:
                    self.last_id = item.sse_id
                yield item
            return delivered
        finally:
            self._connection = None
            connection.close()
            reader.join(timeout=1)


def _pump(connection: Connection, inbox: queue.Queue[Any]) -> None:
    try:
        for event in connection.events():
            inbox.put(event)
    except Exception as exc:  # any transport failure ends this connection
        inbox.put(exc)
        return
    inbox.put(_EOF)

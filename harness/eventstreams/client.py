"""EventStreams client: one HTTP connection (the transport) and a reconnecting stream on top.

`Connection` is a single GET of an SSE endpoint, parsed by `SSEParser`.
`EventStream` is what the recorder and live mode consume: it keeps exactly
one connection open at a time, resumes with `Last-Event-ID` (rewinding
timestamp positions a few seconds), drops events it has already
delivered (by `meta.id`), backs off with jitter (honouring `Retry-After` up
to a cap), reconnects a connection that went silent (idle watchdog) and
drops an event that grows beyond `max_event_bytes`.
"""

from __future__ import annotations

import contextlib
import email.utils
import math
import queue
import random
import re
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
import sseclient
import urllib3

from harness.errors import StreamError
from harness.eventstreams.ids import DEFAULT_URL, USER_AGENT, event_key, resume_id

DEFAULT_MAX_EVENT_BYTES: Final = 16 << 20  # Wikimedia events are about 1 KB
MAX_EVENT_LINES: Final = 64  # EventStreams sends 3 (event, id, data)
DEFAULT_RETRY_AFTER_CAP: Final = 300.0
_FATAL_STATUSES = {400, 401, 404, 405, 410}
_READ_SIZE: Final = 65536
_INBOX_EVENTS: Final = 10_000
_INBOX_BYTES: Final = 64 << 20
_BOM: Final = b"\xef\xbb\xbf"
_USERINFO: Final = re.compile(r"(?<=//)[^/?#]*@")  # up to the last @, as urlsplit reads it
_BAD_URL_CHARS: Final = re.compile(r"[\x00-\x20\x7f]")
_URLLIB3_PREFIX: Final = re.compile(r"^\w+\(host=[^)]*\): ")
_DELAY_SECONDS: Final = re.compile(r"[0-9]+")  # RFC 9110 delay-seconds (`\d` takes any digit)


class RetryableError(Exception):
    """One connection attempt failed; the stream backs off and tries again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EventTooLarge(Exception):
    """An event grew beyond the size limit before its blank line; the connection is dropped.

    `sse_id` is the event's `id:` if that line came before the limit was
    reached (EventStreams sends it first), so that a resume can skip it.
    """

    def __init__(self, limit: int, sse_id: str | None) -> None:
        super().__init__(f"dropped an event larger than {limit:,} bytes (max_event_bytes)")
        self.sse_id = sse_id


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """One server-sent event as received: raw data, raw id, arrival time."""

    kind: str  # "message" or "error"
    data: str
    sse_id: str | None
    received: float


class Arrivals:
    """Receive times, and when every event received so far has been handed on.

    `stamp()` gives an event its receive time (`ReceivedEvent.received`, what a
    recording keeps as `recv`) and counts it; `settle()` counts one event
    done with (delivered to the consumer and handled, or dropped). Both take
    one lock, so `quiet_since()` can say, atomically: at this time, every
    event stamped before it has been settled, or None. Live mode closes
    windows while the stream is idle only up to such a time, never past the
    receive time of an event still on its way.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamped = 0
        self._settled = 0
        self._latest = 0.0  # times never go back, even when the system clock does

    def _now(self) -> float:
        self._latest = max(self._latest, time.time())
        return self._latest

    def stamp(self) -> float:
        with self._lock:
            self._stamped += 1
            return self._now()

    def settle(self, count: int = 1) -> None:
        if count:
            with self._lock:
                self._settled += count

    def quiet_since(self) -> float | None:
        with self._lock:
            return self._now() if self._settled == self._stamped else None


# ------------------------------------------------------------------- URLs


def public_url(url: str) -> str:
    """The URL without user:password, fit to store in a recording's manifest or show.

    Never raises: a URL too malformed to parse has its user-info cut out textually.
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return _USERINFO.sub("", url, count=1)
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port else "")
    return parts._replace(netloc=netloc).geturl()


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host name and a valid port; otherwise a
    `StreamError` naming `--url` (without credentials)."""
    problem = _url_problem(url)
    if problem is not None:
        raise StreamError(f"--url {public_url(url)!r}: {problem}")
    return url


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number 0-65535)
    except ValueError as exc:
        return f"malformed URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "only http:// and https:// URLs are accepted"
    if not parts.hostname:
        return "no host name"
    if _BAD_URL_CHARS.search(url):
        return "spaces or control characters are not allowed in a URL"
    return None


def _retry_after(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks for, or None if absent or invalid.

    RFC 9110: delay-seconds (ASCII digits) or an HTTP-date; any other value
    (`inf`, `nan`, `-5`, `1.5`, text) is ignored, so the normal backoff applies.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)  # may be inf for hundreds of digits: the stream caps it
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _reason(exc: BaseException) -> str:
    """Why a connection attempt failed, in a few words ("Connection refused"): the
    innermost OSError's text, found through urllib3's wrappers."""
    cause: BaseException | None = exc
    for _ in range(16):  # guards against a cyclic chain
        if cause is None:
            break
        if isinstance(cause, OSError) and (cause.strerror or cause.args):
            return cause.strerror or str(cause)
        cause = cause.__cause__ or cause.__context__ or next(
            (arg for arg in cause.args if isinstance(arg, BaseException)), None)
    return _URLLIB3_PREFIX.sub("", str(exc))


# ---------------------------------------------------------------- parsing


class SSEFramer:
    """Cuts a `text/event-stream` byte stream into whole events for sseclient-py.

    sseclient-py parses the fields of an event (`event:`, `id:`, `data:` lines,
    comments); this framer is what stands in front of it, in linear time and
    bounded memory: lines ending in CRLF, CR or LF (also when split across
    chunks) become LF-terminated, one leading UTF-8 BOM is dropped, invalid
    UTF-8 is backslash-escaped, and each complete event (up to its blank line)
    comes out whole. An event still open at the end of the stream is
    discarded, as the standard says. An event longer than `max_event_bytes`,
    or of more than `max_event_lines` lines, raises `EventTooLarge` instead of
    being buffered (sseclient-py concatenates an event line by line, so both
    bounds keep its work small).
    """

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
                 max_event_lines: int = MAX_EVENT_LINES) -> None:
        self.max_event_bytes = max_event_bytes
        self.max_event_lines = max_event_lines
        self.lines = 0  # complete lines so far: progress, for an idle watchdog
        self._pending = bytearray()  # the current, unfinished event
        self._pending_lines = 0
        self._after_cr = False  # the last chunk ended in CR: a leading LF belongs to it
        self._first = True

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events (LF-terminated, each ending in a blank line) `chunk` completes."""
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = chunk.endswith(b"\r")
        chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._first and chunk:
            self._first = False
            chunk = chunk.removeprefix(_BOM)
        newlines = chunk.count(b"\n")
        self.lines += newlines
        buf = self._pending
        scan = max(len(buf) - 1, 0)  # a blank line may straddle the chunk boundary
        buf += chunk
        frames: list[bytes] = []
        start = 0
        while (end := buf.find(b"\n\n", max(scan, start))) >= 0:
            frame = bytes(buf[start:end + 2])
            if len(frame) > 2:
                frames.append(self._frame(frame))
            start = end + 2
        if start:
            del buf[:start]
            self._pending_lines = buf.count(b"\n")
        else:
            self._pending_lines += newlines
        if len(buf) > self.max_event_bytes or self._pending_lines > self.max_event_lines:
            raise EventTooLarge(self.max_event_bytes, self._pending_id())
        return frames

    def _frame(self, frame: bytes) -> bytes:
        if len(frame) > self.max_event_bytes or frame.count(b"\n") > self.max_event_lines + 1:
            self._pending[:] = frame
            raise EventTooLarge(self.max_event_bytes, self._pending_id())
        return frame.decode("utf-8", "backslashreplace").encode()

    def _pending_id(self) -> str | None:
        """The `id:` of the event being dropped, if it came early enough to be seen."""
        for line in bytes(self._pending[:65536]).split(b"\n")[:-1]:
            if line.startswith(b"id:"):
                value = line[3:].removeprefix(b" ").decode("utf-8", "backslashreplace")
                return value if "\0" not in value else None
        return None


# ------------------------------------------------------------- transport


class Connection:
    """A single streaming GET of an SSE endpoint.

    `connect_timeout` bounds the TCP (and TLS) connect; `read_timeout` (None:
    no limit) bounds the wait for the response head and for each read of
    the body, so a server that accepts and then says nothing cannot hang
    the client.
    """

    def __init__(self, http: urllib3.PoolManager, url: str, headers: dict[str, str],
                 connect_timeout: float, *, read_timeout: float | None = None,
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
                 arrivals: Arrivals | None = None) -> None:
        shown = public_url(url)
        self.max_event_bytes = max_event_bytes
        self.arrivals = arrivals or Arrivals()
        try:
            self._response = http.request(
                "GET", url, headers=headers, preload_content=False, redirect=True,
                timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
                retries=False)
        except urllib3.exceptions.ReadTimeoutError:
            raise RetryableError(f"{shown}: no response within {read_timeout:g} s") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            where = urlsplit(shown).netloc or shown
            raise RetryableError(f"cannot connect to {where} ({_reason(exc)})") from None
        status = self._response.status
        if status != 200:
            retry_after = _retry_after(self._response.headers.get("Retry-After"))
            self.close()
            if status in _FATAL_STATUSES:
                raise StreamError(f"{shown}: server answered HTTP {status}")
            hint = " (Wikimedia requires a User-Agent)" if status == 403 else ""
            raise RetryableError(f"{shown}: HTTP {status}{hint}", retry_after)
        content_type = self._response.headers.get("Content-Type", "")
        if not content_type.startswith("text/event-stream"):
            self.close()
            raise RetryableError(f"{shown}: wrong content type {content_type!r}"
                                 " (expected text/event-stream)")
        # When the last complete line arrived (keepalive comments included), for the
        # watchdog: bytes that never finish a line are no sign of life.
        self.last_progress = time.monotonic()

    def _chunks(self) -> Iterator[bytes]:
        read = self._response.read1 if hasattr(self._response, "read1") else self._response.read
        while chunk := read(_READ_SIZE):
            yield chunk

    def events(self) -> Iterator[ReceivedEvent]:
        """The connection's events; raises `EventTooLarge` at an event over the limit."""
        framer = SSEFramer(self.max_event_bytes)

        def frames() -> Iterator[bytes]:
            for chunk in self._chunks():
                lines = framer.lines
                yield from framer.feed(chunk)
                if framer.lines != lines:
                    self.last_progress = time.monotonic()

        for event in sseclient.SSEClient(frames()).events():
            yield ReceivedEvent(event.event, event.data, event.id, self.arrivals.stamp())

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed, or the socket is gone
            self._response.shutdown()
        self._response.release_conn()
        self._response.close()


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


# ----------------------------------------------------------------- stream


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

    def __post_init__(self) -> None:
        check_url(self.url)
        self._check_options()
        self._seen: OrderedDict[str, None] = OrderedDict((uid, None) for uid in self.seen)
        self._stop = threading.Event()
        self._http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED")
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
                connection = Connection(self._http, self._target(), self._headers(),
                                        self.connect_timeout, read_timeout=2 * self.idle_timeout,
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

"""A local EventStreams-compatible SSE server that plays a recording (`harness serve`).

It speaks the wire format of stream.wikimedia.org (`wire`) so the recorder,
the live flow and any SSE client can be exercised offline, and it injects
the real service's misbehaviour on demand (`Faults`): periodic and timed
closes, silent stalls, 429/5xx answers, 403 without a User-Agent,
duplicates, malformed payloads, canaries and `event: error` frames.

Each connection reads the recording lazily from disk, so memory does not
grow with the recording or the number of clients. Resuming (`Last-Event-ID`)
and `since` are resolved on the envelopes as they are read, Kafka-style:
a timestamp position re-sends every event at or after that millisecond.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit

from harness.errors import RecordingError
from harness.eventstreams.ids import Position, parse_resume, parse_since
from harness.recording.envelope import Envelope
from harness.recording.reader import Recording
from harness.serve.faults import Faults
from harness.serve.positions import event_ms, resume_hit, wire_id
from harness.serve.wire import (
    KEEPALIVE,
    MALFORMED,
    OPENING,
    canary_frame,
    error_frame,
    event_frame,
)

__all__ = ["EventStreamServer", "Faults", "ServerStats"]

STREAM_PATH: Final = "/v2/stream/"
_DISCONNECTED: Final = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_POLL: Final = 0.1
_BUSY_RETRY_AFTER: Final = 5  # seconds, sent with 503 when max_connections are open

Positioned = Iterator[tuple[int, Envelope]]
Seeking = Iterator[tuple[int, Envelope] | None]  # None: still seeking, send a keepalive


@dataclass
class ServerStats:
    """Thread-safe counters of what the server did; read them any time."""

    requests: int = 0  # HTTP requests received
    connections: int = 0  # streams opened (200 answers)
    active: int = 0  # streams open right now
    events_sent: int = 0  # recording events written, duplicate copies included
    exhausted: int = 0  # streams that reached the end of the recording
    disconnects: int = 0  # clients that left mid-stream
    not_found: int = 0
    bad_requests: int = 0
    forbidden: int = 0  # require_user_agent
    failed: int = 0  # fail_first answers
    closed_every: int = 0
    closed_after: int = 0
    stalls: int = 0
    duplicates: int = 0
    malformed: int = 0
    canaries: int = 0
    errors: int = 0
    header_timeouts: int = 0  # connections dropped for not sending a request head in time
    busy: int = 0  # connections turned away with 503: max_connections were open
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_lock"}


class _Reject(Exception):
    """End a request with an error status and a one-line reason."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})



# ------------------------------------------------------------------- server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, owner: EventStreamServer, address: tuple[str, int]) -> None:
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, up to `max_connections`; beyond that a 503."""
        owner = self.owner
        if owner._stopping.is_set():
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self.process_request_thread,
                                  args=(request, client_address), daemon=True,
                                  name=f"{owner._name}-conn")
        with owner._lock:
            busy = len(owner._connections) >= owner.max_connections
            if not busy:
                owner._connections[thread] = request
        if busy:
            owner.stats.add(busy=1)
            _turn_away(request, len(owner._connections))
            self.shutdown_request(request)
            return
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.owner._lock:
                self.owner._connections.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, _DISCONNECTED) or self.owner._stopping.is_set():
            return
        super().handle_error(request, client_address)


def _turn_away(sock: socket.socket, open_connections: int) -> None:
    """Answer 503 without a thread: read what the client sent so far (so that closing
    does not reset the connection), then write the answer, never blocking."""
    body = f"busy: {open_connections} connections open (max_connections)\n".encode()
    answer = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8"
              f"\r\nContent-Length: {len(body)}\r\nRetry-After: {_BUSY_RETRY_AFTER}"
              f"\r\nConnection: close\r\n\r\n").encode() + body
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.recv(65536)
        sock.send(answer)


class _HeadReader(io.RawIOBase):
    """Socket reads that must all be done by one deadline (the request head's).

    A read after the deadline, or one that waits past it, raises
    `TimeoutError`, which ends the request quietly: a client trickling a
    byte at a time cannot keep a thread.
    """

    def __init__(self, sock: socket.socket, deadline: float, on_timeout: Callable[[], None]):
        super().__init__()
        self._sock, self._deadline, self._on_timeout = sock, deadline, on_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("request head not complete in time")
            self._sock.settimeout(remaining)
            return self._sock.recv_into(buffer)
        except TimeoutError:
            self._on_timeout()
            raise


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "harness-eventstreams/1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        owner = self.server.owner
        self.rfile.close()
        self.rfile = io.BufferedReader(_HeadReader(
            self.connection, time.monotonic() + owner.header_timeout,
            lambda: owner.stats.add(header_timeouts=1)))

    def do_GET(self) -> None:
        self.close_connection = True
        self.connection.settimeout(None)  # the head is in; streaming has its own pacing
        owner = self.server.owner
        try:
            owner._serve_request(self)
        except _Reject as reject:
            owner._reject(self, reject)
        except OSError as exc:
            if not (isinstance(exc, _DISCONNECTED) or owner._stopping.is_set()):
                raise

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            super().log_message(format, *args)


class EventStreamServer:
    """Serves a recording over HTTP the way stream.wikimedia.org serves `recentchange`.

    `GET /v2/stream/<streams>` plays the recording from the start, from the
    `Last-Event-ID` header (or `last_event_id` query parameter), or from the
    `since` query parameter; fault names are also accepted as query
    parameters and override `faults` for that connection. `speed` 0 sends as
    fast as possible, otherwise at the recorded receive-time spacing divided
    by `speed`. At the end of the recording the connection is closed
    (`end="close"`) or kept open with a `:` keepalive every `keepalive`
    seconds (`end="hold"`). The port is bound on construction, so `url` is
    valid before `start()`.

    A request is checked in this order: path (404), query parameters (400),
    User-Agent (403), `fail_first` (its status), then `Last-Event-ID` (400).

    Hostile clients cannot pile up threads: a connection whose request head
    is not complete `header_timeout` seconds after it was accepted is
    closed, and beyond `max_connections` open connections a new one is
    answered 503 with `Retry-After` (counted in `stats.busy`).
    """

    def __init__(
        self,
        recording: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 0.0,
        faults: Faults | None = None,
        end: Literal["close", "hold"] = "close",
        keepalive: float = 1.0,
        header_timeout: float = 10.0,
        max_connections: int = 128,
        verbose: bool = False,
    ) -> None:
        if not (math.isfinite(speed) and speed >= 0):
            raise ValueError(f"speed must be finite and >= 0, got {speed}")
        if end not in ("close", "hold"):
            raise ValueError(f"end must be 'close' or 'hold', got {end!r}")
        if not (math.isfinite(keepalive) and keepalive > 0):
            raise ValueError(f"keepalive must be > 0 seconds, got {keepalive}")
        if not (math.isfinite(header_timeout) and header_timeout > 0):
            raise ValueError(f"header_timeout must be > 0 seconds, got {header_timeout}")
        if isinstance(max_connections, bool) or max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self.recording = os.fspath(recording)
        Recording(self.recording)  # fail early (RecordingError) on a bad directory
        self.speed = speed
        self.faults = faults or Faults()
        self.end = end
        self.keepalive = keepalive
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.verbose = verbose
        self.stats = ServerStats()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._failed = 0
        self._stall_claimed = False
        self._thread: threading.Thread | None = None
        self._loop_entered = False
        self._stopped = False
        self._httpd = _HTTPServer(self, (host, port))
        self.host, self.port = self._httpd.server_name, self._httpd.server_port
        self._name = f"EventStreamServer:{self.port}"
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}{STREAM_PATH}recentchange"

    # ------------------------------------------------------------ lifecycle

    def start(self) -> EventStreamServer:
        """Serve in a background thread; returns self."""
        with self._lock:
            if self._stopped or self._loop_entered:
                raise RuntimeError("server already started or stopped")
            self._loop_entered = True
            self._thread = threading.Thread(target=self._httpd.serve_forever,
                                            kwargs={"poll_interval": _POLL},
                                            name=self._name, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until `stop()` or Ctrl-C."""
        with self._lock:
            if self._stopped or self._loop_entered:
                raise RuntimeError("server already started or stopped")
            self._loop_entered = True
        try:
            self._httpd.serve_forever(poll_interval=_POLL)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, end open streams, close the sockets and join the threads."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            entered = self._loop_entered
        self._stopping.set()
        if entered:
            self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections.items())
        for _, sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 5.0
        for thread, _ in connections:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> EventStreamServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------- requests

    def _serve_request(self, handler: _Handler) -> None:
        self.stats.add(requests=1)
        url = urlsplit(handler.path)
        if not url.path.startswith(STREAM_PATH) or len(url.path) == len(STREAM_PATH):
            self.stats.add(not_found=1)
            raise _Reject(404, f"not found: {url.path} (streams are at {STREAM_PATH}<name>)")
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            faults = self.faults.overridden(params)
            since = parse_since(params["since"]) if "since" in params else None
        except ValueError as exc:
            raise _Reject(400, str(exc)) from None
        if faults.require_user_agent and not (handler.headers.get("User-Agent") or "").strip():
            self.stats.add(forbidden=1)
            raise _Reject(403, "forbidden: send a descriptive User-Agent with contact"
                               " information (Wikimedia User-Agent policy)")
        with self._lock:
            fail = self._failed < self.faults.fail_first
            self._failed += fail
        if fail:
            self.stats.add(failed=1)
            retry = faults.retry_after_text or _seconds(faults.retry_after)
            raise _Reject(faults.fail_status, f"injected failure ({faults.fail_status})",
                          {"Retry-After": retry})
        last_id = _header_text(handler.headers.get("Last-Event-ID"))
        if not last_id:
            last_id = params.get("last_event_id", "").strip()
        try:
            events = self._positioned(last_id, since)
        except RecordingError as exc:
            raise _Reject(500, f"recording unreadable: {exc}") from None
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Access-Control-Allow-Origin", "*")
        handler.send_header("Connection", "close")
        handler.end_headers()
        self.stats.add(connections=1, active=1)
        try:
            _Stream(self, handler, faults).run(events)
        except OSError as exc:
            if isinstance(exc, _DISCONNECTED) or self._stopping.is_set():
                self.stats.add(disconnects=1)
                return
            raise
        except RecordingError as exc:
            sys.stderr.write(f"harness serve: {exc}\n")
        finally:
            self.stats.add(active=-1)

    def _reject(self, handler: _Handler, reject: _Reject) -> None:
        if reject.status == 400:
            self.stats.add(bad_requests=1)
        body = (reject.reason.replace("\n", " ") + "\n").encode()
        with contextlib.suppress(OSError):
            handler.send_response(reject.status)
            handler.send_header("Content-Type", "text/plain; charset=utf-8")
            handler.send_header("Content-Length", str(len(body)))
            handler.send_header("Connection", "close")
            for name, value in reject.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)

    def _positioned(self, last_id: str, since: float | None) -> Seeking:
        """The recording's (global position, envelope) pairs from where this client starts.

        An unparseable `Last-Event-ID` is looked up eagerly (so it can still
        become a 400); everything else is resolved lazily while streaming,
        with a None about every `keepalive` seconds of seeking so that the
        client can be sent a keepalive and its idle watchdog stays calm.
        """
        envelopes: Positioned = enumerate(Recording(self.recording).envelopes(), 1)
        if last_id:
            positions = parse_resume(last_id)
            if positions is None:
                for _, envelope in envelopes:
                    if wire_id(envelope) == last_id or self._stopping.is_set():
                        return envelopes
                raise _Reject(400, f"Last-Event-ID {last_id[:200]!r}: not an id of this stream"
                                   " nor a JSON array of {offset|timestamp} objects")
            if positions:
                return self._resume(envelopes, last_id, positions)
        if since is not None:
            return self._seek(envelopes, lambda _, envelope: _at_or_after(envelope, since))
        return envelopes

    def _resume(
        self, envelopes: Positioned, last_id: str, positions: list[Position]
    ) -> Seeking:
        """Continue after the first event sent with exactly `last_id`, else by position.

        Ids repeat when several events share a millisecond; resuming after the
        first of them re-sends the rest, which clients de-duplicate. Without an
        exact match the whole recording is scanned once, then read again from
        the first event the positions reach.
        """
        start: int | None = None
        for item in self._scanning(envelopes):
            if item is None:
                yield None  # keepalive while scanning
                continue
            index, envelope = item
            if wire_id(envelope) == last_id:
                yield from envelopes
                return
            if start is None:
                hit = resume_hit(positions, envelope)
                if hit is not None:
                    start = index + hit
        if start is not None:
            again = enumerate(Recording(self.recording).envelopes(), 1)
            yield from self._seek(again, lambda index, _: index >= start)

    def _seek(self, envelopes: Positioned, reached: Callable[[int, Envelope], bool]) -> Seeking:
        """The envelopes from the first that `reached` accepts, with keepalive Nones."""
        for item in self._scanning(envelopes):
            if item is None:
                yield None
            elif reached(*item):
                yield item
                yield from envelopes
                return

    def _scanning(self, envelopes: Positioned) -> Seeking:
        """Envelopes as a scan passes them, a None about every `keepalive` seconds;
        ends early when the server stops."""
        beat = time.monotonic() + self.keepalive
        for index, envelope in envelopes:
            yield index, envelope
            if index % 256 == 0:
                if self._stopping.is_set():
                    return
                if time.monotonic() >= beat:
                    yield None
                    beat = time.monotonic() + self.keepalive

    # --------------------------------------------------------- global faults

    def _claim_stall(self, position: int) -> bool:
        if position != self.faults.stall_at:
            return False
        with self._lock:
            claimed, self._stall_claimed = self._stall_claimed, True
        return not claimed


def _at_or_after(envelope: Envelope, since: float) -> bool:
    ms = event_ms(envelope)
    return ms is not None and ms >= since


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _header_text(value: str | None) -> str:
    """A header value as UTF-8 text (http.server decodes headers as Latin-1)."""
    if not value:
        return ""
    with contextlib.suppress(UnicodeError):
        value = value.encode("latin-1").decode("utf-8")
    return value.strip()


class _Stream:
    """Writes one connection's events, applying pacing and per-connection faults."""

    def __init__(self, owner: EventStreamServer, handler: _Handler, faults: Faults) -> None:
        self.owner = owner
        self.faults = faults or Faults()
        self.sock: socket.socket = handler.connection
        self.write = handler.wfile.write
        opened = time.monotonic()
        self.deadline = opened + faults.close_after if faults.close_after > 0 else math.inf

    def run(self, events: Seeking) -> None:
        owner, f, stats, write = self.owner, self.faults, self.owner.stats, self.write
        stopping = owner._stopping
        speed = owner.speed
        paced = speed > 0
        timed = self.deadline < math.inf
        write(OPENING)
        started = first_recv = 0.0
        sent = 0
        for item in events:
            if stopping.is_set():
                return
            if timed and time.monotonic() >= self.deadline:
                stats.add(closed_after=1)
                return
            if item is None:
                write(KEEPALIVE)
                continue
            position, envelope = item
            if f.close_every and sent >= f.close_every:
                stats.add(closed_every=1)
                return
            if position == f.stall_at and owner._claim_stall(position):
                stats.add(stalls=1)
                self.idle(time.monotonic() + f.stall_seconds if f.stall_seconds > 0 else None)
                return
            sent += 1
            if paced:
                if sent == 1:
                    started, first_recv = time.monotonic(), envelope.recv
                due = started + (envelope.recv - first_recv) / speed
                if due > time.monotonic() and not self.idle(min(due, self.deadline)):
                    return
            if timed and time.monotonic() >= self.deadline:
                stats.add(closed_after=1)
                return
            if f.error_every and sent % f.error_every == 0:
                write(error_frame(position))
                stats.add(errors=1)
            if f.malformed_every and sent % f.malformed_every == 0:
                write(MALFORMED)
                stats.add(malformed=1)
            if f.canary_every and sent % f.canary_every == 0:
                write(canary_frame(envelope, position))
                stats.add(canaries=1)
            frame = event_frame(envelope)
            write(frame)
            if f.duplicate_every and sent % f.duplicate_every == 0:
                write(frame)
                stats.add(events_sent=2, duplicates=1)
            else:
                stats.add(events_sent=1)
        stats.add(exhausted=1)
        if owner.end == "hold":
            self.hold()

    def hold(self) -> None:
        """Keep the exhausted stream open with `:` keepalives until the client leaves."""
        beat = time.monotonic()
        while True:
            beat += self.owner.keepalive
            if not self.idle(min(beat, self.deadline)):
                return
            if time.monotonic() >= self.deadline:
                self.owner.stats.add(closed_after=1)
                return
            self.write(KEEPALIVE)

    def idle(self, until: float | None) -> bool:
        """Send nothing until `until` (monotonic; None: forever) or `close_after`.

        Returns False if the client left, the server is stopping or the
        connection's `close_after` deadline passed (counted).
        """
        limit = self.deadline if until is None else min(until, self.deadline)
        while not self.owner._stopping.is_set():
            remaining = limit - time.monotonic()
            if remaining <= 0:
                if limit >= self.deadline:
                    self.owner.stats.add(closed_after=1)
                    return False
                return True
            readable, _, _ = select.select([self.sock], [], [], min(remaining, _POLL))
            if readable:
                try:
                    peeked = self.sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    peeked = b""
                if not peeked:
                    self.owner.stats.add(disconnects=1)
                    return False
                self.owner._stopping.wait(min(remaining, _POLL))
        return False


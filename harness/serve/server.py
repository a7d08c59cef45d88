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
import math
import os
import sys
import threading
import time
from typing import Final, Literal
from urllib.parse import parse_qs, urlsplit

from harness.errors import RecordingError
from harness.eventstreams.ids import parse_since
from harness.recording.reader import Recording
from harness.serve.faults import Faults, OneShots
from harness.serve.httpd import Connections, Handler, Reject, StreamHTTPServer
from harness.serve.seeking import Seeker, UnknownLastEventId
from harness.serve.stats import ServerStats
from harness.serve.stream import POLL, EventWriter, Playing
from harness.store.location import location

__all__ = ["EventStreamServer", "Faults", "ServerStats"]

STREAM_PATH: Final = "/v2/stream/"


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
        self.recording = str(location(recording))
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
        self._one_shots = OneShots(self.faults)
        self._connections = Connections(max_connections, self.stats, self._stopping)
        self._thread: threading.Thread | None = None
        self._loop_entered = False
        self._stopped = False
        self._httpd = StreamHTTPServer((host, port), self._connections, self._answer,
                                       header_timeout=header_timeout, verbose=verbose)
        self.host, self.port = self._httpd.server_name, self._httpd.server_port
        self._name = self._httpd.thread_name
        self._seeker = Seeker(self.recording, keepalive, self._stopping)
        self._playing = Playing(speed, end, keepalive, self.stats, self._stopping,
                                self._one_shots.claim_stall)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}{STREAM_PATH}recentchange"

    # ------------------------------------------------------------ lifecycle

    def start(self) -> EventStreamServer:
        """Serve in a background thread; returns self."""
        with self._lock:
            self._enter_loop()
            self._thread = threading.Thread(target=self._httpd.serve_forever,
                                            kwargs={"poll_interval": POLL},
                                            name=self._name, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until `stop()` or Ctrl-C."""
        with self._lock:
            self._enter_loop()
        try:
            self._httpd.serve_forever(poll_interval=POLL)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _enter_loop(self) -> None:
        """Claim the one serving loop a server runs (with `_lock` held)."""
        if self._stopped or self._loop_entered:
            raise RuntimeError("server already started or stopped")
        self._loop_entered = True

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
        deadline = time.monotonic() + 5.0
        self._connections.close_all(deadline)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> EventStreamServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------- requests

    def _answer(self, handler: Handler) -> None:
        self.stats.add(requests=1)
        url = urlsplit(handler.path)
        if not url.path.startswith(STREAM_PATH) or len(url.path) == len(STREAM_PATH):
            self.stats.add(not_found=1)
            raise Reject(404, f"not found: {url.path} (streams are at {STREAM_PATH}<name>)")
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            faults = self.faults.overridden(params)
            since = parse_since(params["since"]) if "since" in params else None
        except ValueError as exc:
            raise Reject(400, str(exc)) from None
        if faults.require_user_agent and not (handler.headers.get("User-Agent") or "").strip():
            self.stats.add(forbidden=1)
            raise Reject(403, "forbidden: send a descriptive User-Agent with contact"
                               " information (Wikimedia User-Agent policy)")
        if self._one_shots.claim_failure():
            self.stats.add(failed=1)
            retry = faults.retry_after_text or _seconds(faults.retry_after)
            raise Reject(faults.fail_status, f"injected failure ({faults.fail_status})",
                          {"Retry-After": retry})
        last_id = _header_text(handler.headers.get("Last-Event-ID"))
        if not last_id:
            last_id = params.get("last_event_id", "").strip()
        try:
            events = self._seeker.positioned(last_id, since)
        except UnknownLastEventId as exc:
            raise Reject(400, str(exc)) from None
        except RecordingError as exc:
            raise Reject(500, f"recording unreadable: {exc}") from None
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Access-Control-Allow-Origin", "*")
        handler.send_header("Connection", "close")
        handler.end_headers()
        self.stats.add(connections=1, active=1)
        try:
            EventWriter(self._playing, handler, faults).run(events)
        except OSError as exc:
            if self._connections.ended(exc):
                self.stats.add(disconnects=1)
                return
            raise
        except RecordingError as exc:
            sys.stderr.write(f"harness serve: {exc}\n")
        finally:
            self.stats.add(active=-1)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _header_text(value: str | None) -> str:
    """A header value as UTF-8 text (http.server decodes headers as Latin-1)."""
    if not value:
        return ""
    with contextlib.suppress(UnicodeError):
        value = value.encode("latin-1").decode("utf-8")
    return value.strip()

"""The HTTP side of a playback server: one thread per connection up to a limit (a 503
beyond it, answered without a thread), a deadline for the request head, and a
request handed to the server above as `answer(handler)`; a `Reject` raised there
becomes its error status and one-line reason."""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Final

from harness.serve.stats import ServerStats

__all__ = ["DISCONNECTED", "Connections", "Handler", "Reject", "StreamHTTPServer"]

DISCONNECTED: Final = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_BUSY_RETRY_AFTER: Final = 5  # seconds, sent with 503 when max_connections are open


class Reject(Exception):
    """End a request with an error status and a one-line reason."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


class Connections:
    """A server's open connections (at most `limit`), what it counts, and its stop signal."""

    def __init__(self, limit: int, stats: ServerStats, stopping: threading.Event) -> None:
        self.limit, self.stats, self.stopping = limit, stats, stopping
        self._lock = threading.Lock()
        self._open: dict[threading.Thread, socket.socket] = {}

    def admit(self, thread: threading.Thread, request: socket.socket) -> bool:
        """Count `thread` in, unless `limit` connections are open already."""
        with self._lock:
            if len(self._open) >= self.limit:
                return False
            self._open[thread] = request
            return True

    def release(self, thread: threading.Thread) -> None:
        with self._lock:
            self._open.pop(thread, None)

    def count(self) -> int:
        return len(self._open)

    def ended(self, exc: BaseException | None) -> bool:
        """Whether an error only means that the client left or the server is stopping."""
        return isinstance(exc, DISCONNECTED) or self.stopping.is_set()

    def close_all(self, deadline: float) -> None:
        """Shut every open connection's socket down, then join its thread by `deadline`."""
        with self._lock:
            held = list(self._open.items())
        for _, sock in held:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread, _ in held:
            thread.join(max(0.0, deadline - time.monotonic()))


Answer = Callable[["Handler"], None]


class StreamHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], connections: Connections, answer: Answer, *,
                 header_timeout: float, verbose: bool) -> None:
        self.connections, self.answer = connections, answer
        self.header_timeout, self.verbose = header_timeout, verbose
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.thread_name = f"EventStreamServer:{self.server_port}"

    def server_bind(self) -> None:
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, up to the limit; beyond that a 503."""
        connections = self.connections
        if connections.stopping.is_set():
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self.process_request_thread,
                                  args=(request, client_address), daemon=True,
                                  name=f"{self.thread_name}-conn")
        if not connections.admit(thread, request):
            connections.stats.add(busy=1)
            _turn_away(request, connections.count())
            self.shutdown_request(request)
            return
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.connections.ended(sys.exc_info()[1]):
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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "harness-eventstreams/1"
    server: StreamHTTPServer

    def setup(self) -> None:
        super().setup()
        stats = self.server.connections.stats
        self.rfile.close()
        self.rfile = io.BufferedReader(_HeadReader(
            self.connection, time.monotonic() + self.server.header_timeout,
            lambda: stats.add(header_timeouts=1)))

    def do_GET(self) -> None:
        self.close_connection = True
        self.connection.settimeout(None)  # the head is in; streaming has its own pacing
        try:
            self.server.answer(self)
        except Reject as reject:
            self._refuse(reject)
        except OSError as exc:
            if not self.server.connections.ended(exc):
                raise

    def _refuse(self, reject: Reject) -> None:
        if reject.status == 400:
            self.server.connections.stats.add(bad_requests=1)
        body = (reject.reason.replace("\n", " ") + "\n").encode()
        with contextlib.suppress(OSError):
            self.send_response(reject.status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            for name, value in reject.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

"""One connection attempt: a GET over the transport, its answer judged, its body read.

`Connection` decides what an answer means for the stream: HTTP 200 with
`text/event-stream` is read as events; a status of `_FATAL_STATUSES` ends
the stream (`StreamError`); anything else, or no answer at all, is a
`RetryableError`, with the server's `Retry-After` if it sent one.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Iterator, Mapping
from typing import Final
from urllib.parse import urlsplit

from harness.errors import StreamError
from harness.eventstreams.arrivals import Arrivals
from harness.eventstreams.sse import (
    DEFAULT_MAX_EVENT_BYTES,
    ReceivedEvent,
    SSEFramer,
    read_events,
)
from harness.eventstreams.transport import Timeout, Transport, TransportError
from harness.eventstreams.urls import public_url

__all__ = ["Connection", "RetryableError"]

_FATAL_STATUSES = {400, 401, 404, 405, 410}
_DELAY_SECONDS: Final = re.compile(r"[0-9]+")  # RFC 9110 delay-seconds (`\d` takes any digit)


class RetryableError(Exception):
    """One connection attempt failed; the stream backs off and tries again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Connection:
    """A single streaming GET of an SSE endpoint, through `transport`.

    `timeout.connect` bounds the TCP (and TLS) connect; `timeout.read` (None:
    no limit) bounds the wait for the response head and for each read of
    the body, so a server that accepts and then says nothing cannot hang
    the client.
    """

    def __init__(self, transport: Transport, url: str, headers: Mapping[str, str],
                 timeout: Timeout, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
                 arrivals: Arrivals | None = None) -> None:
        shown = public_url(url)
        self.max_event_bytes = max_event_bytes
        self.arrivals = arrivals or Arrivals()
        try:
            self._response = transport.open(url, headers, timeout)
        except TransportError as exc:
            if exc.timed_out:
                raise RetryableError(f"{shown}: no response within {timeout.read:g} s") from None
            where = urlsplit(shown).netloc or shown
            raise RetryableError(f"cannot connect to {where} ({exc})") from None
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

    def _progressed(self) -> None:
        self.last_progress = time.monotonic()

    def events(self) -> Iterator[ReceivedEvent]:
        """The connection's events; raises `EventTooLarge` at an event over the limit."""
        framer = SSEFramer(self.max_event_bytes)
        for event in read_events(self._response.chunks(), framer, self._progressed):
            yield ReceivedEvent(event.event, event.data, event.id, self.arrivals.stamp())

    def close(self) -> None:
        self._response.close()


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

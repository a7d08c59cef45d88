"""SSE framing: a `text/event-stream` byte stream, in chunks of any size, as events.

`SSEFramer` cuts the bytes into whole events within bounds; sseclient-py
parses each event's fields; `read_events` puts the two together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import sseclient

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "MAX_EVENT_LINES", "EventTooLarge", "ReceivedEvent",
           "SSEFramer", "read_events"]

DEFAULT_MAX_EVENT_BYTES: Final = 16 << 20  # Wikimedia events are about 1 KB
MAX_EVENT_LINES: Final = 64  # EventStreams sends 3 (event, id, data)
_BOM: Final = b"\xef\xbb\xbf"


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
        if not chunk:  # nothing read: a CR at the end of the last chunk still counts
            return []
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


def read_events(chunks: Iterable[bytes], framer: SSEFramer,
                progressed: Callable[[], None]) -> Iterator[sseclient.Event]:
    """The events of a byte stream, cut by `framer` and parsed by sseclient-py;
    `progressed()` is called after each chunk that completed a line (keepalive
    comments included): bytes that never finish a line are no sign of life.
    Raises `EventTooLarge` at an event over the framer's limits."""

    def frames() -> Iterator[bytes]:
        for chunk in chunks:
            lines = framer.lines
            yield from framer.feed(chunk)
            if framer.lines != lines:
                progressed()

    return sseclient.SSEClient(frames()).events()

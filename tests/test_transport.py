"""The stream policy over a transport of the test's own: faults no real server can make.

`EventStream` reaches the network only through its `transport`. Here a scripted
transport answers instead, so a test chooses the very byte at which a connection
is reset (inside a multi-byte UTF-8 character, say) and the very places at which
a body is cut into reads: over loopback the kernel merges and splits writes as it
likes. The real-server tests (test_hostile_stream, test_recorder,
test_sweep_stream) show the same policy over real sockets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from harness.errors import StreamError
from harness.eventstreams.client import (
    EventStream,
    ReceivedEvent,
    Response,
    Timeout,
    TransportError,
)
from harness.eventstreams.ids import resume_id

URL = "http://stream.example.test/v2/stream/recentchange"
SSE_HEAD = {"Content-Type": "text/event-stream; charset=utf-8"}
OPTIONS: dict[str, Any] = {"idle_timeout": 5.0, "tick": 0.05, "backoff_base": 0.0,
                           "max_failures": 5}


@dataclass
class Scripted:
    """One response of the script: a head, then `pieces` read one by one (an exception
    among them is raised there, as a lost connection)."""

    pieces: list[bytes | BaseException]
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=lambda: dict(SSE_HEAD))
    closed: threading.Event = field(default_factory=threading.Event)

    def chunks(self) -> Iterator[bytes]:
        for piece in self.pieces:
            if self.closed.is_set():
                return
            if isinstance(piece, BaseException):
                raise piece
            yield piece

    def close(self) -> None:
        self.closed.set()


@dataclass
class ScriptedTransport:
    """Answers each `open` with the next of `script` (a `TransportError` is raised);
    once the script is over, calls `over` (which stops the stream) and fails."""

    script: list[Scripted | TransportError]
    over: Callable[[], None] = lambda: None
    requests: list[tuple[str, dict[str, str], Timeout]] = field(default_factory=list)
    problems: list[str | None] = field(default_factory=list)  # `last_problem` at each open
    stream: EventStream | None = None

    def open(self, url: str, headers: Mapping[str, str], timeout: Timeout) -> Response:
        self.requests.append((url, dict(headers), timeout))
        self.problems.append(self.stream.stats.last_problem if self.stream else None)
        if not self.script:
            self.over()
            raise TransportError("the script is over")
        answer = self.script.pop(0)
        if isinstance(answer, TransportError):
            raise answer
        return answer


def run(script: list[Scripted | TransportError], **options: Any
        ) -> tuple[list[ReceivedEvent], EventStream, ScriptedTransport]:
    """Everything the stream delivers over `script`, the stream, and the transport."""
    transport = ScriptedTransport(script)
    stream = EventStream(url=URL, transport=transport, **OPTIONS | options)
    transport.over, transport.stream = stream.stop, stream
    got = [item for item in stream.events() if item is not None]
    assert stream.arrivals.quiet_since() is not None  # every event stamped was settled
    return got, stream, transport


def sse_id(offset: int) -> str:
    return orjson.dumps([{"topic": "eqiad.mediawiki.recentchange", "partition": 0,
                          "offset": offset, "timestamp": 1_700_000_000_000 + offset}]).decode()


def frame(offset: int, title: str) -> tuple[bytes, str]:
    """An EventStreams frame, and its data as the stream must deliver it."""
    data = orjson.dumps({"meta": {"id": f"00000000-0000-4000-8000-{offset:012d}"},
                         "title": title}).decode()
    return f"event: message\nid: {sse_id(offset)}\ndata: {data}\n\n".encode(), data


# ------------------------------------------------- a reset inside a character


FIRST, FIRST_DATA = frame(1, "Zürich")
SECOND, SECOND_DATA = frame(2, "東京 🦀 Ærø")
MULTIBYTE_CUTS = [k for k in range(len(SECOND)) if SECOND[k] & 0xC0 == 0x80]  # continuations


def test_a_reset_anywhere_in_an_event_drops_it_whole_and_the_resume_brings_it() -> None:
    """The connection is reset after any number of bytes of the second event (also inside
    each multi-byte character of its title): the part received is never delivered, not
    even backslash-escaped; the stream resumes after the first event (its id, rewound),
    drops the first event the server sends again, and delivers the second once, intact.
    (One test over every cut: a test item each would cost more than the cuts.)"""
    for cut in range(len(SECOND)):
        try:
            _reset_after(cut)
        except AssertionError as exc:
            raise AssertionError(f"reset after {cut} bytes of the second event: {exc}") from exc


def _reset_after(cut: int) -> None:
    reset = ConnectionResetError(104, "Connection reset by peer")
    got, stream, transport = run([
        Scripted([b":ok\n\n", FIRST + SECOND[:cut], reset]),
        Scripted([b":ok\n\n", FIRST, SECOND]),  # a server resends what the rewind covers
    ])
    assert [(e.kind, e.data, e.sse_id) for e in got] == [
        ("message", FIRST_DATA, sse_id(1)), ("message", SECOND_DATA, sse_id(2))]
    assert stream.stats.duplicates == 1 and stream.stats.reconnects == 1
    assert stream.last_id == sse_id(2)
    (_, first, _), (_, resumed, _), _ = transport.requests
    assert "Last-Event-ID" not in first
    assert resumed["Last-Event-ID"] == resume_id(sse_id(1), 5000)
    assert transport.problems[1] == "connection lost: [Errno 104] Connection reset by peer"


def test_the_reset_cuts_include_every_byte_inside_a_multibyte_character() -> None:
    """東, 京 and 🦀 have 2, 2 and 3 continuation bytes, Æ and ø one each."""
    assert len(MULTIBYTE_CUTS) == 9 and all(0 < k < len(SECOND) for k in MULTIBYTE_CUTS)


# ------------------------------------------------- reads split in every place


BODY = (b"\xef\xbb\xbf:ok\r\n\r\n"  # a BOM, a comment, CRLF endings
        + FIRST.replace(b"\n", b"\r\n")
        + b"event: error\rdata: upstream hiccup\r\r"  # CR endings; counted, not delivered
        + b"id: 2\ndata: first\ndata:second\n\n"  # data over two lines
        + SECOND
        + b"data: \xff\xfe raw\n\n"  # invalid UTF-8, escaped
        + b"data: never ended")  # open at the end of the stream: discarded
EXPECTED = [("message", FIRST_DATA, sse_id(1)), ("message", "first\nsecond", "2"),
            ("message", SECOND_DATA, sse_id(2)), ("message", "\\xff\\xfe raw", None)]


def splits() -> Iterator[list[bytes]]:
    yield [BODY]
    yield [BODY[i:i + 1] for i in range(len(BODY))]  # a byte a read
    for i in range(1, len(BODY)):
        yield [BODY[:i], BODY[i:]]
        yield [BODY[:i], b"", BODY[i:]]  # an empty read is no end of the body


def test_reads_split_in_any_place_give_the_same_events() -> None:
    for pieces in splits():
        got, stream, _ = run([Scripted(list(pieces))])
        where = f"reads of {[len(p) for p in pieces][:4]}..."
        assert [(e.kind, e.data, e.sse_id) for e in got] == EXPECTED, where
        assert stream.stats.errors == 1 and stream.stats.connections == 1, where


# ------------------------------------------------------- what goes through the seam


def test_what_the_policy_asks_of_the_transport_and_how_it_takes_the_answers() -> None:
    """Every failure the transport reports, or an answer the policy refuses, is one more
    attempt (in the same request); a response is always closed; the resume carries
    `Last-Event-ID`."""
    refused = Scripted([], status=503, headers={"Retry-After": "0"})
    html = Scripted([b"data: not json\n\n"], headers={"Content-Type": "text/html"})
    served = Scripted([FIRST])
    got, stream, transport = run([
        TransportError("Connection refused"),
        TransportError("no response", timed_out=True),
        refused, html, served,
    ], since="2024-01-01T00:00:00Z", connect_timeout=3.0, user_agent="probe/1")
    assert [e.data for e in got] == [FIRST_DATA]
    since = URL + "?since=2024-01-01T00%3A00%3A00Z"
    assert [url for url, _, _ in transport.requests] == [since] * 5 + [URL]
    first, last = transport.requests[0][1], transport.requests[-1][1]
    assert first == {"Accept": "text/event-stream", "User-Agent": "probe/1"}
    assert last == first | {"Last-Event-ID": resume_id(sse_id(1), 5000)}
    assert {timeout for _, _, timeout in transport.requests} == {Timeout(3.0, 10.0)}
    assert transport.problems[1:] == [
        "cannot connect to stream.example.test (Connection refused)",
        f"{since}: no response within 10 s",
        f"{since}: HTTP 503",
        f"{since}: wrong content type 'text/html' (expected text/event-stream)",
        f"{since}: wrong content type 'text/html' (expected text/event-stream)"]
    assert (stream.stats.failures, stream.stats.connections) == (5, 1)  # the 5th: script over
    assert all(response.closed.is_set() for response in (refused, html, served))


def test_a_fatal_status_ends_the_stream_and_closes_the_response() -> None:
    gone = Scripted([FIRST], status=410)
    with pytest.raises(StreamError, match=r"stream\.example\.test/v2/stream/recentchange: server"
                       r" answered HTTP 410"):
        run([gone])
    assert gone.closed.is_set()

"""The local EventStreams server: wire format, resume, `since`, pacing and injected faults.

Every test talks real HTTP on 127.0.0.1. A raw socket client (`Conn`) shows
the exact bytes and their timing; `requests` + `sseclient` check that an
ordinary SSE client reads the same stream.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import requests
import sseclient

from harness.recording import Recording, RecordingError, RecordingWriter
from harness.serve.server import EventStreamServer, Faults

TOPIC = "eqiad.mediawiki.recentchange"
CODFW = "codfw.mediawiki.recentchange"
BASE_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
UA = "harness-tests/1 (tests@example.org)"
PATH = "/v2/stream/recentchange"

Item = tuple[bytes | dict[str, Any], str | None, float]


def iso(ms: int) -> str:
    when = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(i: int, ms: int, *, dt: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"id": f"00000000-0000-4000-8000-{i:012d}",
                            "domain": "en.wikipedia.org", "stream": "mediawiki.recentchange"}
    if dt:
        meta["dt"] = iso(ms)
    return {"$schema": "/mediawiki/recentchange/1.0.0", "meta": meta, "id": i, "type": "edit",
            "title": f"Page {i}", "timestamp": ms // 1000, "user": f"User{i % 3}",
            "wiki": "enwiki", "bot": False}


def ts_id(ms: int) -> str:
    return f'[{{"topic":"{TOPIC}","partition":0,"timestamp":{ms}}}]'


def two_dc_id(ms: int) -> str:
    return (f'[{{"topic":"{TOPIC}","partition":0,"timestamp":{ms}}},'
            f'{{"topic":"{CODFW}","partition":0,"offset":-1}}]')


def offset_id(offset: int) -> str:
    return f'[{{"topic":"{TOPIC}","partition":0,"offset":{offset}}}]'


def record(path: Path, items: list[Item]) -> Path:
    """A real recording on disk from (payload, raw SSE id, receive time) items."""
    with RecordingWriter(path, source="t", lanes=2) as writer:
        for payload, sse_id, recv in items:
            raw = orjson.dumps(payload) if isinstance(payload, dict) else payload
            writer.append(raw, sse_id, recv)
    return path


def basic_items(n: int = 12, spacing: float = 0.01) -> list[Item]:
    """Events 100 ms apart with timestamp ids, received `spacing` seconds apart."""
    return [(event(i, BASE_MS + 100 * i), ts_id(BASE_MS + 100 * i), 1e9 + i * spacing)
            for i in range(n)]


@pytest.fixture
def basic(tmp_path: Path) -> Path:
    return record(tmp_path / "basic", basic_items())


@pytest.fixture
def serve() -> Iterator[Callable[..., EventStreamServer]]:
    """Start servers that are always stopped at teardown."""
    servers: list[EventStreamServer] = []

    def start(recording: Path, **options: Any) -> EventStreamServer:
        server = EventStreamServer(recording, **options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        left = [t.name for t in threading.enumerate() if t.name.startswith("EventStreamServer")]
        if not left:
            return
        time.sleep(0.02)
    pytest.fail(f"server threads still alive: {left}")


# ------------------------------------------------------------------ clients


@dataclass
class Frame:
    raw: bytes
    comment: str | None = None
    event: str | None = None
    id: str | None = None
    data: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.data)

    @property
    def json(self) -> Any:
        return orjson.loads(self.text)


def parse_frame(raw: bytes) -> Frame:
    frame = Frame(raw)
    for line in raw.decode().split("\n"):
        if not line:
            continue
        if line.startswith(":"):
            frame.comment = line[1:]
            continue
        name, sep, value = line.partition(": ")
        assert sep, f"field line without ': ' {line!r}"
        if name == "data":
            frame.data.append(value)
        else:
            assert name in ("event", "id"), line
            setattr(frame, name, value)
    return frame


class Conn:
    """A raw HTTP/1.1 client on one socket, to see the exact bytes and when they come."""

    def __init__(self, server: EventStreamServer, path: str = PATH,
                 query: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 user_agent: str | None = UA, timeout: float = 5.0) -> None:
        target = path + ("?" + urlencode(query) if query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {server.host}:{server.port}"]
        if user_agent is not None:
            lines.append(f"User-Agent: {user_agent}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed before the response head"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status_line = status_line
        self.status = int(status_line.split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in
                        (line.partition(":") for line in header_lines)}

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def read_bytes(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self) -> Frame | None:
        """The next frame, or None at EOF (a partial frame at EOF fails the test)."""
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                assert not self.buf, f"stream ended inside a frame: {self.buf[:200]!r}"
                return None
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\n\n", 1)
        return parse_frame(raw + b"\n\n")

    def frames(self) -> list[Frame]:
        out = []
        while (frame := self.read_frame()) is not None:
            out.append(frame)
        return out

    def body(self) -> bytes:
        while chunk := self.sock.recv(65536):
            self.buf += chunk
        return self.buf


def stream(server: EventStreamServer, **kwargs: Any) -> list[Frame]:
    """All frames after `:ok` of one connection, read to EOF."""
    with Conn(server, **kwargs) as conn:
        assert conn.status == 200, conn.body()
        frames = conn.frames()
    assert frames and frames[0].comment == "ok" and frames[0].raw == b":ok\n\n"
    return frames[1:]


def titles(frames: list[Frame]) -> list[str]:
    return [f.json["title"] for f in frames if f.event == "message"]


def pages(*numbers: int) -> list[str]:
    return [f"Page {i}" for i in numbers]


# ------------------------------------------------------------- wire format


def test_first_bytes_and_headers_are_exactly_eventstreams(
        basic: Path, serve: Callable[..., EventStreamServer]) -> None:
    server = serve(basic)
    expected = (b":ok\n\nevent: message\nid: " + ts_id(BASE_MS).encode() + b"\ndata: "
                + orjson.dumps(event(0, BASE_MS)) + b"\n\n")
    with Conn(server) as conn:
        assert conn.status_line.startswith("HTTP/1.1 200")
        assert conn.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert conn.headers["cache-control"] == "no-cache"
        assert conn.headers["connection"] == "close"
        assert "content-length" not in conn.headers
        assert conn.read_bytes(len(expected)) == expected
        assert conn.read_bytes(len(b"event: message\nid: ")) == b"event: message\nid: "
    assert server.url == f"http://127.0.0.1:{server.port}{PATH}"


def test_every_event_arrives_in_order_with_its_id_and_data(
        tmp_path: Path, serve: Callable[..., EventStreamServer]) -> None:
    items: list[Item] = [(event(i, BASE_MS + i), two_dc_id(BASE_MS + i), 1e9 + i)
                         for i in range(150)]
    unicode_event = event(150, BASE_MS + 150) | {"title": "Ünïcødé ✓ 🦆", "comment": "a\nb"}
    items += [
        (unicode_event, offset_id(7), 2e9),
        (event(151, BASE_MS + 151), None, 2e9 + 1),  # no id: the server makes one from seq
        (b'oops {"not": json\nsecond line\r\nthird', ts_id(BASE_MS + 152), 2e9 + 2),
        (b'"a JSON string, not an object"', ts_id(BASE_MS + 153), 2e9 + 3),
    ]
    rec = record(tmp_path / "mixed", items)
    envelopes = list(Recording(rec).envelopes())
    server = serve(rec)

    response = requests.get(server.url, stream=True, timeout=5, headers={"User-Agent": UA})
    assert response.status_code == 200
    got = list(sseclient.SSEClient(response).events())
    assert len(got) == len(envelopes) == 154
    for sse, env in zip(got, envelopes, strict=True):
        assert sse.event == "message"
        if env.is_json:
            assert sse.data == orjson.dumps(env.data).decode()
            assert orjson.loads(sse.data) == env.data
        else:
            assert sse.data == env.raw.replace("\r\n", "\n")
    assert [e.id for e in got[:151]] == [env.id for env in envelopes[:151]]
    assert got[151].id == f'[{{"topic":"{TOPIC}","partition":0,"offset":152}}]'
    assert orjson.loads(got[150].data)["title"] == "Ünïcødé ✓ 🦆"

    raw_frame = next(f for f in stream(server) if f.id == ts_id(BASE_MS + 152))
    assert raw_frame.data == ['oops {"not": json', "second line", "third"]
    assert server.stats.snapshot()["events_sent"] == 2 * 154


# ------------------------------------------------------------------ resume


@pytest.mark.parametrize("how", ["header", "query"])
def test_resume_after_exact_last_event_id(
        basic: Path, serve: Callable[..., EventStreamServer], how: str) -> None:
    server = serve(basic)
    last = ts_id(BASE_MS + 400)
    kwargs: dict[str, Any] = ({"headers": {"Last-Event-ID": last}} if how == "header"
                              else {"query": {"last_event_id": last}})
    assert titles(stream(server, **kwargs)) == pages(*range(5, 12))
    assert titles(stream(server, headers={"Last-Event-ID": ts_id(BASE_MS + 1100)})) == []


def test_resume_by_offset(tmp_path: Path, serve: Callable[..., EventStreamServer]) -> None:
    rec = record(tmp_path / "offsets", [(event(i, BASE_MS + 100 * i), offset_id(10 + 2 * i),
                                         1e9 + i) for i in range(8)])
    server = serve(rec)

    def resume(value: Any) -> list[str]:
        return titles(stream(server, headers={"Last-Event-ID": json.dumps(value)}))

    # json.dumps spaces the id, so none of these equals a recorded id verbatim
    assert resume([{"topic": TOPIC, "partition": 0, "offset": 14}]) == pages(3, 4, 5, 6, 7)
    assert resume([{"topic": TOPIC, "partition": 0, "offset": 15}]) == pages(3, 4, 5, 6, 7)
    assert resume([{"offset": 5}]) == pages(*range(8))
    assert resume([{"topic": CODFW, "partition": 0, "offset": -1},
                   {"topic": TOPIC, "partition": 0, "offset": 22}]) == pages(7)
    assert resume([{"topic": TOPIC, "partition": 0, "offset": -1}]) == pages(*range(8))
    assert resume([{"offset": 24}]) == []


def test_resume_by_offset_matches_the_topic(
        tmp_path: Path, serve: Callable[..., EventStreamServer]) -> None:
    rec = record(tmp_path / "dc", [
        (event(i, BASE_MS + i), f'[{{"topic":"{TOPIC}","partition":0,"offset":{100 + i}}},'
                                f'{{"topic":"{CODFW}","partition":0,"offset":{i}}}]', 1e9 + i)
        for i in range(6)])
    server = serve(rec)
    for topic, offset in [(CODFW, 2), (TOPIC, 102)]:
        last = json.dumps([{"topic": topic, "partition": 0, "offset": offset}])
        assert titles(stream(server, headers={"Last-Event-ID": last})) == pages(3, 4, 5)


def test_resume_by_timestamp_seeks_like_kafka_and_resends_the_same_millisecond(
        tmp_path: Path, serve: Callable[..., EventStreamServer]) -> None:
    stamps = [BASE_MS + ms for ms in (100, 200, 300, 300, 300, 400, 500)]
    rec = record(tmp_path / "ts", [(event(i, ms), two_dc_id(ms), 1e9 + i)
                                   for i, ms in enumerate(stamps)])
    server = serve(rec)

    def resume(last_id: str) -> list[str]:
        return titles(stream(server, headers={"Last-Event-ID": last_id}))

    # The client got Page 4, the last of three events sharing a millisecond.
    assert resume(ts_id(BASE_MS + 300)) == pages(2, 3, 4, 5, 6)
    assert resume(ts_id(BASE_MS + 250)) == pages(2, 3, 4, 5, 6)
    assert resume(ts_id(BASE_MS + 301)) == pages(5, 6)
    assert resume(ts_id(BASE_MS + 99_999)) == []
    # No timestamp in the codfw entries: the event's meta.dt decides.
    assert resume(f'[{{"topic":"{CODFW}","partition":0,"timestamp":{BASE_MS + 400}}}]') == pages(
        5, 6)
    # The verbatim id is shared by Pages 2-4: continue after its first event, re-sending 3 and 4.
    assert resume(two_dc_id(BASE_MS + 300)) == pages(3, 4, 5, 6)


def test_resume_by_timestamp_falls_back_to_event_time(
        tmp_path: Path, serve: Callable[..., EventStreamServer]) -> None:
    items: list[Item] = [(event(i, BASE_MS + 1000 * i, dt=i % 2 == 0), offset_id(i), 1e9 + i)
                         for i in range(6)]
    server = serve(record(tmp_path / "offsets", items))
    # Pages 1 and 3 have no meta.dt; their `timestamp` (seconds) is used instead.
    for ms, first in [(BASE_MS + 1000, 1), (BASE_MS + 1500, 2), (BASE_MS + 2001, 3)]:
        got = titles(stream(server, headers={"Last-Event-ID": f'[{{"timestamp":{ms}}}]'}))
        assert got == pages(*range(first, 6))


def test_long_seeks_send_keepalives_before_the_first_event(
        tmp_path: Path, serve: Callable[..., EventStreamServer]) -> None:
    rec = record(tmp_path / "long", [(event(i, BASE_MS + 10 * i), two_dc_id(BASE_MS + 10 * i),
                                      1e9 + i) for i in range(3000)])
    server = serve(rec, keepalive=1e-4)
    rewound = ts_id(BASE_MS + 10 * 2990)  # not a recorded id: scan all, then seek again
    for kwargs in ({"headers": {"Last-Event-ID": rewound}},
                   {"query": {"since": str(BASE_MS + 10 * 2990)}}):
        frames = stream(server, **kwargs)
        first = next(i for i, f in enumerate(frames) if f.event == "message")
        assert first >= 1 and all(f.raw == b":\n\n" for f in frames[:first])
        assert titles(frames) == pages(*range(2990, 3000))
        assert all(f.event == "message" for f in frames[first:])
    plain = serve(rec)
    assert stream(plain, headers={"Last-Event-ID": rewound})[0].event == "message"


def test_exact_match_of_a_non_json_recorded_id(
        tmp_path: Path, serve: Callable[..., EventStreamServer]) -> None:
    server = serve(record(tmp_path / "plain", [(event(i, BASE_MS + i), f"plain-{i}", 1e9 + i)
                                               for i in range(5)]))
    assert titles(stream(server, headers={"Last-Event-ID": "plain-2"})) == pages(3, 4)
    with Conn(server, headers={"Last-Event-ID": "plain-9"}) as conn:
        assert conn.status == 400


@pytest.mark.parametrize("garbage", ["not an id", "{}", '{"offset": 3}', "[1, 2]",
                                     '[{"topic": "x"}]', '[{"offset": "3"}]',
                                     '[{"offset": true}]', "[{"])
def test_garbage_last_event_id_is_400_with_a_reason(
        basic: Path, serve: Callable[..., EventStreamServer], garbage: str) -> None:
    server = serve(basic)
    with Conn(server, headers={"Last-Event-ID": garbage}) as conn:
        assert conn.status == 400
        body = conn.body()
    assert body.endswith(b"\n") and body.count(b"\n") == 1 and b"Last-Event-ID" in body
    assert server.stats.snapshot()["bad_requests"] == 1


def test_since_in_milliseconds_and_iso(
        basic: Path, serve: Callable[..., EventStreamServer]) -> None:
    server = serve(basic)

    def since(value: str, **kwargs: Any) -> list[str]:
        return titles(stream(server, query={"since": value}, **kwargs))

    assert since(str(BASE_MS + 450)) == pages(*range(5, 12))
    assert since(str(BASE_MS + 500)) == pages(*range(5, 12))
    assert since("2023-11-14T22:13:20.450Z") == pages(*range(5, 12))
    assert since("2023-11-14T23:13:20.450+01:00") == pages(*range(5, 12))
    assert since("2023-11-14T22:13:20") == pages(*range(12))
    assert since(str(BASE_MS + 60_000)) == []
    # Last-Event-ID wins over since
    assert since(str(BASE_MS), headers={"Last-Event-ID": ts_id(BASE_MS + 900)}) == pages(10, 11)
    # ... unless it holds no position
    no_position = f'[{{"topic":"{TOPIC}","partition":0,"offset":-1}}]'
    assert since(str(BASE_MS + 1000), headers={"Last-Event-ID": no_position}) == pages(10, 11)
    with Conn(server, query={"since": "yesterday-ish"}) as conn:
        assert conn.status == 400


def test_since_uses_meta_dt_and_timestamp_when_ids_have_no_time(
        tmp_path: Path, serve: Callable[..., EventStreamServer]) -> None:
    items: list[Item] = [(event(i, BASE_MS + 1000 * i, dt=i % 2 == 0), offset_id(i), 1e9 + i)
                         for i in range(6)]
    server = serve(record(tmp_path / "offsets", items))
    assert titles(stream(server, query={"since": str(BASE_MS + 2500)})) == pages(3, 4, 5)
    assert titles(stream(server, query={"since": iso(BASE_MS + 4000)})) == pages(4, 5)


# ------------------------------------------------------------------ faults


def test_close_every_closes_after_n_events_and_resume_continues(
        basic: Path, serve: Callable[..., EventStreamServer]) -> None:
    server = serve(basic, faults=Faults(close_every=5))
    chunks: list[list[str]] = []
    headers: dict[str, str] = {}
    while True:
        frames = stream(server, headers=headers)
        if not frames:
            break
        chunks.append(titles(frames))
        headers = {"Last-Event-ID": frames[-1].id or ""}
    assert chunks == [pages(0, 1, 2, 3, 4), pages(5, 6, 7, 8, 9), pages(10, 11)]
    stats = server.stats.snapshot()
    assert stats["closed_every"] == 2 and stats["exhausted"] == 2 and stats["connections"] == 4


def test_close_after_closes_a_paced_stream(
        tmp_path: Path, serve: Callable[..., EventStreamServer]) -> None:
    rec = record(tmp_path / "slow", basic_items(20, spacing=0.1))
    server = serve(rec, speed=1.0, faults=Faults(close_after=0.35))
    started = time.monotonic()
    got = titles(stream(server))
    elapsed = time.monotonic() - started
    assert 2 <= len(got) <= 6 and got == pages(*range(len(got)))
    assert 0.3 <= elapsed < 1.5
    assert server.stats.snapshot()["closed_after"] == 1


def test_close_after_ends_a_held_stream(
        basic: Path, serve: Callable[..., EventStreamServer]) -> None:
    server = serve(basic, end="hold", keepalive=0.1, faults=Faults(close_after=0.6))
    started = time.monotonic()
    with Conn(server) as conn:
        frames = conn.frames()
    elapsed = time.monotonic() - started
    assert titles(frames) == pages(*range(12))
    beats = [f.raw for f in frames[13:]]
    assert beats and set(beats) == {b":\n\n"}, f"keepalives while holding: {beats}"
    assert 0.55 <= elapsed < 3.0, elapsed
    assert server.stats.snapshot()["closed_after"] == 1


def test_hold_keeps_the_exhausted_stream_open_with_keepalives(
        basic: Path, serve: Callable[..., EventStreamServer]) -> None:
    server = serve(basic, end="hold", keepalive=0.1)
    with Conn(server) as conn:
        frames = [conn.read_frame() for _ in range(13)]
        assert titles([f for f in frames if f]) == pages(*range(12))
        beats = [conn.read_frame() for _ in range(3)]
        assert all(b is not None and b.raw == b":\n\n" for b in beats)
    assert server.stats.snapshot()["exhausted"] == 1


def test_stall_sends_nothing_but_keeps_the_socket_open_once(
        basic: Path, serve: Callable[..., EventStreamServer]) -> None:
    server = serve(basic, faults=Faults(stall_at=4, stall_seconds=0.8))
    with Conn(server) as conn:
        got = [conn.read_frame() for _ in range(4)]
        stall_began = time.monotonic()
        assert titles([f for f in got if f]) == pages(0, 1, 2)
        conn.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            conn.sock.recv(1)  # open (no EOF) and silent
        conn.sock.settimeout(5.0)
        assert conn.read_frame() is None
        assert time.monotonic() - stall_began >= 0.7
    resumed = stream(server, headers={"Last-Event-ID": ts_id(BASE_MS + 200)})
    assert titles(resumed) == pages(*range(3, 12))
    assert server.stats.snapshot()["stalls"] == 1


def test_endless_stall_ends_quietly_when_the_client_leaves(
        basic: Path, serve: Callable[..., EventStreamServer],
        capfd: pytest.CaptureFixture[str]) -> None:
    server = serve(basic, faults=Faults(stall_at=2))
    with Conn(server) as conn:
        assert conn.read_frame() is not None and conn.read_frame() is not None
    deadline = time.monotonic() + 3.0
    while server.stats.snapshot()["active"] and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = server.stats.snapshot()
    assert stats["active"] == 0 and stats["disconnects"] == 1 and stats["stalls"] == 1
    assert capfd.readouterr().err == ""


def test_client_leaving_mid_stream_is_quiet(
        tmp_path: Path, serve: Callable[..., EventStreamServer],
        capfd: pytest.CaptureFixture[str]) -> None:
    big = {"text": "x" * 4000}  # 40 MB on the wire: more than the socket buffers hold
    rec = record(tmp_path / "big", [(event(i, BASE_MS + i) | big, ts_id(BASE_MS + i), 1e9 + i)
                                    for i in range(10_000)])
    server = serve(rec)
    for _ in range(3):
        with Conn(server) as conn:
            assert conn.read_frame() is not None
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    deadline = time.monotonic() + 3.0
    while server.stats.snapshot()["active"] and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = server.stats.snapshot()
    assert stats["active"] == 0 and stats["disconnects"] == 3 and stats["exhausted"] == 0
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(("status", "retry", "header"), [(429, 2.0, "2"), (503, 0.5, "0.5"),
                                                         (500, 1.0, "1")])
def test_fail_first_answers_with_status_and_retry_after_then_serves(
        basic: Path, serve: Callable[..., EventStreamServer], status: int, retry: float,
        header: str) -> None:
    server = serve(basic, faults=Faults(fail_first=2, fail_status=status, retry_after=retry))
    for _ in range(2):
        response = requests.get(server.url, headers={"User-Agent": UA}, timeout=5)
        assert response.status_code == status
        assert response.headers["Retry-After"] == header
        assert response.text.count("\n") == 1
    assert titles(stream(server)) == pages(*range(12))
    assert server.stats.snapshot()["failed"] == 2


def test_require_user_agent(basic: Path, serve: Callable[..., EventStreamServer]) -> None:
    strict = serve(basic, faults=Faults(require_user_agent=True))
    with Conn(strict, user_agent=None) as conn:
        assert conn.status == 403 and b"User-Agent" in conn.body()
    assert requests.get(strict.url, headers={"User-Agent": ""}, timeout=5).status_code == 403
    assert titles(stream(strict)) == pages(*range(12))
    assert strict.stats.snapshot()["forbidden"] == 2

    lenient = serve(basic)
    with Conn(lenient, user_agent=None) as conn:
        assert conn.status == 200
    with Conn(lenient, user_agent=None, query={"require_user_agent": "1"}) as conn:
        assert conn.status == 403


def test_duplicate_every_sends_every_nth_event_twice(
        basic: Path, serve: Callable[..., EventStreamServer]) -> None:
    server = serve(basic, faults=Faults(duplicate_every=3))
    frames = stream(server)
    assert titles(frames) == pages(0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 8, 8, 9, 10, 11, 11)
    assert frames[2].raw == frames[3].raw and frames[2].id == ts_id(BASE_MS + 200)
    assert server.stats.snapshot()["duplicates"] == 4


@pytest.mark.parametrize("fault", ["malformed_every", "canary_every", "error_every"])
def test_extra_frames_come_before_every_nth_event_without_an_id(
        basic: Path, serve: Callable[..., EventStreamServer], fault: str) -> None:
    server = serve(basic, faults=Faults(**{fault: 5}))
    frames = stream(server)
    real = [f for f in frames if f.id is not None]
    extra = [i for i, f in enumerate(frames) if f.id is None]
    assert titles(real) == pages(*range(12))
    assert [f.id for f in real] == [ts_id(BASE_MS + 100 * i) for i in range(12)]
    assert extra == [4, 10], "before the 5th and 10th events"
    for i in extra:
        frame = frames[i]
        assert frames[i + 1].json["title"] == pages(5 * (extra.index(i) + 1) - 1)[0]
        if fault == "malformed_every":
            assert frame.event == "message"
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(frame.text)
        elif fault == "canary_every":
            canary = frame.json
            assert frame.event == "message" and canary["meta"]["domain"] == "canary"
            assert "user" not in canary and "wiki" not in canary
            assert type(canary["timestamp"]) is int
        else:
            assert frame.event == "error" and isinstance(frame.json, dict)
    counter = {"malformed_every": "malformed", "canary_every": "canaries",
               "error_every": "errors"}[fault]
    assert server.stats.snapshot()[counter] == 2


def test_query_parameters_override_faults_for_one_connection(
        basic: Path, serve: Callable[..., EventStreamServer]) -> None:
    server = serve(basic, faults=Faults(duplicate_every=100))
    got = titles(stream(server, query={"duplicate_every": 2, "close_every": 3}))
    assert got == pages(0, 1, 1, 2)
    assert titles(stream(server)) == pages(*range(12))
    for bad in ({"fail_first": 1}, {"stall_at": 3}, {"close_every": "x"},
                {"close_every": -1}, {"require_user_agent": "maybe"}):
        with Conn(server, query=bad) as conn:
            assert conn.status == 400, bad
            assert next(iter(bad)).encode() in conn.body()


def test_faults_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="close_every"):
        Faults(close_every=-1)
    with pytest.raises(ValueError, match="close_every"):
        Faults(close_every=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fail_status"):
        Faults(fail_status=200)


# ------------------------------------------------------------------ pacing


def read_all_timed(server: EventStreamServer, **kwargs: Any) -> tuple[list[str], float]:
    started = time.monotonic()
    got = titles(stream(server, **kwargs))
    return got, time.monotonic() - started


def test_speed_paces_by_recorded_receive_times(
        tmp_path: Path, serve: Callable[..., EventStreamServer]) -> None:
    rec = record(tmp_path / "paced", basic_items(11, spacing=0.05))  # 0.5 s of receive time
    fast = serve(rec, speed=0.0)
    real_time = serve(rec, speed=1.0)
    quick = serve(rec, speed=5.0)
    got0, t0 = read_all_timed(fast)
    got1, t1 = read_all_timed(real_time)
    got5, t5 = read_all_timed(quick)
    assert got0 == got1 == got5 == pages(*range(11))
    assert t1 >= 0.45
    assert t0 < t1 / 3
    assert 0.09 <= t5 < t1
    # measured from the connection's first event, not from the recording's start
    resumed, tr = read_all_timed(real_time, headers={"Last-Event-ID": ts_id(BASE_MS + 500)})
    assert resumed == pages(6, 7, 8, 9, 10)
    assert 0.18 <= tr < t1 - 0.1


# ----------------------------------------------------------- http and life


@pytest.mark.parametrize("path", ["/", "/v2/stream/", "/v2/recentchange", "/v2/streams/x",
                                  "/favicon.ico"])
def test_other_paths_are_404(basic: Path, serve: Callable[..., EventStreamServer],
                             path: str) -> None:
    server = serve(basic)
    with Conn(server, path=path) as conn:
        assert conn.status == 404


@pytest.mark.parametrize("path", ["/v2/stream/recentchange", "/v2/stream/page-create,recentchange"])
def test_any_stream_name_streams(basic: Path, serve: Callable[..., EventStreamServer],
                                 path: str) -> None:
    assert titles(stream(serve(basic), path=path)) == pages(*range(12))


def test_stop_ends_streams_and_releases_port_and_threads(
        basic: Path, serve: Callable[..., EventStreamServer]) -> None:
    server = EventStreamServer(basic, end="hold")
    port = server.port
    with server, Conn(server) as conn:
        assert len([conn.read_frame() for _ in range(13)]) == 13
        assert any(t.name.endswith("-conn") for t in threading.enumerate())
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2.0
        conn.sock.settimeout(2.0)
        assert conn.body().count(b"event: message") == 0  # EOF, no more events
    server.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("EventStreamServer")]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    again = serve(basic, port=port)
    assert again.port == port and titles(stream(again)) == pages(*range(12))


def test_unstarted_server_stops_and_bad_recordings_fail_early(tmp_path: Path) -> None:
    server = EventStreamServer(record(tmp_path / "r", basic_items(1)))
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError):
        server.start()
    with pytest.raises(RecordingError):
        EventStreamServer(tmp_path / "missing")
    with pytest.raises(ValueError, match="end"):
        EventStreamServer(tmp_path / "r", end="loop")  # type: ignore[arg-type]

"""Hostile input to the stream side: killed recorders, broken dumps, endless events,
absurd headers, half-open connections, bad URLs.

Everything is real: `EventStreamServer` or a raw-socket server written here
(for bytes the fault options cannot produce) on 127.0.0.1, real files, and
the real CLI in subprocesses, which are always ended by PID.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

from harness.errors import RecordingError, StreamError
from harness.eventstreams.client import EventStream, ReceivedEvent, StreamStats
from harness.recording import Manifest, Recording, RecordingWriter
from harness.recording.importer import import_dumps
from harness.recording.recorder import record
from harness.recording.synth import synthetic_events
from harness.serve.server import EventStreamServer
from tests.conftest import FAST, file_sizes, served

PATH = "/v2/stream/recentchange"
HEAD_200 = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Connection: close\r\n\r\n:ok\n\n")
GOOD_ID = '[{"topic":"eqiad.mediawiki.recentchange","partition":0,"offset":7}]'
GOOD = {"meta": {"id": "00000000-0000-4000-8000-000000000007"}, "title": "Good", "user": "U"}
GOOD_FRAME = (b"event: message\nid: " + GOOD_ID.encode() + b"\ndata: " + orjson.dumps(GOOD)
              + b"\n\n")
MiB = 1 << 20


# ------------------------------------------------------------------ helpers


def repeated_meta_ids(path: Path) -> list[str]:
    ids = Counter(e.data["meta"]["id"] for e in Recording(path).envelopes()
                  if e.is_json and isinstance(e.data, dict)
                  and isinstance(e.data.get("meta"), dict) and "id" in e.data["meta"])
    return [uid for uid, n in ids.items() if n > 1]


def harness(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def run_harness(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = harness(*args)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        end(proc)
    return proc.returncode, out, err


def end(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a child if it still runs, and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


# `python -m harness ARGS` that writes its peak RSS (VmHWM: this program image only, unlike
# ru_maxrss, which a child inherits from the parent it was forked from) to $PEAK_FILE.
MEASURED = """
import os, runpy, sys
try:
    runpy.run_module("harness", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as status, open(os.environ["PEAK_FILE"], "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")).split()[1])
"""


def run_measured(tmp_path: Path, *args: str, timeout: float) -> tuple[int, str, str, int, float]:
    """Run the CLI: exit status, stdout, stderr, peak RSS in bytes, seconds."""
    peak_file = tmp_path / "peak"
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", MEASURED, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"PEAK_FILE": str(peak_file)})
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        end(proc)
    seconds = time.monotonic() - started
    return proc.returncode, out, err, int(peak_file.read_text()) * 1024, seconds


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def first_event(stream: EventStream, within: float) -> ReceivedEvent | None:
    """The stream's first event, or None if none came within `within` seconds."""
    deadline = time.monotonic() + within
    try:
        for item in stream.events():
            if item is not None:
                return item
            if time.monotonic() > deadline:
                return None
    finally:
        stream.stop()
    return None


def answer_good(sock: socket.socket) -> None:
    """The connection after a fault: one good event, then open and silent."""
    sock.sendall(HEAD_200 + GOOD_FRAME)
    linger(sock)


def linger(sock: socket.socket, seconds: float = 15.0) -> None:
    """Keep a connection open, sending nothing, until the client leaves."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


class RawServer:
    """A hand-written HTTP server on 127.0.0.1 for byte-level misbehaviour.

    The request head of each connection is read and kept in `heads`, then
    `handle(sock, n)` answers the n-th connection (0-based) in its own
    thread. `close()` shuts every connection down and joins the threads.
    """

    def __init__(self, handle: Callable[[socket.socket, int], None]) -> None:
        self._handle = handle
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}{PATH}"
        self.heads: list[bytes] = []
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        n = 0
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._socks.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock, n), daemon=True)
            self._threads.append(thread)
            thread.start()
            n += 1

    def _serve(self, sock: socket.socket, n: int) -> None:
        with sock:
            sock.settimeout(10)
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                self.heads.append(head)
                self._handle(sock, n)
            except OSError:
                pass

    def close(self) -> None:
        self._stopping.set()
        self._listener.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3000 synthetic events with their SSE ids, ~80 s of recorded time."""
    path = tmp_path_factory.mktemp("source") / "rec"
    with RecordingWriter(path, source="synthetic", lanes=4) as writer:
        for event in synthetic_events(3000, seed=11):
            writer.append(event.payload, event.sse_id, event.received)
    return path


def paced(path: Path, seconds: float) -> float:
    """The server speed that plays the whole recording in about `seconds`."""
    recording = Recording(path)
    first, last = recording.first_received(), recording.manifest.segments[-1].last_received
    assert first is not None and last is not None
    return (last - first) / seconds


def payload_of(envelope: Any) -> bytes:
    return orjson.dumps(envelope.data) if envelope.is_json else envelope.raw.encode()


# ------------------------------------------- 1. kill and resume, many times


def stored(recording: Path) -> int:
    """Bytes of segments written so far (finished or not): grows with every block."""
    return sum(file_sizes(recording, "seg-*"))


def test_four_kills_and_resumes_record_every_event_exactly_once(source: Path,
                                                                tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    command = ("record", "--out", str(copy), "--quiet", "--max-events", "3000")
    # ~75 events/s: a session killed after a block or two holds fewer events than the
    # 5 s that a resume rewinds, so the repeats reach back into earlier sessions' segments
    with EventStreamServer(source, speed=paced(source, 40.0)) as server:
        for pause in (0.6, 0.2, 0.5, 0.1):
            before = stored(copy)
            proc = harness(*command, "--url", server.url)
            try:  # killed once this session has stored a block, wherever that falls
                deadline = time.monotonic() + 30
                while stored(copy) <= before and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(pause)
            finally:
                end(proc)
            assert not Manifest.load(copy).complete
            assert repeated_meta_ids(copy) == []
    assert len(Manifest.load(copy).segments) >= 3
    with EventStreamServer(source) as server:  # then the rest as fast as possible
        code, out, err = run_harness(*command, "--url", server.url, "--duration", "40",
                                     timeout=90)
    assert code == 0, err
    assert "resumed" in err and "complete" in out
    assert repeated_meta_ids(copy) == []
    assert served(copy) == served(source)  # nothing missing, doubled or reordered
    code, out, err = run_harness("verify", str(copy))
    assert code == 0 and "ok, complete; 3000 events" in out, err


def test_a_resume_after_events_without_an_id_continues_from_the_last_stored_id(
        source: Path, tmp_path: Path) -> None:
    envelopes = list(Recording(source).envelopes())
    kept = 1000
    copy = tmp_path / "copy"
    # An unfinished recording whose last events came without an SSE id, as the
    # server's malformed_every / canary_every frames do: then the recorder was killed.
    writer = RecordingWriter(copy, source="test", lanes=4)
    for envelope in envelopes[:kept]:
        writer.append(payload_of(envelope), envelope.id, envelope.recv)
    malformed = b'{"$schema":"/mediawiki/recentchange/1.0.0","meta":{"domain":"malformed'
    writer.append(malformed, None, envelopes[kept - 1].recv)
    writer.append(orjson.dumps({"meta": {"id": "canary-1", "domain": "canary"}}), None,
                  envelopes[kept - 1].recv)
    writer.flush()
    writer.abandon()
    with EventStreamServer(source) as server:
        report = record(copy, url=server.url, max_events=len(envelopes) + 2, progress=False,
                        duration=30, stream_options=FAST | {"rewind_seconds": 0.0})
        sent = server.stats.snapshot()
    assert report.complete
    # resumed right after the last event that had an id: no restart from the beginning
    assert sent["events_sent"] == len(envelopes) - kept
    stored_without_id = [(None, malformed.decode()),
                         (None, {"meta": {"id": "canary-1", "domain": "canary"}})]
    assert served(copy) == [*served(source)[:kept], *stored_without_id, *served(source)[kept:]]


def test_verify_exits_2_naming_meta_id_when_an_event_is_recorded_twice(tmp_path: Path) -> None:
    path = tmp_path / "twice"
    first = orjson.dumps({"meta": {"id": "aaaa-1"}, "user": "A", "timestamp": 1})
    second = orjson.dumps({"meta": {"id": "bbbb-2"}, "user": "B", "timestamp": 2})
    writer = RecordingWriter(path, source="t")
    writer.append(first, '[{"offset":1}]', 1.0)
    writer.append(second, '[{"offset":2}]', 2.0)
    writer.append(first, '[{"offset":1}]', 3.0)
    writer.close()
    code, _, err = run_harness("verify", str(path))
    line = one_error_line(err)
    assert code == 2 and "meta.id" in line and "aaaa-1" in line and "twice" in line


# ------------------------------------------------------ 2. damaged dumps


def dump_bytes(n: int) -> bytes:
    return b"".join(event.payload + b"\n" for event in synthetic_events(n, seed=3))


@pytest.mark.parametrize("kind", ["truncated.jsonl.zst", "truncated.jsonl.gz",
                                  "not-zstd.jsonl.zst"])
def test_a_damaged_dump_is_bad_input_and_never_a_complete_recording(tmp_path: Path,
                                                                    kind: str) -> None:
    raw = dump_bytes(1000)
    half = len(raw) // 2
    if kind.startswith("truncated") and kind.endswith(".zst"):
        compressor = zstandard.ZstdCompressor(write_checksum=True)
        whole = compressor.compress(raw[:half]) + compressor.compress(raw[half:])
        data = whole[: len(whole) - len(whole) // 20]  # cut inside the second frame
    elif kind.startswith("truncated"):
        whole = gzip.compress(raw)
        data = whole[: len(whole) - len(whole) // 20]
    else:
        data = raw  # plain JSON lines named .zst
    dump = tmp_path / kind
    dump.write_bytes(data)
    out = tmp_path / "rec"
    code, _, err = run_harness("import", str(dump), "--out", str(out))
    line = one_error_line(err)
    assert code == 2 and str(dump) in line, err
    if out.exists():
        assert not Manifest.load(out).complete and "unfinished" in line
    else:
        assert "nothing written" in line


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.zst", ".jsonl.gz"])
def test_an_over_long_dump_line_is_bad_input_naming_file_and_line(tmp_path: Path,
                                                                 suffix: str) -> None:
    lines = [b'{"meta":{"id":"a"}}', b'{"meta":{"id":"b"}}', b"x" * 150, b'{"meta":{"id":"c"}}']
    raw = b"\n".join(lines) + b"\n"
    data = {".jsonl": raw, ".jsonl.zst": zstandard.ZstdCompressor().compress(raw),
            ".jsonl.gz": gzip.compress(raw)}[suffix]
    dump = tmp_path / ("dump" + suffix)
    dump.write_bytes(data)
    with pytest.raises(RecordingError, match=re.escape(f"{dump} line 3") + ".*max_line_bytes"):
        import_dumps([dump], tmp_path / "rec", max_line_bytes=100, progress=False)
    assert not Manifest.load(tmp_path / "rec").complete
    # at the limit is fine
    manifest = import_dumps([dump], tmp_path / "ok", max_line_bytes=150, progress=False)
    assert manifest.complete and manifest.events == 4


def test_a_64_mib_line_of_nuls_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    dump = tmp_path / "bomb.jsonl.zst"
    with dump.open("wb") as f, zstandard.ZstdCompressor(level=19).stream_writer(f) as z:
        z.write(b'{"meta":{"id":"first"}}\n')
        for _ in range(64):
            z.write(bytes(MiB))
        z.write(b"\n")
    assert dump.stat().st_size < 64 * 1024
    code, _, err, peak, _ = run_measured(tmp_path, "import", str(dump), "--out",
                                         str(tmp_path / "rec"), timeout=60)
    assert code == 2 and f"{dump} line 2" in one_error_line(err), err
    assert peak < 160 * MiB, f"peak RSS {peak / MiB:.0f} MiB"  # the old importer took 930


# ------------------------------------------------------- 3. endless events


def test_an_endless_event_is_dropped_with_bounded_memory_and_the_stream_resumes(
        tmp_path: Path) -> None:
    def handle(sock: socket.socket, n: int) -> None:
        if n == 0:  # an event that never ends: 40 MiB of data without a newline
            sock.sendall(HEAD_200 + b"event: message\nid: [{}]\ndata: ")
            block = b"a" * MiB
            for _ in range(40):
                sock.sendall(block)
        else:
            sock.sendall(HEAD_200 + GOOD_FRAME)
        linger(sock)

    out = tmp_path / "rec"
    with RawServer(handle) as server:
        code, stdout, stderr, peak, seconds = run_measured(
            tmp_path, "record", "--out", str(out), "--url", server.url, "--max-events", "1",
            "--quiet", timeout=30)
    assert code == 0, stderr
    assert seconds < 15 and "oversized=1" in stdout, stdout
    assert peak < 120 * MiB, f"peak RSS {peak / MiB:.0f} MiB"  # the old client took 270
    assert served(out) == [(GOOD_ID, GOOD)]
    assert len(server.heads) == 2


def test_a_trickle_that_never_finishes_a_line_trips_the_idle_watchdog() -> None:
    def handle(sock: socket.socket, n: int) -> None:
        if n == 0:
            sock.sendall(HEAD_200 + b"event: message\ndata: ")
            for _ in range(200):  # one byte every 50 ms for 10 s: bytes, but no line
                sock.sendall(b"a")
                time.sleep(0.05)
        else:
            answer_good(sock)

    with RawServer(handle) as server:
        stream = EventStream(url=server.url, **FAST)
        started = time.monotonic()
        got = first_event(stream, within=8.0)
    assert got is not None and got.data == orjson.dumps(GOOD).decode()
    assert time.monotonic() - started < 4.0
    assert stream.stats.watchdog == 1


def test_sse_line_endings_bom_comments_and_multiline_data_across_chunk_boundaries() -> None:
    pieces = [
        b"\xef\xbb", b"\xbfevent: message\r", b"\nid: 1\r\ndata: a\n\r\n",  # BOM; LF then CRLF
        b": comment\ndata: b1\rdata:b2\r", b"\r",  # CR line ends, split before the blank line
        b"event: error\ndata: oops\n\n",
        b"id: 3\n\n",  # no data: not dispatched, and its id is not carried over
        b"data: \xff\xfe\n\n",  # invalid UTF-8 is kept, escaped
        b"event: message\nid: 5\ndata: {\"x\":\ndata: 1}\n\n",
        b"data: never ended",  # discarded at the end of the stream
    ]

    def handle(sock: socket.socket, n: int) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if n == 0:
            sock.sendall(HEAD_200)
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(0.02)  # separate reads, so the pieces are separate chunks

    with RawServer(handle) as server:
        stream = EventStream(url=server.url, **FAST)
        got: list[tuple[str, str, str | None]] = []
        deadline = time.monotonic() + 5
        for item in stream.events():
            if item is not None:
                got.append((item.kind, item.data, item.sse_id))
            # until the first connection has ended and the next attempt failed
            if time.monotonic() > deadline or stream.stats.failures:
                stream.stop()
    assert got == [("message", "a", "1"), ("message", "b1\nb2", None),
                   ("message", "\\xff\\xfe", None), ("message", '{"x":\n1}', "5")]
    assert stream.stats.errors == 1  # `event: error` frames are counted, not delivered


# ---------------------------------------------------------------- 4. hangs


def test_a_server_that_accepts_but_never_answers_is_given_up_on() -> None:
    def handle(sock: socket.socket, n: int) -> None:
        if n == 0:
            linger(sock, 20.0)  # reads the request, answers nothing
        else:
            answer_good(sock)

    with RawServer(handle) as server:
        stream = EventStream(url=server.url, **FAST)
        started = time.monotonic()
        got = first_event(stream, within=10.0)
    assert got is not None and time.monotonic() - started < 3.0
    assert stream.stats.failures == 1 and "no response within 1 s" in (
        stream.stats.last_problem or "")


@pytest.mark.parametrize("value", [b"inf", b"1e308"])
def test_an_absurd_retry_after_is_capped(value: bytes) -> None:
    def handle(sock: socket.socket, n: int) -> None:
        if n == 0:
            sock.sendall(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: " + value
                         + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        else:
            answer_good(sock)

    with RawServer(handle) as server:
        stream = EventStream(url=server.url, **FAST | {"retry_after_cap": 0.5})
        started = time.monotonic()
        got = first_event(stream, within=10.0)
    assert got is not None and time.monotonic() - started < 3.0
    assert stream.stats.failures == 1 and "429" in (stream.stats.last_problem or "")


def server_threads(server: EventStreamServer) -> int:
    name = f"EventStreamServer:{server.port}-conn"
    return sum(1 for thread in threading.enumerate() if thread.name == name)


def wait_until(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_half_open_requests_are_disconnected_and_their_threads_end(source: Path) -> None:
    socks: list[socket.socket] = []
    with EventStreamServer(source, header_timeout=0.5) as server:
        baseline = threading.active_count()
        try:
            for i in range(50):
                sock = socket.create_connection((server.host, server.port), timeout=5)
                if i % 2:
                    sock.sendall(b"GET /v2/stream/recent")  # half a request line
                socks.append(sock)
            assert wait_until(lambda: server_threads(server) == 50, 5.0)
            assert wait_until(lambda: threading.active_count() <= baseline, 5.0), (
                f"{threading.active_count()} threads, {baseline} before")
            for sock in socks:
                assert sock.recv(1024) == b""  # the server hung up
        finally:
            for sock in socks:
                sock.close()


def test_a_request_trickled_byte_by_byte_is_cut_off_at_the_header_timeout(source: Path) -> None:
    request = f"GET {PATH} HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n\r\n".encode()
    with EventStreamServer(source, header_timeout=0.5) as server, socket.create_connection(
            (server.host, server.port), timeout=5) as sock:
        started = time.monotonic()
        try:
            for byte in request:  # each byte well within the timeout, the whole far beyond
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            pass  # reset: the server has already hung up
        assert time.monotonic() - started < 2.0
        assert sock.recv(1024) == b""


def test_connections_over_the_bound_are_turned_away_with_503(source: Path) -> None:
    request = f"GET {PATH} HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n".encode()
    with EventStreamServer(source, header_timeout=1.0, max_connections=4) as server:
        idle = [socket.create_connection((server.host, server.port), timeout=5)
                for _ in range(4)]
        try:
            assert wait_until(lambda: server_threads(server) == 4, 5.0)
            with socket.create_connection((server.host, server.port), timeout=5) as sock:
                sock.sendall(request)
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: " in answer
            assert server.stats.snapshot()["busy"] == 1
            # once the idle ones are dropped there is room again
            assert wait_until(lambda: server_threads(server) == 0, 5.0)
            stream = EventStream(url=server.url, **FAST)
            assert first_event(stream, within=5.0) is not None
        finally:
            for sock in idle:
                sock.close()


# --------------------------------------------------------------- 5. smaller


def test_credentials_in_the_url_never_appear_in_messages(tmp_path: Path) -> None:
    url = f"http://someone:secret@127.0.0.1:1{PATH}"
    code, out, err = run_harness("record", "--out", str(tmp_path / "rec"), "--url", url,
                                 "--max-failures", "2")
    line = one_error_line(err)
    assert code == 2 and "127.0.0.1:1" in line and "Connection refused" in line
    assert "secret" not in out + err and "someone" not in out + err


def test_max_events_is_the_recordings_total_across_a_resume(source: Path,
                                                           tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    command = ("record", "--out", str(copy), "--quiet", "--max-events", "300")
    with EventStreamServer(source, speed=paced(source, 40.0)) as server:  # ~75 events/s
        proc = harness(*command, "--url", server.url)
        try:
            assert wait_until(lambda: sum(file_sizes(copy, "seg-*")) > 0,
                              10.0)
            time.sleep(0.5)
        finally:
            end(proc)
        kept = len(served(copy))
        assert 0 < kept < 300
        code, out, err = run_harness(*command, "--url", server.url, "--duration", "30")
    assert code == 0 and "stopped by max-events" in out, out + err
    assert served(copy) == served(source)[:300]


def test_malformed_urls_are_one_line_and_exit_2(tmp_path: Path) -> None:
    for n, url in enumerate(["http://[::1", "http://", "ftp://x", "http://host:99999/",
                             "http://host:abc/", "http://exa mple.org/", "http://:80/",
                             "http://me:secret@[::1/x", "http://me:secret@host:123456/"]):
        code, _, err = run_harness("record", "--out", str(tmp_path / f"r{n}"), "--url", url,
                                   "--max-failures", "1", timeout=30)
        line = one_error_line(err)
        assert code == 2 and "--url" in line and "secret" not in line, (url, err)


def test_the_stream_rejects_a_negative_max_failures() -> None:
    for bad in (-1, 0):
        with pytest.raises(StreamError, match="max_failures"):
            EventStream(url=f"http://127.0.0.1:1{PATH}", max_failures=bad)


def test_progress_names_the_problem_and_the_next_retry(tmp_path: Path,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    stats = StreamStats()
    started = time.monotonic()
    report = record(tmp_path / "rec", url=f"http://127.0.0.1:1{PATH}", duration=3, progress=True,
                    stream_options={"max_failures": None, "stats": stats})
    assert time.monotonic() - started < 5
    err = capfd.readouterr().err
    assert "cannot connect to 127.0.0.1:1 (Connection refused)" in err
    assert re.search(r"retry in \d+ s", err), err
    assert report.events == 0 and stats.failures >= 1
    assert stats.last_problem == "cannot connect to 127.0.0.1:1 (Connection refused)"

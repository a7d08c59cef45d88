"""The recorder and live mode against our own EventStreams server, over real loopback HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import StreamError
from harness.eventstreams.client import EventStream
from harness.eventstreams.ids import resume_id
from harness.live import live_job, run_live
from harness.recording import Manifest, Recording, RecordingError
from harness.recording.recorder import record
from harness.recording.synth import synthetic_events
from harness.recording.verify import verify
from harness.serve.server import EventStreamServer, Faults
from tests.conftest import FAST, flow_outcome, run_flow, served, write_recording


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("orig") / "rec"
    with_ids = synthetic_events(3000, seed=11)
    from harness.recording import RecordingWriter

    with RecordingWriter(path, source="synthetic", lanes=4) as writer:
        for event in with_ids:
            writer.append(event.payload, event.sse_id, event.received)
    return path


def test_round_trip_survives_disconnects_stall_429_and_duplicates(original: Path,
                                                                  tmp_path: Path) -> None:
    faults = Faults(close_every=400, stall_at=1500, stall_seconds=3.0, fail_first=1,
                    fail_status=429, retry_after=0.3, duplicate_every=9)
    with EventStreamServer(original, faults=faults) as server:
        report = record(tmp_path / "copy", url=server.url, max_events=3000, progress=False,
                        stream_options=FAST)
        sent = server.stats.snapshot()
    assert report.complete and report.events == 3000
    assert served(tmp_path / "copy") == served(original)  # in order, no gap, no duplicate
    assert verify(tmp_path / "copy").ok
    assert report.stream.reconnects >= 7 and report.stream.watchdog >= 1
    assert report.stream.failures >= 1 and report.stream.duplicates >= sent["duplicates"]
    assert sent["failed"] == 1 and sent["stalls"] == 1
    # record -> replay: the copy drives the flow exactly like the original
    assert flow_outcome(run_flow(tmp_path / "copy", workers=2)) == flow_outcome(
        run_flow(original))


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("short") / "rec"
    return write_recording(path, (e.payload for e in synthetic_events(600, seed=12)))


@settings(max_examples=8)
@given(close_every=st.integers(40, 400), duplicate_every=st.integers(0, 20),
       rewind=st.sampled_from([0.0, 2.0, 5.0]))
def test_recorded_equals_served_for_any_disconnect_schedule(tmp_path_factory, short: Path,
                                                            close_every: int,
                                                            duplicate_every: int,
                                                            rewind: float) -> None:
    copy = tmp_path_factory.mktemp("copy") / "rec"
    faults = Faults(close_every=close_every, duplicate_every=duplicate_every)
    with EventStreamServer(short, faults=faults) as server:
        report = record(copy, url=server.url, max_events=600, progress=False,
                        stream_options=FAST | {"rewind_seconds": rewind})
    assert report.events == 600
    assert served(copy) == served(short)


def test_a_server_closing_after_every_event_cannot_stall_the_recorder(tmp_path: Path) -> None:
    source = write_recording(tmp_path / "src", (e.payload for e in synthetic_events(60, seed=2)))
    # ids are the test writer's offsets here; give them timestamps so resume must rewind
    with EventStreamServer(source, faults=Faults(close_every=1, duplicate_every=3)) as server:
        report = record(tmp_path / "copy", url=server.url, max_events=60, progress=False,
                        stream_options=FAST)
    assert served(tmp_path / "copy") == served(source)
    assert report.stream.reconnects >= 59


def test_credentials_never_reach_the_recording(short: Path, tmp_path: Path) -> None:
    with EventStreamServer(short) as server:
        url = server.url.replace("http://", "http://alice:s3cret@")
        record(tmp_path / "copy", url=url, max_events=50, progress=False, stream_options=FAST)
    stored = b"".join(p.read_bytes() for p in (tmp_path / "copy").iterdir())
    assert b"s3cret" not in stored and b"alice" not in stored
    assert Manifest.load(tmp_path / "copy").source == server.url


def test_resume_id_rewinds_timestamps_and_fills_missing_offsets() -> None:
    raw = ('[{"topic":"eqiad.mediawiki.recentchange","partition":0,"timestamp":1700000000123},'
           '{"topic":"codfw.mediawiki.recentchange","partition":0,"offset":-1}]')
    assert orjson.loads(resume_id(raw, 5000)) == [
        {"topic": "eqiad.mediawiki.recentchange", "partition": 0, "timestamp": 1699999995123},
        {"topic": "codfw.mediawiki.recentchange", "partition": 0, "timestamp": 1699999995123}]
    exact = '[{"topic":"t","partition":0,"offset":42}]'
    assert orjson.loads(resume_id(exact, 5000)) == [{"topic": "t", "partition": 0, "offset": 42}]
    assert resume_id("not json", 5000) == "not json"


def _harness(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_sigkill_loses_at_most_the_last_second_and_resume_completes(original: Path,
                                                                    tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    # ~1000 events/s of recorded pace: 3000 events take ~3 s
    span = Recording(original).manifest.segments[-1].last_received - Recording(
        original).first_received()
    with EventStreamServer(original, speed=span / 3.0) as server:
        proc = _harness("record", "--out", str(copy), "--url", server.url, "--quiet",
                        "--max-events", "3000")
        time.sleep(1.8)
        sent_at_kill = server.stats.snapshot()["events_sent"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert not Manifest.load(copy).complete
    kept = served(copy)
    assert kept == served(original)[: len(kept)]  # a prefix: no gap, nothing reordered
    lost = sent_at_kill - len(kept)
    assert len(kept) > 0 and lost <= 1.5 * 1000  # at most ~1 s of events (+ in flight)
    # resume into the same directory: completes with no gap and no duplicate
    with EventStreamServer(original) as server:
        done = _harness("record", "--out", str(copy), "--url", server.url, "--quiet",
                        "--max-events", "3000")  # the recording's total, as before the kill
        out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    assert "resumed" in err and "complete" in out
    assert served(copy) == served(original)
    assert verify(copy).ok
    print(f"SIGKILL: sent {sent_at_kill}, kept {len(kept)}, lost {lost}")


def test_sigterm_and_sigint_stop_cleanly(original: Path, tmp_path: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        copy = tmp_path / sig.name
        with EventStreamServer(original, speed=50.0) as server:
            proc = _harness("record", "--out", str(copy), "--url", server.url, "--quiet")
            time.sleep(1.5)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=20)
        assert proc.returncode == 128 + sig, err  # 130 / 143, with everything kept
        assert f"stopped by {sig.name}" in out
        manifest = Manifest.load(copy)
        assert manifest.complete and manifest.events > 0
        assert served(copy) == served(original)[: manifest.events]
        assert verify(copy).ok


def test_bad_server_input_is_recorded_or_reported(original: Path, tmp_path: Path) -> None:
    faults = Faults(malformed_every=100, error_every=250, canary_every=300)
    with EventStreamServer(original, faults=faults) as server:
        report = record(tmp_path / "copy", url=server.url, max_events=3000, progress=False,
                        stream_options=FAST)
    envs = list(Recording(tmp_path / "copy").envelopes())
    raw = [e for e in envs if not e.is_json]
    canaries = [e for e in envs if isinstance(e.data, dict)
                and e.data.get("meta", {}).get("domain") == "canary"]
    assert len(raw) >= 29 and all(e.error == "not-json" for e in raw)  # kept, flagged
    assert len(canaries) >= 9
    assert report.stream.errors >= 11  # `event: error` frames are reported, not recorded
    result = run_flow(tmp_path / "copy")
    tally = result.output.counts
    assert tally.canary >= len(canaries) and tally.invalid >= len(raw)


def test_fatal_answers_and_bad_urls_exit_2(original: Path, tmp_path: Path) -> None:
    with EventStreamServer(original) as server:
        bad_path = server.url.replace("/v2/stream/", "/nope/")
        proc = _harness("record", "--out", str(tmp_path / "a"), "--url", bad_path)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "404" in err and len(err.strip().splitlines()) == 1
    proc = _harness("record", "--out", str(tmp_path / "b"), "--url", "ftp://example.org/x")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "http" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(StreamError, match="giving up"):
        stream = EventStream(url="http://127.0.0.1:9/v2/stream/recentchange",
                             **FAST | {"max_failures": 3})
        for _ in stream.events():
            pass


def test_record_refuses_a_complete_recording(original: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in original.iterdir()}
    with pytest.raises(RecordingError, match="complete"):
        record(original, url="http://127.0.0.1:9/x", max_events=1, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in original.iterdir()} == before


def test_unwritable_output_is_a_clear_error_and_the_recording_stays_valid(
        original: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    limit = 400_000  # bytes: a real EFBIG from the kernel, like a full disk

    def small_files() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    recording = Recording(original)
    span = recording.manifest.segments[-1].last_received - recording.first_received()
    with EventStreamServer(original, speed=span / 3.0) as server:  # ~1 block (~180 KB) a second
        proc = _harness("record", "--out", str(copy), "--url", server.url, "--quiet",
                        "--max-events", "3000", preexec_fn=small_files)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0] and "Traceback" not in err
    kept = served(copy)
    assert 0 < len(kept) < 3000 and kept == served(original)[: len(kept)]
    assert verify(copy).ok


def test_live_matches_replay_on_an_event_time_ordered_stream(tmp_path: Path) -> None:
    events = sorted((orjson.loads(e.payload) for e in synthetic_events(4000, seed=5)
                     if e.payload.startswith(b"{") and b'"timestamp":' in e.payload),
                    key=lambda v: v.get("timestamp") if isinstance(v.get("timestamp"), int)
                    else 0)
    path = write_recording(tmp_path / "ordered", events)
    replayed = run_flow(path)
    assert replayed.output.counts.late == 0 and replayed.output.counts.malicious > 0
    with EventStreamServer(path) as server:
        stream = EventStream(url=server.url, **FAST)
        live = run_live(stream, live_job(workers=2), max_events=replayed.output.counts.events,
                        record_to=tmp_path / "seen")
    def malicious(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(r["user"], r["window_start"]) for r in rows if r["malicious"]}

    assert malicious(list(live.output.values())) == malicious(list(replayed.output.values()))
    assert live.output.counts.events == replayed.output.counts.events
    # what live mode recorded replays like the source
    assert flow_outcome(run_flow(tmp_path / "seen")) == flow_outcome(replayed)

"""A live run replayed exactly: `harness live --record` then `harness replay --clock
recorded`, against our own EventStreams server over real loopback HTTP, with event time
running faster than wall time, a stall of three times the lateness and reconnects."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from harness.recording import Manifest, RecordingWriter
from harness.recording.synth import synthetic_events
from harness.serve.server import EventStreamServer, Faults
from tests.conftest import EXAMPLES, FLOWS, ROOT, harness, harness_env, write_recording

EVENTS = 6000
SPEED = 40.0  # event time runs 40x faster than wall time
STALL_AT = 3000
FAULTS = Faults(stall_at=STALL_AT, stall_seconds=3.0, close_every=2000)  # --lateness 1


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("served") / "rec"
    with RecordingWriter(path, source="synthetic", lanes=8) as writer:
        for event in synthetic_events(EVENTS, seed=23):
            writer.append(event.payload, event.sse_id, event.received)
    return path


def live(server: EventStreamServer, tmp: Path, *args: str) -> dict[str, int]:
    """Run `harness live` on the server, keeping --out, --dead-letters and --record in
    `tmp`; the summary line's integer fields."""
    proc = harness("live", "--url", server.url, "--max-events", str(EVENTS), "--quiet",
                   "--out", str(tmp / "out.jsonl"), "--dead-letters", str(tmp / "dl.jsonl"),
                   "--record", str(tmp / "rec"), *args, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    return {k: int(v) for k, v in (f.split("=", 1) for f in proc.stdout.split() if "=" in f)
            if v.isdigit()}


def replay(tmp: Path, name: str, *args: str) -> tuple[bytes, bytes]:
    """`harness replay` of what the live run recorded: its --out and --dead-letters."""
    out, dead = tmp / f"{name}.jsonl", tmp / f"{name}-dl.jsonl"
    proc = harness("replay", str(tmp / "rec"), "--quiet", "--out", str(out),
                   "--dead-letters", str(dead), *args)
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes(), dead.read_bytes()


def late_seqs(dead_letters: bytes) -> set[int]:
    return {row["seq"] for row in map(orjson.loads, dead_letters.splitlines())
            if row["reason"] == "late"}


@pytest.mark.parametrize(("workers", "replay_shape"), [
    (1, ["--processes", "2", "--workers", "2"]),
    (4, ["--workers", "1"]),
])
def test_a_live_run_is_replayed_exactly_by_the_recorded_clock(
        served: Path, tmp_path: Path, workers: int, replay_shape: list[str]) -> None:
    with EventStreamServer(served, speed=SPEED, faults=FAULTS) as server:
        summary = live(server, tmp_path, "--workers", str(workers), "--lateness", "1")
    assert summary["events"] == EVENTS and summary["reconnects"] >= 2
    live_out = (tmp_path / "out.jsonl").read_bytes(), (tmp_path / "dl.jsonl").read_bytes()
    assert live_out[0].count(b"\n") == summary["windows"] > 0

    for shape in (replay_shape, ["--workers", "3"]):
        assert replay(tmp_path, "recorded", "--clock", "recorded", "--lateness", "1",
                      "--force", *shape) == live_out

    # The stall made events late that event time alone does not: the replay reproduced
    # decisions that depend on when events arrived, not only on their timestamps.
    _, event_time = replay(tmp_path, "event", "--lateness", "1")
    stall_made = late_seqs(live_out[1]) - late_seqs(event_time)
    assert any(seq >= STALL_AT for seq in stall_made), sorted(stall_made)[:20]


def test_your_flow_live_is_replayed_exactly_by_the_recorded_clock(
        served: Path, tmp_path: Path) -> None:
    flow = ("--flow", "edit_bursts:edit_bursts")  # docs/examples: RecordedClock, 2 s lateness
    faults = Faults(stall_at=STALL_AT, stall_seconds=6.0, close_every=2000)
    with EventStreamServer(served, speed=SPEED, faults=faults) as server:
        summary = live(server, tmp_path, "--workers", "2", *flow)
    assert summary["events"] == EVENTS and summary["reconnects"] >= 2
    live_out = (tmp_path / "out.jsonl").read_bytes(), (tmp_path / "dl.jsonl").read_bytes()
    assert live_out[1], "the synthetic stream has dead letters for the source to report"
    for shape in (["--processes", "2"], ["--workers", "3"]):
        assert replay(tmp_path, "recorded", *flow, "--clock", "recorded", "--force",
                      *shape) == live_out
    event_time, _ = replay(tmp_path, "event", *flow)
    late = b'"late"'
    assert live_out[0].count(late) > event_time.count(late)  # the stall decided some


def test_an_unchanged_bytewax_dataflow_live_is_replayed_exactly(served: Path,
                                                                tmp_path: Path) -> None:
    """A module-level Dataflow on the default (wall-clock) EventClock and a SystemClock,
    as `bytewax.run` runs it: live its clocks read the receive times, so a replay by the
    recorded clock decides what the live run decided, on any shape."""
    flow = ("--flow", "bytewax_style:flow")
    faults = Faults(stall_at=STALL_AT, stall_seconds=6.0, close_every=2000)  # 240 s of events
    with EventStreamServer(served, speed=SPEED, faults=faults) as server:
        summary = live(server, tmp_path, "--workers", "2", *flow)
    assert summary["events"] == EVENTS
    live_out = (tmp_path / "out.jsonl").read_bytes(), (tmp_path / "dl.jsonl").read_bytes()
    for shape in (["--processes", "2", "--workers", "2"], ["--workers", "3"]):
        assert replay(tmp_path, "recorded", *flow, "--clock", "recorded", "--force",
                      *shape) == live_out
    event_time, _ = replay(tmp_path, "event", *flow)
    counts = b'"wiki_edits.minute_counts"'
    assert live_out[0].count(counts) and event_time.count(counts)
    assert live_out[0] != event_time  # the stall made edits late: receive time decided


# ---------------------------------------------------------- idle streams still close


def _burst(path: Path) -> Path:
    """60 edits by one account within 4 s of event time: a malicious window."""
    start = 1_700_000_000  # a multiple of 5 s since 2023-01-01: one window holds them all
    return write_recording(path, [
        {"meta": {"id": f"id-{i}", "domain": "en.wikipedia.org"}, "user": "Burst",
         "timestamp": start + i // 15, "wiki": "enwiki", "type": "edit", "title": f"P{i}"}
        for i in range(60)])


def _lines_with_times(proc: subprocess.Popen[str]) -> list[tuple[float, str]]:
    seen: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append((time.monotonic(), line))
    return seen


def test_an_idle_stream_still_closes_windows_before_the_run_ends(tmp_path: Path) -> None:
    with EventStreamServer(_burst(tmp_path / "burst"), speed=0, end="hold") as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "live", "--url", server.url, "--duration", "8",
             "--lateness", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            reader = threading.Thread(target=lambda: seen.extend(_lines_with_times(proc)))
            seen: list[tuple[float, str]] = []
            reader.start()
            proc.wait(timeout=60)
            ended = time.monotonic()
            reader.join(timeout=5)
        finally:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    alerts = [at for at, line in seen if line.startswith("MALICIOUS Burst")]
    # by the recorded clock the window closes ~2 s after the burst arrived, on a tick
    assert len(alerts) == 1 and ended - alerts[0] > 3.0, (seen, ended)


def test_your_flow_closes_windows_while_the_stream_is_idle(tmp_path: Path) -> None:
    stamps = tmp_path / "stamps.jsonl"
    env_flows = {"PYTHONPATH": os.pathsep.join(map(str, (FLOWS, EXAMPLES, ROOT))),
                 "HARNESS_TEST_STAMPS": str(stamps)}
    with EventStreamServer(_burst(tmp_path / "burst"), speed=0, end="hold") as server:
        started = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "live", "--url", server.url, "--duration", "8",
             "--flow", "live_flows:user_windows", "--out", str(tmp_path / "out.jsonl")],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env_flows})
        ended = time.time()
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    rows = [orjson.loads(line) for line in stamps.read_bytes().splitlines()]
    assert sum(r["edits"] for r in rows) == 60 and len(rows) == 2  # 2-s windows of 4 s
    # closed by idle time (1 s lateness + 1 s grace after the burst), not by the run's end
    assert all(started < r["at"] < ended - 3.0 for r in rows), (rows, started, ended)
    # and --out holds exactly what came out
    out = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert out == [{k: r[k] for k in ("edits", "user", "window")} for r in rows]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_a_live_run_and_keeps_everything(served: Path, tmp_path: Path,
                                                         sig: signal.Signals) -> None:
    """Ctrl-C is how an open-ended live run is stopped: the stream ends, windows close,
    --out and the recording are kept, and they still replay exactly."""
    with EventStreamServer(served, speed=5.0) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "live", "--url", server.url, "--quiet",
             "--lateness", "1", "--out", str(tmp_path / "out.jsonl"),
             "--dead-letters", str(tmp_path / "dl.jsonl"), "--record", str(tmp_path / "rec")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(3.0)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 128 + sig, err  # 130 / 143, with everything kept
    assert f"stopped_by={sig.name}" in out and "Traceback" not in err
    manifest = Manifest.load(tmp_path / "rec")
    assert manifest.complete and manifest.events > 0
    assert f"events={manifest.events} " in out
    live_out = (tmp_path / "out.jsonl").read_bytes(), (tmp_path / "dl.jsonl").read_bytes()
    assert live_out[0]
    assert replay(tmp_path, "recorded", "--clock", "recorded", "--lateness", "1") == live_out


def test_a_second_ctrl_c_inside_a_step_is_an_interruption(served: Path, tmp_path: Path) -> None:
    """The first Ctrl-C ends the stream; a second one, while the flow's steps still work
    through what arrived, interrupts: 130 and one line, never 'unexpected failure'."""
    with EventStreamServer(served, speed=20.0) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "live", "--url", server.url, "--quiet",
             "--flow", "live_flows:slow_steps", "--out", str(tmp_path / "out.jsonl")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=harness_env())
        try:
            time.sleep(3.0)
            proc.send_signal(signal.SIGINT)  # the backlog takes seconds to work through
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [err.strip()] and "interrupted by SIGINT" in err

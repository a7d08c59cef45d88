"""A hostile user against replay: shapes changed on resume, shared state, damage that
hides, aliasing outputs, extreme parameters, huge frames, orphans, leftovers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pytest
import zstandard

from harness.files import write_atomically
from harness.recording import BlockHeader, LaneRef, Manifest, RecordingWriter, scan_blocks
from harness.recording.sample import sample_recording
from tests.conftest import assert_same_output, file_sizes, group_gone, harness, live_processes

SAMPLE = sample_recording()


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def one_line(proc: subprocess.CompletedProcess[str], status: int, *needles: str) -> None:
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "panicked" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "rec"
    shutil.copytree(SAMPLE, copy)
    return copy


# ------------------------------------------------------------- 1. resume, reshaped


def _wait_for_parts(state: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not any(
            file_sizes(state / "parts", "summaries-*")):
        time.sleep(0.01)


@pytest.mark.parametrize(("first", "second"), [
    (("--processes", "2", "--workers", "2"), ("--workers", "1")),
    (("--workers", "1"), ("--processes", "2", "--workers", "2")),
    (("--workers", "4"), ("--processes", "2")),
])
def test_a_resume_on_another_cluster_shape_gives_the_same_windows(
        tmp_path: Path, first: tuple[str, ...], second: tuple[str, ...]) -> None:
    whole = tmp_path / "whole.jsonl"
    assert harness("replay", str(SAMPLE), "--quiet", "--out", str(whole)).returncode == 0
    state, out = tmp_path / "state", tmp_path / "out.jsonl"
    common = ("replay", str(SAMPLE), "--quiet", "--recovery-dir", str(state), "--out", str(out),
              "--snapshot-interval", "0.1")
    proc = start(*common, *first, "--speed", "150")
    _wait_for_parts(state, proc)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    group_gone(proc.pid)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    resumed = harness(*common, *second)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_output(out, whole.read_bytes())


# ------------------------------------------------------------------ 2. two runs, one state


def test_two_replays_on_one_recovery_dir_do_not_both_proceed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = start("replay", str(SAMPLE), "--quiet", "--recovery-dir", str(state), "--speed",
                  "30")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (state / "replay.json").exists():
            time.sleep(0.05)
        time.sleep(0.5)
        second = harness("replay", str(SAMPLE), "--quiet", "--recovery-dir", str(state))
        one_line(second, 2, "in use by another run", f"pid {first.pid}")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)


def test_a_lock_held_by_a_run_still_exiting_is_waited_for(tmp_path: Path) -> None:
    """Rerunning right after a crash: the killed run's processes (forked cluster
    members hold the lock too) may take a moment to exit; that is not a live run."""
    from harness.files import DirectoryLock

    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(0.5)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with DirectoryLock(tmp_path, "--recovery-dir"):  # refused at once before
            assert holder.wait(timeout=10) == 0
    finally:
        holder.kill()


def test_two_recorders_on_one_directory_do_not_both_proceed(tmp_path: Path) -> None:
    from harness.serve.server import EventStreamServer

    out = tmp_path / "rec"
    with EventStreamServer(SAMPLE, speed=5.0) as server:
        first = start("record", "--out", str(out), "--url", server.url, "--quiet")
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (out / "manifest.json").exists():
                time.sleep(0.05)
            second = harness("record", "--out", str(out), "--url", server.url, "--quiet",
                             "--duration", "2")
            one_line(second, 2, "in use by another run", f"pid {first.pid}")
        finally:
            first.send_signal(signal.SIGINT)
            first.communicate(timeout=30)
    assert first.returncode == 130  # stopped by Ctrl-C, having kept everything
    assert harness("verify", str(out)).returncode == 0  # the first one's recording is whole


# --------------------------------------------------------- 5. damage that hides


def test_a_segment_cut_at_a_block_boundary_is_reported_in_full(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    seg = copy / Manifest.load(copy).segments[0].file
    blocks = [b for b in scan_blocks(seg) if not isinstance(b, Exception)]
    os.truncate(seg, blocks[2].offset)  # the last 3 of 5 blocks are gone, cleanly
    lost = sum(b.header.events for b in blocks[2:])  # type: ignore[union-attr]
    proc = harness("replay", str(copy), "--quiet", "--skip-damaged", "--json",
                   "--dead-letters", str(tmp_path / "dl.jsonl"))
    assert proc.returncode == 0, proc.stderr
    tally = orjson.loads(proc.stdout)
    assert tally["skipped"] == lost > 0 and tally["events"] + tally["skipped"] == 20_000
    dead = [orjson.loads(x) for x in (tmp_path / "dl.jsonl").read_bytes().splitlines()]
    assert any(d["reason"] == "damaged" and "not found" in d["where"] for d in dead)
    flow = harness("replay", str(copy), "--quiet", "--skip-damaged", "--json", "--flow",
                   "harness.flows.bots.plugin:flow")
    assert flow.returncode == 0, flow.stderr
    assert orjson.loads(flow.stdout)["damaged"] == lost


def test_a_corrupted_block_header_leaves_nothing_unaccounted(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    seg = copy / Manifest.load(copy).segments[0].file
    data = bytearray(seg.read_bytes())
    second = [b for b in scan_blocks(seg)][1]
    data[second.offset + 8:second.offset + 12] = b"XXXX"  # the block tag
    seg.write_bytes(bytes(data))
    proc = harness("replay", str(copy), "--quiet", "--skip-damaged", "--json")
    assert proc.returncode == 0, proc.stderr
    tally = orjson.loads(proc.stdout)
    assert tally["events"] + tally["skipped"] == 20_000 and tally["skipped"] >= 4096


# ------------------------------------------------------------- 6. aliasing outputs


@pytest.mark.parametrize("case", ["same", "inside", "directory", "hardlink"])
def test_outputs_never_alias_each_other_or_the_recording(tmp_path: Path, case: str) -> None:
    copy = _copy(tmp_path)
    seg = copy / Manifest.load(copy).segments[0].file
    before = seg.read_bytes()
    out = tmp_path / "o.jsonl"
    if case == "same":
        args, needle = ["--out", str(out), "--dead-letters", str(out)], "the same file as"
    elif case == "inside":
        args, needle = ["--out", str(seg), "--force"], "inside the recording"
    elif case == "directory":
        args, needle = ["--out", str(tmp_path)], "is a directory"
    else:
        out.write_text("x")
        os.link(out, tmp_path / "link.jsonl")
        args = ["--out", str(out), "--dead-letters", str(tmp_path / "link.jsonl"), "--force"]
        needle = "the same file as"
    one_line(harness("replay", str(copy), "--quiet", *args), 2, needle)
    assert seg.read_bytes() == before


def test_a_recovery_state_cannot_license_overwriting_a_file_it_did_not_write(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert harness("replay", str(SAMPLE), "--quiet", "--recovery-dir", str(state)
                   ).returncode == 0
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    (state / "outputs.json").write_text(orjson.dumps({str(precious): "0" * 64}).decode())
    one_line(harness("replay", str(SAMPLE), "--quiet", "--recovery-dir", str(state), "--out",
                     str(precious)), 2, "exists; refusing to overwrite")
    assert precious.read_text() == "keep"
    (state / "replay.json").write_text("{not json")
    one_line(harness("replay", str(SAMPLE), "--quiet", "--recovery-dir", str(state)), 2,
             "replay.json: damaged")


# ------------------------------------------------------ 7. timestamps at the ends of time


@pytest.mark.parametrize(("when", "window"), [
    ("9999-12-31T23:58:59+00:00", "120"), ("0001-01-01T00:00:00+00:00", "7"),
    ("9999-12-31T23:59:59+00:00", "5")])
def test_valid_timestamps_never_crash_any_window(tmp_path: Path, when: str,
                                                 window: str) -> None:
    from datetime import datetime

    ts = int(datetime.fromisoformat(when).timestamp())
    rec = tmp_path / "rec"
    with RecordingWriter(rec, source="t", lanes=2) as writer:
        for i in range(3):
            writer.append(orjson.dumps({"user": "u", "timestamp": ts - i}), str(i), 1.0 + i)
        writer.append(orjson.dumps({"user": "v", "timestamp": 1_700_000_000}), "9", 9.0)
    proc = harness("replay", str(rec), "--window", window, "--json", "--dead-letters",
                   str(tmp_path / "dl.jsonl"))
    assert proc.returncode == 0, proc.stderr
    tally = orjson.loads(proc.stdout)
    assert tally["events"] == 4 and tally["invalid"] + tally["counted"] == 4
    assert "panicked" not in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- 8. size limits


def test_a_tiny_segment_holding_a_huge_frame_is_damage_not_memory(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    with RecordingWriter(rec, source="t", lanes=1) as writer:
        writer.append(orjson.dumps({"user": "u", "timestamp": 1_700_000_000}), "0", 1.0)
    seg = rec / Manifest.load(rec).segments[0].file
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=True)
    chunk = b"\0" * (1 << 24)
    frame = cctx.compress(chunk * 64)  # 1 GiB of NULs in a frame of about 30 KiB
    header = BlockHeader(2, 2, 2.0, 2.0, (LaneRef(0, 1, len(frame)),))
    with seg.open("ab") as f:
        f.write(header.encode() + frame)
    manifest = Manifest.load(rec)
    manifest.segments[0].complete = False  # an unfinished recording: no hash to fail first
    manifest.complete = False
    manifest.save(rec)
    assert seg.stat().st_size < 200_000
    strict = harness("replay", str(rec), "--quiet")
    one_line(strict, 2, "lane 0 frame does not decompress", "over the limit")
    skipping = harness("replay", str(rec), "--quiet", "--skip-damaged", "--json")
    assert skipping.returncode == 0, skipping.stderr
    assert orjson.loads(skipping.stdout)["skipped"] == 1


# ------------------------------------------------------ 10. an orphaned cluster member


def test_a_member_whose_parent_is_gone_leaves_at_once(tmp_path: Path) -> None:
    from harness.flows.job import FlowJob
    from harness.run.job import job_to_json

    spec = job_to_json(FlowJob.of(SAMPLE, processes=2))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness.run.cluster", spec, str(tmp_path),
                           "127.0.0.1:1;127.0.0.1:2", "1", "1"], capture_output=True,
                          timeout=60)
    assert proc.returncode == 1 and time.monotonic() - started < 10


# ------------------------------------------------------ 11. every argument checked up front


@pytest.mark.parametrize(("args", "needle"), [
    (["synth", "--events", "-5", "--out", "x"], "--events: expected a whole number"),
    (["synth", "--lanes", "70000", "--out", "x"], "--lanes: expected a whole number 1..65535"),
    (["replay", "--process-id", "1"], "--addresses and --process-id go together"),
    (["replay", "--addresses", "a;b", "--process-id", "0"], "'a' is not HOST:PORT"),
    (["replay", "--addresses", "h:1;h:2", "--process-id", "5"], "lists only 2 member"),
    (["replay", "--snapshot-interval", "inf"], "--snapshot-interval: expected a number"),
    (["replay", "--speed", "1e-300"], "--speed must be 0 or between"),
    (["replay", "--workers", "1000"], "--workers: expected a whole number 1..256"),
    (["replay", "--processes", "10", "--workers", "100"], "at most 256"),
    (["replay", "--window", "1000000000000"], "--window: expected a whole number"),
    (["replay", "--threshold", "abc"], "--threshold: expected a number, got 'abc'"),
    (["replay", "--align", "99999-01-01"], "--align: expected an ISO-8601 time"),
    (["replay", "--from", "2024-01-02", "--until", "2024-01-01"], "must be before --until"),
    (["serve", "--port", "99999"], "--port: expected a whole number 0..65535"),
    (["serve", "--host", "203.0.113.1", "--port", "0"], "cannot listen"),
    (["record", "--out", "x", "--url", "http://[::1"], "--url: expected an http://"),
    (["record", "--out", "x", "--max-failures", "-1"], "--max-failures: expected"),
    (["replay", "--key", "wiki"], "give --flow"),
    (["replay", "--flow", "x"], "no module 'x'"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                               needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    one_line(proc, 2, needle)


def test_a_manifest_field_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    raw = orjson.loads((copy / "manifest.json").read_bytes())
    raw["segments"][0]["events"] = "many"
    (copy / "manifest.json").write_bytes(orjson.dumps(raw))
    one_line(harness("replay", str(copy)), 2, "manifest field 'events' is 'many'")
    one_line(harness("verify", str(copy)), 2, "manifest field 'events'")


# ----------------------------------------------------------------- 12. leftovers


def test_leftovers_of_killed_runs_are_cleaned_up_by_the_next(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)  # a process that has exited
    stale_run = Path(tempfile.gettempdir()) / f"harness-run-{pid}-leftover"
    stale_run.mkdir()
    target = tmp_path / "out.jsonl"
    stale_tmp = tmp_path / f".out.jsonl.{pid}.tmp"
    stale_tmp.write_text("half")
    assert harness("replay", str(SAMPLE), "--quiet", "--out", str(target)).returncode == 0
    assert not stale_run.exists() and not stale_tmp.exists()
    write_atomically(target, [b"x"])
    assert target.read_bytes() == b"x"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_member_whose_peer_never_comes_says_so_and_stops_on_a_signal(
        sig: signal.Signals) -> None:
    """Bytewax waits for a missing peer forever, inside Rust: the member still says what
    it waits for (on stderr, keeping --json stdout clean) and a signal still stops it."""
    from harness.run.cluster import free_addresses

    peer, me = free_addresses(2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "replay", "--json", "--addresses", f"{peer};{me}",
         "--process-id", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3.0)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err
    assert f"waiting for cluster member 0 at {peer}" in err
    assert "error connecting" not in out + err and "Traceback" not in err
    assert all(isinstance(orjson.loads(line), dict) for line in out.splitlines())


def test_bytewax_threads_outliving_an_interrupted_member_never_reach_stdout() -> None:
    """Timely's connection threads outlive an interrupted member and print a retry line
    every second until the process exits. A process that lives on after the replay (a
    library caller, or a slow exit) must still keep them off its stdout."""
    from harness.run.cluster import free_addresses

    peer, me = free_addresses(2)
    script = ("import os, sys, time\n"
              "from harness.cli.main import main\n"
              f"code = main(['replay', '--json', '--addresses', '{peer};{me}',"
              " '--process-id', '1'])\n"
              "time.sleep(2.5)\n"  # two or three retries
              "sys.stdout.flush()\n"
              "os._exit(code)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3.0)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "error connecting" not in out, out
    [summary] = [orjson.loads(line) for line in out.splitlines()]
    assert summary["interrupted"] is True and summary["process_id"] == 1


@pytest.mark.parametrize(("fork", "sig", "child_pause"), [
    (1, signal.SIGINT, 0.0), (2, signal.SIGINT, 0.0), (3, signal.SIGINT, 0.0),
    (3, signal.SIGTERM, 0.0), (3, signal.SIGINT, 0.5)],
    ids=["segment-check-SIGINT", "member-0-SIGINT", "member-1-SIGINT", "member-1-SIGTERM",
         "member-1-still-forking"])
def test_a_signal_arriving_during_a_fork_still_stops_the_replay(
        fork: int, sig: signal.Signals, child_pause: float) -> None:
    """Python runs fork hooks inside `os.fork` and drops an exception raised in one, so
    a Ctrl-C landing there used to vanish: the replay ran on and exited 0. Here the
    signal is sent from such a hook, on the Nth fork of `replay --processes 2`
    (the segment check, then the two members). With `child_pause` the new member is
    still in its fork hooks when the parent, interrupted, terminates it: it must not
    take the parent's handlers for its own (a traceback, and a member running on)."""
    script = ("import os, signal, sys, time\n"
              "forks = []\n"
              "def in_parent():\n"
              "    forks.append(1)\n"
              f"    if len(forks) == {fork}:\n"
              f"        os.kill(os.getpid(), {int(sig)})\n"
              "def in_child():\n"
              f"    if len(forks) == {fork - 1}:\n"
              f"        time.sleep({child_pause})\n"
              "os.register_at_fork(after_in_parent=in_parent, after_in_child=in_child)\n"
              "from harness.cli.main import main\n"
              f"sys.exit(main(['replay', {str(SAMPLE)!r}, '--processes', '2', '--quiet']))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err
    assert err.splitlines() == [f"harness replay: interrupted by {name}; what was done so"
                                " far is above, outputs not written"], err
    deadline = time.monotonic() + 10
    while live_processes(group=proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_processes(group=proc.pid) == []  # every member it forked is gone too


@pytest.mark.parametrize(("limit", "named"), [(150_000, "o.jsonl: File too large"),
                                              (30_000, "st/db: cannot write")],
                         ids=["output", "recovery-db"])
def test_a_full_disk_is_one_line_naming_what_could_not_be_written(
        tmp_path: Path, limit: int, named: str) -> None:
    """A file-size limit stands in for a full disk: the --out file, or Bytewax's recovery
    database (a Rust panic inside Bytewax), cannot be written."""
    import resource

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then writes fail with EFBIG

    proc = subprocess.run([sys.executable, "-m", "harness", "replay", "--recovery-dir", "st",
                           "--out", "o.jsonl", "--quiet"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, preexec_fn=small_files)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr
    assert not (tmp_path / "o.jsonl").exists()

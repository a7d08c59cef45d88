"""The segment check: every replay compares each finished segment with the sha256 its
manifest lists, beside the run (a forked child, or a thread where forking is unsafe),
fails a strict replay before anything is written, and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import RecordingError
from harness.recording import integrity
from harness.recording.integrity import SegmentCheck
from harness.recording.manifest import Manifest
from harness.recording.reader import Recording
from tests.conftest import ROOT, assert_same_output, harness, live_processes, write_recording

T0 = 1_700_000_000


def _recording(path: Path) -> Path:
    """Three segments of valid data."""
    events = [{"user": f"u{i % 7}", "timestamp": T0 + i // 10, "wiki": "enwiki"}
              for i in range(600)]
    write_recording(path, events, segment_bytes=3000)
    assert len(Manifest.load(path).segments) >= 3
    return path


def _tamper(path: Path, index: int = 1) -> str:
    """Change segment `index`'s sha256 in the manifest (its data stays valid: only the
    check can tell) and return the segment's file name."""
    manifest = Manifest.load(path)
    manifest.segments[index].sha256 = "0" * 64
    manifest.save(path)
    return manifest.segments[index].file


@pytest.mark.parametrize("processes", [1, 2])
def test_a_strict_replay_whose_segment_differs_from_its_sha256_fails_and_writes_nothing(
        tmp_path: Path, processes: int) -> None:
    path = _recording(tmp_path / "r")
    name = _tamper(path)
    out = tmp_path / "out.jsonl"
    run = harness("replay", str(path), "--quiet", "--processes", str(processes),
                  "--out", str(out))
    assert run.returncode == 2, run.stderr
    assert f"{name}: sha256 does not match the manifest" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not out.exists()


def test_skip_damaged_warns_of_the_mismatch_and_still_replays_everything(tmp_path: Path
                                                                          ) -> None:
    path = _recording(tmp_path / "r")
    clean = harness("replay", str(path), "--quiet", "--out", str(tmp_path / "clean.jsonl"))
    assert clean.returncode == 0, clean.stderr
    name = _tamper(path, index=2)
    run = harness("replay", str(path), "--quiet", "--skip-damaged", "--processes", "2",
                  "--out", str(tmp_path / "warned.jsonl"))
    assert run.returncode == 0, run.stderr
    assert f"warning: {name}: sha256 does not match the manifest" in run.stderr
    assert_same_output(tmp_path / "warned.jsonl", (tmp_path / "clean.jsonl").read_bytes())


_CHECK_BOTH_WAYS = """
import sys
from harness.errors import RecordingError
from harness.recording.integrity import SegmentCheck
from harness.recording.reader import Recording
path = sys.argv[1]
with SegmentCheck.start(Recording(path)) as check:
    try:
        check.result()
        print("no error")
    except RecordingError as exc:
        print(exc)
with SegmentCheck.start(Recording(path, skip_damaged=True)) as check:
    print(*check.result(), sep="\\n")
"""


def test_the_check_names_each_mismatch_in_manifest_order(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    path = _recording(tmp_path / "r")
    names = [_tamper(path, 2), _tamper(path, 0)]
    expected = [names[1] + ": sha256 does not match the manifest"] + [
        f"{name}: sha256 does not match the manifest" for name in sorted(names)]
    # forked: from a fresh single-threaded process, as the command line does
    forked = subprocess.run([sys.executable, "-c", _CHECK_BOTH_WAYS, str(path)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert forked.returncode == 0, forked.stderr
    assert forked.stdout.splitlines() == expected
    # in a thread: where forking is unsafe (pytest's process runs threads)
    monkeypatch.setattr(integrity, "can_fork", lambda: False)
    with SegmentCheck.start(Recording(path)) as check, \
            pytest.raises(RecordingError, match=names[1]):
        check.result()
    with SegmentCheck.start(Recording(path, skip_damaged=True)) as check:
        assert check.result() == expected[1:]


def test_a_check_begun_early_is_not_trusted_once_the_recording_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(integrity, "can_fork", lambda: False)  # pytest runs threads
    path = _recording(tmp_path / "r")
    integrity.begin(path, skip_damaged=True)
    with SegmentCheck.start(Recording(path, skip_damaged=True)) as check:
        assert check.result() == []  # the early check, taken over
    integrity.begin(path, skip_damaged=True)
    name = _tamper(path)
    with SegmentCheck.start(Recording(path, skip_damaged=True)) as check:
        assert check.result() == [f"{name}: sha256 does not match the manifest"]


def test_an_interrupted_replay_leaves_no_process_behind(synthetic: Path, tmp_path: Path
                                                        ) -> None:
    copy = tmp_path / "only-this-test"  # a path no other process names
    copy.mkdir()
    for item in synthetic.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "replay", str(copy),
                             "--processes", "2", "--speed", "20", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 20  # until the parent and its members run
        while len(live_processes(naming=copy)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(live_processes(naming=copy)) >= 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 5
    while live_processes(naming=copy) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_processes(naming=copy) == []

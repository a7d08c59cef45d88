"""Crash and resume: a killed replay, rerun alike, gives the uninterrupted answer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.recording.sample import sample_recording
from tests.conftest import assert_same_output, file_sizes, group_gone, harness

SAMPLE = sample_recording()
SPEED = 300.0  # the sample spans ~9 min of receive time: ~1.8 s per run at this pace


def counts(stdout: str) -> str:
    """The summary line without the timing fields."""
    line = stdout.strip().splitlines()[-1]
    return " ".join(p for p in line.split() if not p.startswith(("events/s=", "wall=",
                                                                 "workers=", "processes=")))


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    out = tmp_path_factory.mktemp("expected") / "alerts.jsonl"
    proc = harness("replay", str(SAMPLE), "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes(), counts(proc.stdout)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


@settings(max_examples=6)
@given(delay=st.floats(0.3, 2.0), shape=st.sampled_from([(1, 1), (2, 1), (1, 2), (2, 2)]),
       target=st.sampled_from(["replay", "member"]))
def test_killed_replay_resumes_to_the_uninterrupted_output(tmp_path_factory, expected,
                                                           delay: float,
                                                           shape: tuple[int, int],
                                                           target: str) -> None:
    workers, processes = shape
    tmp = tmp_path_factory.mktemp("crash")
    state, out = tmp / "state", tmp / "alerts.jsonl"
    args = ["replay", str(SAMPLE), "--quiet", "--recovery-dir", str(state), "--out", str(out),
            "--workers", str(workers), "--processes", str(processes),
            "--snapshot-interval", "0.2"]
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args, "--speed", str(SPEED)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    time.sleep(delay)
    members = _children(proc.pid)
    if target == "member" and members:
        os.kill(members[-1], signal.SIGKILL)  # one cluster process dies; the replay fails
    else:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole replay dies at once
    proc.communicate(timeout=60)
    group_gone(proc.pid)
    assert proc.returncode != 0 or out.exists()  # it really was interrupted (or had finished)
    resumed = harness(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_output(out, expected[0])  # no window missing, none duplicated
    assert counts(resumed.stdout) == expected[1]
    for pid in members:  # no orphaned cluster member survives its replay
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
            f"/proc/{pid}/status").read_text()


def test_recovery_state_belongs_to_one_replay(tmp_path: Path, expected) -> None:
    state = tmp_path / "state"
    first = harness("replay", str(SAMPLE), "--quiet", "--recovery-dir", str(state))
    assert first.returncode == 0, first.stderr
    again = harness("replay", str(SAMPLE), "--quiet", "--recovery-dir", str(state),
                    "--out", str(tmp_path / "o.jsonl"))
    assert again.returncode == 0 and counts(again.stdout) == expected[1]
    assert_same_output(tmp_path / "o.jsonl", expected[0])
    other = harness("replay", str(SAMPLE), "--quiet", "--recovery-dir", str(state),
                    "--threshold", "3")
    assert other.returncode == 2 and "different replay" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "precious.txt").write_text("keep")
    refused = harness("replay", str(SAMPLE), "--quiet", "--recovery-dir", str(junk))
    assert refused.returncode == 2 and (junk / "precious.txt").read_text() == "keep"


def test_resume_mid_joined_frames(tmp_path: Path) -> None:
    """Unpaced replay of a live-sized recording: snapshots fall between joined frames."""
    from harness.recording.synth import synthetic_events
    from tests.conftest import write_recording

    rec = write_recording(tmp_path / "rec", (e.payload for e in synthetic_events(40_000, 6)),
                          lanes=4, block_events=40)
    whole = harness("replay", str(rec), "--quiet", "--out", str(tmp_path / "whole.jsonl"))
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "alerts.jsonl"
    args = ["replay", str(rec), "--quiet", "--recovery-dir", str(tmp_path / "state"),
            "--out", str(out), "--snapshot-interval", "0.05"]
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    # kill once the replay has written something, well before it can finish
    parts = tmp_path / "state" / "parts"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None and not any(
            file_sizes(parts, "summaries-*")):
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    group_gone(proc.pid)
    assert proc.returncode == -signal.SIGKILL and not out.exists()  # really interrupted
    resumed = harness(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_output(out, (tmp_path / "whole.jsonl").read_bytes())
    assert counts(resumed.stdout) == counts(whole.stdout)


_KILLED_AFTER_RENAME = """
import os, sys
from pathlib import Path
import harness.files
target = Path(sys.argv[1]).resolve()
real = os.replace
def replace(src, dst):  # the run is killed just as --out takes its name
    real(src, dst)
    if Path(dst).resolve() == target:
        os._exit(137)
harness.files.os.replace = replace
from harness.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_run_killed_as_its_output_takes_its_name_is_rerun_as_the_same_command(
        tmp_path: Path, expected) -> None:
    """The file and the state's record of it never disagree: the rerun may replace it."""
    out = tmp_path / "alerts.jsonl"
    args = ["replay", str(SAMPLE), "--quiet", "--recovery-dir", str(tmp_path / "state"),
            "--out", str(out)]
    killed = subprocess.run([sys.executable, "-c", _KILLED_AFTER_RENAME, str(out), *args],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == 137 and out.exists(), killed.stderr
    rerun = harness(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_output(out, expected[0])


def test_a_killed_member_is_named(tmp_path: Path) -> None:
    """A member killed outright cannot say why; its peers only see it go. The supervisor
    names the member and the signal, not a broken connection."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", "replay", str(SAMPLE), "--quiet",
                             "--processes", "2", "--speed", str(SPEED)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(members := _children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # both running the flow
        os.kill(_children(proc.pid)[-1], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert members and proc.returncode == 1, err
    assert re.fullmatch(rb"harness replay: unexpected failure: ClusterError: cluster process"
                        rb" [01] was killed by SIGKILL\n", err), err

"""Outputs are written where the user asked, claimed by one run, never replaced by surprise."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.recording.sample import sample_recording
from tests.conftest import EXAMPLES, FLOWS, ROOT, harness

SAMPLE = sample_recording()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(FLOWS), str(ROOT)])}


@pytest.mark.parametrize("force", [False, True])
def test_two_runs_never_both_own_one_output(tmp_path: Path, force: bool) -> None:
    out = tmp_path / "alerts.jsonl"
    args = ["replay", str(SAMPLE), "--quiet", "--out", str(out), *(["--force"] * force)]
    first = subprocess.Popen([sys.executable, "-m", "harness", *args, "--speed", "300"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    try:
        time.sleep(0.8)
        assert first.poll() is None
        second = harness(*args)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [second.stderr.strip()]
        assert "being written by another run" in second.stderr and str(out) in second.stderr
    finally:
        first.communicate(timeout=60)
    assert first.returncode == 0 and out.read_bytes()


def test_a_fifo_is_written_to_and_stays_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    proc = harness("replay", "--quiet", "--out", str(fifo))
    reader.join(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode) and got and got[0].count(b"\n") == 2787


def test_a_character_device_is_written_to_and_never_replaced(tmp_path: Path) -> None:
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        pytest.skip("cannot make a device node here")
    for force in ([], ["--force"]):
        proc = harness("replay", "--quiet", "--out", str(device), *force)
        assert proc.returncode == 0, proc.stderr
        assert stat.S_ISCHR(device.stat().st_mode)


def test_a_symlink_is_refused_and_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep")
    link = tmp_path / "out.jsonl"
    link.symlink_to(target)
    proc = harness("replay", "--quiet", "--out", str(link), "--force")
    assert proc.returncode == 2 and "is a symlink" in proc.stderr
    assert link.is_symlink() and target.read_text() == "keep"


def test_an_output_inside_the_recovery_state_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = harness("replay", "--quiet", "--recovery-dir", str(state))
    assert first.returncode == 0, first.stderr
    proc = harness("replay", "--quiet", "--recovery-dir", str(state), "--out",
                   str(state / "out.jsonl"))
    assert proc.returncode == 2 and "inside the recovery state" in proc.stderr
    again = harness("replay", "--quiet", "--recovery-dir", str(state))
    assert again.returncode == 0, again.stderr  # the state is intact


def test_a_recovery_state_inside_the_recording_is_refused(tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "rec"
    shutil.copytree(SAMPLE, copy)
    proc = harness("replay", str(copy), "--quiet", "--recovery-dir", str(copy / "state"))
    assert proc.returncode == 2 and "inside the recording" in proc.stderr
    assert not (copy / "state").exists()

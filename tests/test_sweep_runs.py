"""Runs of your flow: nothing lost under recovery, limits met up front, check's hash seeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.recording.sample import sample_recording
from tests.conftest import EXAMPLES, FLOWS, ROOT, harness

SAMPLE = sample_recording()
WIKI = ["--flow", "wiki_counts:wiki_counts", "--key", "wiki"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("whole") / "out.jsonl"
    proc = harness("replay", *WIKI, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def test_two_outputs_under_recovery_lose_nothing(tmp_path: Path, whole: bytes) -> None:
    out = tmp_path / "out.jsonl"
    proc = harness("replay", *WIKI, "--recovery-dir", str(tmp_path / "state"), "--out",
                   str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == whole


@pytest.mark.parametrize(("first", "resumed"), [(("1", "1"), ("2", "1")),
                                                (("1", "2"), ("1", "1"))])
def test_a_killed_two_output_flow_resumes_to_the_whole_output(
        tmp_path: Path, whole: bytes, first: tuple[str, str], resumed: tuple[str, str]) -> None:
    out, state = tmp_path / "out.jsonl", tmp_path / "state"
    common = ["replay", str(SAMPLE), *WIKI, "--quiet", "--recovery-dir", str(state),
              "--out", str(out), "--snapshot-interval", "0.1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(FLOWS), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-m", "harness", *common, "--speed", "300",
                             "--workers", first[0], "--processes", first[1]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=env)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not out.exists()  # really interrupted
    again = harness(*common, "--workers", resumed[0], "--processes", resumed[1])
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == whole


def test_check_runs_a_shape_with_another_hash_seed() -> None:
    proc = harness("check", "--flow", "hash_flow:flow", "--key", "wiki")
    assert proc.returncode == 1, proc.stderr
    assert "NOT deterministic" in proc.stdout and "another hash seed" in proc.stdout
    fine = harness("check", "--flow", "wiki_counts:wiki_counts", "--key", "wiki")
    assert fine.returncode == 0, fine.stdout + fine.stderr

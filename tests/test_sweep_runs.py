"""Runs of your flow: nothing lost under recovery, limits met up front, check's hash seeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.recording.reader import Recording
from harness.recording.sample import sample_recording
from harness.serve.server import EventStreamServer
from tests.conftest import assert_same_output, harness, harness_env, kill_and_resume, replay_output

SAMPLE = sample_recording()
WIKI = ["--flow", "wiki_counts:wiki_counts", "--key", "wiki"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return replay_output(tmp_path_factory.mktemp("whole"), *WIKI)


def test_two_outputs_under_recovery_lose_nothing(tmp_path: Path, whole: bytes) -> None:
    out = tmp_path / "out.jsonl"
    proc = harness("replay", *WIKI, "--recovery-dir", str(tmp_path / "state"), "--out",
                   str(out))
    assert proc.returncode == 0, proc.stderr
    assert_same_output(out, whole)


@pytest.mark.parametrize(("first", "resumed"), [(("1", "1"), ("2", "1")),
                                                (("1", "2"), ("1", "1"))])
def test_a_killed_two_output_flow_resumes_to_the_whole_output(
        tmp_path: Path, whole: bytes, first: tuple[str, str], resumed: tuple[str, str]) -> None:
    out, state = tmp_path / "out.jsonl", tmp_path / "state"
    kill_and_resume(["replay", str(SAMPLE), *WIKI, "--quiet", "--recovery-dir", str(state),
                     "--out", str(out), "--snapshot-interval", "0.1"], out, first, resumed,
                    after=1.0)
    assert_same_output(out, whole)


def test_check_runs_a_shape_with_another_hash_seed() -> None:
    proc = harness("check", "--flow", "hash_flow:flow", "--key", "wiki")
    assert proc.returncode == 1, proc.stderr
    assert "NOT deterministic" in proc.stdout and "another hash seed" in proc.stdout
    fine = harness("check", "--flow", "wiki_counts:wiki_counts", "--key", "wiki")
    assert fine.returncode == 0, fine.stdout + fine.stderr


def _with_open_files(limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    """`harness ARGS` in a child whose soft and hard RLIMIT_NOFILE are `limit`."""
    code = ("import resource, runpy, sys\n"
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))\n"
            "sys.argv = ['harness', *sys.argv[1:]]\n"
            "runpy.run_module('harness', run_name='__main__')\n")
    env = harness_env()
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_too_many_partitions_for_the_open_file_limit_is_one_line_up_front() -> None:
    refused = _with_open_files(512, "replay", *WIKI, "--partitions", "500", "--quiet")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert "--partitions 500" in refused.stderr and "ulimit -n" in refused.stderr
    fits = _with_open_files(512, "replay", *WIKI, "--partitions", "64", "--quiet")
    assert fits.returncode == 0, fits.stderr


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs of the test's own (skipped where mounting is not allowed)."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_recovery_state_filling_its_disk_is_one_line_naming_the_file(
        small_disk: Path, processes: str) -> None:
    """With 2 processes the member's error log is on the full disk too: it is said to
    the parent down a pipe instead."""
    proc = harness("replay", "--flow", "many_items:hundred_per_event", "--quiet",
                   "--recovery-dir", str(small_disk / "state"), "--processes", processes)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "No space left on device" in proc.stderr and str(small_disk) in proc.stderr
    assert not proc.stderr.startswith("\n")


def test_live_recording_onto_a_full_disk_keeps_the_outputs_and_names_the_file(
        small_disk: Path, tmp_path: Path) -> None:
    record_to, out, dead = small_disk / "rec", tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    with EventStreamServer(SAMPLE, speed=0) as server:
        proc = harness("live", "--url", server.url, "--quiet", "--record", str(record_to),
                       "--out", str(out), "--dead-letters", str(dead), timeout=120)
    assert proc.returncode == 1, proc.stderr
    error = proc.stderr.strip()
    assert error.splitlines() == [error] and not proc.stderr.startswith("\n")
    assert "No space left on device" in error and str(record_to) in error
    assert "windows=" in proc.stdout  # the summary of what was decided
    assert out.stat().st_size > 0 and dead.exists()  # every decision so far is written
    decided = int(error.rsplit(" of the ", 1)[1].split()[0].replace(",", ""))
    recorded = int(error.rsplit(" holds the first ", 1)[1].split()[0].replace(",", ""))
    assert 0 < recorded <= decided < 20_000
    kept = Recording(record_to)
    assert not kept.manifest.complete
    assert sum(1 for _ in kept.envelopes()) == recorded  # the prefix it says, readable

"""Shared helpers: real recordings on disk, real Bytewax runs, comparable outputs."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings

from harness.flows.bots.reference import ReferenceResult
from harness.flows.job import FlowJob
from harness.recording import RecordingWriter
from harness.run.replay import Result, replay
from tests.seaweed import bucket, s3_server  # noqa: F401 - the object storage fixtures

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.function_scoped_fixture])
# CI gates a change: the same examples every run (and no example database shared between
# the tox environments), so a red run is about the change. Elsewhere every run draws new
# examples and keeps failing ones in .hypothesis/.
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True,
                          database=None)
settings.load_profile("ci" if os.environ.get("CI") else "default")

# Lanes the harness derives for the tests' recordings go to a cache of this session's own
# (inherited by every `harness` process a test starts), never the user's.
_CACHE = tempfile.mkdtemp(prefix="harness-test-cache-")
atexit.register(shutil.rmtree, _CACHE, True)
os.environ["HARNESS_CACHE_DIR"] = _CACHE

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"  # the docs' example flows
FLOWS = Path(__file__).resolve().parent / "flows"  # flows made for the tests


def harness(*args: str, cwd: Path | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
    """`python -m harness ARGS` in a fresh process that can import the example and test
    flows (as a user's would be found on PYTHONPATH)."""
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=harness_env())


def harness_env() -> dict[str, str]:
    """The environment `harness` runs in: the example and test flows importable."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(EXAMPLES), str(FLOWS), str(ROOT), os.environ.get("PYTHONPATH", "")])}


# Stream options for recording from a local server: quick to notice idleness, to retry.
FAST: dict[str, Any] = {"idle_timeout": 0.5, "backoff_base": 0.02, "backoff_cap": 0.2,
                        "max_failures": 20, "tick": 0.05}


def served(where: str | Path) -> list[tuple[str | None, Any]]:
    """What a recording says was sent, in order, comparable across recordings: (SSE id,
    data or raw text)."""
    from harness.recording.reader import Recording

    return [(e.id, e.data if e.is_json else e.raw) for e in Recording(where).envelopes()]


def replay_output(directory: Path, *args: str) -> bytes:
    """What an uninterrupted `harness replay ARGS --out FILE` (in `directory`) writes."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "out.jsonl"
    proc = harness("replay", *args, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def kill_and_resume(replay: list[str], out: Path, first: tuple[str, str],
                    resumed: tuple[str, str], *, after: float) -> None:
    """`harness REPLAY` (a replay with a recovery dir writing `out`) on shape `first`
    (workers, processes) at 300x the recorded pace, killed with its whole process group
    `after` seconds in, then run again on shape `resumed` at full speed to its end."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", *replay, "--speed", "300",
                             "--workers", first[0], "--processes", first[1]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=harness_env())
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    group_gone(proc.pid)
    assert not out.exists()  # really interrupted
    again = harness(*replay, "--workers", resumed[0], "--processes", resumed[1])
    assert again.returncode == 0, again.stderr


def group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Wait (bounded) until every process of group `pgid` has ended: a SIGKILLed
    member still exiting holds the run's locks, and the next run would rightly refuse."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


def file_sizes(directory: Path, pattern: str) -> list[int]:
    """Sizes of the files matching `pattern` that a running process is writing. The
    directory may not exist yet or any more, and a file may be renamed (a segment sealed)
    or removed (a finished run's parts) between the listing and its stat: what is gone
    is skipped, not an error."""
    try:
        paths = list(directory.glob(pattern))
    except FileNotFoundError:
        return []
    sizes = []
    for path in paths:
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:
            continue
    return sizes


def live_processes(*, group: int | None = None, naming: Path | None = None) -> list[int]:
    """PIDs of processes that have not exited (a zombie has) in process group `group`
    and whose command line names `naming` (a forked child keeps its parent's); a process
    that ends while we look is skipped."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            if naming is not None and str(naming).encode() not in (entry / "cmdline"
                                                                  ).read_bytes():
                continue
        except (OSError, ValueError):
            continue
        if state != "Z" and (group is None or int(pgrp) == group):
            pids.append(int(entry.name))
    return pids


REALDATA = Path(__file__).resolve().parent / "data" / "realdata"  # see its SOURCES.md


def write_recording(
    path: Path, payloads: Iterable[bytes | str | dict[str, Any]], *, lanes: int = 4,
    block_events: int = 64, segment_bytes: int = 64 << 20, start: float = 1_700_000_000.0,
) -> Path:
    """A real recording on disk; dict payloads are JSON-encoded."""
    with RecordingWriter(path, source="test", lanes=lanes, block_events=block_events,
                         segment_bytes=segment_bytes) as writer:
        for i, payload in enumerate(payloads):
            raw = orjson.dumps(payload) if isinstance(payload, dict) else payload
            writer.append(raw, f'[{{"offset":{i}}}]', start + i * 0.01)
    return path


def summary_key(s: dict[str, Any]) -> tuple:
    return (s["user"], s["window_start"], s["window_end"], s["count"], s["first_timestamp"],
            s["last_timestamp"], s["rate"], s["malicious"])


def flow_outcome(result: Result) -> tuple[Counter, dict[str, int], Counter]:
    """Multiset of summaries, the tally, and the multiset of dead letters."""
    out = result.output
    return (Counter(summary_key(s) for s in out.values()), out.counts.to_json(),
            Counter((d["seq"], d["reason"]) for d in out.dead_letters))


def reference_outcome(result: ReferenceResult) -> tuple[Counter, dict[str, int], Counter]:
    return (Counter(summary_key(s.to_json()) for s in result.summaries), result.tally.to_json(),
            Counter((d.seq, d.reason) for d in result.dead_letters))


def run_flow(path: Path, **config: Any) -> Result:
    """The bot-detection flow over `path` (`FlowJob.of` options)."""
    return replay(FlowJob.of(path, **config))


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20k-event synthetic recording shared by the slower tests."""
    from harness.recording.importer import synthesize

    path = tmp_path_factory.mktemp("synth") / "rec"
    synthesize(path, events=20_000, seed=7, lanes=8, progress=False)
    return path


def assert_same_output(path: Path, expected: bytes) -> None:
    """`path` holds exactly `expected`; if not, a short account of the lines that differ
    (pytest's own diff of two large byte strings takes minutes)."""
    got = path.read_bytes()
    if got == expected:
        return
    ours, theirs = Counter(got.splitlines()), Counter(expected.splitlines())
    extra, missing = list((ours - theirs).elements()), list((theirs - ours).elements())
    raise AssertionError(f"{path}: {len(got.splitlines())} lines, expected "
                         f"{len(expected.splitlines())}; {len(extra)} extra, e.g. {extra[:3]}; "
                         f"{len(missing)} missing, e.g. {missing[:3]}"
                         + ("; same lines, another order" if not extra and not missing else ""))

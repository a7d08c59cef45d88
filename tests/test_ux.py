"""What a user sees: Ctrl-C and SIGTERM, JSON summaries, help, typos, slices, offline."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from harness.flows.bots.reference import replay_reference
from harness.flows.bots.semantics import DetectionParams
from harness.recording.sample import sample_recording
from harness.recording.slice import Slice
from tests.conftest import EXAMPLES, harness

SAMPLE = sample_recording()


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        path = Path(f"/proc/{todo.pop()}/task")
        try:  # a thread or process may end while we look
            tasks = list(path.glob("*/children"))
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(child) for child in task.read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _running(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie has)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


FLOW = ("--flow", "wiki_counts:wiki_counts", "--key", "wiki")


@pytest.mark.parametrize(("sig", "shape", "flow"), [
    (signal.SIGINT, (), ()), (signal.SIGINT, ("--processes", "2"), ()),
    (signal.SIGINT, ("--workers", "2"), FLOW), (signal.SIGTERM, ("--workers", "2"), ()),
    (signal.SIGTERM, (), FLOW), (signal.SIGTERM, ("--processes", "2"), FLOW),
], ids=["INT-1x1", "INT-2proc", "INT-2workers-flow", "TERM-2workers", "TERM-1x1-flow",
        "TERM-2proc-flow"])
def test_a_signal_ends_a_paced_replay_cleanly(tmp_path: Path, sig: signal.Signals,
                                             shape: tuple[str, ...],
                                             flow: tuple[str, ...]) -> None:
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES)}
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "replay", str(SAMPLE), "--speed",
                             "10", "--out", str(out), *shape, *flow], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(2.5)
    members = _descendants(proc.pid)
    if sig == signal.SIGINT:  # as a terminal's Ctrl-C does: the whole process group
        for pid in [proc.pid, *members]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    else:
        proc.send_signal(sig)  # as `kill PID` does: the replay only
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, stderr
    assert "panicked" not in stdout + stderr and "Traceback" not in stdout + stderr
    summary = stdout.strip().splitlines()[-1]
    assert summary.startswith("events=") and "interrupted=True" in summary
    assert stderr.strip().splitlines()[-1].endswith("outputs not written")
    assert not out.exists()
    time.sleep(0.5)
    assert not [pid for pid in members if _running(pid)]  # no process left behind


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_command_line_loads_is_an_ordinary_interruption(
        sig: signal.Signals) -> None:
    """A signal landing while the executable imports its modules waits until the command
    can take it: one line and 130/143, never a traceback (nor the crash of orjson's
    module set-up). Here it is sent as orjson is about to load."""
    script = ("import os, signal, sys\n"
              "class Trip:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name == 'orjson':\n"
              f"            os.kill(os.getpid(), {int(sig)})\n"
              "sys.meta_path.insert(0, Trip())\n"
              f"sys.argv = ['harness', 'replay', {str(SAMPLE)!r}, '--quiet']\n"
              "from harness.cli import entry\n"
              "entry()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert proc.returncode == 128 + sig, proc.stderr
    assert proc.stderr.splitlines() == [f"harness replay: interrupted by {name}; what was"
                                        " done so far is above, outputs not written"]


def test_json_summaries_parse() -> None:
    replay = orjson.loads(harness("replay", str(SAMPLE), "--json").stdout)
    assert replay["events"] == 20_000 and replay["malicious"] == 6 and replay["workers"] == 1
    verify = orjson.loads(harness("verify", str(SAMPLE), "--json").stdout)
    assert verify["ok"] and verify["events"] == 20_000
    flow = orjson.loads(harness("replay", str(SAMPLE), "--json", "--flow",
                                "wiki_counts:wiki_counts", "--key", "wiki").stdout)
    assert flow["items"] == 178 and flow["read"] == 20_000
    check = harness("check", str(SAMPLE), "--json")
    assert check.returncode == 0 and orjson.loads(check.stdout)["deterministic"]


def test_bare_harness_prints_help_and_typos_get_a_suggestion() -> None:
    bare = harness()
    assert bare.returncode == 0 and "replay" in bare.stdout and "usage:" in bare.stdout
    typo = harness("replay", "--wokers", "4", str(SAMPLE))
    assert typo.returncode == 2
    assert typo.stderr.strip() == ("harness replay: error: unknown option --wokers; did you"
                                   " mean --workers?")
    command = harness("repaly")
    assert command.returncode == 2 and "did you mean replay?" in command.stderr


@pytest.mark.parametrize("slice_args", [
    ("--from", "2023-11-14T22:15:00Z", "--until", "2023-11-14T22:17:30Z"),
    ("--wiki", "enwiki", "--wiki", "wikidatawiki"),
    ("--from", "1700000100", "--wiki", "dewiki"),
])
def test_a_slice_replays_exactly_that_part(tmp_path: Path, slice_args: tuple[str, ...]) -> None:
    from harness.cli.main import build_parser

    args = build_parser().parse_args(["replay", *slice_args])
    part = Slice(args.start, args.end, frozenset(args.wikis) if args.wikis else None)
    expected = replay_reference(SAMPLE, DetectionParams(), part)
    out = tmp_path / "out.jsonl"
    for shape in ((), ("--processes", "2", "--workers", "2")):
        proc = harness("replay", str(SAMPLE), "--json", "--quiet", "--out", str(out),
                       "--force", *slice_args, *shape)
        assert proc.returncode == 0, proc.stderr
        tally = orjson.loads(proc.stdout)
        assert {k: tally[k] for k in expected.tally.to_json()} == expected.tally.to_json()
        assert 0 < tally["outside"] < 20_000
        got = sorted(out.read_bytes().splitlines())
        assert got == sorted(orjson.dumps(s.to_json()) for s in expected.summaries)


def test_recording_with_no_network_names_the_problem_quickly(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = harness("record", "--out", str(tmp_path / "rec"), "--url",
                   "http://127.0.0.1:1/v2/stream/recentchange", "--duration", "4")
    assert time.monotonic() - started < 15
    assert proc.returncode == 0, proc.stderr
    assert "cannot connect to 127.0.0.1:1" in proc.stdout + proc.stderr
    assert "EMPTY" in proc.stdout or "empty" in proc.stdout
    replay = harness("replay", str(tmp_path / "rec"))
    assert "empty" in replay.stderr  # replaying it says so too


def test_installed_metadata_supports_python_3_10_to_3_12() -> None:
    from importlib.metadata import metadata

    requires = metadata("wikistream-harness")["Requires-Python"]
    assert set(requires.replace(" ", "").split(",")) == {">=3.10", "<3.13"}


def test_the_installed_executable_is_the_command_line() -> None:
    from importlib.metadata import entry_points

    from harness import __version__

    [script] = [e for e in entry_points(group="console_scripts") if e.name == "harness"]
    assert script.value == "harness.cli:entry"  # what holds Ctrl-C while it loads
    executable = Path(sys.executable).parent / "harness"
    proc = subprocess.run([str(executable), "--version"], capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"harness {__version__}")

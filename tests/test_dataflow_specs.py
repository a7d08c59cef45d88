"""Your flow as it is: `--flow` names a flow as `python -m bytewax.run` does, and the
harness replays the unchanged Dataflow (tests/flows/bytewax_style.py: its own stream
source and alert sinks fail if opened) with the recording as its clock."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from harness.recording import Recording
from harness.recording.sample import sample_recording
from tests.conftest import FLOWS, assert_same_output, harness, kill_and_resume, replay_output

SAMPLE = sample_recording()
FLOW = ("--flow", "bytewax_style:flow")
ALIGN = datetime(2024, 1, 1, tzinfo=timezone.utc)  # the flow's windows' align_to


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return replay_output(tmp_path_factory.mktemp("one"), *FLOW)


def steps(output: bytes) -> Counter[str]:
    return Counter(orjson.loads(line)["step"] for line in output.splitlines())


def test_an_unchanged_dataflow_writes_every_output_tagged_by_step(one_worker: bytes) -> None:
    assert set(steps(one_worker)) == {f"wiki_edits.{name}" for name in (
        "minute_counts", "minute_windows", "ten_second_batches", "running_counts",
        "edit_numbers", "bot_edits", "human_edits")}
    rows = [orjson.loads(line) for line in one_worker.splitlines()]
    window = next(r["item"] for r in rows if r["step"] == "wiki_edits.minute_windows")
    user, (window_id, meta) = window  # (key, (window id, WindowMetadata))
    opened = datetime.fromisoformat(meta["open_time"])
    assert datetime.fromisoformat(meta["close_time"]) - opened == timedelta(minutes=1)
    assert isinstance(user, str) and opened == ALIGN + window_id * timedelta(minutes=1)
    assert meta["merged_ids"] == []  # a set, written as a sorted list
    bot = next(r["item"] for r in rows if r["step"] == "wiki_edits.bot_edits")
    assert isinstance(bot[0], str) and datetime.fromisoformat(bot[1]).tzinfo is not None


def test_a_keyed_stream_keeps_each_keys_emission_order(one_worker: bytes) -> None:
    """A stateful step's items come sorted by key, each key's in the order emitted (a
    running count reads 1, 2, ..., 10, 11, not 1, 10, 11, 2 as text would sort it); an
    output that is no keyed stream is sorted by text."""
    rows = [orjson.loads(line) for line in one_worker.splitlines()]
    numbers = [r["item"] for r in rows if r["step"] == "wiki_edits.edit_numbers"]
    users = [user for user, _ in numbers]
    assert users == sorted(users, key=lambda user: orjson.dumps(user))
    for user in set(users):
        assert [n for u, n in numbers if u == user] == list(range(1, users.count(user) + 1))
    assert max(Counter(users).values()) >= 10  # where text order would differ
    bots = [line for line in one_worker.splitlines() if b'"wiki_edits.bot_edits"' in line]
    assert bots == sorted(bots)


@pytest.mark.parametrize("shape", [("--workers", "4"), ("--workers", "2", "--processes", "2")])
def test_an_unchanged_dataflow_gives_the_same_output_on_every_shape(
        tmp_path: Path, one_worker: bytes, shape: tuple[str, ...]) -> None:
    assert replay_output(tmp_path, *FLOW, *shape) == one_worker


def test_bytewax_clocks_read_the_recordings_time(tmp_path: Path) -> None:
    """A SystemClock window holds what was received in its 10 s under --clock recorded,
    and, with the event clock, never moves: each user's edits fall in one window."""
    manifest = Recording(SAMPLE).manifest
    batches = [orjson.loads(line)["item"] for line in replay_output(
        tmp_path / "recorded", *FLOW, "--clock", "recorded", "--output",
        "ten_second_batches").splitlines()]
    align = ALIGN.timestamp()
    starts = {align + window_id * 10 for _, window_id, _ in batches}
    first, last = manifest.segments[0].first_received, manifest.segments[-1].last_received
    assert first is not None and last is not None
    assert all(first - 10 <= start <= last for start in starts)
    assert len(starts) > (last - first) / 10 / 2  # windows all along the recording
    still = [orjson.loads(line)["item"] for line in replay_output(
        tmp_path / "event", *FLOW, "--output", "ten_second_batches").splitlines()]
    assert len({window_id for _, window_id, _ in still}) == 1
    assert Counter(user for user, _, _ in still).most_common(1)[0][1] == 1


def test_check_passes_an_unchanged_dataflow() -> None:
    proc = harness("check", str(SAMPLE), *FLOW)
    assert proc.returncode == 0, proc.stderr


def test_check_catches_a_step_that_reads_the_wall_clock() -> None:
    proc = harness("check", str(SAMPLE), "--flow", "bytewax_style:wall_clock")
    assert proc.returncode == 1, proc.stderr
    assert "NOT deterministic" in proc.stdout and "time.time()" in proc.stdout


@pytest.mark.parametrize(("spec", "items"), [
    ("bytewax_style:get_flow()", None),
    ("bytewax_style:get_flow(only_bots=True)", "bots"),
    (f"{FLOWS / 'bytewax_style.py'}:get_flow(True)", "bots"),
    ("./bytewax_style.py:get_flow()", None),
])
def test_a_factory_and_a_file_path_are_named_as_bytewax_run_names_them(
        tmp_path: Path, spec: str, items: str | None) -> None:
    out = tmp_path / "out.jsonl"
    proc = harness("replay", str(SAMPLE), "--flow", spec, "--quiet", "--out", str(out),
                   cwd=FLOWS)
    assert proc.returncode == 0, proc.stderr
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {r["step"] for r in rows} == {"factory_edits.out"}
    assert all(r["item"][1] is True for r in rows) == (items == "bots")


@pytest.mark.parametrize(("args", "said"), [
    (("--flow", "bytewax_style:two_inputs"),
     "has 2 input steps (two_inputs.a, two_inputs.b); name the one to replay into with"
     " --input STEP_ID"),
    (("--flow", "bytewax_style:two_inputs", "--input", "c"), "--input c: the dataflow"),
    (("--flow", "bytewax_style:flow", "--output", "nope"), "--output nope: the dataflow"),
    (("--flow", "bytewax_style:get_flow(len)"), "must be literal values"),
    (("--flow", "bytewax_style:flow()"), "is a Dataflow; name it without arguments"),
    (("--flow", "bytewax_style:ALIGN"), "is a datetime, not a bytewax.dataflow.Dataflow"),
    (("--flow", "./no_such_file.py:flow"), "no Python file ./no_such_file.py"),
    (("--flow", "bad_flows:raises", "--input", "edits"), "--input and --output choose"),
    (("--flow", "wiki_counts:wiki_counts", "--key", "wikii"),
     "--key wikii: none of the 19996 events of"),  # and not a run of dead letters
])
def test_a_wrong_spec_or_step_is_one_line(args: tuple[str, ...], said: str) -> None:
    proc = harness("replay", str(SAMPLE), *args, "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and said in proc.stderr
    if "--key" in args:
        assert proc.stderr.rstrip().endswith("has this field (did you mean wiki?)")


def test_other_inputs_read_nothing_and_unpicked_outputs_write_nowhere(tmp_path: Path) -> None:
    out = replay_output(tmp_path, "--flow", "bytewax_style:two_inputs", "--input", "b")
    assert {orjson.loads(line)["step"] for line in out.splitlines()} == {"two_inputs.out"}
    only = replay_output(tmp_path / "bots", *FLOW, "--output", "bot_edits")
    assert set(steps(only)) == {"wiki_edits.bot_edits"}


def test_harness_testing_takes_the_dataflow_itself(tmp_path: Path) -> None:
    """A user's test file imports their module-level Dataflow and hands it over as is."""
    (tmp_path / "prodflow.py").write_text((FLOWS / "bytewax_style.py").read_text())
    (tmp_path / "test_prod.py").write_text('''
from harness.testing import DEFAULT_SHAPES, assert_deterministic, run_flow
from prodflow import flow, get_flow

def test_the_flow(sample_recording):
    items = run_flow(flow, sample_recording, outputs=["bot_edits"], workers=2)
    assert items and {i["step"] for i in items} == {"wiki_edits.bot_edits"}
    assert run_flow("prodflow:get_flow(only_bots=True)", sample_recording)
    assert_deterministic(flow, sample_recording, outputs=["minute_counts"],
                         shapes=DEFAULT_SHAPES[:3])  # 1, 4, 2x2 in a fresh interpreter
    assert_deterministic(get_flow, sample_recording)
''')
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_prod.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_export_writes_the_payloads_in_recording_order(tmp_path: Path) -> None:
    whole, part = tmp_path / "all.jsonl", tmp_path / "part.jsonl"
    assert harness("export", str(SAMPLE), "--out", str(whole)).returncode == 0
    envelopes = list(Recording(SAMPLE).envelopes())
    lines = whole.read_bytes().splitlines()
    assert len(lines) == len(envelopes) == Recording(SAMPLE).manifest.events
    assert [orjson.loads(line) for line, env in zip(lines, envelopes, strict=True)
            if env.is_json] == [env.data for env in envelopes if env.is_json]
    start = 1_700_000_100  # 2023-11-14T22:15:00Z
    proc = harness("export", str(SAMPLE), "--out", str(part), "--wiki", "enwiki",
                   "--from", "2023-11-14T22:15:00Z")
    assert proc.returncode == 0, proc.stderr
    wanted = [env.data for env in envelopes if env.is_json and isinstance(env.data, dict)
              and env.data.get("wiki") == "enwiki" and type(env.data.get("timestamp")) is int
              and env.data["timestamp"] >= start]
    assert wanted and [orjson.loads(line) for line in part.read_bytes().splitlines()] == wanted
    again = harness("export", str(SAMPLE), "--out", str(part))
    assert again.returncode == 2 and "--force" in again.stderr  # never silently overwritten


def test_the_flow_bytewax_run_runs_live_is_the_flow_the_harness_replays(tmp_path: Path) -> None:
    """docs/examples/per_user_minute.py, run as its users run it (`python -m bytewax.run`,
    reading our EventStreams server over loopback HTTP, printing to stdout), counts what
    `harness replay --flow per_user_minute:flow` of the same recording counts."""
    import ast
    import os

    from harness.serve.server import EventStreamServer
    from tests.conftest import EXAMPLES

    with EventStreamServer(SAMPLE) as server:
        live = subprocess.run([sys.executable, "-m", "bytewax.run", "per_user_minute:flow"],
                              cwd=EXAMPLES, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "RECENTCHANGE_URL": server.url})
    assert live.returncode == 0, live.stderr[-2000:]
    printed = Counter(ast.literal_eval(line) for line in live.stdout.splitlines())
    replayed = replay_output(tmp_path, "--flow", "per_user_minute:flow")
    items = [orjson.loads(line) for line in replayed.splitlines()]
    assert {i["step"] for i in items} == {"per_user_minute.counts"}
    assert Counter((key, tuple(value)) for key, value in (i["item"] for i in items)) == printed


def test_the_public_surface_is_one_import_and_cheap() -> None:
    """`import harness` gives what a user needs, each with its docstring, and loads
    nothing heavy until a name is used (the command line starts through it)."""
    code = ("import sys, harness; heavy = [m for m in ('bytewax', 'hypothesis', 'zstandard')"
            " if m in sys.modules]; assert not heavy, heavy;"
            " missing = [n for n in harness.__all__ if not getattr(harness, n).__doc__];"
            " assert not missing, missing; print(len(harness.__all__))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= 19


@pytest.mark.parametrize("clock", ["event", "recorded"])
def test_a_killed_replay_of_an_unchanged_dataflow_resumes_byte_identical(
        tmp_path: Path, clock: str) -> None:
    """Bytewax's own clocks, on the recording's time, live in the snapshots too."""
    whole = replay_output(tmp_path / "whole", *FLOW, "--clock", clock)
    out, state = tmp_path / "out.jsonl", tmp_path / "state"
    kill_and_resume(["replay", *FLOW, "--clock", clock, "--recovery-dir", str(state),
                     "--out", str(out), "--snapshot-interval", "0.1"], out, ("1", "2"),
                    ("2", "1"), after=1.2)
    assert_same_output(out, whole)

"""Your own flow: the public replay source, `--flow`, `check`, `bench`, `harness.testing`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import cluster_main, run_main

from harness.recording import Recording
from harness.recording.sample import sample_recording
from harness.source.keys import key_getter
from harness.source.replay import ReplaySource, read_source_report
from tests.conftest import (
    EXAMPLES,
    FLOWS,
    ROOT,
    assert_same_output,
    file_sizes,
    group_gone,
    harness,
    replay_output,
)

SAMPLE = sample_recording()


# ------------------------------------------------------------------ the source


class _Collect(DynamicSink[Any]):
    def __init__(self, out: list[Any]) -> None:
        self.out = out

    def build(self, step_id: str, worker_index: int, worker_count: int
              ) -> StatelessSinkPartition[Any]:
        out = self.out

        class Part(StatelessSinkPartition[Any]):
            def write_batch(self, items: list[Any]) -> None:
                out.extend(items)

        return Part()


def _read(source: ReplaySource, workers: int) -> list[dict[str, Any]]:
    out: list[Any] = []
    flow = Dataflow("read")
    op.output("out", op.input("in", flow, source), _Collect(out))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return out


def _recording_order(key: Any) -> dict[Any, list[str]]:
    """Each key's event ids in recording (arrival) order, from the recording itself."""
    get = key_getter(key)
    per_key: dict[Any, list[str]] = defaultdict(list)
    for env in Recording(SAMPLE).envelopes():
        if env.is_json and isinstance(env.data, dict):
            value = get(env.data)
            if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
                per_key[str(value)].append(env.data["meta"]["id"])
    return per_key


@pytest.mark.parametrize("key", ["user", "wiki", "meta.domain", "namespace"])
@pytest.mark.parametrize(("workers", "batch"), [(1, None), (4, None), (2, 3)])
def test_every_key_sees_its_events_in_recording_order(tmp_path: Path, key: str, workers: int,
                                                      batch: int | None) -> None:
    source = ReplaySource(SAMPLE, key=key, batch_size=batch, report_dir=tmp_path)
    items = _read(source, workers)
    per_key: dict[Any, list[str]] = defaultdict(list)
    get = key_getter(key)
    for item in items:
        per_key[str(get(item))].append(item["meta"]["id"])
    assert per_key == _recording_order(key)
    tally, dead = read_source_report(tmp_path)
    assert tally.read == Recording(SAMPLE).manifest.events and tally.conserved()
    assert tally.passed == len(items) and tally.dead_letters == len(dead) > 0
    assert {d["reason"] for d in dead} <= {"not-json", "no-key"}


def test_partitions_are_named_by_key_and_lane() -> None:
    assert ReplaySource(SAMPLE).list_parts() == [f"user-{i:05d}" for i in range(8)]
    assert ReplaySource(SAMPLE, key="meta.domain", partitions=3).list_parts() == [
        "meta.domain-00000", "meta.domain-00001", "meta.domain-00002"]


def test_a_callable_key_and_payloads_value_for_value(tmp_path: Path) -> None:
    items = _read(ReplaySource(SAMPLE, key=lambda e: e.get("type"), report_dir=tmp_path), 2)
    recorded = [env.data for env in Recording(SAMPLE).envelopes()
                if env.is_json and isinstance(env.data, dict) and "type" in env.data]
    assert Counter(orjson.dumps(i, option=orjson.OPT_SORT_KEYS) for i in items) == Counter(
        orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in recorded)


@pytest.mark.parametrize("key", ["user", "wiki"])
def test_a_workers_thread_locals_last_across_its_calls(tmp_path: Path, key: str) -> None:
    """Bytewax enters Python on a worker thread it started; the source keeps that
    thread's Python state, so a step's thread-local cache (a client session, say)
    is made once per worker, not once per call."""
    local = threading.local()
    made: list[int] = []

    def cached(item: dict[str, Any]) -> int:
        if not hasattr(local, "cache"):
            local.cache = threading.get_ident()
            made.append(local.cache)
        return int(local.cache)

    out: list[Any] = []
    flow = Dataflow("thread_locals")
    edits = op.input("in", flow, ReplaySource(SAMPLE, key=key, report_dir=tmp_path,
                                              batch_size=5))
    op.output("out", op.map("cached", edits, cached), _Collect(out))
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert len(out) > 100
    assert len(made) == len(set(made)) <= 2


def test_a_time_slice_and_wikis(tmp_path: Path) -> None:
    start, end = 1_700_000_100, 1_700_000_160
    items = _read(ReplaySource(SAMPLE, key="wiki", start=start, end=end,
                               wikis=frozenset({"enwiki", "dewiki"}), report_dir=tmp_path), 1)
    expected = [env.data["meta"]["id"] for env in Recording(SAMPLE).envelopes()
                if env.is_json and isinstance(env.data, dict)
                and type(env.data.get("timestamp")) is int
                and start <= env.data["timestamp"] < end
                and env.data.get("wiki") in ("enwiki", "dewiki")]
    assert sorted(i["meta"]["id"] for i in items) == sorted(expected) and expected
    tally, _ = read_source_report(tmp_path)
    assert tally.outside > 0 and tally.conserved()


# ------------------------------------------------------------- the CLI, --flow


def _wiki_model(recording: Path) -> list[bytes]:
    """An independent model of docs/examples/wiki_counts.py: one loop in arrival order."""
    newest: dict[str, int] = {}
    counts: Counter[tuple[str, int]] = Counter()
    rows = []
    for env in Recording(recording).envelopes():
        e = env.data
        if not env.is_json or not isinstance(e, dict) or type(e.get("timestamp")) is not int:
            continue
        wiki = e.get("wiki")
        if not isinstance(wiki, str):
            continue
        ts = e["timestamp"]
        if wiki in newest and ts < newest[wiki] - 10:
            rows.append({"wiki": wiki, "late": e["meta"]["id"]})
            continue
        newest[wiki] = max(newest.get(wiki, ts), ts)
        counts[wiki, (ts - 1_672_531_200) // 60] += 1
    for (wiki, minute), n in counts.items():
        start = datetime.fromtimestamp(1_672_531_200 + minute * 60, timezone.utc).isoformat()
        rows.append({"wiki": wiki, "window_start": start, "edits": n})
    return sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in rows)


def test_wiki_flow_is_identical_on_every_shape_and_equals_its_model(tmp_path: Path) -> None:
    outs = []
    for shape in (["--workers", "1"], ["--workers", "4"], ["--processes", "2", "--workers", "2"]):
        out = tmp_path / f"out-{'-'.join(shape)}.jsonl"
        proc = harness("replay", str(SAMPLE), "--flow", "wiki_counts:wiki_counts", "--key",
                       "wiki", "--out", str(out), "--dead-letters", str(tmp_path / "dl"),
                       "--force", *shape)
        assert proc.returncode == 0, proc.stderr
        outs.append(out.read_bytes())
        assert "items=" in proc.stdout and "dead_letters=5" in proc.stdout
    assert outs[0] == outs[1] == outs[2]
    lines = outs[0].splitlines()
    assert lines == sorted(lines)  # canonical order: sorted by the line's text
    assert lines == _wiki_model(SAMPLE)
    assert sum(b'"late"' in line for line in lines) == 45


def test_check_says_deterministic_for_the_wiki_flow() -> None:
    proc = harness("check", str(SAMPLE), "--flow", "wiki_counts:wiki_counts", "--key", "wiki")
    assert proc.returncode == 0, proc.stderr
    assert "deterministic across 5 runs, 178 items" in proc.stdout


def test_check_catches_a_module_global_counter() -> None:
    proc = harness("check", str(SAMPLE), "--flow", "bad_flows:global_counter")
    assert proc.returncode == 1, proc.stderr
    assert "NOT deterministic" in proc.stdout and "only with 1 worker: {" in proc.stdout


def test_check_catches_a_flow_keyed_differently_from_the_source(tmp_path: Path) -> None:
    proc = harness("check", str(SAMPLE), "--flow", "wiki_counts:wiki_counts", "--key", "user",
                   "--json")
    assert proc.returncode == 1, proc.stderr
    verdict = orjson.loads(proc.stdout)
    assert not verdict["deterministic"] and verdict["differences"]
    assert any(d["only_first"] or d["only_other"] for d in verdict["differences"])


def test_bot_detection_plugin_gives_the_fast_paths_windows(tmp_path: Path) -> None:
    fast, plugin = tmp_path / "fast.jsonl", tmp_path / "plugin.jsonl"
    assert harness("replay", str(SAMPLE), "--quiet", "--out", str(fast)).returncode == 0
    proc = harness("replay", str(SAMPLE), "--flow", "harness.flows.bots.plugin:flow",
                   "--workers", "2", "--out", str(plugin))
    assert proc.returncode == 0, proc.stderr
    windows = sorted(orjson.dumps(orjson.loads(x), option=orjson.OPT_SORT_KEYS)
                     for x in fast.read_bytes().splitlines())
    items = [orjson.loads(x) for x in plugin.read_bytes().splitlines()]
    assert sorted(orjson.dumps(i, option=orjson.OPT_SORT_KEYS) for i in items
                  if "window_start" in i) == windows
    assert sum(i.get("reason") == "late" for i in items) == 46


@pytest.mark.parametrize(("flow", "message", "status"), [
    ("nosuchmodule:f", "no module 'nosuchmodule'", 2),
    ("bad_flows:missing", "bad_flows has no 'missing'", 2),
    ("bad_flows", "bad_flows has no 'flow'", 2),  # as bytewax.run: MODULE means MODULE:flow
    ("bad_flows:not_a_flow", "not a bytewax.dataflow.Dataflow", 2),
    ("bad_flows:unserialisable", "not JSON-serialisable", 2),
    ("bad_flows:raises", "KeyError: 'no_such_field' (in step", 1),
])
def test_a_broken_flow_is_one_line(flow: str, message: str, status: int) -> None:
    proc = harness("replay", str(SAMPLE), "--flow", flow, "--quiet")
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "panicked" not in proc.stderr


def test_killed_flow_replay_resumes_exactly_once(tmp_path: Path) -> None:
    whole = tmp_path / "whole.jsonl"
    assert harness("replay", str(SAMPLE), "--flow", "bad_flows:every_event", "--key", "wiki",
                   "--out", str(whole)).returncode == 0
    out, state = tmp_path / "out.jsonl", tmp_path / "state"
    args = ["replay", str(SAMPLE), "--flow", "bad_flows:every_event", "--key", "wiki",
            "--out", str(out), "--recovery-dir", str(state), "--snapshot-interval", "0.1",
            "--processes", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FLOWS), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args, "--speed", "200"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not any(
            size > 20_000 for size in file_sizes(state / "parts", "items-*")):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    group_gone(proc.pid)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    resumed = harness(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_output(out, whole.read_bytes())  # nothing lost, nothing doubled


def test_bench_measures_shapes_beside_the_plain_loop_naive_bytewax_and_passthrough(
        tmp_path: Path) -> None:
    proc = harness("bench", str(SAMPLE), "--flow", "wiki_counts:wiki_counts", "--key", "wiki",
                   "--workers", "1", "--processes", "1,2", "--rounds", "1", "--json",
                   "--out", str(tmp_path / "bench.json"))
    assert proc.returncode == 0, proc.stderr
    result = orjson.loads(proc.stdout)
    rows = {(r["kind"], r["workers"], r["processes"]): r for r in result["rows"]}
    assert set(rows) == {("flow", 1, 1), ("passthrough", 1, 1), ("flow", 1, 2),
                         ("passthrough", 1, 2)}
    one, two = rows["flow", 1, 1], rows["flow", 1, 2]
    assert one["events"] == 20_000 and one["events_per_s"] > 0 and one["startup_s"] > 0
    assert one["ratio_to_plain_loop"] > 0 and result["baseline"]["median_s"] > 0
    assert one["ratio_to_naive_bytewax"] > 0 and result["naive_bytewax"]["median_s"] > 0
    # Figures computed from the walls as documented (their size is timing, not tested here:
    # one round on a shared machine can put the pass-through above the flow).
    passing = rows["passthrough", 1, 1]
    assert one["flow_share"] == pytest.approx(1 - passing["median_s"] / one["median_s"],
                                              abs=0.002)
    ceiling = result["ceiling"]
    t1, start, slowdown = ceiling["T1_s"], ceiling["startup_s"], ceiling["mutual_slowdown"]
    assert t1 == one["median_s"] and start == one["startup_s"] and slowdown > 0
    assert ceiling["speedup"] == pytest.approx(t1 / (start + (t1 - start) / 2 * slowdown),
                                               abs=0.002)
    assert two["share_of_ceiling"] == pytest.approx(
        one["median_s"] / two["median_s"] / ceiling["speedup"], abs=0.002)
    assert "share_of_ceiling" not in one
    assert orjson.loads((tmp_path / "bench.json").read_bytes()) == result


@pytest.mark.parametrize(("spec", "key", "where"), [
    ("wiki_counts:wiki_counts", "wiki", EXAMPLES),  # a FUNCTION(source, sink)
    ("bytewax_style:get_flow()", "user", FLOWS),  # a Dataflow, its lines tagged by step
])
def test_the_naive_bytewax_pipeline_writes_what_the_harness_writes(
        tmp_path: Path, spec: str, key: str, where: Path) -> None:
    """The reference row runs the same logic: FileSource + orjson in a map, one worker."""
    from harness.bench import export_payloads, naive_bytewax

    payloads = export_payloads(SAMPLE, tmp_path / "payloads.jsonl")
    sys.path.insert(0, str(where))
    try:
        naive_bytewax(payloads, spec, key, tmp_path / "naive")
    finally:
        sys.path.remove(str(where))
    tagged = spec.endswith("()")

    def value(path: Path, line: bytes) -> Any:
        item = orjson.loads(line)
        return {"step": path.name.rsplit("-", 1)[0], "item": item} if tagged else item

    naive = sorted(orjson.dumps(value(path, line), option=orjson.OPT_SORT_KEYS)
                   for path in (tmp_path / "naive").iterdir()
                   for line in path.read_bytes().splitlines())
    replayed = replay_output(tmp_path, "--flow", spec, "--key", key)
    assert naive == sorted(orjson.dumps(orjson.loads(line), option=orjson.OPT_SORT_KEYS)
                           for line in replayed.splitlines())


# ------------------------------------------------------------- harness.testing


def test_testing_api_and_pytest_plugin_from_a_users_test_file(tmp_path: Path) -> None:
    """A user's test file, run by pytest in its own directory, with the plugin's fixture."""
    (tmp_path / "myflows.py").write_text((EXAMPLES / "wiki_counts.py").read_text())
    (tmp_path / "test_mine.py").write_text('''
from hypothesis import given, settings
from harness.testing import assert_deterministic, run_flow, write_recording
from harness.testing.strategies import event_streams
from myflows import wiki_counts

def test_on_the_sample(sample_recording):
    items = run_flow(wiki_counts, sample_recording, key="wiki", workers=2)
    assert len(items) == 178 and sum("late" in i for i in items) == 45
    assert {"wiki": "enwiki", "window_start": "2023-11-14T22:15:00+00:00", "edits": 515} in items
    assert_deterministic(wiki_counts, sample_recording, key="wiki")

@settings(max_examples=5, deadline=None)
@given(event_streams(max_size=60))
def test_property(tmp_path_factory, events):
    path = write_recording(tmp_path_factory.mktemp("r") / "rec", events)
    counted = sum(i.get("edits", 0) for i in run_flow(wiki_counts, path, key="wiki"))
    late = sum("late" in i for i in run_flow(wiki_counts, path, key="wiki"))
    timed = [e for e in events if isinstance(e, dict) and type(e.get("timestamp")) is int
             and isinstance(e.get("wiki"), str)]
    assert counted + late == len(timed)
''')
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_mine.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_assert_deterministic_fails_naming_an_item() -> None:
    sys.path.insert(0, str(FLOWS))
    try:
        from bad_flows import global_counter

        from harness.testing import Shape, assert_deterministic

        with pytest.raises(AssertionError, match="only with 1 worker"):
            assert_deterministic(global_counter, SAMPLE, shapes=(Shape(1), Shape(2)))
    finally:
        sys.path.remove(str(FLOWS))

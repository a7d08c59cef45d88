"""A flow that misbehaves is one line and a status the harness chooses, never silence."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from tests.conftest import harness, harness_env


@pytest.mark.parametrize(("spec", "said"), [
    ("bad_flows:calls_exit", "building the dataflow called sys.exit(3)"),
    ("exits_on_import:flow", "importing exits_on_import called sys.exit(4)"),
    ("bad_flows:no_input", "has no input step"),
])
def test_a_flow_that_exits_or_reads_nothing_is_one_line_and_exit_2(spec: str,
                                                                   said: str) -> None:
    proc = harness("replay", "--flow", spec, "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and said in proc.stderr
    assert proc.stderr.startswith("harness replay: error: ")


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_flows_prints_never_reach_the_json_on_stdout(processes: str) -> None:
    proc = harness("replay", "--flow", "bad_flows:prints", "--json", "--processes", processes)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert orjson.loads(line)["items"] == 19_989
    assert "building prints" in proc.stderr and "saw " in proc.stderr


def test_a_source_read_by_two_input_steps_reports_each_event_once(tmp_path) -> None:
    dead = tmp_path / "dead.jsonl"
    proc = harness("replay", "--flow", "bad_flows:reads_twice", "--json",
                   "--dead-letters", str(dead))
    assert proc.returncode == 0, proc.stderr
    summary = orjson.loads(proc.stdout)
    assert summary["read"] == 20_000 and summary["items"] == 2 * summary["passed"]
    rows = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert len(rows) == summary["dead_letters"] == len({(r["seq"], r["reason"]) for r in rows})


@pytest.mark.parametrize(("flow", "said"), [
    ("writes_nan", "NaN or infinity"), ("writes_inf", "NaN or infinity"),
    ("writes_colliding_keys", "are the same text in JSON"),
    ("writes_deep", "nested too deeply")])
@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_value_json_cannot_carry_is_refused_naming_the_step(tmp_path, flow: str, said: str,
                                                             processes: str) -> None:
    out = tmp_path / "out.jsonl"
    proc = harness("replay", "--flow", f"bad_flows:{flow}", "--quiet", "--out", str(out),
                   "--processes", processes)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert said in proc.stderr and "step " in proc.stderr and not out.exists()


def test_whole_number_keys_that_do_not_collide_are_written_as_text(tmp_path) -> None:
    out = tmp_path / "out.jsonl"
    proc = harness("replay", "--flow", "bad_flows:writes_int_keys", "--quiet", "--out",
                   str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes().splitlines()[0] == b'{"1":"a","2":"b"}'


@pytest.mark.parametrize(("flow", "said"), [
    ("bad_flows:raises", "KeyError: 'no_such_field' (in step raises.get.flat_map_batch)"),
    ("bad_flows:raises_in_state", "ZeroDivisionError: integer division or modulo by zero"
                                  " (in step raises_in_state.count."),
])
def test_a_steps_failure_is_said_alike_on_every_shape(flow: str, said: str) -> None:
    """Between processes Bytewax loses a step's exception (a peer's broken connection is
    all that comes out); the members report it, so 2 processes say what 1 says."""
    told = []
    for shape in (("--processes", "1"), ("--processes", "2"), ("--workers", "2",
                                                               "--processes", "2")):
        proc = harness("replay", "--flow", flow, "--quiet", *shape)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
        assert not proc.stderr.startswith("\n")
        told.append(proc.stderr)
    assert said in told[0] and told[1] == told[0] and told[2] == told[0], told
    # members started as fresh interpreters (where forking is unsafe) report it alike
    spawned = subprocess.run(
        [sys.executable, "-c", "import sys, harness.run.cluster as c;"
         " c.can_fork = lambda: False; from harness.cli.main import main;"
         f" sys.exit(main(['replay', '--flow', {flow!r}, '--quiet', '--processes', '2']))"],
        capture_output=True, text=True, timeout=120, env=harness_env())
    assert (spawned.returncode, spawned.stderr) == (1, told[0])


def test_an_unfinished_recording_with_events_is_not_called_empty(tmp_path) -> None:
    from harness.recording import RecordingWriter

    writer = RecordingWriter(tmp_path / "rec", source="test", block_events=10)
    for i in range(30):
        writer.append(orjson.dumps({"user": f"u{i % 3}", "timestamp": 1_700_000_000 + i}),
                      None, 1.7e9 + i)
    writer.flush()
    writer.abandon()  # as a killed recorder leaves it: nothing finished in the manifest
    proc = harness("replay", str(tmp_path / "rec"), "--quiet", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "empty" not in proc.stderr and orjson.loads(proc.stdout)["events"] == 30

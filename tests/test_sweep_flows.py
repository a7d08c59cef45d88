"""A flow that misbehaves is one line and a status the harness chooses, never silence."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import harness


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

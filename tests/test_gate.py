"""The CI performance gate (benchmarks/gate.py): its verdicts, its baseline, and proof that
it catches a slowdown.

The verdict and baseline tests are fast and always run. The end-to-end test
runs valgrind three times (about 30-60 s on 2 cores), so it runs only where
GATE_E2E=1, which `tox -e gate` sets (CI runs that env).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

GATE_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gate.py"


def _load_gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("perf_gate", GATE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gate = _load_gate()

VERSIONS = {"python": "3.11.7", "valgrind": "valgrind-3.19.0", "machine": "x86_64",
            "bytewax": "0.21.1", "msgspec": "0.22.0", "orjson": "3.13.0", "zstandard": "0.25.0"}
RECORDING = {"events": gate.EVENTS, "seed": gate.SEED, "lanes": gate.LANES, "digest": "abc"}
TALLY = {"events": gate.EVENTS, "counted": gate.EVENTS}


def _result(instructions: int, **changes: object) -> dict[str, object]:
    result: dict[str, object] = {"instructions": instructions, "versions": dict(VERSIONS),
                                 "recording": dict(RECORDING), "tally": dict(TALLY)}
    result.update(changes)
    return result


def test_within_tolerance_passes_and_prints_the_change() -> None:
    ok, lines = gate.verdict(_result(1_000_000), _result(1_020_000), 0.03)
    assert ok
    assert lines == ["gate: OK: 1,020,000 instructions vs baseline 1,000,000 (+2.000%;"
                     " tolerance +3.0%)"]


def test_above_tolerance_fails_with_both_numbers_and_the_change() -> None:
    ok, lines = gate.verdict(_result(1_000_000), _result(1_100_000), 0.03)
    assert not ok
    assert "FAIL" in lines[0]
    assert "1,100,000" in lines[0] and "1,000,000" in lines[0] and "+10.000%" in lines[0]


def test_a_big_improvement_passes_and_suggests_a_new_baseline() -> None:
    ok, lines = gate.verdict(_result(1_000_000), _result(800_000), 0.03)
    assert ok
    assert "faster" in lines[-1] and "tox -e gate-update" in lines[-1]


def test_tolerance_is_configurable() -> None:
    assert gate.verdict(_result(100), _result(104), 0.05)[0]
    assert not gate.verdict(_result(100), _result(104), 0.03)[0]


def test_different_versions_are_explained_but_still_compared() -> None:
    versions = dict(VERSIONS, bytewax="0.21.2")
    ok, lines = gate.verdict(_result(1_000_000), _result(1_001_000, versions=versions), 0.03)
    assert ok
    text = "\n".join(lines)
    assert "WARNING" in text and "bytewax '0.21.1' in the baseline, '0.21.2' now" in text
    assert "tox -e gate-update" in text
    assert "gate: OK" in lines[-1]


def test_a_changed_recording_or_tally_is_reported() -> None:
    current = _result(1_000_000, recording=dict(RECORDING, digest="def"),
                      tally=dict(TALLY, counted=1))
    notes = gate.mismatches(_result(1_000_000), current)
    assert any("synthetic recording's content" in n for n in notes)
    assert any(f"counted {gate.EVENTS} -> 1" in n for n in notes)
    grown = gate.mismatches(_result(1), _result(1, tally=dict(TALLY, skipped=0)))
    assert grown == [f"the tally's fields changed: {sorted(TALLY)} in the baseline,"
                     f" {sorted([*TALLY, 'skipped'])} now"]


def test_the_committed_baseline_matches_the_gate() -> None:
    baseline = json.loads(gate.BASELINE.read_text())
    assert baseline["instructions"] > 0
    assert baseline["recording"]["events"] == gate.EVENTS
    assert baseline["recording"]["seed"] == gate.SEED
    assert baseline["recording"]["lanes"] == gate.LANES
    assert set(baseline["versions"]) == {"python", "valgrind", "machine", *gate.PACKAGES}
    assert baseline["tally"]["events"] == gate.EVENTS
    assert gate.TOGGLE in baseline["counted"]


CALLGRIND = """\
events: Ir
fn=(1) main
10 5
cfn=(2) helper
calls=2 20
10 100
15 7
fn=(2)
20 40
fn=(3) other
1 3
"""


def test_self_costs_follow_compressed_names_and_skip_call_costs() -> None:
    assert gate.self_costs(CALLGRIND) == {"main": 12, "helper": 40, "other": 3}


def test_a_failure_says_which_functions_grew_most() -> None:
    before = {"decode_loop": 1_000, "zstd": 5_000, "steady": 2_000}
    after = {"decode_loop": 90_000, "zstd": 5_100, "steady": 2_000, "new_hot_spot": 30_000}
    ok, lines = gate.verdict(_result(8_000, functions=before),
                             _result(127_100, functions=after), 0.03)
    assert not ok
    profile = lines[lines.index(next(x for x in lines if "where it grew" in x)) + 1:]
    assert [line.split()[-1] for line in profile] == ["decode_loop", "new_hot_spot", "zstd"]
    assert "+89,000" in profile[0]


def test_the_gate_env_installs_the_versions_its_baseline_was_taken_with() -> None:
    constraints = dict(line.split("==") for line in
                       (gate.BASELINE.parent / "gate-constraints.txt").read_text().splitlines()
                       if line and not line.startswith("#"))
    baseline = json.loads(gate.BASELINE.read_text())
    for package in gate.PACKAGES:
        assert constraints[package] == baseline["versions"][package], package


def test_no_valgrind_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(gate.GateError, match="valgrind not found"):
        gate.valgrind_version()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GATE_E2E") != "1",
                    reason="runs valgrind 3x (30-60 s): set GATE_E2E=1 (tox -e gate does)")
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
def test_gate_passes_unchanged_runs_and_catches_a_slowdown(tmp_path: Path) -> None:
    """Real callgrind runs: two unchanged replays agree within the tolerance; the same
    replay with HARNESS_SLOWDOWN_LOOPS (>= 10% more instructions) fails the gate."""
    recording = tmp_path / "recording"
    gate.make_recording(recording)
    gate.sanity_run(recording)
    first, second = gate.measure(recording, runs=2)
    slowed = gate.measure_once(recording,
                               {"HARNESS_SLOWDOWN_LOOPS": str(gate.SELF_TEST_LOOPS)})
    baseline = _result(first.instructions, tally=first.tally)
    ok, lines = gate.verdict(baseline, _result(second.instructions, tally=second.tally),
                             gate.TOLERANCE)
    assert ok, lines
    assert abs(second.instructions - first.instructions) / first.instructions < 0.005
    baseline["functions"] = gate._top(first.functions)
    ok, lines = gate.verdict(baseline, _result(slowed.instructions, tally=slowed.tally,
                                               functions=slowed.functions), gate.TOLERANCE)
    assert not ok, lines
    assert slowed.instructions >= 1.10 * first.instructions, lines
    profile = lines[lines.index(next(x for x in lines if "where it grew" in x)) + 1:]
    assert profile and "_PyEval_EvalFrameDefault" in " ".join(profile[:3]), lines

#!/usr/bin/env python
"""CI performance gate: instructions executed by a fixed replay, against a committed baseline.

    python benchmarks/gate.py                  # check (exit 1 above the tolerance)
    python benchmarks/gate.py --update         # re-measure (3 runs) and write the baseline
    python benchmarks/gate.py --self-test      # prove it: unchanged passes, a slowdown fails

What is counted: the gate synthesises a small recording itself (fixed events,
seed and lanes; no data is committed), replays it once natively as a sanity
check, then replays it under `valgrind --tool=callgrind` with
PYTHONHASHSEED=0 through `harness.flows.job.replay(FlowJob.of(rec, workers=1))`.
Collection is off at start and toggled on only inside Bytewax's
`bytewax::run::run_main` (the dataflow execution: reading the lanes, decode,
detect, writing part files), so interpreter start-up, imports and bytecode
compilation, which dominate the whole-process count and do not depend on the
flow, are excluded. A single worker in one process runs the Timely worker on
the calling thread (callgrind --separate-threads shows one thread), so no
thread scheduling enters the count: repeated runs agree to ~0.05%.

Exit status: 0 within tolerance, 1 regression (or self-test failure), 2 cannot
measure (no valgrind, nothing collected, replay failed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

BASELINE = Path(__file__).resolve().with_name("gate_baseline.json")
EVENTS = 5000
SEED = 20240101
LANES = 8
WORKERS = 1
TOLERANCE = 0.03
TOGGLE = "bytewax::run::run_main"
SELF_TEST_LOOPS = 50  # HARNESS_SLOWDOWN_LOOPS for --self-test: about +23% instructions
UPDATE_COMMAND = "tox -e gate-update"
VALGRIND_TIMEOUT = 900.0
PACKAGES = ("bytewax", "msgspec", "orjson", "zstandard")
# Interpreter switches that would change the count without any code change.
_SCRUB_ENV = ("PYTHONDEVMODE", "PYTHONMALLOC", "PYTHONTRACEMALLOC", "PYTHONASYNCIODEBUG",
              "PYTHONPROFILEIMPORTTIME", "PYTHONWARNINGS")


class GateError(Exception):
    """The measurement itself failed (exit status 2)."""


@dataclass(frozen=True)
class Measurement:
    instructions: int
    seconds: float
    tally: dict[str, int]
    functions: dict[str, int]  # callgrind self instructions per native function


PROFILE_TOP = 400  # functions kept in the baseline for the differential profile
DIFF_ROWS = 12


def self_costs(text: str) -> dict[str, int]:
    """Self instructions per function of a callgrind output file.

    Cost lines after `fn=` belong to that function; the line after `calls=`
    is the inclusive cost of a call and is skipped. Names are compressed
    (`fn=(12) name` once, `fn=(12)` after), also through `cfn=` lines.
    """
    names: dict[str, str] = {}
    costs: dict[str, int] = {}
    current: str | None = None
    skip = False
    for line in text.splitlines():
        head = line[:4]
        if head.startswith(("fn=", "cfn=")):
            match = _COMPRESSED.match(line)
            if match is None:
                continue
            ident, name = match.group(2), match.group(3)
            if name:
                names[ident] = name
            if match.group(1) == "fn":
                current = ident
            continue
        if line.startswith("calls="):
            skip = True
            continue
        if current is not None and (line[:1].isdigit() or line[:1] in ("+", "-", "*")):
            if skip:
                skip = False
                continue
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                costs[current] = costs.get(current, 0) + int(parts[1])
    return {names.get(k, k): v for k, v in costs.items()}


_COMPRESSED = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")


def grown(baseline: dict[str, int], current: dict[str, int], rows: int = DIFF_ROWS
          ) -> list[str]:
    """The functions whose self instructions grew most (a differential profile).

    Only functions in the baseline's top list are compared with it; one that
    is missing there counts from zero, so a new hot spot shows up too.
    """
    floor = min(baseline.values()) if baseline else 0
    changes = []
    for name, now in current.items():
        before = baseline.get(name, 0 if now > floor else now)
        if now != before:
            changes.append((now - before, before, now, name))
    changes.sort(reverse=True)
    return [f"gate:   {delta:+14,d}  {before:>14,d} -> {now:>14,d}  {name[:100]}"
            for delta, before, now, name in changes[:rows] if delta > 0]


# ---------------------------------------------------------------- recording


def make_recording(directory: Path, events: int = EVENTS, seed: int = SEED) -> str:
    """Write the gate's synthetic recording; return a digest of its decompressed lines."""
    from harness.recording import Recording
    from harness.recording.importer import synthesize

    synthesize(directory, events=events, seed=seed, lanes=LANES, progress=False)
    digest = hashlib.sha256()
    recording = Recording(directory)
    for block in recording.blocks():
        for lane, data in recording.read_frames(block):
            digest.update(lane.to_bytes(2, "little"))
            digest.update(data)
    return digest.hexdigest()


def _workload(recording: Path) -> None:
    """The measured program: one in-process, single-worker replay; prints the tally."""
    from harness.flows.job import FlowJob
    from harness.run.replay import replay

    result = replay(FlowJob.of(recording, workers=WORKERS, processes=1))
    print(json.dumps(result.output.counts.to_json()))


# -------------------------------------------------------------- measurement


def valgrind_version() -> str:
    exe = shutil.which("valgrind")
    if exe is None:
        raise GateError("valgrind not found on PATH (Debian: apt-get install -y valgrind)")
    return subprocess.run([exe, "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()


def versions() -> dict[str, str]:
    """What the count depends on besides the project's code."""
    found = {"python": platform.python_version(), "valgrind": valgrind_version(),
             "machine": platform.machine()}
    for name in PACKAGES:
        found[name] = metadata.version(name)
    return found


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV}
    env["PYTHONHASHSEED"] = "0"
    env.update(extra or {})
    return env


def _run_workload(recording: Path, env: dict[str, str], valgrind: list[str] | None = None
                  ) -> tuple[dict[str, int], float]:
    command = [*(valgrind or []), sys.executable, str(Path(__file__).resolve()),
               "--workload", str(recording)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=VALGRIND_TIMEOUT)
    except subprocess.TimeoutExpired:  # subprocess.run ends the child itself
        raise GateError(f"replay did not finish in {VALGRIND_TIMEOUT:.0f} s") from None
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise GateError(f"replay failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    try:
        return json.loads(done.stdout.strip().splitlines()[-1]), seconds
    except (json.JSONDecodeError, IndexError):
        raise GateError(f"replay printed no tally:\n{done.stdout[-2000:]}") from None


def measure_once(recording: Path, extra_env: dict[str, str] | None = None) -> Measurement:
    """Instructions executed inside `run_main` for one replay under callgrind."""
    valgrind_version()
    with tempfile.TemporaryDirectory(prefix="gate-cg-") as tmp:
        out = Path(tmp) / "callgrind.out"
        tally, seconds = _run_workload(recording, _env(extra_env), [
            "valgrind", "--tool=callgrind", "--collect-atstart=no",
            f"--toggle-collect={TOGGLE}", f"--callgrind-out-file={out}",
            f"--log-file={Path(tmp) / 'valgrind.log'}"])
        text = out.read_text(errors="replace") if out.exists() else ""
    match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    instructions = int(match.group(1)) if match else 0
    if instructions == 0:
        raise GateError(f"callgrind collected nothing: is {TOGGLE!r} still the function Bytewax"
                        " runs a single-worker dataflow in? (bytewax version changed?)")
    return Measurement(instructions, seconds, tally, self_costs(text))


def measure(recording: Path, runs: int, extra_env: dict[str, str] | None = None,
            jobs: int | None = None) -> list[Measurement]:
    """`runs` independent measurements, up to `jobs` at once (counts do not depend on load)."""
    jobs = jobs or min(runs, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda _: measure_once(recording, extra_env), range(runs)))


def sanity_run(recording: Path, extra_env: dict[str, str] | None = None) -> dict[str, int]:
    """A native replay: checks the workload and leaves bytecode caches warm."""
    tally, _ = _run_workload(recording, _env(extra_env))
    if tally.get("events") != EVENTS:
        raise GateError(f"native replay counted {tally.get('events')} events, not {EVENTS}")
    return tally


def spread(values: list[int]) -> float:
    """(max - min) / median."""
    return (max(values) - min(values)) / statistics.median(values)


# ---------------------------------------------------------------- comparing


def compare(baseline: int, current: int, tolerance: float) -> tuple[bool, float]:
    """(passes, relative change). Only an increase above the tolerance fails."""
    change = (current - baseline) / baseline
    return change <= tolerance, change


def mismatches(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between what the baseline was taken with and now."""
    notes = []
    old = baseline.get("versions", {})
    for key, value in current["versions"].items():
        if old.get(key) != value:
            notes.append(f"{key} {old.get(key)!r} in the baseline, {value!r} now")
    rec_old, rec_new = baseline.get("recording", {}), current["recording"]
    for key in ("events", "seed", "lanes", "digest"):
        if rec_old.get(key) != rec_new.get(key):
            what = ("the synthetic recording's content (harness/recording/synth/ or the"
                    " writer changed)"
                    if key == "digest" else f"recording {key}")
            notes.append(f"{what} differs from the baseline's")
    tally_old, tally_new = baseline.get("tally", {}), current.get("tally", {})
    if set(tally_old) != set(tally_new):
        notes.append(f"the tally's fields changed: {sorted(tally_old)} in the baseline,"
                     f" {sorted(tally_new)} now")
    changed = {k: (tally_old[k], tally_new[k]) for k in set(tally_old) & set(tally_new)
               if tally_old[k] != tally_new[k]}
    if changed:
        notes.append("the replay's tally changed (detection output changed): "
                     + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(changed.items())))
    return notes


def verdict(baseline: dict[str, Any], current: dict[str, Any], tolerance: float
            ) -> tuple[bool, list[str]]:
    """Pass/fail and the lines to print."""
    base, now = baseline["instructions"], current["instructions"]
    ok, change = compare(base, now, tolerance)
    lines = []
    notes = mismatches(baseline, current)
    if notes:
        lines.append("gate: WARNING: the baseline was taken in a different setup, so part of"
                     " the change may come from that:")
        lines += [f"gate:   - {n}" for n in notes]
        lines.append(f"gate:   if that is expected, refresh the baseline: {UPDATE_COMMAND}"
                     " (and commit benchmarks/gate_baseline.json)")
    head = (f"{now:,} instructions vs baseline {base:,} ({change:+.3%};"
            f" tolerance +{tolerance:.1%})")
    if not ok:
        lines.append(f"gate: FAIL: performance regression: {head}")
        lines.append("gate:   the replay now executes more instructions than the baseline"
                     " allows; find the cause, or if it is intended, run"
                     f" {UPDATE_COMMAND} and commit the new baseline")
        lines.append("gate: where it grew (callgrind self instructions per function,"
                     " baseline -> now):")
        lines += grown(baseline.get("functions", {}), current.get("functions", {}))
    elif change < -tolerance:
        lines.append(f"gate: OK (faster): {head}; consider {UPDATE_COMMAND} so the gate keeps"
                     " its margin")
    else:
        lines.append(f"gate: OK: {head}")
    return ok, lines


# -------------------------------------------------------------------- modes


def _current(recording_info: dict[str, Any], samples: list[Measurement]) -> dict[str, Any]:
    counts = [m.instructions for m in samples]
    return {
        "instructions": int(statistics.median(counts)),
        "samples": counts,
        "spread": round(spread(counts), 6),
        "tally": samples[0].tally,
        "recording": recording_info,
        "replay": {"workers": WORKERS, "processes": 1, "entry": "harness.flows.bots.replay.replay"},
        "counted": f"callgrind Ir with --collect-atstart=no --toggle-collect={TOGGLE},"
                   " PYTHONHASHSEED=0",
        "versions": versions(),
        "functions": _top(samples[len(samples) // 2].functions),
    }


def _top(functions: dict[str, int]) -> dict[str, int]:
    ranked = sorted(functions.items(), key=lambda kv: -kv[1])[:PROFILE_TOP]
    return dict(ranked)


def _samples_line(samples: list[Measurement]) -> str:
    counts = [m.instructions for m in samples]
    text = ", ".join(f"{c:,}" for c in counts)
    extra = f"; spread {spread(counts):.3%}" if len(counts) > 1 else ""
    return (f"gate: {len(counts)} run(s): {text}{extra};"
            f" {max(m.seconds for m in samples):.1f} s per valgrind run")


def run_gate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    loops = os.environ.get("HARNESS_SLOWDOWN_LOOPS")
    if loops and loops != "0":
        print(f"gate: note: HARNESS_SLOWDOWN_LOOPS={loops} is set (an artificial slowdown)")
    with tempfile.TemporaryDirectory(prefix="gate-") as tmp:
        recording = Path(tmp) / "recording"
        info = {"events": EVENTS, "seed": SEED, "lanes": LANES,
                "digest": make_recording(recording)}
        sanity_run(recording)
        if args.self_test:
            return self_test(recording, args, started)
        runs = args.runs or (3 if args.update else 1)
        samples = measure(recording, runs)
    current = _current(info, samples)
    print(_samples_line(samples))
    if args.update:
        current["created"] = datetime.now(tz=timezone.utc).isoformat(timespec="seconds")
        args.baseline.write_text(json.dumps(current, indent=2) + "\n")
        print(f"gate: baseline written to {args.baseline}: {current['instructions']:,}"
              f" instructions ({time.perf_counter() - started:.0f} s)")
        return 0
    if not args.baseline.exists():
        raise GateError(f"no baseline at {args.baseline}; create it with {UPDATE_COMMAND}")
    baseline = json.loads(args.baseline.read_text())
    ok, lines = verdict(baseline, current, args.tolerance)
    for line in lines:
        print(line)
    print(f"gate: {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


def self_test(recording: Path, args: argparse.Namespace, started: float) -> int:
    """Two unchanged runs must pass against each other; a slowed-down one must fail."""
    slow = {"HARNESS_SLOWDOWN_LOOPS": str(args.loops)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(measure_once, recording)
        second = pool.submit(measure_once, recording)
        slower = pool.submit(measure_once, recording, slow)
        a, b, c = first.result(), second.result(), slower.result()
    same_ok, same = compare(a.instructions, b.instructions, args.tolerance)
    slow_ok, slowed = compare(a.instructions, c.instructions, args.tolerance)
    print(f"gate self-test: unchanged {a.instructions:,} -> {b.instructions:,} ({same:+.3%}):"
          f" {'passes' if same_ok else 'FAILS'} (must pass)")
    print(f"gate self-test: HARNESS_SLOWDOWN_LOOPS={args.loops}: {c.instructions:,}"
          f" ({slowed:+.2%}): {'passes' if slow_ok else 'fails'} (must fail)")
    where = grown(_top(a.functions), c.functions, rows=3)
    print("gate self-test: where the slowdown shows:")
    for line in where:
        print(line)
    good = same_ok and not slow_ok and bool(where)
    print(f"gate self-test: {'OK' if good else 'BROKEN'}"
          f" ({time.perf_counter() - started:.0f} s)")
    return 0 if good else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CI performance gate (instruction counts)")
    parser.add_argument("--update", action="store_true",
                        help="measure and write the baseline instead of checking")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"allowed relative increase ({TOLERANCE})")
    parser.add_argument("--runs", type=int, default=0,
                        help="valgrind runs, median taken (1 to check, 3 to update)")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--self-test", action="store_true",
                        help="show that unchanged runs pass and a slowdown fails")
    parser.add_argument("--loops", type=int, default=SELF_TEST_LOOPS,
                        help="HARNESS_SLOWDOWN_LOOPS used by --self-test")
    parser.add_argument("--workload", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workload is not None:
        _workload(args.workload)
        return 0
    try:
        return run_gate(args)
    except GateError as exc:
        print(f"gate: ERROR: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

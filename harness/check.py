"""`harness check`: is a flow's output the same on every cluster shape?

A flow over a `ReplaySource` is deterministic when its canonical output
does not depend on how many workers and processes run it or how the input
is batched. `check` runs it on several shapes (1 worker; 4 workers; 2
processes x 2 workers; batches of 1 and of 1000 events) and compares the
outputs as multisets of canonical lines, and the source's counts.

What it catches: state kept outside Bytewax (a module-global counter seen
by several worker threads or processes), keying a flow by something other
than the source's key (one key's events then arrive from several
partitions, interleaved differently per shape and batch size), reading the
wall clock. A flow that passes every shape can still depend on timing in
ways these shapes do not provoke; the more shapes agree, the stronger the
evidence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["DEFAULT_SHAPES", "CheckResult", "Difference", "Outcome", "Shape", "check",
           "outcome"]


@dataclass(frozen=True)
class Shape:
    """A cluster shape and batching to run a flow with."""

    workers: int = 1
    processes: int = 1
    batch_size: int | None = None
    fresh: bool = False  # in a fresh interpreter with another hash seed

    def __str__(self) -> str:
        parts = []
        if self.processes > 1:
            parts.append(f"{self.processes} processes x {self.workers} workers")
        else:
            parts.append(f"{self.workers} worker{'s' if self.workers > 1 else ''}")
        if self.batch_size is not None:
            parts.append(f"batch {self.batch_size}")
        if self.fresh:
            parts.append("another hash seed")
        return ", ".join(parts)


# The 2x2 run is a fresh interpreter with another PYTHONHASHSEED: a flow whose answer
# depends on hash() of a string (a set's order, say) passes one interpreter's runs.
DEFAULT_SHAPES = (Shape(1), Shape(4), Shape(2, 2, fresh=True), Shape(1, 1, 1),
                  Shape(1, 1, 1000))


@dataclass(frozen=True)
class Outcome:
    """One run's output: its items as canonical lines (any order), its counts, and its
    dead letters as canonical lines."""

    lines: Sequence[bytes]
    counts: dict[str, int]
    dead_letters: Sequence[bytes] = ()

    def multiset(self) -> Counter[bytes]:
        return Counter([*self.lines, *(b"dead letter " + d for d in self.dead_letters)])


def outcome(job: Any, shape: Shape) -> Outcome:
    """Run a `FlowJob` on `shape` and reduce what it wrote to an `Outcome`."""
    shaped = job.reshaped(workers=shape.workers, processes=shape.processes,
                          batch_size=shape.batch_size)
    return _in_fresh_interpreter(shaped) if shape.fresh else _run(shaped)


def _run(job: Any) -> Outcome:
    from harness.run.replay import replay

    output = replay(job).output
    return Outcome([orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in output.values()],
                   output.counts.to_json(),
                   [orjson.dumps(d, option=orjson.OPT_SORT_KEYS) for d in output.dead_letters])


def _in_fresh_interpreter(job: Any) -> Outcome:
    """`outcome` of `job` run by `python -m harness.check` with another hash seed."""
    import os
    import subprocess
    import sys

    from harness.errors import HarnessError, MemberFailed
    from harness.run.job import job_to_json

    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    done = subprocess.run([sys.executable, "-m", "harness.check", job_to_json(job)],
                          capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed},
                          check=False)
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        text = said[-1] if said else f"a run with another hash seed ended with {done.returncode}"
        raise HarnessError(text) if done.returncode == 2 else MemberFailed(text)
    raw = orjson.loads(done.stdout)
    return Outcome([line.encode() for line in raw["lines"]], raw["counts"],
                   [line.encode() for line in raw["dead_letters"]])


def _main(spec: str) -> None:
    """Run one job (JSON) and print its `Outcome` as JSON (see `_in_fresh_interpreter`)."""
    import sys

    from harness.errors import HarnessError, describe
    from harness.run.job import job_from_json

    try:
        found = _run(job_from_json(spec))
    except HarnessError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        print(describe(exc), file=sys.stderr)
        sys.exit(1)
    print(orjson.dumps({"lines": [x.decode() for x in found.lines], "counts": found.counts,
                        "dead_letters": [x.decode() for x in found.dead_letters]}).decode())


@dataclass(frozen=True)
class Difference:
    """How the output of `other` differs from the first shape's."""

    first: Shape
    other: Shape
    only_first: tuple[bytes, ...]  # a few examples
    only_other: tuple[bytes, ...]
    missing: int  # lines in the first and not in the other (with multiplicity)
    extra: int
    counts: dict[str, tuple[int, int]]  # counts that differ: first, other

    def describe(self, examples: int = 3) -> str:
        parts = [f"{self.first} vs {self.other}:"]
        if self.missing or self.extra:
            parts.append(f"{self.missing} item(s) only with {self.first},"
                         f" {self.extra} only with {self.other}")
        for name, (a, b) in self.counts.items():
            parts.append(f"{name} {a} vs {b}")
        text = " ".join(parts)
        for label, lines in ((str(self.first), self.only_first),
                             (str(self.other), self.only_other)):
            for line in lines[:examples]:
                text += f"\n  only with {label}: {line.decode(errors='replace')[:300]}"
        return text


@dataclass
class CheckResult:
    """The verdict: every shape's output equal to the first's, or how they differ."""

    shapes: list[Shape]
    items: int
    differences: list[Difference] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def deterministic(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        if self.deterministic:
            return f"deterministic across {len(self.shapes)} runs, {self.items} items"
        shapes = "; ".join(f"{d.other}" for d in self.differences)
        return (f"NOT deterministic: {len(self.differences)} of {len(self.shapes) - 1} shapes"
                f" differ from {self.shapes[0]} ({shapes})")

    def to_json(self) -> dict[str, Any]:
        return {
            "deterministic": self.deterministic, "runs": len(self.shapes), "items": self.items,
            "shapes": [str(s) for s in self.shapes], "seconds": self.seconds,
            "differences": [{"first": str(d.first), "other": str(d.other),
                             "missing": d.missing, "extra": d.extra,
                             "only_first": [x.decode(errors="replace") for x in d.only_first],
                             "only_other": [x.decode(errors="replace") for x in d.only_other],
                             "counts": {k: list(v) for k, v in d.counts.items()}}
                            for d in self.differences],
        }


def check(run: Callable[[Shape], Outcome], shapes: Sequence[Shape] = DEFAULT_SHAPES,
          *, progress: Callable[[Shape, float], None] | None = None) -> CheckResult:
    """Run on every shape and compare each output with the first shape's."""
    import time

    outcomes: list[Outcome] = []
    result = CheckResult(list(shapes), 0)
    for shape in shapes:
        start = time.perf_counter()
        outcomes.append(run(shape))
        result.seconds[str(shape)] = round(time.perf_counter() - start, 3)
        if progress is not None:
            progress(shape, result.seconds[str(shape)])
    first = outcomes[0]
    result.items = len(first.lines)
    reference = first.multiset()
    for shape, other in zip(shapes[1:], outcomes[1:], strict=True):
        got = other.multiset()
        missing, extra = reference - got, got - reference
        counts = {name: (first.counts.get(name, 0), other.counts.get(name, 0))
                  for name in sorted(first.counts.keys() | other.counts.keys())
                  if first.counts.get(name) != other.counts.get(name)}
        if missing or extra or counts:
            result.differences.append(Difference(
                shapes[0], shape, tuple(sorted(missing)[:5]), tuple(sorted(extra)[:5]),
                sum(missing.values()), sum(extra.values()), counts))
    return result


if __name__ == "__main__":
    import sys

    _main(sys.argv[1])

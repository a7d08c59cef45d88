"""Dead-letter accounting of a replay source: what each partition read, and what became
of it.

Every event read is counted once: passed on, a dead letter (not JSON, JSON
that is not an object, no key), or outside the slice, so that per partition
`read = passed + not_json + not_object + no_key + outside`; lines of a
damaged recording skipped under `skip_damaged` are counted as `damaged`.
A `SourceReport` keeps one partition's counts, and with a directory its dead
letters and counts in files there (cut back to the last snapshot on resume,
so exactly once under recovery, and running counts for progress and
Ctrl-C); `read_source_report` and `live_source_tally` read them back for a
whole run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO, Final

import orjson

from harness.files import Counters, naming, write_atomically
from harness.recording.blocks import Damage
from harness.recording.envelope import DAMAGED, NOT_JSON
from harness.source.keys import NO_KEY

__all__ = ["DEAD_LETTERS", "LIVE", "LIVE_EVERY", "TALLY", "TALLY_FIELDS", "SourcePosition",
           "SourceReport", "SourceTally", "live_source_tally", "read_source_report"]

# A run's report files, by input step and partition. A flow that reads the source from
# two input steps reads every event twice; the first step's report is the report.
DEAD_LETTERS: Final = "source-deadletters-{}.jsonl"
TALLY: Final = "source-tally-{}.json"
LIVE: Final = "source-live-{}.bin"  # running counts (for progress and Ctrl-C)
LIVE_EVERY: Final = 4096


@dataclass(slots=True)
class SourceTally:
    """What one partition read, and what became of it."""

    read: int = 0
    passed: int = 0
    not_json: int = 0
    not_object: int = 0
    no_key: int = 0
    outside: int = 0
    damaged: int = 0  # lines of a damaged recording skipped (not events)

    @property
    def events(self) -> int:
        """Events read (the flow contract's name for them)."""
        return self.read

    @property
    def dead_letters(self) -> int:
        return self.not_json + self.not_object + self.no_key

    def add(self, other: SourceTally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def conserved(self) -> bool:
        return self.read == self.passed + self.dead_letters + self.outside

    def to_json(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


TALLY_FIELDS: Final = tuple(f.name for f in fields(SourceTally))


@dataclass(frozen=True)
class SourcePosition:
    """Resume state of one partition: where to read next, and its report so far."""

    segment: int = 0
    offset: int = 0  # of the block to read next
    skip: int = 0  # events of this partition in that block already emitted
    report_bytes: int = 0
    tally: tuple[tuple[str, int], ...] = ()


class SourceReport:
    """One partition's counts and dead letters (a file in `directory`, cut back to
    `start` on resume); without a directory, dead letters are only counted."""

    def __init__(self, directory: Path | None, part: str, start: SourcePosition,
                 step: str = "input") -> None:
        self.part = part
        self.tally = SourceTally(**dict(start.tally))
        self._file: BinaryIO | None = None
        self._tally_path: Path | None = None
        self._pending: list[bytes] = []
        self._live: Counters | None = None
        self._shown = -LIVE_EVERY  # events read when the running counts were last written
        if directory is not None:
            name = f"{step}~{part}"
            self._live = Counters(directory / LIVE.format(name), TALLY_FIELDS)
            self._file = (directory / DEAD_LETTERS.format(name)).open("ab")
            self._file.truncate(start.report_bytes)
            self._tally_path = directory / TALLY.format(name)

    def passed(self, events: int, outside: int = 0) -> None:
        """Events read and passed on, and events read that lie outside the slice."""
        tally = self.tally
        tally.read += events + outside
        tally.passed += events
        tally.outside += outside

    def dead(self, seq: int, reason: str) -> None:
        """One event read and not passed on (`reason`: not-json, not-object, no-key)."""
        tally = self.tally
        tally.read += 1
        if reason == NO_KEY:
            tally.no_key += 1
        elif reason == NOT_JSON:
            tally.not_json += 1
        else:
            tally.not_object += 1
        self._dead(seq, reason)

    def progressed(self) -> None:
        """Keep the running counts current (for progress and Ctrl-C), every
        `LIVE_EVERY` events read: often enough to watch, rarely enough to cost nothing."""
        if self._live is not None and self.tally.read - self._shown >= LIVE_EVERY:
            self._shown = self.tally.read
            self._live.update(self.tally.to_json())

    def outside(self, events: int) -> None:
        """A whole segment skipped by the time slice."""
        self.tally.read += events
        self.tally.outside += events

    def damaged(self, damage: Damage) -> None:
        self.tally.damaged += damage.lines
        self._dead(-1, DAMAGED, damage.where)

    def _dead(self, seq: int, reason: str, where: str | None = None) -> None:
        if self._file is not None:
            row: dict[str, Any] = {"seq": seq, "reason": reason}
            if where is not None:
                row["where"] = where
            self._pending.append(orjson.dumps(row))

    def position(self, segment: int, offset: int, skip: int) -> SourcePosition:
        """The resume state at a read position, after writing out what is pending."""
        size = 0
        if self._file is not None and self._tally_path is not None:
            with naming(Path(self._file.name)):
                if self._pending:
                    self._file.write(b"\n".join(self._pending) + b"\n")
                    self._pending.clear()
                self._file.flush()
            size = self._file.tell()
            write_atomically(self._tally_path, [orjson.dumps(self.tally.to_json())])
        return SourcePosition(segment, offset, skip, size, tuple(self.tally.to_json().items()))

    def close(self) -> None:
        self.position(0, 0, 0)
        if self._live is not None:
            self._live.update(self.tally.to_json())
            self._live.close()
        if self._file is not None:
            self._file.close()
        elif self.tally.dead_letters or self.tally.damaged:
            print(f"harness source {self.part}: {self.tally.dead_letters} dead letter(s) and"
                  f" {self.tally.damaged} damaged line(s) not passed on (give report_dir to"
                  " keep them)", file=sys.stderr)


def _first_step(directory: Path, pattern: str) -> list[Path]:
    """The report files of the first input step (by step id) that wrote any."""
    paths = sorted(directory.glob(pattern.format("*")))
    prefix = pattern.split("{}")[0]
    steps = sorted({p.name[len(prefix):].split("~", 1)[0] for p in paths})
    return [p for p in paths if steps and p.name[len(prefix):].startswith(steps[0] + "~")]


def live_source_tally(directory: Path) -> SourceTally:
    """What all partitions have counted so far, while the run goes on."""
    return SourceTally(**Counters.read(_first_step(directory, LIVE), TALLY_FIELDS))


def read_source_report(directory: Path) -> tuple[SourceTally, list[dict[str, Any]]]:
    """The merged counts and dead letters (in seq order) of all partitions of a run."""
    tally = SourceTally()
    for path in _first_step(directory, TALLY):
        tally.add(SourceTally(**orjson.loads(path.read_bytes())))
    dead: list[dict[str, Any]] = []
    for path in _first_step(directory, DEAD_LETTERS):
        dead.extend(orjson.loads(line) for line in path.read_bytes().splitlines())
    dead.sort(key=lambda row: (row["seq"], row["reason"], row.get("where") or ""))
    return tally, dead

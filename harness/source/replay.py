"""`ReplaySource`: a recording as a Bytewax source for any flow, sharded by a key.

The keying rule. Items are the recorded event payloads: the `data` of each
envelope, a dict, value for value as the server sent it. Every partition
holds *all* events of its keys, in recording order. So a flow that keys its
stream by the same key (`op.key_on(..., lambda e: e[KEY])`) sees each key's
events in recording order on any number of workers and processes, and its
stateful steps (windows, lateness, running state) decide the same things on
every cluster shape. A flow keyed by anything else gets one key's events
from several partitions, interleaved by thread timing: not deterministic.

A key is a field name (`"wiki"`), a dotted path (`"meta.domain"`) or a
function of the payload; its values are strings or integers (see
`harness.source.keys`). The source reads lanes derived from the recording by
that key (`harness.source.keylanes`, once, then cached): partition `i` reads
lane `i` only, which holds exactly the events of its keys, and lane `i` is
read on worker `i % workers`, the very worker Bytewax routes those keys to
whenever the worker count divides `partitions`. A flow keyed like its
source therefore exchanges nothing between processes.

Payloads that were not JSON, JSON that is not an object, and events whose
key is missing or of another type are *dead letters*: counted and reported,
never passed on. With a slice (`start`/`end` on the integer `timestamp`,
`wikis` on `wiki`), events outside it are counted as `outside`. Per
partition: `read = passed + not_json + not_object + no_key + outside`; lines
of a damaged recording skipped under `skip_damaged` are counted as `damaged`.

Dead letters and counts go to `report_dir` (one file per partition, cut
back to the last snapshot on resume, so exactly once under recovery); read
them with `read_source_report` (`harness.source.deadletters`). Resume state
is a position in the derived lanes, so a flow run with Bytewax recovery
continues where it was. Chunks of a lane are decoded into payloads by
`harness.source.payloads`, the reader `harness live` shares.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from harness.errors import UsageError
from harness.process import keep_thread_state
from harness.recording.blocks import Damage
from harness.recording.reader import LanePosition, Recording
from harness.recording.slice import Slice
from harness.source.deadletters import (
    SourcePosition,
    SourceReport,
    SourceTally,
    live_source_tally,
    read_source_report,
)
from harness.source.keylanes import KeyLanes, check_lanes, key_lanes
from harness.source.keys import USER, KeyGetter, Payload, key_getter, key_name
from harness.source.lanes import LanePartition
from harness.source.payloads import (
    PAYLOAD_CHUNK_BYTES,
    SHARED_CHUNK_BYTES,
    PayloadReader,
    Received,
    received_time,
)
from harness.source.turns import Turns

# What other modules import from here: the source, and (defined beside it, in the
# modules named in the doc) its reader, its report and their constants.
__all__ = ["DEFAULT_PARTITIONS", "PAYLOAD_CHUNK_BYTES", "SHARED_CHUNK_BYTES", "KeyGetter",
           "PayloadReader", "Received", "ReplaySource", "SourcePosition", "SourceReport",
           "SourceTally", "live_source_tally", "read_source_report", "received_time",
           "shard_name"]

DEFAULT_PARTITIONS: Final = 8


def shard_name(key_name: str, shard: int) -> str:
    """The partition name of lane `shard` of a source keyed by `key_name`."""
    safe = "".join(c if c.isalnum() or c in "._" else "_" for c in key_name)[:40] or "key"
    return f"{safe}-{shard:05d}"


@dataclass(frozen=True)
class ReplaySource(FixedPartitionedSource[Payload, SourcePosition]):
    """Replays a recording's event payloads, sharded by `key` (see the module doc).

    `partitions` (default 8) is the number of lanes the key's events are dealt
    into, one partition each; it must stay the same across a resume. A
    worker count that divides it keeps every key on the worker that reads it.
    `batch_size` caps the items per batch; `speed` X replays at X times the
    recorded pace (by receive time; None or 0: as fast as possible);
    `start`/`end` keep events with `start <= timestamp < end` (unix seconds);
    `wikis` keeps events of those wikis; `skip_damaged` replays what is
    readable of a damaged recording and reports the rest; `received` makes
    items `Received` dicts that carry their receive time, for a
    `RecordedClock` (`harness replay --clock recorded`).
    """

    recording: Path
    key: str | KeyGetter = USER
    partitions: int | None = None
    batch_size: int | None = None
    speed: float | None = None
    start: int | None = None
    end: int | None = None
    wikis: frozenset[str] | None = None
    skip_damaged: bool = False
    report_dir: Path | None = None
    received: bool = False
    chunk_bytes: int = PAYLOAD_CHUNK_BYTES  # lines decoded at once (SHARED_CHUNK_BYTES
    # suits a process with several worker threads)
    error_log: Path | None = field(default=None, repr=False)
    token: str = field(default_factory=lambda: uuid.uuid4().hex, repr=False, compare=False)

    def __post_init__(self) -> None:
        key_getter(self.key)  # validates
        if self.partitions is not None:
            check_lanes(self.partitions)
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")

    @property
    def key_name(self) -> str:
        return key_name(self.key)

    @property
    def lane_count(self) -> int:
        return self.partitions or DEFAULT_PARTITIONS

    @property
    def slice(self) -> Slice:
        return Slice(self.start, self.end, self.wikis)

    def lanes(self, progress: bool | None = False) -> KeyLanes:
        """The lanes this source reads, derived by its key on first use (then cached)."""
        with _resolving:
            found = _resolved.get(self.token)
            if found is None:
                recording = Recording(self.recording, skip_damaged=self.skip_damaged)
                found = _resolved[self.token] = key_lanes(recording, self.key,
                                                          self.lane_count, progress=progress)
            return found

    def list_parts(self) -> list[str]:
        keep_thread_state()  # list_parts runs on every worker thread
        return [shard_name(self.key_name, lane) for lane in range(self.lane_count)]

    def build_part(self, step_id: str, for_part: str,
                   resume_state: SourcePosition | None) -> _LanePayloads:
        start = resume_state or SourcePosition()
        lanes = self.lanes()
        slice_ = self.slice
        damage = lanes.damage
        partition = LanePartition(
            lanes.recording, int(for_part.rsplit("-", 1)[1]),
            LanePosition(start.segment, start.offset, start.skip), self.speed,
            self.batch_size, self.error_log,
            skip_segment=slice_.excludes_segment if slice_ else None,
            segment_events=lanes.events,
            damaged=lambda index: [Damage(where, lines) for where, lines in damage[index]],
            coalesce=self.chunk_bytes)
        return _LanePayloads(partition, PayloadReader(self.key, slice_, self.received),
                             SourceReport(self.report_dir, for_part, start, step_id),
                             Turns.of_this_thread(f"{self.token}~{step_id}"))


_resolving = threading.Lock()
_resolved: dict[str, KeyLanes] = {}  # ReplaySource.token -> its lanes, in this process


class _LanePayloads(StatefulSourcePartition[Payload, SourcePosition]):
    """One lane, its lines turned into payloads."""

    def __init__(self, lanes: LanePartition, reader: PayloadReader,
                 report: SourceReport, turns: Turns) -> None:
        self._lanes = lanes
        self._reader = reader
        self._report = report
        self._turns = turns
        turns.join(report.part)

    def next_batch(self) -> list[Payload]:
        if not self._turns.mine(self._report.part):
            return []
        report, read = self._report, self._reader.read
        try:
            chunks = self._lanes.next_batch()
        except StopIteration:
            self._turns.leave(self._report.part)
            raise
        out = read(chunks[0], report) if len(chunks) == 1 else [
            payload for chunk in chunks for payload in read(chunk, report)]
        report.progressed()
        return out

    def next_awake(self) -> datetime | None:
        return self._lanes.next_awake()

    def snapshot(self) -> SourcePosition:
        at = self._lanes.snapshot()
        return self._report.position(at.segment, at.offset, at.skip)

    def close(self) -> None:
        self._report.close()

"""`ReplaySource`: a recording as a Bytewax source for any flow, sharded by a key.

The keying rule. Items are the recorded event payloads: the `data` of each
envelope, a dict, value for value as the server sent it. Every partition
holds *all* events of its keys, in recording order. So a flow that keys its
stream by the same key (`op.key_on(..., lambda e: e[KEY])`) sees each key's
events in recording order on any number of workers and processes, and its
stateful steps (windows, lateness, running state) decide the same things on
every cluster shape. A flow keyed by anything else gets one key's events
from several partitions, interleaved by thread timing: not deterministic.

- `key="user"` uses the recording's lanes directly: a lane holds every
  event of its users (`crc32(user) % lanes`), so partition = lane and each
  partition decompresses only its own lane. This is as fast as replay gets.
- Any other key (a field name such as `"wiki"`, a dotted path such as
  `"meta.domain"`, or a callable taking the payload) is re-sharded at read
  time: `crc32(str(value)) % partitions`. Each worker reads the recording
  once, in arrival order, and deals each event to the partition of its key
  (only the partitions it owns keep it).

Key values are strings or integers (an integer is keyed by its decimal
text, as `key_on` would need it anyway). Payloads that were not JSON, JSON
that is not an object, and events whose key is missing or of another type
are *dead letters*: counted and reported, never passed on. With a slice
(`start`/`end` on the integer `timestamp`, `wikis` on `wiki`), events
outside it are counted as `outside`. Per partition:
`read = passed + not_json + not_object + no_key + outside`; lines of a
damaged recording skipped under `skip_damaged` are counted as `damaged`.

Dead letters and counts go to `report_dir` (one file per partition, cut
back to the last snapshot on resume, so exactly once under recovery); read
them with `read_source_report`. Resume state is a position in the
recording, so a flow run with Bytewax recovery continues where it was.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Final

import orjson
import zstandard
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from harness.errors import RecordingError, UsageError, logging_errors
from harness.files import Counters, write_atomically
from harness.process import keep_thread_state
from harness.recording.blocks import Block, Damage
from harness.recording.envelope import DAMAGED, NOT_JSON, NOT_OBJECT, Envelope, EnvelopeError
from harness.recording.lanes import Chunk, lane_index, lane_name
from harness.recording.manifest import Segment
from harness.recording.reader import LanePosition, Recording
from harness.recording.slice import Slice
from harness.replay.lanes import LanePartition

__all__ = ["KeyGetter", "Received", "ReplaySource", "Selector", "SourcePosition", "SourceReport",
           "SourceTally", "key_getter", "read_source_report"]

Payload = dict[str, Any]
KeyGetter = Callable[[Payload], Any]
USER: Final = "user"
NO_KEY: Final = "no-key"
OUTSIDE: Final = "outside"
DEAD_LETTERS: Final = "source-deadletters-{}.jsonl"
TALLY: Final = "source-tally-{}.json"
LIVE: Final = "source-live-{}.bin"  # running counts (for progress and Ctrl-C)


class Received(dict[str, Any]):
    """An event payload (a dict, as sent) that also knows when it was received.

    `recv` is unix seconds; `seq` its number in the recording; `key` the
    text of the source's key (`--key`) it was sharded by. Everything that
    takes a dict takes it (and orjson writes it as the plain object).
    """

    __slots__ = ("key", "recv", "seq")

    def __init__(self, payload: dict[str, Any], recv: float, seq: int,
                 key: str | None = None) -> None:
        super().__init__(payload)
        self.recv = recv
        self.seq = seq
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return (Received, (dict(self), self.recv, self.seq, self.key))


def received_time(item: Any) -> float | None:
    """An item's receive time, or None for a plain payload (event time only)."""
    recv = getattr(item, "recv", None)
    return recv if isinstance(recv, float) else None


def key_getter(key: str | KeyGetter) -> KeyGetter:
    """The function that takes a payload's key: a field, a dotted path, or `key` itself."""
    if callable(key):
        return key
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise UsageError(f"--key {key!r}: expected a field name or a dotted path")
    path = key.split(".")
    if len(path) == 1:
        return lambda payload: payload.get(key)

    def get(payload: Payload) -> Any:
        value: Any = payload
        for part in path:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    return get


def key_text(value: Any) -> str | None:
    """A key value as the text it is sharded (and keyed) by; None if it is no key."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def shard_of(text: str, shards: int) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % shards


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


@dataclass(frozen=True)
class ReplaySource(FixedPartitionedSource[Payload, SourcePosition]):
    """Replays a recording's event payloads, sharded by `key` (see the module doc).

    `partitions` (default: the recording's lane count) is the number of
    shards for a key other than `user`; it must stay the same across a
    resume. `batch_size` caps the items per batch; `speed` X replays at X
    times the recorded pace (by receive time; None or 0: as fast as
    possible); `start`/`end` keep events with `start <= timestamp < end`
    (unix seconds); `wikis` keeps events of those wikis; `skip_damaged`
    replays what is readable of a damaged recording and reports the rest;
    `received` makes items `Received` dicts that carry their receive time,
    for a `RecordedClock` (`harness replay --clock recorded`).
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
    error_log: Path | None = field(default=None, repr=False)
    token: str = field(default_factory=lambda: uuid.uuid4().hex, repr=False, compare=False)

    def __post_init__(self) -> None:
        key_getter(self.key)  # validates
        if self.partitions is not None and not 1 <= self.partitions <= 65535:
            raise UsageError(f"partitions must be 1..65535, got {self.partitions}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")

    @property
    def by_lane(self) -> bool:
        """Whether partitions are the recording's lanes (see `keyed_by_lanes`)."""
        return keyed_by_lanes(self.key, self.partitions, self._lanes())

    def _lanes(self) -> int:
        return Recording(self.recording).lanes

    @property
    def key_name(self) -> str:
        return self.key if isinstance(self.key, str) else "key"

    def list_parts(self) -> list[str]:
        keep_thread_state()  # list_parts runs on every worker thread
        lanes = self._lanes()
        if keyed_by_lanes(self.key, self.partitions, lanes):
            return [lane_name(lane) for lane in range(lanes)]
        return [shard_name(self.key_name, i) for i in range(self.partitions or lanes)]

    def build_part(self, step_id: str, for_part: str,
                   resume_state: SourcePosition | None
                   ) -> StatefulSourcePartition[Payload, SourcePosition]:
        start = resume_state or SourcePosition()
        recording = Recording(self.recording, skip_damaged=self.skip_damaged)
        report = SourceReport(self.report_dir, for_part, start)
        selector = Selector.of(self, recording)
        if selector.by_lane:
            lane = lane_index(for_part)
            lanes = LanePartition(recording, lane, LanePosition(start.segment, start.offset,
                                                                start.skip),
                                  self.speed, self.batch_size, self.error_log,
                                  skip_segment=selector.skip_segment)
            return _LanePayloads(lanes, selector, report)
        reader = _SharedReader.for_worker(self, step_id, recording, selector)
        state = reader.register(int(for_part.rsplit("-", 1)[1]), start, report)
        return _ShardPayloads(reader, state, report, self.batch_size, self.error_log)


def keyed_by_lanes(key: str | KeyGetter, partitions: int | None, lanes: int) -> bool:
    """Whether a source keyed by `key` into `partitions` (None: one per lane) is the
    recording's `lanes` themselves: key `user`, one partition per lane."""
    return key == USER and partitions in (None, lanes)


def shard_name(key_name: str, shard: int) -> str:
    """The partition name of a shard of a key other than `user`."""
    safe = "".join(c if c.isalnum() or c in "._" else "_" for c in key_name)[:40] or "key"
    return f"{safe}-{shard:05d}"


class Selector:
    """Decides what becomes of one envelope: passed on (with its key text) or why not.

    With `received`, a payload passed on is a `Received` dict that also carries
    the event's receive time and seq (for `RecordedClock`). `by_lane`: the
    partitions are the recording's lanes (else `shards` shards of the key).
    """

    def __init__(self, key: str | KeyGetter, slice_: Slice, received: bool = False,
                 shards: int = 1, segments: list[Segment] | None = None,
                 by_lane: bool = False) -> None:
        self._key = key_getter(key)
        self._key_name = key if isinstance(key, str) else "key"
        self.slice = slice_
        self._sliced = bool(slice_)
        self.received = received
        self.shards = shards
        self.by_lane = by_lane
        self._segments = segments or []

    @classmethod
    def of(cls, source: ReplaySource, recording: Recording) -> Selector:
        return cls(source.key, Slice(source.start, source.end, source.wikis), source.received,
                   source.partitions or recording.lanes, recording.manifest.segments,
                   keyed_by_lanes(source.key, source.partitions, recording.lanes))

    def shard(self, verdict: Verdict, seq: int) -> int:
        """The shard an event belongs to: its key's, or `seq`'s when it is not passed on
        (so that exactly one partition counts it)."""
        return seq % self.shards if isinstance(verdict, str) else shard_of(verdict[1],
                                                                           self.shards)

    def partition(self, verdict: Verdict, seq: int, lane: int) -> str:
        """The name of the partition that holds an event (`lane`: its recording lane)."""
        if self.by_lane:
            return lane_name(lane)
        return shard_name(self._key_name, self.shard(verdict, seq))

    def skip_segment(self, segment: Segment) -> bool:
        return self.slice.excludes_segment(segment)

    def segment_events(self, index: int) -> int:
        return self._segments[index].events

    def classify(self, env: Envelope) -> tuple[Payload, str] | str:
        """The payload and its key text if it is passed on, else the reason it is not."""
        if not env.is_json:
            return NOT_JSON
        payload = env.data
        if not isinstance(payload, dict):
            return NOT_OBJECT
        if self._sliced and not self.slice.admits(payload.get("timestamp"), payload.get("wiki")):
            return OUTSIDE
        text = key_text(self._key(payload))
        if text is None:
            return NO_KEY
        return (Received(payload, env.recv, env.seq, text) if self.received else payload), text


Verdict = tuple[Payload, str] | str


class SourceReport:
    """One partition's counts and dead letters (a file in `directory`, cut back to
    `start` on resume); without a directory, dead letters are only counted."""

    def __init__(self, directory: Path | None, part: str, start: SourcePosition) -> None:
        self.part = part
        self.tally = SourceTally(**dict(start.tally))
        self._file: BinaryIO | None = None
        self._tally_path: Path | None = None
        self._pending: list[bytes] = []
        self._live: Counters | None = None
        if directory is not None:
            self._live = Counters(directory / LIVE.format(part), TALLY_FIELDS)
            self._file = (directory / DEAD_LETTERS.format(part)).open("ab")
            self._file.truncate(start.report_bytes)
            self._tally_path = directory / TALLY.format(part)

    def count(self, verdict: Verdict, seq: int) -> Payload | None:
        """Count one read event under its verdict; the payload if it is passed on."""
        tally = self.tally
        tally.read += 1
        if not isinstance(verdict, str):
            tally.passed += 1
            return verdict[0]
        if verdict == OUTSIDE:
            tally.outside += 1
        else:
            field_name = verdict.replace("-", "_")
            setattr(tally, field_name, getattr(tally, field_name) + 1)
            self._dead(seq, verdict)
        return None

    def progressed(self) -> None:
        """Keep the running counts current (for progress and Ctrl-C)."""
        if self._live is not None:
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
            row: dict[str, Any] = {"seq": seq, "reason": reason, "partition": self.part}
            if where is not None:
                row["where"] = where
            self._pending.append(orjson.dumps(row))

    def position(self, segment: int, offset: int, skip: int) -> SourcePosition:
        """The resume state at a read position, after writing out what is pending."""
        size = 0
        if self._file is not None and self._tally_path is not None:
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
            self._live.close()
        if self._file is not None:
            self._file.close()
        elif self.tally.dead_letters or self.tally.damaged:
            print(f"harness source {self.part}: {self.tally.dead_letters} dead letter(s) and"
                  f" {self.tally.damaged} damaged line(s) not passed on (give report_dir to"
                  " keep them)", file=sys.stderr)


_Partition = StatefulSourcePartition[Payload, SourcePosition]


class _LanePayloads(_Partition):
    """Key `user`: one recording lane, its lines turned into payloads."""

    def __init__(self, lanes: LanePartition, selector: Selector, report: SourceReport) -> None:
        self._lanes = lanes
        self._selector = selector
        self._report = report

    def next_batch(self) -> list[Payload]:
        out: list[Payload] = []
        for chunk in self._lanes.next_batch():
            self._add(chunk, out)
        self._report.progressed()
        return out

    def _add(self, chunk: Chunk, out: list[Payload]) -> None:
        report, classify = self._report, self._selector.classify
        if chunk.damage is not None:
            report.damaged(chunk.damage)
        if chunk.outside:
            report.outside(chunk.outside)
        for number, line in enumerate(chunk.lines.splitlines(), start=1):
            try:
                env = Envelope.decode(line)
            except EnvelopeError as exc:
                where = chunk.place(number)
                if chunk.strict:
                    raise RecordingError(f"{where}: {exc}") from None
                report.damaged(Damage(where, 1))
                continue
            payload = report.count(classify(env), env.seq)
            if payload is not None:
                out.append(payload)

    def next_awake(self) -> datetime | None:
        return self._lanes.next_awake()

    def snapshot(self) -> SourcePosition:
        at = self._lanes.snapshot()
        return self._report.position(at.segment, at.offset, at.skip)

    def close(self) -> None:
        self._report.close()


@dataclass(slots=True)
class _Shard:
    """One shard's queue of dealt events and the position after the last emitted one."""

    position: SourcePosition
    report: SourceReport | None = None
    queue: deque[tuple[Verdict, int, int, int, int]] = field(default_factory=deque)
    # (verdict, seq, segment, block offset, n-th event of this shard in that block)


class _SharedReader:
    """Reads a recording once per worker, in arrival order, and deals each event to
    the queue of its shard, keeping only the shards this worker owns.

    An event that is passed on belongs to the shard of its key; one that is
    not (a dead letter, or outside the slice) to shard `seq % shards`, so
    exactly one partition counts it. Damage is reported by shard 0's owner.
    Shards on one worker are polled by one thread in turn, so they advance
    together and no queue holds much more than a block.
    """

    _lock = threading.Lock()
    _readers: ClassVar[dict[tuple[str, str, int], _SharedReader]] = {}

    @classmethod
    def for_worker(cls, source: ReplaySource, step_id: str, recording: Recording,
                   selector: Selector) -> _SharedReader:
        key = (source.token, step_id, threading.get_ident())
        with cls._lock:
            reader = cls._readers.get(key)
            if reader is None:
                reader = cls._readers[key] = _SharedReader(key, source, recording, selector)
            return reader

    def __init__(self, key: tuple[str, str, int], source: ReplaySource, recording: Recording,
                 selector: Selector) -> None:
        self._key = key
        self._recording = recording
        self._selector = selector
        self.shards: dict[int, _Shard] = {}
        self._blocks: Iterator[tuple[int, Block | Damage]] | None = None
        self._dctx = zstandard.ZstdDecompressor()
        self._speed = source.speed or None
        self._origin: float | None = None
        self._started = time.time()
        self.due: float | None = None
        self._held: tuple[int, Block] | None = None  # read, not yet due
        self.after: tuple[int, int] | None = None  # position after the last dealt block
        self._open = 0

    def register(self, shard: int, position: SourcePosition, report: SourceReport) -> _Shard:
        state = self.shards[shard] = _Shard(position, report)
        self._open += 1
        return state

    def release(self) -> None:
        """A partition is done with this reader; the last one removes it."""
        self._open -= 1
        if self._open <= 0:
            with self._lock:
                self._readers.pop(self._key, None)

    def _walk(self) -> Iterator[tuple[int, Block | Damage]]:
        segment, offset = min((s.position.segment, s.position.offset)
                              for s in self.shards.values())
        if (segment, offset) == (0, 0):
            self._origin = self._recording.first_received()
        recording, selector = self._recording, self._selector
        owner = self.shards.get(0)
        for index in range(segment, len(recording.manifest.segments)):
            if selector.skip_segment(recording.manifest.segments[index]):
                if owner is not None and owner.report is not None and \
                        index >= owner.position.segment and owner.position.offset == 0:
                    owner.report.outside(selector.segment_events(index))
                    owner.position = _moved(owner.position, index + 1, 0)
                continue
            for item in recording.segment_blocks(index, offset if index == segment else 0):
                yield index, item

    def fill(self) -> bool:
        """Deal the next block if it is due; False once the recording is exhausted."""
        if self._blocks is None:
            self._blocks = self._walk()
        if self._held is None:
            item = next(self._blocks, None)
            if item is None:
                return False
            index, block = item
            if isinstance(block, Damage):
                self._damaged(block)
                return True
            self._held = index, block
        index, block = self._held
        if self._speed:
            if self._origin is None:
                self._origin = block.header.first_recv
            self.due = self._started + (block.header.first_recv - self._origin) / self._speed
            if time.time() < self.due:
                return True
        self.due, self._held = None, None
        self._deal(index, block)
        return True

    def _damaged(self, damage: Damage) -> None:
        owner = self.shards.get(0)
        if owner is not None and owner.report is not None:
            owner.report.damaged(damage)

    def _envelopes(self, block: Block) -> list[Envelope]:
        out = []
        for lane, data in self._recording.read_frames(block, None, self._dctx):
            if isinstance(data, Damage):
                self._damaged(data)
                continue
            for number, line in enumerate(data.splitlines(), start=1):
                try:
                    out.append(Envelope.decode(line))
                except EnvelopeError as exc:
                    where = (f"{block.segment}: block at byte {block.offset}: lane {lane}"
                             f" line {number}")
                    if not self._recording.skip_damaged:
                        raise RecordingError(f"{where}: {exc}") from None
                    self._damaged(Damage(where, 1))
        out.sort(key=_seq)
        return out

    def _deal(self, index: int, block: Block) -> None:
        classify, shard_of_event, mine = (self._selector.classify, self._selector.shard,
                                          self.shards)
        counts: dict[int, int] = {}
        at = (index, block.offset)
        for env in self._envelopes(block):
            verdict = classify(env)
            shard = shard_of_event(verdict, env.seq)
            counts[shard] = n = counts.get(shard, 0) + 1
            state = mine.get(shard)
            if state is None:
                continue
            resume = (state.position.segment, state.position.offset)
            if at < resume or (at == resume and n <= state.position.skip):
                continue  # emitted before the resume
            state.queue.append((verdict, env.seq, index, block.offset, n))
        self.after = (index, block.end)
        for state in mine.values():
            if not state.queue:
                state.position = _moved(state.position, index, block.end)


def _seq(envelope: Envelope) -> int:
    return envelope.seq


def _moved(position: SourcePosition, segment: int, offset: int) -> SourcePosition:
    """`position` advanced to a block boundary (never moved back)."""
    if (segment, offset) <= (position.segment, position.offset):
        return position
    return SourcePosition(segment, offset, 0, position.report_bytes, position.tally)


class _ShardPayloads(_Partition):
    """Any other key: one shard of the events, dealt by this worker's shared reader."""

    def __init__(self, reader: _SharedReader, state: _Shard, report: SourceReport,
                 batch_size: int | None, error_log: Path | None) -> None:
        self._reader = reader
        self._state = state
        self._report = report
        self._batch_size = batch_size or 4096
        self._next = logging_errors(self._next_batch, error_log)

    def next_batch(self) -> list[Payload]:
        return self._next()

    def _next_batch(self) -> list[Payload]:
        state, reader = self._state, self._reader
        while not state.queue:
            if not reader.fill():
                raise StopIteration
            if reader.due is not None:
                return []  # paced: next_awake says when
        out: list[Payload] = []
        while state.queue and len(out) < self._batch_size:
            verdict, seq, segment, offset, n = state.queue.popleft()
            payload = self._report.count(verdict, seq)
            if payload is not None:
                out.append(payload)
            state.position = SourcePosition(segment, offset, n)
        if not state.queue and reader.after is not None:
            state.position = _moved(state.position, *reader.after)
        self._report.progressed()
        return out

    def next_awake(self) -> datetime | None:
        due = self._reader.due
        if due is None or due <= time.time():
            return None
        return datetime.fromtimestamp(due, tz=timezone.utc)

    def snapshot(self) -> SourcePosition:
        p = self._state.position
        return self._report.position(p.segment, p.offset, p.skip)

    def close(self) -> None:
        self._report.close()
        self._reader.release()


def live_source_tally(directory: Path) -> SourceTally:
    """What all partitions have counted so far, while the run goes on."""
    return SourceTally(**Counters.read(sorted(directory.glob(LIVE.format("*"))),
                                       TALLY_FIELDS))


def read_source_report(directory: Path) -> tuple[SourceTally, list[dict[str, Any]]]:
    """The merged counts and dead letters (in seq order) of all partitions of a run."""
    tally = SourceTally()
    for path in sorted(directory.glob(TALLY.format("*"))):
        tally.add(SourceTally(**orjson.loads(path.read_bytes())))
    dead: list[dict[str, Any]] = []
    for path in sorted(directory.glob(DEAD_LETTERS.format("*"))):
        dead.extend(orjson.loads(line) for line in path.read_bytes().splitlines())
    dead.sort(key=lambda row: (row["seq"], row["reason"], row.get("where") or ""))
    return tally, dead

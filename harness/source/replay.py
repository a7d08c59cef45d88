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
them with `read_source_report`. Resume state is a position in the derived
lanes, so a flow run with Bytewax recovery continues where it was.
"""

from __future__ import annotations

import sys
import threading
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Final

import msgspec
import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from msgspec import UNSET

from harness.errors import RecordingError, UsageError
from harness.files import Counters, naming, write_atomically
from harness.process import keep_thread_state
from harness.recording.blocks import Damage
from harness.recording.envelope import DAMAGED, NOT_JSON, NOT_OBJECT, Envelope, EnvelopeError
from harness.recording.lanes import Chunk
from harness.recording.reader import LanePosition, Recording
from harness.recording.slice import Slice
from harness.source.keylanes import KeyLanes, key_lanes
from harness.source.keys import NO_KEY, USER, KeyGetter, Payload, key_getter, key_text
from harness.source.lanes import LanePartition

__all__ = ["DEFAULT_PARTITIONS", "PAYLOAD_CHUNK_BYTES", "SHARED_CHUNK_BYTES", "KeyGetter",
           "PayloadReader", "Received", "ReplaySource", "SourcePosition", "SourceReport",
           "SourceTally", "read_source_report", "shard_name"]

DEFAULT_PARTITIONS: Final = 8
# Lines decoded at once: the payloads of ~200 events, which stay in cache through the
# flow's first steps. 512 KiB chunks were 7% slower on a stateful_map flow; 64 KiB ones
# 5% slower again (per-chunk costs). Worker threads sharing a process hand the GIL to
# each other at every step of every batch: there, 1 MiB chunks were 4% faster than
# 256 KiB and 4 MiB ones 10% slower (count_window, 4 workers).
PAYLOAD_CHUNK_BYTES: Final = 256 << 10
SHARED_CHUNK_BYTES: Final = 1 << 20
# A run's report files, by input step and partition. A flow that reads the source from
# two input steps reads every event twice; the first step's report is the report.
DEAD_LETTERS: Final = "source-deadletters-{}.jsonl"
TALLY: Final = "source-tally-{}.json"
LIVE: Final = "source-live-{}.bin"  # running counts (for progress and Ctrl-C)
LIVE_EVERY: Final = 4096


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
        if self.partitions is not None and not 1 <= self.partitions <= 65535:
            raise UsageError(f"partitions must be 1..65535, got {self.partitions}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")

    @property
    def key_name(self) -> str:
        return self.key if isinstance(self.key, str) else "key"

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
                             _Turns.of_this_thread(f"{self.token}~{step_id}"))


_resolving = threading.Lock()
_resolved: dict[str, KeyLanes] = {}  # ReplaySource.token -> its lanes, in this process


class _Envelope(msgspec.Struct):
    """A recording line, for the source: the payload as any JSON value."""

    seq: int
    recv: float
    data: Any = UNSET
    raw: str | None = None
    error: str | None = None


_decode_lines = msgspec.json.Decoder(_Envelope).decode_lines
_NOT_FAST = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)


class PayloadReader:
    """Turns chunks of recording lines into the payloads a source passes on, counting
    each event under what became of it in a `SourceReport`."""

    def __init__(self, key: str | KeyGetter, slice_: Slice, received: bool = False) -> None:
        self._field = key if isinstance(key, str) and "." not in key else None
        self._get = key_getter(key)
        self._slice = slice_ if slice_ else None
        self._received = received

    def read(self, chunk: Chunk, report: SourceReport) -> list[Payload]:
        """The payloads of `chunk` passed on; everything else counted in `report`."""
        if chunk.damage is not None:
            report.damaged(chunk.damage)
        if chunk.outside:
            report.outside(chunk.outside)
        if not chunk.lines:
            return []
        try:
            envelopes: list[Any] = _decode_lines(chunk.lines)
            if len(envelopes) != chunk.line_count:  # a blank line: damage, found below
                raise msgspec.DecodeError
        except _NOT_FAST:
            envelopes = self._line_by_line(chunk, report)
        out: list[Payload] = []
        field_name, get, slice_, received = self._field, self._get, self._slice, self._received
        outside = 0
        for env in envelopes:  # the hot loop
            data = env.data
            if type(data) is dict:
                if slice_ is not None and not slice_.admits(data.get("timestamp"),
                                                            data.get("wiki")):
                    outside += 1
                    continue
                value = data.get(field_name) if field_name is not None else get(data)
                text = value if type(value) is str else key_text(value)
                if text is None:
                    report.dead(env.seq, NO_KEY)
                elif received:
                    out.append(Received(data, env.recv, env.seq, text))
                else:
                    out.append(data)
            elif env.error is not None:
                report.dead(env.seq, NOT_JSON)
            elif data is UNSET:
                where = chunk.place(envelopes.index(env) + 1)
                raise RecordingError(f"{where}: seq {env.seq}: neither data nor raw")
            else:
                report.dead(env.seq, NOT_OBJECT)
        report.passed(len(out), outside)
        return out

    @staticmethod
    def _line_by_line(chunk: Chunk, report: SourceReport) -> list[Any]:
        envelopes: list[Any] = []
        for number, line in enumerate(chunk.lines.splitlines(), start=1):
            try:
                envelopes.append(Envelope.decode(line))
            except EnvelopeError as exc:
                where = chunk.place(number)
                if chunk.strict:
                    raise RecordingError(f"{where}: {exc}") from None
                report.damaged(Damage(where, 1))
        return envelopes


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


class _Turns:
    """The partitions one worker thread reads take turns: one batch per pass.

    Bytewax asks every partition of a worker for a batch on each pass of its
    input step and lets the batches run ahead of the flow within an epoch
    (ten seconds by default: a whole replay, often). Eight partitions handing
    over a batch each per pass outran a flow that writes 100 items per event
    by 1.1 GB on a 20k-event recording; one batch per pass keeps what is in
    flight to about one batch's worth (measured: 146 MB).
    """

    _lock = threading.Lock()
    _by_thread: ClassVar[dict[tuple[str, int], _Turns]] = {}

    def __init__(self, key: tuple[str, int]) -> None:
        self.key = key
        self.order: list[str] = []  # the partitions, in the order Bytewax asks them
        self.current = 0  # whose turn it is
        self.last = -1  # the index of the partition asked last
        self.spent = False  # a batch has been handed over in this pass

    @classmethod
    def of_this_thread(cls, token: str) -> _Turns:
        key = (token, threading.get_ident())
        with cls._lock:
            turns = cls._by_thread.get(key)
            if turns is None:
                turns = cls._by_thread[key] = cls(key)
            return turns

    def join(self, part: str) -> None:
        self.order.append(part)
        self.order.sort()  # Bytewax asks in the order of the partitions' names

    def mine(self, part: str) -> bool:
        """Whether `part` may hand over a batch now (and so it is its turn no more)."""
        index = self.order.index(part)
        if index <= self.last:  # a new pass
            self.spent = False
        self.last = index
        if self.spent or index != self.current % len(self.order):
            return False
        self.spent = True
        self.current = index + 1
        return True

    def leave(self, part: str) -> None:
        index = self.order.index(part)
        del self.order[index]
        if index < self.current:
            self.current -= 1
        self.last = -1
        if not self.order:
            with self._lock:
                self._by_thread.pop(self.key, None)


class _LanePayloads(StatefulSourcePartition[Payload, SourcePosition]):
    """One lane, its lines turned into payloads."""

    def __init__(self, lanes: LanePartition, reader: PayloadReader,
                 report: SourceReport, turns: _Turns) -> None:
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

"""decode: a lane's recorded lines -> the few fields detection needs.

The fast path decodes only `user`, `timestamp` and `meta.domain` with
msgspec (no other field is materialised) and accepts exactly the events
`semantics.classify` accepts; every other line is judged by `classify`
itself, so the rules stay in one place. The envelope fields read here
(`seq`, `data`) are those of `harness.recording.envelope`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from msgspec import UNSET, UnsetType

from harness.errors import RecordingError
from harness.flows.bots.semantics import (
    CANARY,
    DeadLetter,
    DetectionParams,
    classify,
)
from harness.recording.envelope import DAMAGED, NOT_JSON
from harness.recording.lanes import Chunk
from harness.recording.slice import Slice

__all__ = ["Decoder", "EventBatch", "decode"]


@dataclass(slots=True)
class EventBatch:
    """A decoded chunk: countable events as parallel lists, plus what was not."""

    lane: int
    users: list[str] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    events: int = 0
    canary: int = 0
    invalid: list[DeadLetter] = field(default_factory=list)
    damage: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0
    outside: int = 0  # events outside the replayed slice
    recvs: list[float] = field(default_factory=list)  # receive times (recorded clock only)
    tick: float | None = None  # live, idle: the clock has reached this time


class _Meta(msgspec.Struct):
    domain: Any = None


class _Event(msgspec.Struct):
    user: Any = None
    timestamp: Any = None
    meta: _Meta | None = None


class _SlicedEvent(_Event):
    wiki: Any = None  # only decoded when replaying a slice by wiki


class _Envelope(msgspec.Struct):
    seq: int
    data: _Event | UnsetType = UNSET  # unset: a kept non-JSON payload


@functools.cache
def _envelope_type(wiki: bool, recv: bool) -> type[_Envelope]:
    """The envelope fields to decode: `wiki` for a slice by wiki, `recv` for the
    recorded clock; nothing else is materialised."""
    if not wiki and not recv:
        return _Envelope
    event = _SlicedEvent if wiki else _Event
    fields: list[tuple[str, Any, Any]] = [("data", event | UnsetType, UNSET)]
    if recv:
        fields.append(("recv", float, 0.0))
    kind: type[_Envelope] = msgspec.defstruct(  # type: ignore[assignment]
        "_Envelope", fields, bases=(_Envelope,))
    return kind


# RecursionError: msgspec gives up on deep nesting sooner than orjson does.
_NOT_FAST = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)

# Test hook for the performance gate: extra work per event, off unless set.
_SLOWDOWN = int(os.environ.get("HARNESS_SLOWDOWN_LOOPS", "0"))


class Decoder:
    """Decodes chunks for detection under `params`, keeping only `slice_` (if any).

    The fast path (msgspec, only `user`/`timestamp`/`meta.domain`, no other
    field materialised) accepts exactly the events `classify` accepts; every
    other line is judged by `classify` itself, so the rules stay in one place.
    A whole chunk is decoded in one call; only a chunk with a line that is not
    an envelope of an object (damage, non-object payloads) goes line by line.
    With a slice, events outside it are counted as `outside` first (a payload
    that is not JSON is reported as invalid whatever the slice).
    """

    def __init__(self, params: DetectionParams | None = None, slice_: Slice | None = None,
                 recorded: bool = False) -> None:
        self.params = params or DetectionParams()
        self.slice = slice_ if slice_ else None
        self.recorded = recorded  # also decode each event's receive time (the clock)
        self._low, self._high = self.params.timestamp_range()
        kind = _envelope_type(self.slice is not None and self.slice.wikis is not None, recorded)
        decoder = msgspec.json.Decoder(kind)
        self._decode_all: Callable[[bytes], list[_Envelope]] = decoder.decode_lines
        self._decode_one: Callable[[bytes], _Envelope] = decoder.decode

    def __call__(self, chunk: Chunk) -> EventBatch:
        lines = chunk.lines
        batch = EventBatch(chunk.lane, tick=chunk.tick)
        if chunk.damage is not None:
            batch.damage.append(DeadLetter(-1, DAMAGED, where=chunk.damage.where))
            batch.skipped += chunk.damage.lines
        batch.events += chunk.outside
        batch.outside += chunk.outside
        if not lines:
            return batch
        try:
            envelopes = self._decode_all(lines)
            # decode_lines passes over blank lines, which no recording holds: damage
            if len(envelopes) != chunk.line_count:
                raise msgspec.DecodeError("a blank line")
        except _NOT_FAST:
            for number, line in enumerate(lines.rstrip(b"\n").split(b"\n"), start=1):
                if not self._decode_line(line, batch):
                    where = chunk.place(number)
                    if chunk.strict:
                        raise RecordingError(f"{where}: not a recording envelope") from None
                    batch.damage.append(DeadLetter(-1, DAMAGED, where=where))
                    batch.skipped += 1
        else:
            batch.events += len(envelopes)
            self._add_envelopes(envelopes, batch)
        if _SLOWDOWN:
            for _ in range(_SLOWDOWN * batch.events):
                pass
        return batch

    def _add_envelopes(self, envelopes: list[_Envelope], batch: EventBatch) -> None:
        users, stamps, seqs, recvs = batch.users, batch.timestamps, batch.seqs, batch.recvs
        low, high, slice_, recorded = self._low, self._high, self.slice, self.recorded
        for env in envelopes:  # the hot loop
            data = env.data
            if data is not UNSET:
                user, ts, meta = data.user, data.timestamp, data.meta
                if slice_ is not None and not slice_.admits(ts, getattr(data, "wiki", None)):
                    batch.outside += 1
                    continue
                if (type(user) is str and type(ts) is int and low <= ts <= high
                        and (meta is None or meta.domain != CANARY)):
                    users.append(user)
                    stamps.append(ts)
                    seqs.append(env.seq)
                    if recorded:
                        recvs.append(env.recv)  # type: ignore[attr-defined]
                    continue
            self._add_unusual(env, batch)

    def _add_unusual(self, env: _Envelope, batch: EventBatch) -> None:
        """Anything the hot loop did not accept: let `classify` decide."""
        data = env.data
        if data is UNSET:
            batch.invalid.append(DeadLetter(env.seq, NOT_JSON))
            return
        fields: dict[str, Any] = {"user": data.user, "timestamp": data.timestamp}
        if data.meta is not None:
            fields["meta"] = {"domain": data.meta.domain}
        self._add_slow(env.seq, fields, batch, getattr(env, "recv", 0.0))

    def _decode_line(self, line: bytes, batch: EventBatch) -> bool:
        """Add one line; False if it is not an envelope at all (damage, not an event)."""
        try:
            self._add_envelopes([self._decode_one(line)], batch)
            batch.events += 1
            return True
        except _NOT_FAST:
            pass
        try:
            envelope = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(envelope, dict) or type(envelope.get("seq")) is not int:
            return False
        batch.events += 1
        if "data" not in envelope:
            batch.invalid.append(DeadLetter(envelope["seq"], NOT_JSON))
            return True
        payload = envelope["data"]
        if (self.slice is not None and isinstance(payload, dict)
                and not self.slice.admits(payload.get("timestamp"), payload.get("wiki"))):
            batch.outside += 1
            return True
        recv = envelope.get("recv")
        self._add_slow(envelope["seq"], payload, batch,
                       recv if type(recv) in (int, float) else 0.0)
        return True

    def _add_slow(self, seq: int, payload: Any, batch: EventBatch, recv: Any) -> None:
        verdict = classify(payload, self.params)
        if verdict == CANARY:
            batch.canary += 1
        elif isinstance(verdict, str):
            batch.invalid.append(DeadLetter(seq, verdict))
        else:
            user, timestamp = verdict
            batch.users.append(user)
            batch.timestamps.append(timestamp)
            batch.seqs.append(seq)
            if self.recorded:
                batch.recvs.append(float(recv))


def decode(chunk: Chunk, params: DetectionParams | None = None) -> EventBatch:
    """`Decoder(params)(chunk)`: one chunk, no slice."""
    return Decoder(params)(chunk)

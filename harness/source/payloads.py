"""The shared reader of a payload source: chunks of a lane's recording lines decoded into
the event payloads passed on, everything else counted in a `SourceReport`.

`ReplaySource` reads recorded lanes through it and `harness live` the
stream as it arrives, so a replay passes on, and dead-letters, exactly what
the live run did. Items are the recorded payloads (the `data` of each
envelope, a dict, value for value as the server sent it), or `Received`
dicts that also carry their receive time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec
from msgspec import UNSET

from harness.errors import RecordingError
from harness.recording.blocks import Damage
from harness.recording.envelope import NOT_JSON, NOT_OBJECT, Envelope, EnvelopeError
from harness.recording.lanes import Chunk
from harness.recording.slice import Slice
from harness.source.deadletters import SourceReport
from harness.source.keys import NO_KEY, KeyGetter, Payload, key_field, key_getter, key_text

__all__ = ["PAYLOAD_CHUNK_BYTES", "SHARED_CHUNK_BYTES", "PayloadReader", "Received",
           "decode_at_once", "received_time"]

# Lines decoded at once: the payloads of ~200 events, which stay in cache through the
# flow's first steps. 512 KiB chunks were 7% slower on a stateful_map flow; 64 KiB ones
# 5% slower again (per-chunk costs). Worker threads sharing a process hand the GIL to
# each other at every step of every batch: there, 1 MiB chunks were 4% faster than
# 256 KiB and 4 MiB ones 10% slower (count_window, 4 workers).
PAYLOAD_CHUNK_BYTES: Final = 256 << 10
SHARED_CHUNK_BYTES: Final = 1 << 20


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


def decode_at_once(decode: Callable[[bytes], list[Any]], data: bytes,
                   lines: int) -> list[Any] | None:
    """The `lines` envelope lines of `data`, decoded at once by `decode` (msgspec's
    `decode_lines`); None if anything is unusual (a value the decoder's types do not
    take, a line that is not JSON, a blank line): then judge them line by line."""
    try:
        envelopes = decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None
    return envelopes if len(envelopes) == lines else None


class _Envelope(msgspec.Struct):
    """A recording line, for the source: the payload as any JSON value."""

    seq: int
    recv: float
    data: Any = UNSET
    raw: str | None = None
    error: str | None = None


_decode_lines = msgspec.json.Decoder(_Envelope).decode_lines


class PayloadReader:
    """Turns chunks of recording lines into the payloads a source passes on, counting
    each event under what became of it in a `SourceReport`."""

    def __init__(self, key: str | KeyGetter, slice_: Slice, received: bool = False) -> None:
        self._field = key_field(key)
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
        envelopes = decode_at_once(_decode_lines, chunk.lines, chunk.line_count)
        if envelopes is None:
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
                text = value if type(value) is str else key_text(value)  # key_text, inlined
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

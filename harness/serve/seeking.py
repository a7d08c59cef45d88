"""Where a client's stream starts: from the beginning, after its `Last-Event-ID`, or
from `since`, resolved on the envelopes as they are read (Kafka-style: a timestamp
position re-sends every event at or after that millisecond), with a keepalive
about every `keepalive` seconds of seeking."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from harness.eventstreams.ids import Position, parse_resume
from harness.recording.envelope import Envelope
from harness.recording.reader import Recording
from harness.serve.positions import event_ms, resume_hit, wire_id

__all__ = ["Positioned", "Seeker", "Seeking", "UnknownLastEventId"]

Positioned = Iterator[tuple[int, Envelope]]
Seeking = Iterator[tuple[int, Envelope] | None]  # None: still seeking, send a keepalive


class UnknownLastEventId(Exception):
    """A `Last-Event-ID` that is neither positions nor the id of an event in the recording."""


@dataclass(frozen=True)
class Seeker:
    """Positions clients in `recording`; a scan ends early once `stopping` is set."""

    recording: str
    keepalive: float
    stopping: threading.Event

    def positioned(self, last_id: str, since: float | None) -> Seeking:
        """The recording's (global position, envelope) pairs from where this client starts.

        An unparseable `Last-Event-ID` is looked up eagerly, so that it can still
        become a 400 (`UnknownLastEventId`); everything else is resolved lazily
        while streaming, with a None about every `keepalive` seconds of seeking so
        that the client can be sent a keepalive and its idle watchdog stays calm.
        """
        envelopes: Positioned = enumerate(Recording(self.recording).envelopes(), 1)
        if last_id:
            positions = parse_resume(last_id)
            if positions is None:
                for _, envelope in envelopes:
                    if wire_id(envelope) == last_id or self.stopping.is_set():
                        return envelopes
                raise UnknownLastEventId(
                    f"Last-Event-ID {last_id[:200]!r}: not an id of this stream"
                    " nor a JSON array of {offset|timestamp} objects")
            if positions:
                return self._resume(envelopes, last_id, positions)
        if since is not None:
            return self._seek(envelopes, lambda _, envelope: _at_or_after(envelope, since))
        return envelopes

    def _resume(
        self, envelopes: Positioned, last_id: str, positions: list[Position]
    ) -> Seeking:
        """Continue after the first event sent with exactly `last_id`, else by position.

        Ids repeat when several events share a millisecond; resuming after the
        first of them re-sends the rest, which clients de-duplicate. Without an
        exact match the whole recording is scanned once, then read again from
        the first event the positions reach.
        """
        start: int | None = None
        for item in self._scanning(envelopes):
            if item is None:
                yield None  # keepalive while scanning
                continue
            index, envelope = item
            if wire_id(envelope) == last_id:
                yield from envelopes
                return
            if start is None:
                hit = resume_hit(positions, envelope)
                if hit is not None:
                    start = index + hit
        if start is not None:
            again = enumerate(Recording(self.recording).envelopes(), 1)
            yield from self._seek(again, lambda index, _: index >= start)

    def _seek(self, envelopes: Positioned, reached: Callable[[int, Envelope], bool]) -> Seeking:
        """The envelopes from the first that `reached` accepts, with keepalive Nones."""
        for item in self._scanning(envelopes):
            if item is None:
                yield None
            elif reached(*item):
                yield item
                yield from envelopes
                return

    def _scanning(self, envelopes: Positioned) -> Seeking:
        """Envelopes as a scan passes them, a None about every `keepalive` seconds;
        ends early when the server stops."""
        beat = time.monotonic() + self.keepalive
        for index, envelope in envelopes:
            yield index, envelope
            if index % 256 == 0:
                if self.stopping.is_set():
                    return
                if time.monotonic() >= beat:
                    yield None
                    beat = time.monotonic() + self.keepalive


def _at_or_after(envelope: Envelope, since: float) -> bool:
    ms = event_ms(envelope)
    return ms is not None and ms >= since

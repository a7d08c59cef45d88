"""One connection's stream: the recording's events as SSE frames, paced, with the
per-connection faults applied (closes, stalls, duplicates, malformed payloads,
canaries, `event: error` frames)."""

from __future__ import annotations

import math
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from harness.serve.faults import Faults
from harness.serve.httpd import Handler
from harness.serve.seeking import Seeking
from harness.serve.stats import ServerStats
from harness.serve.wire import KEEPALIVE, MALFORMED, OPENING, canary_frame, error_frame, event_frame

__all__ = ["POLL", "EventWriter", "Playing"]

POLL: Final = 0.1


@dataclass(frozen=True)
class Playing:
    """How a server plays: its pace (`speed` 0: as fast as possible), what it does at
    the end of the recording, its keepalive beat, what it counts, whether it stops,
    and who takes the one `stall_at` stall (`claim_stall`)."""

    speed: float
    end: Literal["close", "hold"]
    keepalive: float
    stats: ServerStats
    stopping: threading.Event
    claim_stall: Callable[[int], bool]


class EventWriter:
    """Writes one connection's events, applying pacing and per-connection faults."""

    def __init__(self, playing: Playing, handler: Handler, faults: Faults) -> None:
        self.playing = playing
        self.faults = faults
        self.sock: socket.socket = handler.connection
        self.write = handler.wfile.write
        opened = time.monotonic()
        self.deadline = opened + faults.close_after if faults.close_after > 0 else math.inf

    def run(self, events: Seeking) -> None:
        playing, f, write = self.playing, self.faults, self.write
        stats, stopping, speed = playing.stats, playing.stopping, playing.speed
        paced = speed > 0
        timed = self.deadline < math.inf
        write(OPENING)
        started = first_recv = 0.0
        sent = 0
        for item in events:
            if stopping.is_set():
                return
            if timed and self.expired():
                return
            if item is None:
                write(KEEPALIVE)
                continue
            position, envelope = item
            if f.close_every and sent >= f.close_every:
                stats.add(closed_every=1)
                return
            if position == f.stall_at and playing.claim_stall(position):
                stats.add(stalls=1)
                self.idle(time.monotonic() + f.stall_seconds if f.stall_seconds > 0 else None)
                return
            sent += 1
            if paced:
                if sent == 1:
                    started, first_recv = time.monotonic(), envelope.recv
                due = started + (envelope.recv - first_recv) / speed
                if due > time.monotonic() and not self.idle(min(due, self.deadline)):
                    return
            if timed and self.expired():
                return
            if f.error_every and sent % f.error_every == 0:
                write(error_frame(position))
                stats.add(errors=1)
            if f.malformed_every and sent % f.malformed_every == 0:
                write(MALFORMED)
                stats.add(malformed=1)
            if f.canary_every and sent % f.canary_every == 0:
                write(canary_frame(envelope, position))
                stats.add(canaries=1)
            frame = event_frame(envelope)
            write(frame)
            if f.duplicate_every and sent % f.duplicate_every == 0:
                write(frame)
                stats.add(events_sent=2, duplicates=1)
            else:
                stats.add(events_sent=1)
        stats.add(exhausted=1)
        if playing.end == "hold":
            self.hold()

    def hold(self) -> None:
        """Keep the exhausted stream open with `:` keepalives until the client leaves."""
        beat = time.monotonic()
        while True:
            beat += self.playing.keepalive
            if not self.idle(min(beat, self.deadline)) or self.expired():
                return
            self.write(KEEPALIVE)

    def expired(self) -> bool:
        """Whether the connection's `close_after` deadline has passed (counted)."""
        if time.monotonic() < self.deadline:
            return False
        self.playing.stats.add(closed_after=1)
        return True

    def idle(self, until: float | None) -> bool:
        """Send nothing until `until` (monotonic; None: forever) or `close_after`.

        Returns False if the client left, the server is stopping or the
        connection's `close_after` deadline passed (counted).
        """
        limit = self.deadline if until is None else min(until, self.deadline)
        while not self.playing.stopping.is_set():
            remaining = limit - time.monotonic()
            if remaining <= 0:
                if limit >= self.deadline:
                    self.playing.stats.add(closed_after=1)
                    return False
                return True
            readable, _, _ = select.select([self.sock], [], [], min(remaining, POLL))
            if readable:
                try:
                    peeked = self.sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    peeked = b""
                if not peeked:
                    self.playing.stats.add(disconnects=1)
                    return False
                self.playing.stopping.wait(min(remaining, POLL))
        return False

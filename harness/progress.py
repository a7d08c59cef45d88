"""Progress on long work: one self-overwriting line on a terminal, nothing otherwise.

Hand-written rather than rich or tqdm: one line on stderr, updated a few times
a second, with a count, a percentage and an ETA when the total is known, is
all the harness needs, and it must cost nothing when stderr is not a
terminal (`--quiet`, pipes, CI logs).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Progress", "watching"]


class Progress:
    """A one-line report on stderr, at most every `interval` seconds."""

    def __init__(self, label: str, total: int | None = None, interval: float = 0.25,
                 enabled: bool | None = None, unit: str = "events") -> None:
        self.label, self.total, self.interval, self.unit = label, total, interval, unit
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = self._last = time.monotonic()
        self._shown = False
        self._width = 0

    def update(self, done: int, extra: str = "", *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < self.interval):
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        text = f"{self.label}: {done:,}"
        if self.total:
            text += f"/{self.total:,} {self.unit} ({min(done / self.total, 1.0):.0%})"
            if 0 < done < self.total and rate > 0:
                text += f", ETA {_clock((self.total - done) / rate)}"
        else:
            text += f" {self.unit}"
        text += f", {rate:,.0f}/s"
        if extra:
            text += f", {extra}"
        pad = " " * max(self._width - len(text), 0)
        self._width = len(text)
        print(f"\r{text}{pad}", end="", file=sys.stderr, flush=True)
        self._shown = True

    def done(self) -> None:
        if self._shown:
            print(file=sys.stderr, flush=True)
            self._shown = False


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@contextmanager
def watching(progress: Progress | None, poll: Callable[[], int]) -> Iterator[None]:
    """Update `progress` from `poll()` in a background thread while the block runs."""
    if progress is None or not progress.enabled:
        yield
        return
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(progress.interval):
            try:
                progress.update(poll(), force=True)
            except (OSError, ValueError):  # a part file being replaced: next time
                continue

    thread = threading.Thread(target=run, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        progress.done()

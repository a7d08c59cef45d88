"""`harness.report`: one self-contained HTML page about a recording and its detection results.

    stats = write_report(Path("recordings/sample"), Path("report.html"))

The page works offline (inline CSS and SVG, no fonts, scripts or styles from
elsewhere) and shows: the recording and the tally; edits per second over
event time with the malicious windows shaded; the flagged accounts with
their peak rates, wikis and bot flag; the distribution of window rates
against the threshold; late, invalid and canary events; and the recording's
health (arrivals per second by receive time, gaps, reconnects, segments).

The results are those given (for example read with `load_jsonl` from a
finished replay's `--out` and `--dead-letters` files) or, when summaries or
dead letters are not given, those of replaying the recording through the
bot-detection flow here. The recording itself is always read once, streaming,
for the per-event facts (`harness.report.scan`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from harness.errors import HarnessError
from harness.files import write_atomically
from harness.flows.bots.semantics import LATE, DetectionParams, Tally
from harness.recording import Recording
from harness.recording.envelope import DAMAGED
from harness.report.page import Inputs, flagged_accounts, render
from harness.report.scan import RecordingFacts, scan

__all__ = ["ReportStats", "load_jsonl", "write_report"]


@dataclass(frozen=True, slots=True)
class ReportStats:
    """What `write_report` wrote, in numbers."""

    path: Path
    bytes: int  # size of the page
    events: int  # events in the tally
    windows: int  # window summaries
    flagged_windows: int  # malicious window summaries
    flagged_accounts: int  # accounts with at least one malicious window
    late: int
    invalid: int
    canary: int
    event_bucket_seconds: int | None  # width of one bar of the event-time chart
    receive_bucket_seconds: int | None  # ... of the receive-time chart (None: no times)
    gaps: int  # receive gaps longer than `scan.GAP_SECONDS`
    replayed: bool  # whether the results came from a replay made here
    seconds: float  # wall time of write_report, replay included


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file (blank lines skipped), e.g. `--out`/`--dead-letters`.

    Raises `HarnessError` naming the file and line of anything that is not a
    JSON object.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read ({exc.strerror})") from None
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise HarnessError(f"{path}: line {number}: not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise HarnessError(f"{path}: line {number}: not a JSON object")
        rows.append(row)
    return rows


def write_report(
    recording: Path, out: Path, *, summaries: list[dict[str, Any]] | None = None,
    dead_letters: list[dict[str, Any]] | None = None, tally: dict[str, int] | None = None,
    params: DetectionParams | None = None, title: str | None = None,
) -> ReportStats:
    """Write the report page for `recording` to `out` (atomically); return its numbers.

    When `summaries` or `dead_letters` is None the recording is replayed
    through the bot-detection flow with `params` (default: the contract's), and
    whatever was not given is taken from that replay. Given results without
    a `tally` get one derived from them and the recording scan: events and
    canaries as scanned, late and invalid from the dead letters, windows and
    malicious from the summaries, counted as the rest. `params` otherwise
    only label the page (the threshold line, the lateness).
    """
    started = time.perf_counter()
    recording = Path(recording)
    detection = params or DetectionParams()
    replayed = summaries is None or dead_letters is None
    if replayed:
        from dataclasses import asdict

        from harness.flows.job import FlowJob, ReadOptions
        from harness.run.replay import replay

        result = replay(FlowJob(ReadOptions(recording), params=asdict(detection)))
        output = result.output
        results = f"replayed here through the bot-detection flow ({result.wall_seconds:.2f} s)"
        summaries = list(output.values()) if summaries is None else summaries
        dead_letters = output.dead_letters if dead_letters is None else dead_letters
        tally = output.counts.to_json() if tally is None else tally
    else:
        results = (f"given: {len(summaries or ()):,} window summaries and"
                   f" {len(dead_letters or ()):,} dead letters")
    assert summaries is not None and dead_letters is not None
    flagged = flagged_accounts(summaries)
    opened = Recording(recording, skip_damaged=True)
    facts = scan(opened, [a.user for a in flagged])
    if tally is None:
        tally = _derived_tally(facts, summaries, dead_letters)
        results += "; counts derived from them and the recording"
    page = render(Inputs(
        title=title or f"Bot-detection report: {recording.name}", recording=recording,
        manifest=opened.manifest, params=detection,
        params_given=params is not None, results=results, summaries=summaries,
        dead_letters=dead_letters, tally=tally, facts=facts, flagged=flagged,
    )).encode()
    write_atomically(out, [page])
    return ReportStats(
        path=out, bytes=len(page), events=tally.get("events", facts.events),
        windows=len(summaries), flagged_windows=sum(1 for s in summaries if s.get("malicious")),
        flagged_accounts=len(flagged), late=tally.get("late", 0),
        invalid=tally.get("invalid", 0), canary=tally.get("canary", 0),
        event_bucket_seconds=facts.event_time.width if facts.event_time else None,
        receive_bucket_seconds=facts.receive_time.width if facts.receive_time else None,
        gaps=facts.gap_count, replayed=replayed, seconds=time.perf_counter() - started,
    )


def _derived_tally(facts: RecordingFacts, summaries: list[dict[str, Any]],
                   dead_letters: list[dict[str, Any]]) -> dict[str, int]:
    late = sum(1 for d in dead_letters if d.get("reason") == LATE)
    invalid = sum(1 for d in dead_letters if d.get("reason") not in (LATE, DAMAGED))
    return Tally(
        events=facts.events, canary=facts.canary, invalid=invalid, late=late,
        counted=facts.events - facts.canary - invalid - late, windows=len(summaries),
        malicious=sum(1 for s in summaries if s.get("malicious")),
    ).to_json()

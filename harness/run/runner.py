"""Running a job over a recording: checks first, then the run, then the outputs.

`run_job` is what every replay goes through, whatever its flow: it opens
the recording (failing early, in one line, on a missing or damaged one),
checks finished segments' sha256, chooses the run directory (temporary, or
the recovery state), runs the job in this process or as a local cluster, and
hands the run directory to `collect`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from harness.errors import ERRORS, Interrupted, interruption
from harness.process import starting_the_job
from harness.progress import Progress, watching
from harness.recording.integrity import SegmentCheck
from harness.recording.reader import Recording
from harness.run.cluster import Cluster
from harness.run.job import Job
from harness.run.member import BROKEN, ClusterError, run_member
from harness.run.recovery import run_directory

__all__ = ["Run", "run_job"]

T = TypeVar("T")


@dataclass
class Run(Generic[T]):
    """What a run produced (`output`, as `collect` made it) and how long it took."""

    output: T
    wall_seconds: float
    recording: Recording
    notes: list[str] = field(default_factory=list)  # cut-short tails, hash mismatches


def run_job(job: Job, collect: Callable[[Path], T], *, addresses: list[str] | None = None,
            process_id: int | None = None, progress: bool | None = False) -> Run[T]:
    """Run `job` and collect its outputs.

    With `addresses`, this process is member `process_id` of a cluster whose
    other members run elsewhere; the outputs then hold this member's share.
    `progress` None shows a progress line when stderr is a terminal. A run
    stopped by SIGINT or SIGTERM raises `Interrupted` holding the partial `Run`.
    """
    read = job.read
    recording = Recording(read.recording, skip_damaged=read.skip_damaged)
    notes = _scan_unfinished(recording)
    identity = {"recording": recording.identity,
                "created": recording.manifest.created, "events": recording.manifest.events,
                **job.identity()}
    meter = None if progress is False else Progress(
        f"replay {recording.name}", recording.manifest.events, enabled=progress)
    with run_directory(read.recovery_dir, identity) as run_dir:
        (run_dir / ERRORS).unlink(missing_ok=True)  # what a crashed run said is not this one's
        start = time.perf_counter()
        starting_the_job()
        cluster = None
        checks: list[SegmentCheck] = []
        try:
            # Forked before the members (while this process is single-threaded), the
            # segment checks run beside the run; a mismatch in a strict replay still
            # fails it before anything is written.
            checks.append(SegmentCheck.start(recording))
            try:
                checks += job.prepare(progress)
                if addresses is None and read.processes > 1:
                    cluster = Cluster(job, run_dir)
                    cluster.start()
                with watching(meter, lambda: job.done(run_dir)):
                    if cluster is not None:
                        cluster.wait()
                    else:
                        _run_member(job, run_dir, addresses, process_id)
            except Exception:
                # A damaged segment fails the run and the check alike; the check
                # names the damage the same way every time, so it wins.
                for check in checks:
                    mismatch = check.failure()
                    if mismatch is not None:
                        raise mismatch from None
                raise
            notes = checks[0].result() + notes
            for check in checks[1:]:
                check.result()
        except BaseException as exc:
            for check in checks:
                check.abandon()
            stopped_by = interruption(exc)
            if stopped_by is None:
                raise
            partial = Run(job.partial(run_dir), time.perf_counter() - start, recording, notes)
            raise Interrupted(stopped_by, partial) from None
        wall = time.perf_counter() - start
        output = collect(run_dir)
    return Run(output, wall, recording, notes)


def _run_member(job: Job, run_dir: Path, addresses: list[str] | None,
                process_id: int | None) -> None:
    try:
        run_member(job, run_dir, addresses, process_id)
    except ClusterError as exc:  # the cluster is the user's: say what it needs
        if str(exc) != BROKEN:
            raise
        raise ClusterError(f"{BROKEN}: every member must run with the same --workers and"
                           " --addresses, and all must keep running") from None


def _scan_unfinished(recording: Recording) -> list[str]:
    for index, segment in enumerate(recording.manifest.segments):
        if not segment.complete:
            for _ in recording.segment_blocks(index):
                pass
    return recording.truncated

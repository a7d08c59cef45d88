"""`replay(job)`: the one run path, for `harness replay`, `check`, `bench`,
`harness.testing` and the HTML report: run any `FlowJob` and collect what its flow
wrote, one kind of result, `Run[FlowOutput]`."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UsageError
from harness.flows.contract import FlowOutput
from harness.flows.job import FlowJob
from harness.recording.reader import Recording
from harness.run.runner import Run, run_job

__all__ = ["Result", "replay", "require_receive_times"]

Result = Run[FlowOutput]


def require_receive_times(recording: Path) -> None:
    """Refuse `--clock recorded` on a recording whose `recv` is not when events arrived."""
    opened = Recording(recording)
    manifest = opened.manifest
    if not manifest.has_receive_times:
        raise UsageError(f"--clock recorded: {opened} was imported from dumps"
                         f" ({manifest.source[:80]}), so it has no receive times (its recv"
                         " is each event's own timestamp); replay it with --clock event, or"
                         " record the stream with harness record or harness live --record")


def replay(job: FlowJob, *, addresses: list[str] | None = None, process_id: int | None = None,
           progress: bool | None = False, items: bool = True) -> Result:
    """Run `job` and collect what its flow wrote.

    With `addresses`, this process is member `process_id` of a cluster whose
    other members run elsewhere; the result then holds this member's share.
    `items` False counts the flow's items without keeping them (nobody asked
    for `--out`).
    """
    if job.clock == "recorded":
        require_receive_times(job.read.recording)
    run = run_job(job, lambda run_dir: job.plugin.collect(job, run_dir, items),
                  addresses=addresses, process_id=process_id, progress=progress)
    job.plugin.finish(job, run.output, run.recording, whole=addresses is None)
    return run

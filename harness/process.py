"""Whether this process runs one job and exits (the command line) or is a library user's.

A one-job process can tune the garbage collector for the run: collect less often
(the detector allocates many short-lived objects) and freeze everything loaded
before the run starts (modules, the built flow), which is never garbage and need
not be traversed again. Measured on a 400k-event replay: 1.56 s -> 1.41 s on one
process, 1.00 s -> 0.91 s on two. A library caller's process is left as it is.
"""

from __future__ import annotations

import gc

__all__ = ["one_job_process", "starting_the_job"]

_one_job = False


def one_job_process() -> None:
    """Say that this process runs one job and then exits (the CLI does, first thing)."""
    global _one_job
    _one_job = True
    gc.set_threshold(50_000, 50, 100)


def starting_the_job() -> None:
    """The job's dataflow is built and about to run: in a one-job process, freeze
    what exists so that the collector skips it from now on."""
    if _one_job:
        gc.freeze()

"""Running a job: `replay.replay(job)`, the one run path, over `runner.run_job`
(checks, run directory or recovery state), `cluster` (one process or a local cluster
of members), `recovery` (Bytewax recovery state) and `job` (the `Job` protocol and
how a job crosses to members)."""

"""Peak-RSS probe, run in a fresh subprocess: `python benchmarks/memprobe.py MODE RECORDING`.

Modes:
  idle    import everything a replay imports, replay nothing (the interpreter's floor)
  flow    the streaming part of a replay: source -> flow -> per-worker part files
          (what every cluster member does), without merging the outputs
  replay  `harness.flows.job.replay()`, which also merges all outputs

Prints one JSON object: mode, events, peak RSS of this process in MiB.

Peak RSS is `VmHWM` from /proc/self/status, the high-water mark of this
program's own address space. `ru_maxrss` is not used: Linux carries the
parent's peak over `exec` when the child was started with vfork (as
`subprocess` does), so a small child would report its parent's size.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def main(mode: str, recording: Path) -> None:
    from harness.flows.job import FlowJob
    from harness.run.member import run_member
    from harness.run.replay import replay

    events = 0
    config = FlowJob.of(recording)
    if mode == "flow":
        with tempfile.TemporaryDirectory(prefix="memprobe-") as tmp:
            run_member(config, Path(tmp))
            # the per-part tallies only: merging the summaries is what `replay` adds
            events = sum(json.loads(p.read_text())["events"]
                         for p in Path(tmp).glob("tally-*.json"))
    elif mode == "replay":
        events = replay(config).output.counts.events
    elif mode != "idle":
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps({"mode": mode, "events": events, "peak_rss_mib": vm_hwm_kib() / 1024}))


def vm_hwm_kib() -> int:
    """Peak resident set size of this process (KiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))

"""Long-run soak: 2M synthetic events, two processes, recovery on (`tox -e soak`).

Skipped unless HARNESS_SOAK=1; it takes minutes and ~400 MB of disk.
Reports events/s, peak RSS of the whole process tree, and the cost of
recovery snapshots (recovery on vs. off, measured side by side).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.recording.importer import synthesize

EVENTS = int(os.environ.get("SOAK_EVENTS", "2000000"))

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("HARNESS_SOAK") != "1",
                                 reason="soak: set HARNESS_SOAK=1 (tox -e soak)")]


def _tree_rss(root: int) -> int:
    """Resident bytes of a process and all its descendants (Linux /proc)."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in status.splitlines()
                       if line.startswith("VmRSS:")), 0)  # zombies have none
        todo += [int(c) for c in children]
    return total


def _run(args: list[str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.1)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    return time.perf_counter() - start, peak, out.strip().splitlines()[-1]


def test_soak_two_processes_with_recovery(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    synthesize(rec, events=EVENTS, seed=99, progress=False)
    base = ["replay", str(rec), "--quiet", "--processes", "2"]
    plain_s, plain_rss, plain = _run(base)
    rec_s, rec_rss, recovered = _run([*base, "--recovery-dir", str(tmp_path / "state")])
    strip = lambda line: " ".join(p for p in line.split()  # noqa: E731
                                  if not p.startswith(("events/s=", "wall=")))
    assert strip(plain) == strip(recovered)
    print(f"\nsoak {EVENTS} events, 2 processes: recovery off {EVENTS / plain_s:,.0f} events/s"
          f" ({plain_s:.1f} s, peak RSS {plain_rss / 2**20:.0f} MiB); recovery on"
          f" {EVENTS / rec_s:,.0f} events/s ({rec_s:.1f} s, peak RSS {rec_rss / 2**20:.0f}"
          f" MiB); snapshot overhead x{rec_s / plain_s:.2f}")
    assert rec_rss < 1 << 30

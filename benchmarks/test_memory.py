"""Peak memory of replaying 250k and 1M synthetic events, each in a fresh subprocess.

The streaming part of a replay (source -> flow -> part files, what every
cluster member runs) must not grow with the recording: asserted below as
memory bounds (not timings). `harness.flows.job.replay()` additionally merges all
outputs into one in-memory `RunOutput`, which grows with the number of windows;
it is reported and only held to the absolute bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench_support import HERE, cached_recording

LIMIT_MIB = 300.0
FLAT_RATIO = 1.5
SIZES = (250_000, 1_000_000)


def peak_rss(mode: str, recording: Path) -> dict[str, float]:
    """Run memprobe in a fresh child process; it reports its own peak RSS."""
    done = subprocess.run([sys.executable, str(HERE / "memprobe.py"), mode, str(recording)],
                          stdout=subprocess.PIPE, check=True)
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.benchmark(group="memory")
def test_peak_rss_stays_flat(benchmark, notes: list[str]) -> None:
    recordings = {n: cached_recording(n) for n in SIZES}
    results: dict[str, dict[str, float]] = {}

    def probe() -> None:
        results["idle"] = peak_rss("idle", recordings[SIZES[0]])
        for n, path in recordings.items():
            for mode in ("flow", "replay"):
                results[f"{mode}-{n}"] = peak_rss(mode, path)

    benchmark.pedantic(probe, rounds=1, iterations=1)
    mib = {key: r["peak_rss_mib"] for key, r in results.items()}
    small, large = SIZES
    benchmark.extra_info.update({f"peak_rss_mib_{k}": round(v, 1) for k, v in mib.items()})
    notes.append("peak RSS (MiB, fresh process each): " + ", ".join(
        f"{k}={v:.0f}" for k, v in mib.items()))
    notes.append(f"  flow {large:,}/{small:,} = {mib[f'flow-{large}'] / mib[f'flow-{small}']:.2f}x;"
                 f" replay() {large:,}/{small:,} ="
                 f" {mib[f'replay-{large}'] / mib[f'replay-{small}']:.2f}x"
                 " (replay() keeps every window summary in memory)")
    for key, r in results.items():
        if key != "idle":
            assert r["events"] == int(key.split("-")[1]), r
    assert mib[f"flow-{large}"] < LIMIT_MIB
    assert mib[f"replay-{large}"] < LIMIT_MIB
    assert mib[f"flow-{large}"] < FLAT_RATIO * mib[f"flow-{small}"], mib

"""Benchmark fixtures: one cached synthetic recording, rows measured beside the reference,
and a summary table at the end of the session.

Environment: BENCH_EVENTS (default 200000), BENCH_SEED, BENCH_ROUNDS (default 3),
BENCH_DATA (cache directory, default benchmarks/.bench-data), BENCH_SLOW=1 (same as
--bench-slow: also run the tests marked slow, i.e. the memory benchmark).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from bench_support import (
    BENCH_EVENTS,
    ROUNDS,
    TINY_EVENTS,
    Row,
    cached_recording,
    format_table,
)

from harness.flows.bots.reference import replay_reference
from harness.flows.bots.semantics import DetectionParams, Tally
from harness.recording import Recording

ROWS = pytest.StashKey[dict[str, Row]]()
NOTES = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-slow", action="store_true",
                     help="benchmarks: also run tests marked slow (memory, 1M events)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--bench-slow") or os.environ.get("BENCH_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow benchmark: run with --bench-slow or BENCH_SLOW=1"
                            " (tox -e bench does)")
    here = Path(__file__).parent
    for item in items:
        if "slow" in item.keywords and here in Path(item.fspath).parents:
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[ROWS] = {}
    config.stash[NOTES] = []
    json_path = config.getoption("benchmark_json", None)
    if json_path is not None:  # e.g. benchmarks/results/, which is not committed
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)


def pytest_benchmark_generate_commit_info(config: pytest.Config) -> dict[str, Any]:
    """Leave git alone (pytest-benchmark would run `git describe --dirty`)."""
    return {"id": "unversioned", "time": None, "author_time": None, "dirty": False,
            "project": "wikistream-harness", "branch": None}


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    rows = config.stash.get(ROWS, {})
    notes = config.stash.get(NOTES, [])
    if not rows and not notes:
        return
    write = terminalreporter.write_line
    terminalreporter.section("wikistream benchmark summary")
    if rows:
        some = next(iter(rows.values()))
        write(f"{some.events:,} events per row; median of {ROUNDS} rounds; each row times a"
              " call in this process (no interpreter start-up); 'x ref' = row events/s /"
              " reference events/s, the reference run interleaved with that row's rounds")
        write("'start-up s' = min-max wall time of the same call on a"
              f" {TINY_EVENTS}-event recording (open, flow build, Bytewax start; for P > 1"
              " forking and connecting the cluster); 'net ev/s' ="
              " events / (fastest round - fastest start-up)")
        for line in format_table(list(rows.values())):
            write(line)
        for row in rows.values():
            if row.note:
                write(f"{row.name}: {row.note}")
    for note in notes:
        write(note)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def recording() -> Path:
    """The benchmark recording (BENCH_EVENTS synthetic events), generated once and cached."""
    return cached_recording(BENCH_EVENTS)


@pytest.fixture(scope="session")
def events(recording: Path) -> int:
    return Recording(recording).manifest.events


@pytest.fixture(scope="session")
def tiny_recording() -> Path:
    return cached_recording(TINY_EVENTS)


@pytest.fixture(scope="session")
def reference_tally(recording: Path) -> Tally:
    return replay_reference(recording, DetectionParams()).tally


@pytest.fixture
def rows(request: pytest.FixtureRequest) -> dict[str, Row]:
    return request.config.stash[ROWS]


@pytest.fixture
def notes(request: pytest.FixtureRequest) -> list[str]:
    return request.config.stash[NOTES]

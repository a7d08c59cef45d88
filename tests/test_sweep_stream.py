"""Defects a hostile sweep found on the stream side: Retry-After, import, --since, --from/--until.

Real parts only: the local EventStreams server on 127.0.0.1, real dump files, a real FIFO,
and the command line in a subprocess.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.eventstreams.client import EventStream
from harness.recording import Recording
from harness.serve.server import EventStreamServer, Faults
from harness.values import timestamp
from tests.conftest import harness, write_recording

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def edit(i: int, ts: int = T0, **meta: Any) -> dict[str, Any]:
    return {"meta": {"id": f"00000000-0000-4000-8000-{i:012d}", "domain": "en.wikipedia.org",
                     **meta}, "user": f"U{i}", "title": f"Page {i}", "timestamp": ts}


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_recording(tmp_path / "source", [edit(i, T0 + i) for i in range(4)])


# ------------------------------------------------------------- 1. Retry-After


@pytest.mark.parametrize(("value", "honoured"), [
    ("inf", 0.0), ("nan", 0.0), ("1e9", 0.0), ("+300", 0.0), ("300.0", 0.0),
    ("garbage", 0.0), ("-5", 0.0),
    ("2", 2.0),  # delay-seconds: honoured (not the server's default of 1)
])
def test_an_invalid_retry_after_is_ignored_and_the_normal_backoff_applies(
        source: Path, value: str, honoured: float) -> None:
    cap = 30.0  # what an invalid value used to count as; the test gives up long before
    with EventStreamServer(source, faults=Faults(fail_first=1, retry_after_text=value)
                           ) as server:
        stream = EventStream(url=server.url, backoff_base=0.05, backoff_cap=0.1,
                             retry_after_cap=cap, max_failures=5, idle_timeout=2, tick=0.05)
        started = time.monotonic()
        got = None
        for item in stream.events():
            if item is not None or time.monotonic() - started > honoured + 3:
                got = item
                stream.stop()
        waited = time.monotonic() - started
    assert got is not None, f"Retry-After: {value} was waited for as the {cap:g} s cap"
    assert honoured <= waited < honoured + 3
    assert stream.stats.failures == 1 and "HTTP 429" in (stream.stats.last_problem or "")


# --------------------------------------------------- 2. import de-duplicates


def test_import_drops_repeated_events_once_and_verify_accepts_the_recording(
        tmp_path: Path) -> None:
    topic = {"topic": "eqiad.mediawiki.recentchange", "partition": 0}
    no_id = [{"meta": {**topic, "offset": 70 + i}, "user": "V", "timestamp": T0}
             for i in range(2)]  # no meta.id: their offsets tell them apart
    same_second = [{"user": "W", "title": f"P{i}", "timestamp": T0} for i in range(2)]
    first = [edit(1), edit(2), edit(1), no_id[0], no_id[1], same_second[0], same_second[1]]
    second = [edit(2), no_id[0], edit(3)]  # repeats across dumps too
    for name, events in (("a.jsonl", first), ("b.jsonl", second)):
        (tmp_path / name).write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))

    imported = harness("import", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"),
                       "--out", str(tmp_path / "rec"), timeout=60)
    assert imported.returncode == 0, imported.stderr
    assert "wrote 7 events" in imported.stdout and "dropped 3 repeated" in imported.stdout
    kept = [e.data for e in Recording(tmp_path / "rec").envelopes()]
    assert kept == [edit(1), edit(2), *no_id, *same_second, edit(3)]
    checked = harness("verify", str(tmp_path / "rec"), timeout=60)
    assert checked.returncode == 0, checked.stderr


# ------------------------------------------- 3. import of a directory or FIFO


def test_import_of_a_directory_or_fifo_says_what_the_path_is(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    (tmp_path / "dir.jsonl").mkdir()
    for path, problem in ((tmp_path / "dir.jsonl", "is a directory"),
                          (fifo, "is not a regular file")):
        result = harness("import", str(path), "--out", str(tmp_path / "rec"), timeout=30)
        assert result.returncode == 2
        line = one_line(result.stderr)
        assert f"{path}: {problem}" in line and "no such file" not in line, line
        assert not (tmp_path / "rec").exists()


# ------------------------------------------------------------ 4. --since


def test_record_refuses_a_since_in_the_future_and_warns_beyond_the_history(
        source: Path, tmp_path: Path) -> None:
    future_ms = str(int((time.time() + 3600) * 1000))
    with EventStreamServer(source) as server:
        for since in ("2999-01-01T00:00:00Z", future_ms):
            out = tmp_path / f"rec-{since[:4]}"
            result = harness("record", "--out", str(out), "--url", server.url, "--since",
                             since, "--duration", "5", "--quiet", timeout=30)
            assert result.returncode == 2, result.stderr
            line = one_line(result.stderr)
            assert "--since" in line and "future" in line and since in line, line
            assert not out.exists()
        # seconds typed for milliseconds: 1970, long before the history; allowed, with a warning
        out = tmp_path / "old"
        result = harness("record", "--out", str(out), "--url", server.url, "--since",
                         str(T0), "--max-events", "4", "--quiet", timeout=30)
    assert result.returncode == 0, result.stderr
    warning = one_line(result.stderr)
    assert warning.startswith(f"warning: --since {T0} is 1970-01-20") and "7 days" in warning
    assert len(list(Recording(out).envelopes())) == 4


# ------------------------------------------------- 5. fractional --from/--until


@pytest.mark.parametrize(("start", "end"), [
    (f"{T0}.5", f"{T0 + 1}.5"),
    ("2023-11-14T22:13:20.5Z", "2023-11-14T22:13:21.5Z"),
])
def test_fractional_from_and_until_select_exactly_the_whole_seconds_between(
        source: Path, tmp_path: Path, start: str, end: str) -> None:
    # events at T0 .. T0+3, one user each; T0+0.5 <= t < T0+1.5 holds for t = T0+1 alone
    windows = tmp_path / "windows.jsonl"
    result = harness("replay", str(source), "--from", start, "--until", end, "--json",
                     "--min-count", "1", "--out", str(windows), timeout=120)
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["counted"], summary["outside"]) == (1, 3)
    kept = [orjson.loads(line)["first_timestamp"] for line in windows.read_text().splitlines()]
    assert kept == [T0 + 1]
    assert timestamp("2023-11-14T22:13:20.5Z") == T0  # --align still drops the fraction

"""Any key reads like `user`: lanes derived by key, placed where Bytewax routes the key,
reused while the recording is unchanged, and never trusted when stale or damaged."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.recording import Recording
from harness.recording.keyroute import route_lane
from harness.recording.synth import synthetic_events
from harness.source.keylanes import cache_root
from harness.source.keys import key_getter, key_text
from harness.source.replay import ReplaySource
from tests.conftest import assert_same_output, harness, write_recording

SHAPES = [(1, 1), (4, 1), (2, 2)]


def _payloads(count: int, seed: int) -> list[Any]:
    """Realistic events, with a field of whole numbers (`num`, missing from every 7th),
    users that are sometimes numbers, and some lines that are not JSON objects."""
    out: list[Any] = []
    for i, event in enumerate(synthetic_events(count, seed)):
        payload: Any = event.payload
        with contextlib.suppress(orjson.JSONDecodeError):
            payload = orjson.loads(payload)  # the generator's bytes; some are not JSON
        if isinstance(payload, dict):
            payload = dict(payload)
            if i % 7:
                payload["num"] = (i * 7919) % 97
            if i % 11 == 0:
                payload["user"] = 1000 + i % 13  # an account known by its number
        out.append(payload)
    return out


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_recording(tmp_path_factory.mktemp("keyed") / "rec", _payloads(3000, 5),
                           lanes=4, block_events=200)


def _expected(recording: Path, key: str) -> list[bytes]:
    """What `key_order:flow` must write: each keyed event's rank among its key's events
    in recording order."""
    get, seen = key_getter(key), defaultdict(int)
    rows = []
    for env in Recording(recording).envelopes():
        if not env.is_json or not isinstance(env.data, dict):
            continue
        text = key_text(get(env.data))
        if text is not None:
            seen[text] += 1
            rows.append(orjson.dumps({"id": env.data["meta"]["id"], "key": text,
                                      "rank": seen[text]}, option=orjson.OPT_SORT_KEYS))
    return sorted(rows)


@pytest.mark.parametrize("key", ["wiki", "meta.domain", "num", "user"])
def test_every_kind_of_key_gives_one_answer_on_every_shape(keyed: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           key: str) -> None:
    """A field, a dotted path, whole numbers, missing keys, numbered users: every key's
    events reach its state in recording order whatever the cluster shape."""
    monkeypatch.setenv("KEY_ORDER_KEY", key)
    outs = {}
    for workers, processes in SHAPES:
        out, dead = tmp_path / f"{workers}x{processes}.jsonl", tmp_path / f"d{workers}x{processes}"
        proc = harness("replay", str(keyed), "--flow", "key_order:flow", "--key", key,
                       "--workers", str(workers), "--processes", str(processes), "--json",
                       "--out", str(out), "--dead-letters", str(dead))
        assert proc.returncode == 0, proc.stderr
        summary = orjson.loads(proc.stdout)
        assert summary["read"] == 3000 and summary["passed"] == len(_expected(keyed, key)) > 0
        outs[(workers, processes)] = (out.read_bytes(), dead.read_bytes())
    assert len(set(outs.values())) == 1
    assert outs[(1, 1)][0].splitlines() == _expected(keyed, key)
    if key == "num":
        assert summary["no_key"] >= 3000 // 7


@pytest.mark.parametrize(("key", "partitions"), [("wiki", 8), ("num", 6), ("user", 16)])
def test_each_lane_holds_exactly_the_keys_bytewax_routes_to_its_worker(
        keyed: Path, key: str, partitions: int) -> None:
    lanes = ReplaySource(keyed, key=key, partitions=partitions).lanes()
    derived = lanes.recording
    get, where = key_getter(key), {}
    for lane in range(partitions):
        for _, _, data in derived.lane_frames(lane):
            assert isinstance(data, list)
            for line in b"".join(data).splitlines():
                env = orjson.loads(line)
                payload = env.get("data")
                text = key_text(get(payload)) if isinstance(payload, dict) else None
                assert lane == (route_lane(text, partitions) if text is not None
                                else env["seq"] % partitions)
                if text is not None:
                    assert where.setdefault(text, lane) == lane
    assert derived.manifest.events == Recording(keyed).manifest.events


def _entries() -> list[Path]:
    return sorted(p.parent for p in cache_root().glob("*/derived.json"))


def _replay(recording: Path, out: Path, *extra: str) -> Any:
    return harness("replay", str(recording), "--flow", "key_order:flow", "--key", "wiki",
                   "--out", str(out), "--force", *extra)


def test_lanes_are_derived_once_and_again_only_when_the_recording_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_ORDER_KEY", "wiki")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    rec = write_recording(tmp_path / "rec", _payloads(1500, 8), block_events=100)
    assert _replay(rec, tmp_path / "a").returncode == 0
    [entry] = _entries()
    derived = os.stat(entry / "derived.json").st_ino
    assert _replay(rec, tmp_path / "b").returncode == 0
    assert _entries() == [entry] and os.stat(entry / "derived.json").st_ino == derived
    # the same path, another recording: the old lanes are stale and never read
    shutil.rmtree(rec)
    write_recording(rec, _payloads(1200, 9), block_events=100)
    assert _replay(rec, tmp_path / "c").returncode == 0
    assert len(_entries()) == 2
    assert (tmp_path / "c").read_bytes().splitlines() == _expected(rec, "wiki")


def test_derived_lanes_cut_short_are_derived_anew(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_ORDER_KEY", "wiki")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    rec = write_recording(tmp_path / "rec", _payloads(1500, 8), block_events=100)
    assert _replay(rec, tmp_path / "a").returncode == 0
    [entry] = _entries()
    segment = next(entry.glob("seg-*.zst"))
    os.truncate(segment, segment.stat().st_size // 2)
    again = _replay(rec, tmp_path / "b")
    assert again.returncode == 0, again.stderr
    assert_same_output(tmp_path / "b", (tmp_path / "a").read_bytes())
    assert Recording(entry).manifest.segments[0].bytes == segment.stat().st_size


@pytest.mark.parametrize("where", ["frame", "manifest", "derived.json"])
def test_altered_derived_lanes_are_refused_then_derived_anew(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    monkeypatch.setenv("KEY_ORDER_KEY", "wiki")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    rec = write_recording(tmp_path / "rec", _payloads(1500, 8), block_events=100)
    assert _replay(rec, tmp_path / "a").returncode == 0
    [entry] = _entries()
    if where == "frame":  # a byte flipped in a frame, the size unchanged
        segment = next(entry.glob("seg-*.zst"))
        data = bytearray(segment.read_bytes())
        data[len(data) // 2] ^= 0x01
        segment.write_bytes(bytes(data))
        refused = _replay(rec, tmp_path / "b")
        assert refused.returncode == 2 and not (tmp_path / "b").exists()
        assert len(refused.stderr.strip().splitlines()) == 1
        assert "derived by wiki do not match" in refused.stderr
    else:  # an edit that keeps the JSON valid: counts changed
        path = entry / ("manifest.json" if where == "manifest" else "derived.json")
        path.write_bytes(path.read_bytes().replace(b'"events":', b'"events": ', 1)
                         .replace(b'"events": ', b'"events":1', 1))
    again = _replay(rec, tmp_path / "c")
    assert again.returncode == 0, again.stderr
    assert_same_output(tmp_path / "c", (tmp_path / "a").read_bytes())


def _peak_rss_mib(*args: str, cwd: Path) -> tuple[float, Any]:
    """Run `harness ARGS` and return the peak resident memory of its processes (MiB)."""
    import subprocess
    import sys

    from tests.conftest import EXAMPLES, FLOWS, ROOT

    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]);"
             " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(FLOWS), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "harness", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    kib, status = done.stdout.split()[-2:]
    return int(kib) / 1024, (int(status), done.stderr)


MEMORY_BOUND_MIB = 400  # 2M items are ~190 MiB of line text alone; the output is 50 MB


def test_two_million_items_replay_in_bounded_memory(tmp_path: Path) -> None:
    """A flow writing 100 small items per event of the 20k-event sample: the source hands
    over one batch per pass, and --out is sorted in runs spilled to disk, so memory is
    bounded by a batch's items and a run, not by the 2M items."""
    out = tmp_path / "items.jsonl"
    peak, (status, err) = _peak_rss_mib("replay", "--flow", "many_items:hundred_per_event",
                                        "--out", str(out), "--quiet", cwd=tmp_path)
    assert status == 0, err
    lines = out.read_bytes().splitlines()
    assert len(lines) == 1_998_900 and lines == sorted(lines)
    assert peak < MEMORY_BOUND_MIB, f"peak {peak:.0f} MiB"


def test_a_slice_counts_every_event_it_skips(keyed: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole segments a time slice skips are counted as outside, trailing ones too, so
    `events=` is the recording's total on every shape."""
    monkeypatch.setenv("KEY_ORDER_KEY", "wiki")
    rec = write_recording(tmp_path / "rec", _payloads(3000, 5), block_events=100,
                          segment_bytes=40_000)
    segments = Recording(rec).manifest.segments
    assert len(segments) >= 4
    until = segments[1].max_timestamp
    assert until is not None
    skipped = [s for s in segments if s.min_timestamp is not None and s.min_timestamp >= until]
    assert len(skipped) >= 2  # trailing segments the slice skips unread
    for workers, processes in SHAPES:
        proc = harness("replay", str(rec), "--flow", "key_order:flow", "--key", "wiki",
                       "--until", str(until), "--workers", str(workers),
                       "--processes", str(processes), "--json")
        assert proc.returncode == 0, proc.stderr
        summary = orjson.loads(proc.stdout)
        assert summary["read"] == 3000 and summary["outside"] >= sum(s.events for s in skipped)
        assert summary["read"] == (summary["passed"] + summary["dead_letters"]
                                   + summary["outside"])

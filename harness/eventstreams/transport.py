"""The transport: one HTTP GET, and nothing more, behind one seam.

`EventStream` (the policy: retries, backoff, resume, de-duplication) talks to
the network only through a `Transport`: `open()` sends one request and
returns the response head and a body to read in chunks, or raises
`TransportError` when no response came. Status codes, content types, framing
and reconnecting are the policy's. `Urllib3Transport` is the real one, and
the default; a test plugs in its own to produce what no real server can
(a reset at a chosen byte, a body cut into chunks at every place).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

import urllib3

__all__ = ["Response", "Timeout", "Transport", "TransportError", "Urllib3Transport"]

_READ_SIZE: Final = 65536
_URLLIB3_PREFIX: Final = re.compile(r"^\w+\(host=[^)]*\): ")


@dataclass(frozen=True, slots=True)
class Timeout:
    """`connect` bounds the TCP (and TLS) connect; `read` (None: no limit) bounds the
    wait for the response head and for each read of the body."""

    connect: float
    read: float | None = None


class TransportError(Exception):
    """No response: the connection failed or, `timed_out`, the server sent no response
    head within the read timeout. `str()` says why in a few words ("Connection
    refused"), without credentials. The policy retries."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class Response(Protocol):
    """An open response: its head, and its body as byte chunks of any size."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Looked up as `Content-Type` and `Retry-After` (real HTTP headers are
        case-insensitive)."""
        ...

    def chunks(self) -> Iterator[bytes]:
        """The body, chunk by chunk, until it ends; any exception means the connection
        was lost, with `str()` saying how. A read waits at most the read timeout."""
        ...

    def close(self) -> None:
        """Release the connection. May be called more than once, and from another
        thread while `chunks()` waits: that read then ends (by returning or raising)."""
        ...


class Transport(Protocol):
    """Sends one request; see the module doc."""

    def open(self, url: str, headers: Mapping[str, str], timeout: Timeout) -> Response:
        """A streaming GET of `url` with `headers`, following redirects, never retrying;
        raises `TransportError` if no response head came."""
        ...


class Urllib3Transport:
    """The real transport: urllib3, certificates verified, connections pooled."""

    def __init__(self) -> None:
        self._http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED")

    def open(self, url: str, headers: Mapping[str, str], timeout: Timeout) -> Response:
        try:
            response = self._http.request(
                "GET", url, headers=headers, preload_content=False, redirect=True,
                timeout=urllib3.Timeout(connect=timeout.connect, read=timeout.read),
                retries=False)
        except urllib3.exceptions.ReadTimeoutError:
            raise TransportError("no response", timed_out=True) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransportError(_reason(exc)) from None
        return _Urllib3Response(response)


class _Urllib3Response:
    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    def chunks(self) -> Iterator[bytes]:
        read = self._response.read1 if hasattr(self._response, "read1") else self._response.read
        while chunk := read(_READ_SIZE):
            yield chunk

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed, or the socket is gone
            self._response.shutdown()
        self._response.release_conn()
        self._response.close()


def _reason(exc: BaseException) -> str:
    """Why a connection attempt failed, in a few words ("Connection refused"): the
    innermost OSError's text, found through urllib3's wrappers."""
    cause: BaseException | None = exc
    for _ in range(16):  # guards against a cyclic chain
        if cause is None:
            break
        if isinstance(cause, OSError) and (cause.strerror or cause.args):
            return cause.strerror or str(cause)
        cause = cause.__cause__ or cause.__context__ or next(
            (arg for arg in cause.args if isinstance(arg, BaseException)), None)
    return _URLLIB3_PREFIX.sub("", str(exc))

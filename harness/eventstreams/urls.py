"""Stream URLs: checked before use, and shown or stored without credentials."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from harness.errors import StreamError

__all__ = ["check_url", "public_url"]

_USERINFO: Final = re.compile(r"(?<=//)[^/?#]*@")  # up to the last @, as urlsplit reads it
_BAD_URL_CHARS: Final = re.compile(r"[\x00-\x20\x7f]")


def public_url(url: str) -> str:
    """The URL without user:password, fit to store in a recording's manifest or show.

    Never raises: a URL too malformed to parse has its user-info cut out textually.
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return _USERINFO.sub("", url, count=1)
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port else "")
    return parts._replace(netloc=netloc).geturl()


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host name and a valid port; otherwise a
    `StreamError` naming `--url` (without credentials)."""
    problem = _url_problem(url)
    if problem is not None:
        raise StreamError(f"--url {public_url(url)!r}: {problem}")
    return url


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number 0-65535)
    except ValueError as exc:
        return f"malformed URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "only http:// and https:// URLs are accepted"
    if not parts.hostname:
        return "no host name"
    if _BAD_URL_CHARS.search(url):
        return "spaces or control characters are not allowed in a URL"
    return None

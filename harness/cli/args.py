"""Arguments as a user types them: checked up front, errors in one line in their terms.

Every option value goes through a type of `harness.values` or one here, which say
what was expected and what was given (`--threshold: expected a number >= 0, got
'abc'`). The parser names the subcommand, suggests the closest option for a
typo, and prints its usage only when asked.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from harness.values import bound, number

__all__ = ["Parser", "add_json", "add_slice_options", "since", "url"]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: `harness replay: error: ...`."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {self._explain(message)}", file=sys.stderr)
        raise SystemExit(2)

    def _explain(self, message: str) -> str:
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            words = unknown.group(1).split()
            option = next((w for w in words if w.startswith("-")), None)
            if option is None:
                return f"unexpected argument {words[0]!r} (see {self.prog} --help)"
            name = option.split("=", 1)[0]
            close = difflib.get_close_matches(name, self._known_options(), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f" (see {self.prog} --help)"
            return f"unknown option {name}{hint}"
        invalid = re.match(r"argument (\S+): invalid choice: '?([^' ]*)'? \(choose from (.*)\)",
                           message)
        if invalid:
            name, got, choices = invalid.groups()
            options = [c.strip(" '") for c in choices.split(",")]
            close = difflib.get_close_matches(got, options, n=1)
            hint = f"; did you mean {close[0]}?" if close else f" (one of {', '.join(options)})"
            what = "command" if name in ("COMMAND", "command") or name.startswith("{") else name
            return f"unknown {what} {got!r}{hint}"
        return re.sub(r"^argument ([^:]+): ", r"\1: ", message)

    def _known_options(self) -> list[str]:
        return [o for o in self._option_string_actions if o.startswith("--")]


def since(text: str) -> str:
    """`--since`: a past time, unix milliseconds or ISO-8601 (UTC if no zone is given),
    passed on as whole milliseconds. A future time is refused (the stream would wait for
    it); one older than EventStreams' history is allowed with a warning, as the stream
    then starts at the oldest event it still has."""
    from harness.eventstreams.ids import HISTORY_SECONDS, parse_since

    try:
        ms = parse_since(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected unix milliseconds or an ISO-8601 time, got {text!r}") from None
    now = time.time()
    if not 0 <= ms <= now * 1000:
        raise argparse.ArgumentTypeError(f"expected a time between 1970 and now, got {text!r}"
                                         + (" (in the future)" if ms > 0 else ""))
    if ms < (now - HISTORY_SECONDS) * 1000:
        when = datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")
        print(f"warning: --since {text} is {when}, more than {HISTORY_SECONDS // 86400} days"
              " ago: EventStreams keeps about that much history and starts at the oldest"
              " event it has", file=sys.stderr)
    return str(int(ms))


def url(text: str) -> str:
    """An http(s) URL (credentials in it are never echoed)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        if ok:
            parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok:
        shown = text.split("@", 1)[-1] if "@" in text else text
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {shown!r}")
    return text


def existing_dir(text: str) -> Path:
    return Path(text)


def place(text: str) -> Path:
    """A recording's place: a directory, or `s3://bucket/prefix` (checked now; held as a
    `Path`, which `harness.store.location` still reads as that address)."""
    from harness.errors import UsageError
    from harness.store.location import BucketPath

    if text.startswith("s3:"):
        try:
            BucketPath.parse(text)  # "s3:/b" too is refused: "not an s3:// address"
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return Path(text)


def add_store_options(p: argparse.ArgumentParser) -> None:
    """Object storage, for a recording at s3://bucket/prefix (inherited by every process
    of the run through the environment)."""
    g = p.add_argument_group("object storage (s3://bucket/prefix recordings)")
    g.add_argument("--endpoint-url", type=url, metavar="URL",
                   help="an S3-compatible server (MinIO, SeaweedFS, Ceph, R2); default"
                        " $HARNESS_S3_ENDPOINT or $AWS_ENDPOINT_URL, else AWS. Credentials"
                        " and region come from the usual AWS_* variables")
    g.add_argument("--cache", type=Path, metavar="DIR",
                   help="keep what is fetched here, checked against its sha256 on every"
                        " read, for the next run")
    g.add_argument("--cache-mb", type=number(0.01, 1e9), default=None, metavar="N",
                   help="keep the cache under N MB, least recently used out first (2048)")


def apply_store_options(args: argparse.Namespace) -> None:
    """Pass the object storage options on, as the environment every member reads."""
    import os

    from harness.store.bucket import ENDPOINT_ENV
    from harness.store.cache import CACHE_ENV, CACHE_MB_ENV

    if args.endpoint_url:  # every command has these options (`add_store_options`)
        os.environ[ENDPOINT_ENV] = args.endpoint_url
    if args.cache is not None:
        os.environ[CACHE_ENV] = str(args.cache.resolve())
    if args.cache_mb is not None:
        os.environ[CACHE_MB_ENV] = str(args.cache_mb)


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (the summary) on stdout instead of text")


def add_slice_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("part of a recording")
    g.add_argument("--from", dest="start", type=bound, metavar="T",
                   help="only events with timestamp >= T (ISO-8601 or unix seconds; a"
                        " fraction of a second rounds up, which keeps >= exact)")
    g.add_argument("--until", dest="end", type=bound, metavar="T",
                   help="only events with timestamp < T (a fraction rounds up, which keeps"
                        " < exact)")
    g.add_argument("--wiki", dest="wikis", action="append", metavar="NAME",
                   help="only events of this wiki, e.g. enwiki (repeatable)")


def shown(values: Sequence[Any]) -> str:
    return ",".join(str(v) for v in values)

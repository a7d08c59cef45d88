"""Arguments as a user types them: checked up front, errors in one line in their terms.

Every option value goes through one of the types here, which say what was
expected and what was given (`--threshold: expected a number >= 0, got
'abc'`). The parser names the subcommand, suggests the closest option for a
typo, and prints its usage only when asked.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

from harness.times import parse_iso

__all__ = ["Parser", "bound", "count", "count_list", "number", "since", "timestamp", "url"]


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


def count(low: int = 1, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {_range(low, high)}, got {text!r}")
        return value
    parse.__name__ = "count"
    return parse


def count_list(low: int = 1, high: int | None = None) -> Callable[[str], list[int]]:
    """Comma-separated whole numbers, each in [low, high] (e.g. `1,2,4`)."""
    one = count(low, high)

    def parse(text: str) -> list[int]:
        try:
            values = [one(part) for part in text.split(",") if part.strip()]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated whole numbers, each {_range(low, high)},"
                f" got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
        return values
    return parse


def number(low: float = 0.0, high: float | None = None, *,
           above: bool = False) -> Callable[[str], float]:
    """A finite number >= low (> low with `above`) and <= high."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if (not math.isfinite(value) or value < low or (above and value == low)
                or (high is not None and value > high)):
            bound = f"> {low:g}" if above else f">= {low:g}"
            if high is not None:
                bound += f" and <= {high:g}"
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}")
        return value
    return parse


# Years 1..9999: what a window summary can render as an ISO date.
_MIN = int(datetime(1, 1, 1, tzinfo=timezone.utc).timestamp())
_MAX = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp())
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def timestamp(text: str) -> int:
    """A point in time: unix seconds, or ISO-8601 (UTC if no zone is given; a fraction of
    a second is dropped)."""
    try:
        value = int(text)
    except ValueError:
        value = int(_iso(text).timestamp())
    return _in_years(value, text)


def bound(text: str) -> int:
    """A bound on whole-second event timestamps (`--from`, `--until`): unix seconds or
    ISO-8601, a fraction of a second rounded up. For every whole second `t`, `t >= x` iff
    `t >= ceil(x)` and `t < x` iff `t < ceil(x)`: both bounds keep their exact meaning."""
    try:
        value = Decimal(text)
        if not value.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        seconds = _iso(text) - _EPOCH
        return _in_years(-(-seconds // timedelta(seconds=1)), text)
    if not _MIN <= value <= _MAX:  # before math.ceil, which would expand 1e999999999
        raise argparse.ArgumentTypeError(f"expected a time in years 1..9999, got {text!r}")
    return _in_years(math.ceil(value), text)


def _iso(text: str) -> datetime:
    try:
        return parse_iso(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 time or unix seconds, got {text!r}") from None


def _in_years(value: int, text: str) -> int:
    if not _MIN <= value <= _MAX:
        raise argparse.ArgumentTypeError(f"expected a time in years 1..9999, got {text!r}")
    return value


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


def _range(low: int, high: int | None) -> str:
    return f"a whole number >= {low}" if high is None else f"a whole number {low}..{high}"


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

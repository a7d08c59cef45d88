"""The keying rule of a replay source, defined once: what an event's key is.

A key is a field name (`"wiki"`), a dotted path into the payload
(`"meta.domain"`) or a function of the payload. Its value keys the event
when it is a string, or an integer (keyed by its decimal text, as `key_on`
needs it anyway); any other value, or none, makes the event a `no-key` dead
letter. Lanes are derived by this rule (`derive`, for `keylanes`) and the
source's reader passes events on by it (`payloads`), so the two can never
disagree about where a key lives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from harness.errors import UsageError

__all__ = ["NO_KEY", "USER", "KeyGetter", "Payload", "key_field", "key_getter", "key_name",
           "key_path", "key_text"]

Payload = dict[str, Any]
KeyGetter = Callable[[Payload], Any]
USER: Final = "user"
NO_KEY: Final = "no-key"


def key_path(key: str) -> list[str]:
    """The field names of a key (`"meta.domain"` -> `["meta", "domain"]`)."""
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise UsageError(f"--key {key!r}: expected a field name or a dotted path")
    return key.split(".")


def key_name(key: str | KeyGetter) -> str:
    """What a key is called: its field name or dotted path, `"key"` for a function."""
    return key if isinstance(key, str) else "key"


def key_field(key: str | KeyGetter) -> str | None:
    """The one payload field a key reads (`"wiki"`), read straight with `dict.get`;
    None for a dotted path or a function."""
    return key if isinstance(key, str) and "." not in key else None


def key_getter(key: str | KeyGetter) -> KeyGetter:
    """The function that takes a payload's key: a field, a dotted path, or `key` itself."""
    if callable(key):
        return key
    path = key_path(key)
    if len(path) == 1:
        return lambda payload: payload.get(key)

    def get(payload: Payload) -> Any:
        value: Any = payload
        for part in path:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    return get


def key_text(value: Any) -> str | None:
    """A key value as the text it is placed (and keyed) by; None if it is no key."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None

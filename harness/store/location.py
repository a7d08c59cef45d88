"""Where a recording lives: a local directory, or `s3://bucket/prefix` in object storage.

A recording in a bucket is the same files as one on disk (the segments, the
manifest) under one key prefix; `BucketPath` names that prefix and the keys
in it. Everything that takes a recording takes either (`Location`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

from harness.errors import UsageError

__all__ = ["SCHEME", "BucketPath", "Location", "location"]

SCHEME: Final = "s3://"
# S3's bucket naming rules (lowercase letters, digits, dots, hyphens; 3..63 characters).
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class BucketPath:
    """A key prefix in a bucket: `s3://bucket/prefix` (the prefix without slashes at its
    ends; empty for the bucket's top level)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> BucketPath:
        """`s3://bucket/prefix` as a `BucketPath`; `UsageError` naming it if it is not one."""
        if not text.startswith(SCHEME):
            raise UsageError(f"{text}: not an s3:// address")
        bucket, _, prefix = text[len(SCHEME):].partition("/")
        prefix = prefix.strip("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise UsageError(f"{text}: {bucket!r} is not a bucket name (3-63 lowercase"
                             " letters, digits, dots and hyphens)")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise UsageError(f"{text}: the key prefix has an empty, '.' or '..' part")
        return cls(bucket, prefix)

    def key(self, name: str) -> str:
        """The object key of file `name` of the recording."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def url(self, name: str = "") -> str:
        """`s3://bucket/prefix[/name]`, for messages."""
        key = self.key(name) if name else self.prefix
        return f"{SCHEME}{self.bucket}/{key}" if key else f"{SCHEME}{self.bucket}"

    @property
    def name(self) -> str:
        """The last part of the prefix (what a directory's name is to a local recording)."""
        return self.prefix.rsplit("/", 1)[-1] or self.bucket

    def __str__(self) -> str:
        return self.url()


Location: TypeAlias = "Path | BucketPath"


def _address(value: str | os.PathLike[str]) -> str | None:
    """The `s3://` address `value` is, if it is one. A `Path` made of one collapses its
    double slash (`s3:/bucket/prefix`, also as `os.fspath` gives it back) and still
    names it, so that an address passes unharmed through code that holds recordings as
    paths (job options, say)."""
    text = os.fspath(value)
    if text.startswith("s3:/"):
        return SCHEME + text[len("s3:/"):].lstrip("/")
    return None


def location(value: str | os.PathLike[str] | BucketPath) -> Path | BucketPath:
    """A recording's place from what a user wrote (also argparse's `type=`)."""
    if isinstance(value, BucketPath):
        return value
    address = _address(value)
    return BucketPath.parse(address) if address is not None else Path(value)

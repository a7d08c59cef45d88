"""Object storage: recordings at `s3://bucket/prefix`, read and written through `Bucket`."""

from harness.store.bucket import Bucket, Conflict, open_bucket
from harness.store.location import BucketPath, Location, location

__all__ = ["Bucket", "BucketPath", "Conflict", "Location", "location", "open_bucket"]

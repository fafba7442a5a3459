"""`s3://bucket/key` URIs the user types or a storyboard names, parsed strictly.

The store has one bucket; a URI naming another bucket, no key, or a key with `..`/empty segments
is refused in one line rather than silently read from the configured bucket.
"""

from __future__ import annotations

from reelflow.errors import InputError
from reelflow.store.keys import validate_key

SCHEME = "s3://"


def is_s3_uri(text: str) -> bool:
    return text.startswith(SCHEME)


def parse_s3_uri(uri: str, bucket: str, *, what: str = "s3 URI") -> str:
    """The object key of `s3://{bucket}/{key}`; InputError (one line) for anything else."""
    if not uri.startswith(SCHEME):
        raise InputError(f"{what} {uri[:120]!r}: expected s3://BUCKET/KEY")
    named, sep, key = uri[len(SCHEME):].partition("/")
    if not named:
        raise InputError(f"{what} {uri[:120]!r}: no bucket; expected s3://{bucket}/KEY")
    if named != bucket:
        raise InputError(f"{what} {uri[:120]!r}: bucket {named!r} is not this store's bucket "
                         f"{bucket!r}")
    if not sep or not key:
        raise InputError(f"{what} {uri[:120]!r}: no object key; expected s3://{bucket}/KEY")
    try:
        return validate_key(key)
    except ValueError as exc:
        raise InputError(f"{what} {uri[:120]!r}: {exc}") from None

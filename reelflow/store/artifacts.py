"""ArtifactStore: every artifact of a film in one S3 bucket, each with a lineage sidecar.

Objects are written under deterministic keys (see `reelflow.store.keys`); next to each object a JSON
sidecar records what made it (spec, spec hash, parent keys, code version) and the sha256 of the
bytes written, which every read verifies. Tasks pass keys around, never bytes.

Errors never carry credentials: minio errors are re-raised as `StoreError`s naming the operation,
the key and the S3 error code only.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import MinioException, S3Error
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from reelflow.errors import StageError
from reelflow.store.keys import (
    CODE_VERSION,
    SIDECAR_SUFFIX,
    is_sidecar_name,
    sidecar_key,
    validate_key,
)
from reelflow.store.settings import S3Settings

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger("reelflow.store")

DEFAULT_PART_SIZE = 16 * 1024 * 1024
"""Multipart part size: files above it upload in parts; at most ~3 parts are held in memory."""

_CHUNK = 1024 * 1024
#: How long a reader waits for a sidecar written alongside an object it already sees.
_SIDECAR_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8)
_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None


def _sidecar_pool() -> ThreadPoolExecutor:
    """One small pool per process for sidecar writes (stores stay picklable, no thread each)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="reelflow-sidecar")
        return _POOL
_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchObject", "NoSuchBucket", "ResourceNotFound"}


class StoreError(StageError, RuntimeError):
    """An S3 operation failed; the message names the key and the S3 error code, never secrets."""

    def __init__(self, message: str, *, key: str | None = None, code: str | None = None):
        super().__init__(message)
        self.key = key
        self.code = code


class ObjectNotFound(StoreError, KeyError):
    """The object (or its sidecar) does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class IntegrityError(StoreError):
    """The bytes read do not match the sha256 recorded in the lineage sidecar at write time."""


class Lineage(BaseModel):
    """What made an object: stored as its JSON sidecar."""

    model_config = ConfigDict(extra="forbid")

    kind: str = "blob"
    spec: dict[str, Any] = Field(default_factory=dict)
    spec_hash: str | None = None
    parents: list[str] = Field(default_factory=list)
    sha256: str = ""
    size: int = 0
    content_type: str = "application/octet-stream"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    code_version: str = CODE_VERSION
    extra: dict[str, Any] = Field(default_factory=dict)


_KIND_BY_SEGMENT = {
    "images": "image",
    "clips": "clip",
    "speech": "speech",
    "music": "music",
    "edits": "edit",
    "covers": "cover",
    "storyboards": "storyboard",
    "runs": "manifest",
    "characters": "character",
}


def guess_kind(key: str) -> str:
    """Kind from the key layout (`.../images/x.png` -> image); `blob` when nothing matches."""
    for part in reversed(key.split("/")[:-1]):
        if part in _KIND_BY_SEGMENT:
            return _KIND_BY_SEGMENT[part]
    return "blob"


_THREAD_HASH_MIN = 8 * 1024 * 1024
"""Transfers above this hash on a thread of their own; smaller ones hash each chunk as it
arrives (a thread's hand-offs cost more than they hide on an object of a few chunks)."""


class _Hasher:
    """sha256 fed chunk by chunk as a transfer passes them, never as a second pass.

    With `threaded` the hashing runs on a thread of its own (hashlib releases the GIL), beside
    the transfer's thread: the bytes are hashed while the next ones travel. At most `depth`
    chunks wait, so memory stays bounded."""

    def __init__(self, threaded: bool = True, depth: int = 8):
        self.size = 0
        self._sha = hashlib.sha256()
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="reelflow-sha256",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._sha.update(chunk)

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._thread is None:
            self._sha.update(chunk)
        else:
            self._chunks.put(chunk)

    def hexdigest(self) -> str:
        """Waits for the chunks still queued; call once, after the last `update`."""
        self.close()
        return self._sha.hexdigest()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._chunks.put(None)
            self._thread.join()

    def __enter__(self) -> _Hasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _HashingReader(io.RawIOBase):
    """Wraps a file: hands the bytes minio reads to a `_Hasher`, so nothing is read twice and
    the hashing runs beside the upload."""

    def __init__(self, raw: BinaryIO, hasher: _Hasher):
        super().__init__()
        self._raw = raw
        self.hasher = hasher

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._raw.read(-1 if size is None else size)
        self.hasher.update(data)
        return data


def _receive(resp: Any, sink: Callable[[memoryview], Any] | None) -> tuple[str, int]:
    """Read a GET's body to the end, hashing each chunk as it lands and handing it to `sink`;
    returns the sha256 and the byte count.

    Up to `_THREAD_HASH_MIN` the chunks go from the socket into one reused buffer
    (`http.client`'s `readinto`, under urllib3's response) and are hashed there, in this thread.
    Above it the hashing runs on a thread of its own (`_Hasher`) beside the download: where a
    core is free (a remote S3, more cores) it hides the hash. Measured on this 2-core machine,
    where the local S3 server takes one core, neither hides it: a 200 MB read verified costs
    the hash's CPU time on top of the SDK's.
    """
    length = int(resp.headers.get("content-length") or 0)
    raw = getattr(resp, "_fp", None)
    direct = hasattr(raw, "readinto") and not resp.headers.get("content-encoding")
    if length > _THREAD_HASH_MIN or not direct:  # fresh chunks: the thread may still hold one
        with _Hasher(threaded=length > _THREAD_HASH_MIN) as hasher:
            for chunk in resp.stream(_CHUNK):
                hasher.update(chunk)
                if sink is not None:
                    sink(memoryview(chunk))
            return hasher.hexdigest(), hasher.size
    sha = hashlib.sha256()
    size = 0
    buffer = memoryview(bytearray(_CHUNK))
    while got := raw.readinto(buffer):
        view = buffer[:got]
        sha.update(view)
        size += got
        if sink is not None:
            sink(view)
    if size != length and resp.headers.get("content-length") is not None:
        raise urllib3.exceptions.ProtocolError(  # a connection cut mid-body
            f"body ended after {size} of {length} bytes")
    return sha.hexdigest(), size


class _Minio(Minio):
    """minio's client, signing a whole-object PUT with the sha256 the store computed already
    of the same bytes (its `sha256` metadata) instead of hashing the body a second time. Over
    plain HTTP the payload is signed: servers that check it (MinIO, AWS) refuse other bytes."""

    def _build_headers(self, host: str, headers: dict[str, Any] | None = None,
                       body: bytes | None = None, creds: Any = None) -> tuple[Any, datetime]:
        known = next((v for k, v in (headers or {}).items()
                      if k.lower() == "x-amz-meta-sha256"), None)
        if isinstance(known, list | tuple):  # minio keeps metadata values as lists
            known = known[0] if len(known) == 1 else None
        if not (known and body and creds and not self._base_url.is_https):
            return super()._build_headers(host, headers, body, creds)
        built, date = super()._build_headers(host, headers, None, creds)  # no body: no hashing
        built["Content-Length"] = str(len(body))
        built["x-amz-content-sha256"] = known
        return built, date


def _safe_code(err: BaseException) -> str:
    if isinstance(err, S3Error):
        return err.code or "S3Error"
    return type(err).__name__


class _LoggedRetry(urllib3.Retry):
    """urllib3's retry, saying in the log what is retried and why (a hung or restarting S3
    shows up as warnings, not as silence)."""

    def increment(self, method: str | None = None, url: str | None = None,  # type: ignore[override]
                  response: Any = None, error: Exception | None = None, _pool: Any = None,
                  _stacktrace: Any = None) -> urllib3.Retry:
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        status = getattr(response, "status", "?")
        why = type(error).__name__ if error is not None else f"HTTP {status}"
        path = (url or "").split("?", 1)[0]
        log.warning("S3 %s %s: %s; retrying (%s retries left)", method, path, why, new.total)
        return new


class ArtifactStore:
    """Typed, verified access to the artifact bucket.

    Timeouts are per operation: metadata and small objects use `small_timeout` (seconds: a hung
    server is noticed in seconds, not minutes); transfers get a read timeout sized to the object
    (`size / min_rate`, between `small_timeout * 3` and `read_timeout`). Each try that fails is
    retried `retries` times with backoff, and logged."""

    SMALL_OBJECT = 1 << 20

    def __init__(self, settings: S3Settings, *, part_size: int = DEFAULT_PART_SIZE,
                 connect_timeout: float = 5.0, read_timeout: float = 300.0, retries: int = 3,
                 small_timeout: float = 10.0, min_rate: float = 1 << 20):
        self.settings = settings
        self.part_size = part_size
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.small_timeout = small_timeout
        self.min_rate = min_rate
        self.retries = retries
        self.client = self._make_client(small_timeout)  # stat, sidecars, lists, small objects
        self._bulk: dict[int, Minio] = {}
        self._bucket_ready = False

    def _make_client(self, read_timeout: float) -> Minio:
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(self.connect_timeout, read_timeout),
                                    read=read_timeout),
            maxsize=10,
            retries=_LoggedRetry(
                total=self.retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        return _Minio(
            self.settings.endpoint,
            access_key=self.settings.access_key,
            secret_key=self.settings.secret_key.get_secret_value(),
            secure=self.settings.secure,
            region=self.settings.region,
            http_client=http,
        )

    def client_for(self, size: int | None) -> Minio:
        """The client whose read timeout fits an object of `size` bytes (None: unknown, large)."""
        if size is not None and size <= self.SMALL_OBJECT:
            return self.client
        wanted = self.read_timeout if size is None else size / self.min_rate
        timeout = int(min(self.read_timeout, max(3 * self.small_timeout, wanted)))
        if timeout not in self._bulk:
            self._bulk[timeout] = self._make_client(timeout)
        return self._bulk[timeout]

    def download_client(self) -> Minio:
        """The client for streaming GETs of any size, in one request (no stat first to size
        it): a GET's read timeout bounds each wait for the next bytes, not the transfer, so it
        need not grow with the object; `3 * small_timeout`, the floor of the transfer timeouts."""
        return self.client_for(self.SMALL_OBJECT + 1)

    def __repr__(self) -> str:
        return f"ArtifactStore(endpoint={self.settings.endpoint!r}, bucket={self.bucket!r})"

    @property
    def bucket(self) -> str:
        return self.settings.bucket

    # -- error handling -----------------------------------------------------------------------

    @contextmanager
    def _s3(self, op: str, key: str | None = None) -> Iterator[None]:
        """Re-raise minio / transport errors without their (possibly sensitive) details."""
        try:
            yield
        except StoreError:
            raise
        except S3Error as err:
            code = _safe_code(err)
            where = f"{self.bucket}/{key}" if key else self.bucket
            cls = ObjectNotFound if code in _NOT_FOUND_CODES else StoreError
            raise cls(f"S3 {op} {where!r} failed: {code}", key=key, code=code) from None
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
            code = _safe_code(err)
            where = f"{self.bucket}/{key}" if key else self.bucket
            raise StoreError(
                f"S3 {op} {where!r} failed: {code} (endpoint {self.settings.endpoint})",
                key=key, code=code,
            ) from None

    # -- bucket -------------------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (idempotent)."""
        if self._bucket_ready:
            return
        with self._s3("make_bucket"):
            if not self.client.bucket_exists(self.bucket):
                try:
                    self.client.make_bucket(self.bucket)
                except S3Error as err:
                    if err.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        self._bucket_ready = True

    def ping(self) -> None:
        """Authenticated round trip (list buckets): raises StoreError when unreachable or denied."""
        with self._s3("list_buckets"):
            self.client.list_buckets()

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{validate_key(key)}"

    # -- writes -------------------------------------------------------------------------------

    def _make_lineage(self, key: str, lineage: Lineage | dict[str, Any] | None, *, sha256: str,
                      size: int, content_type: str) -> Lineage:
        if lineage is None:
            base = Lineage(kind=guess_kind(key))
        elif isinstance(lineage, Lineage):
            base = lineage
        else:
            data = dict(lineage)
            data.setdefault("kind", guess_kind(key))
            base = Lineage.model_validate(data)
        return base.model_copy(
            update={"sha256": sha256, "size": size, "content_type": content_type}
        )

    def _write_sidecar(self, key: str, lin: Lineage) -> None:
        data = lin.model_dump_json(indent=2).encode()
        skey = sidecar_key(key)
        with self._s3("put sidecar", skey):
            self.client.put_object(self.bucket, skey, io.BytesIO(data), len(data),
                                   content_type="application/json")

    def _put_with_sidecar(self, key: str, lin: Lineage, put_object: Callable[[], None]) -> None:
        """The sidecar and the object written at the same time (one round trip, not two).

        Why it is safe: the sidecar is sent first and the object is the commit (``exists``
        checks the object); a reader who finds the object while its sidecar is still in flight
        waits for it in :meth:`lineage`; and when either write fails the other is removed, so a
        failed put leaves neither an object without lineage nor a stray sidecar.
        """
        sidecar = _sidecar_pool().submit(self._write_sidecar, key, lin)
        try:
            put_object()
        except BaseException:
            with suppress(Exception):
                sidecar.result()
            with suppress(Exception), self._s3("delete sidecar", sidecar_key(key)):
                self.client.remove_object(self.bucket, sidecar_key(key))
            raise
        try:
            sidecar.result()
        except BaseException:
            with suppress(Exception), self._s3("delete", key):
                self.client.remove_object(self.bucket, key)
            raise

    def _complete(self, key: str) -> bool:
        """True when both the object and its sidecar exist (an idempotent write can skip)."""
        return self.exists(key) and self.exists(sidecar_key(key))

    def complete(self, key: str) -> bool:
        """An artifact is there only with its sidecar: a crash between the two writes leaves an
        object that reads as absent, so the produce step makes it again (and repairs it)."""
        return self._complete(key)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream",
                  lineage: Lineage | dict[str, Any] | None = None, *,
                  if_absent: bool = False, sidecar: bool = True) -> str:
        """Write `data` and its sidecar (concurrently); returns the key. `if_absent` skips an
        existing object.

        `sidecar=False` writes a bare object (Prefect result records; read with `verify=False`).
        """
        validate_key(key)
        self.ensure_bucket()
        if if_absent and (self._complete(key) if sidecar else self.exists(key)):
            return key
        data = bytes(data)
        if not sidecar:
            with self._s3("put", key):
                self.client.put_object(self.bucket, key, io.BytesIO(data), len(data),
                                       content_type=content_type)
            return key
        lin = self._make_lineage(key, lineage, sha256=hashlib.sha256(data).hexdigest(),
                                 size=len(data), content_type=content_type)

        def put() -> None:
            with self._s3("put", key):  # the sha rides along, so a read needs one request
                self.client_for(len(data)).put_object(self.bucket, key, io.BytesIO(data),
                                                      len(data), content_type=content_type,
                                                      metadata={"sha256": lin.sha256})

        self._put_with_sidecar(key, lin, put)
        return key

    def put_file(self, key: str, path: Path | str,
                 content_type: str = "application/octet-stream",
                 lineage: Lineage | dict[str, Any] | None = None, *,
                 if_absent: bool = False) -> str:
        """Stream a file up (multipart above `part_size`) with its sidecar; returns the key.

        The file is hashed first (a local read, far faster than the upload), so the sha256
        rides on the object (reads need one request) and the sidecar goes up alongside it. The
        bytes sent are hashed again as they go, on a thread beside the upload: a file that
        changed in between is refused.
        """
        validate_key(key)
        self.ensure_bucket()
        if if_absent and self._complete(key):
            return key
        path = Path(path)
        size = path.stat().st_size
        sha = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(4 * _CHUNK), b""):
                sha.update(block)
        lin = self._make_lineage(key, lineage, sha256=sha.hexdigest(), size=size,
                                 content_type=content_type)

        def put() -> None:
            # minio reads a part (up to part_size) at a time: at most two wait to be hashed
            with path.open("rb") as fh, _Hasher(size > _THREAD_HASH_MIN, depth=2) as hasher:
                reader = _HashingReader(fh, hasher)
                with self._s3("put", key):
                    self.client_for(min(size, self.part_size)).put_object(
                        self.bucket, key, reader, size, content_type=content_type,
                        part_size=self.part_size, num_parallel_uploads=3,
                        metadata={"sha256": lin.sha256})
                changed = hasher.size != size or hasher.hexdigest() != lin.sha256
            if changed:
                with suppress(Exception), self._s3("delete", key):
                    self.client.remove_object(self.bucket, key)
                raise StoreError(f"file {path} changed while uploading to {key!r}", key=key)

        self._put_with_sidecar(key, lin, put)
        return key

    def put_json(self, key: str, model_or_dict: BaseModel | dict[str, Any] | list[Any],
                 lineage: Lineage | dict[str, Any] | None = None, *,
                 if_absent: bool = False) -> str:
        """Write a pydantic model or a JSON-able value as indented UTF-8 JSON."""
        if isinstance(model_or_dict, BaseModel):
            obj: Any = model_or_dict.model_dump(mode="json")
        else:
            obj = to_jsonable_python(model_or_dict)
        data = json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")
        return self.put_bytes(key, data, "application/json", lineage, if_absent=if_absent)

    # -- reads --------------------------------------------------------------------------------

    def lineage(self, key: str) -> Lineage:
        """The sidecar of `key`; ObjectNotFound when there is none."""
        skey = sidecar_key(key)
        for delay in (*_SIDECAR_WAITS, None):
            try:
                with self._s3("get sidecar", skey):
                    resp = self.client.get_object(self.bucket, skey)
                    try:
                        raw = resp.read()
                    finally:
                        resp.close()
                        resp.release_conn()
                break
            except ObjectNotFound:
                # the object may be there with its sidecar still in flight (they are written
                # concurrently): wait for it briefly, never return an object without lineage
                if delay is None or not self.exists(key):
                    raise
                time.sleep(delay)
        try:
            return Lineage.model_validate_json(raw)
        except ValueError:
            raise IntegrityError(f"sidecar {skey!r} is not a valid lineage record",
                                 key=key) from None

    def _expected_sha(self, key: str) -> str:
        try:
            lin = self.lineage(key)
        except ObjectNotFound:
            if not self.exists(key):
                raise ObjectNotFound(f"object {self.bucket}/{key!r} not found", key=key,
                                     code="NoSuchKey") from None
            raise IntegrityError(f"object {key!r} has no lineage sidecar to verify against",
                                 key=key) from None
        return lin.sha256

    def get_bytes(self, key: str, *, verify: bool = True) -> bytes:
        """Read an object whole (for small artifacts) and check its sha256 against the sidecar.

        Read in one call and hashed after: measured here, hashing a megabyte chunk by chunk as
        it arrives (inline or on a thread) cost more in hand-offs than it hid."""
        validate_key(key)
        with self._s3("get", key):
            resp = self.client.get_object(self.bucket, key)  # small: the short timeout
            try:
                data = resp.read()
                expected = resp.headers.get("x-amz-meta-sha256")
            finally:
                resp.close()
                resp.release_conn()
        if verify and not expected:  # objects written by put_file: the sidecar has the sha
            expected = self._expected_sha(key)
        if verify and expected is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise IntegrityError(
                    f"sha256 mismatch for {key!r}: sidecar {expected[:12]}, read {actual[:12]}",
                    key=key,
                )
        return data

    def get_file(self, key: str, dest: Path | str, *, verify: bool = True) -> Path:
        """Stream an object to `dest` (atomically replaced) in one request, verifying its
        sha256 as the bytes land."""
        validate_key(key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, self._s3("get", key):
                resp = self.download_client().get_object(self.bucket, key)  # one request
                try:
                    # the sha written with the object: no sidecar request; older objects: the
                    # sidecar
                    expected = resp.headers.get("x-amz-meta-sha256") if verify else None
                    actual, _ = _receive(resp, out.write)
                finally:
                    resp.close()
                    resp.release_conn()
            if verify and not expected:
                expected = self._expected_sha(key)
            if expected is not None and actual != expected:
                raise IntegrityError(
                    f"sha256 mismatch for {key!r}: sidecar {expected[:12]}, "
                    f"read {actual[:12]}",
                    key=key,
                )
            tmp.replace(dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return dest

    def get_json(self, key: str, model: type[M] | None = None, *, verify: bool = True) -> Any:
        """Parsed JSON, or an instance of `model` when given."""
        data = self.get_bytes(key, verify=verify)
        if model is not None:
            return model.model_validate_json(data)
        return json.loads(data)

    def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            with self._s3("stat", key):
                self.client.stat_object(self.bucket, key)
        except ObjectNotFound:
            return False
        return True

    def missing(self, keys: list[str]) -> list[str]:
        """The keys among `keys` whose object or lineage sidecar is absent: one listing per key
        (its name up to the extension covers both), so a cached step's outputs are checked
        for the price of one small request each."""
        absent = []
        for key in keys:
            wanted = {validate_key(key), sidecar_key(key)}
            if "." not in key.rsplit("/", 1)[-1]:  # no extension: no common prefix of the two
                if not self._complete(key):
                    absent.append(key)
                continue
            stem = key.rsplit(".", 1)[0]
            with self._s3("list", key):
                found = {o.object_name for o in self.client.list_objects(
                    self.bucket, prefix=f"{stem}.", recursive=True)}
            if not wanted <= found:
                absent.append(key)
        return absent

    def digest(self, key: str) -> tuple[str, int]:
        """sha256 and size of the stored bytes, streamed (nothing kept): what `verify` checks
        against the sidecar."""
        validate_key(key)
        with self._s3("get", key):
            resp = self.download_client().get_object(self.bucket, key)
            try:
                return _receive(resp, None)
            finally:
                resp.close()
                resp.release_conn()

    def presigned_url(self, key: str, expires: timedelta = timedelta(hours=12)) -> str:
        """A GET URL anyone can use until it expires (for review pages and artifacts)."""
        validate_key(key)
        with self._s3("presign", key):
            return self.client.presigned_get_object(self.bucket, key, expires=expires)

    def list(self, prefix: str = "", recursive: bool = True) -> list[str]:
        """Object keys under `prefix`, sorted, without lineage sidecars.

        A `x.json` counts as a sidecar when a sibling `x.<ext>` is listed too; `*.lineage.json`
        always does. With `recursive=False` sub-folders are returned with a trailing `/`.
        """
        if prefix:
            validate_key(prefix.rstrip("/") or "x")
        with self._s3("list", prefix or None):
            names = [o.object_name for o in self.client.list_objects(
                self.bucket, prefix=prefix or None, recursive=recursive) if o.object_name]
        stems = {n.rsplit(".", 1)[0] for n in names
                 if "." in n.rsplit("/", 1)[-1] and not n.endswith(".json")}
        out = [
            n for n in names
            if not is_sidecar_name(n)
            and not (n.endswith(SIDECAR_SUFFIX) and n[: -len(SIDECAR_SUFFIX)] in stems)
        ]
        return sorted(out)

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every object under `prefix` (sidecars included) with its size in bytes: finding a
        downloaded file in the bucket needs only the few objects of the same size."""
        if prefix:
            validate_key(prefix.rstrip("/") or "x")
        with self._s3("list", prefix or None):
            return {
                o.object_name: int(o.size or 0)
                for o in self.client.list_objects(self.bucket, prefix=prefix or None,
                                                  recursive=True)
                if o.object_name
            }

    # -- moves --------------------------------------------------------------------------------

    def copy(self, src: str, dst: str) -> str:
        """Server-side copy of an object and its sidecar (if any); returns `dst`."""
        validate_key(src)
        validate_key(dst)
        self.ensure_bucket()
        with self._s3("copy", src):
            self.client.copy_object(self.bucket, dst, CopySource(self.bucket, src))
        ssrc, sdst = sidecar_key(src), sidecar_key(dst)
        if self.exists(ssrc):
            with self._s3("copy sidecar", ssrc):
                self.client.copy_object(self.bucket, sdst, CopySource(self.bucket, ssrc))
        return dst

    def move(self, src: str, dst: str) -> str:
        """Copy then delete the source (S3 has no rename); returns `dst`."""
        self.copy(src, dst)
        self.delete(src)
        return dst

    def delete(self, key: str) -> None:
        """Remove an object and its sidecar; missing ones are ignored (S3 semantics)."""
        validate_key(key)
        for k in (key, sidecar_key(key)):
            with self._s3("delete", k):
                self.client.remove_object(self.bucket, k)

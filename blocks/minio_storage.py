"""MinIOStorage: a Prefect block for S3-compatible storage, usable as task/flow result storage.

Prefect's result machinery calls `read_path` / `write_path` with `_sync=True` from sync tasks and
`aread_path` / `awrite_path` from async ones. A block that only defines plain methods breaks at
commit time without an error (the task shows Completed, the cache never hits), so both flavours are
implemented here and the sync ones are dispatched with Prefect's own `async_dispatch`, exactly as
`LocalFileSystem` does in 3.8.8.

Result records go to `{bucket}/{prefix}{key}` as bare objects (no lineage sidecar): they are
Prefect's, not film artifacts. Each is signed on write and verified on read (see
reelflow/store/signing.py): a record someone planted in the bucket is refused before Prefect
deserializes it, so bucket write access never means code execution on a renderer.
"""

from __future__ import annotations

from typing import Any, ClassVar

import anyio.to_thread
from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.filesystems import WritableFileSystem
from pydantic import Field, PrivateAttr, SecretStr

from reelflow.store.artifacts import ArtifactStore, ObjectNotFound
from reelflow.store.keys import validate_key
from reelflow.store.settings import S3Settings
from reelflow.store.signing import sign, verify


class MinIOStorage(WritableFileSystem):
    """S3 / MinIO / SeaweedFS bucket for Prefect results and reelflow artifacts."""

    _block_type_name: ClassVar[str] = "MinIO Storage"
    _block_type_slug: ClassVar[str] = "minio-storage"  # saved blocks: "minio-storage/<name>"
    _description: ClassVar[str] = (
        "An S3-compatible bucket (MinIO, SeaweedFS) used by reelflow for artifacts and as "
        "Prefect result storage."
    )

    endpoint: str = Field(default="127.0.0.1:8333", description="host:port, no scheme")
    access_key: str = Field(default="", description="S3 access key id")
    secret_key: SecretStr = Field(default=SecretStr(""), description="S3 secret key")
    bucket: str = Field(default="reelflow")
    secure: bool = Field(default=False, description="Use HTTPS")
    region: str = Field(default="us-east-1")
    prefix: str = Field(default="prefect-results/", description="Key prefix for result records")

    _store: ArtifactStore | None = PrivateAttr(default=None)

    # -- conversions --------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: S3Settings, **overrides: Any) -> MinIOStorage:
        return cls(
            endpoint=settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            bucket=settings.bucket,
            secure=settings.secure,
            region=settings.region,
            **overrides,
        )

    def to_settings(self) -> S3Settings:
        return S3Settings(
            endpoint=self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            bucket=self.bucket,
            secure=self.secure,
            region=self.region,
        )

    def to_store(self) -> ArtifactStore:
        """An ArtifactStore on the same bucket (cached per block instance)."""
        if self._store is None:
            self._store = ArtifactStore(self.to_settings())
        return self._store

    # -- paths --------------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        path = str(path).lstrip("/")
        prefix = self.prefix.strip("/")
        key = f"{prefix}/{path}" if prefix else path
        return validate_key(key)

    def _read(self, path: str) -> bytes:
        key = self._key(path)
        try:
            stored = self.to_store().get_bytes(key, verify=False)
        except ObjectNotFound:
            # Prefect treats any exception as "no record"; keep the familiar type for callers.
            raise FileNotFoundError(f"s3://{self.bucket}/{key} does not exist") from None
        return verify(key, stored)  # UnsignedRecord: Prefect sees no record, never the bytes

    def _write(self, path: str, content: bytes) -> str:
        key = self._key(path)
        self.to_store().put_bytes(key, sign(key, content), "application/octet-stream",
                                  sidecar=False)
        return key

    def delete_path(self, path: str) -> None:
        """Remove a result record (a cached step whose outputs left the bucket must run again:
        see tasks/common.py `OutputsPresent`); a missing record is no error."""
        self.to_store().delete(self._key(path))

    # -- WritableFileSystem -------------------------------------------------------------------

    async def aread_path(self, path: str) -> bytes:
        return await anyio.to_thread.run_sync(self._read, path)

    @async_dispatch(aread_path)
    def read_path(self, path: str) -> bytes:
        return self._read(path)

    async def awrite_path(self, path: str, content: bytes) -> str:
        return await anyio.to_thread.run_sync(self._write, path, content)

    @async_dispatch(awrite_path)
    def write_path(self, path: str, content: bytes) -> str:
        return self._write(path, content)

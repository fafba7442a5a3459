"""What every production step shares: a scratch folder, the lineage of what a job made,
PNG bytes in and out of the bucket."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from reelflow.errors import ConfigError
from reelflow.render import weights
from reelflow.render.jobs import Job, resolve_model_path
from reelflow.store.artifacts import ArtifactStore, Lineage


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="reelflow-") as tmp:
        yield Path(tmp)


def lineage_of(
    kind: str, job: Job, parents: list[str], extra: dict[str, object] | None = None
) -> Lineage:
    """The sidecar of an object a job made: the job itself is the spec, its hash the name;
    a job that runs weights also records them (path + content hash) and the runtime."""
    merged = dict(extra or {})
    if weights.used_weights(job):
        merged = {**weights.render_lineage(job), **merged}
    return Lineage(
        kind=kind,
        spec=job.model_dump(mode="json"),
        spec_hash=job.spec_hash(),
        parents=parents,
        extra=merged,
    )


def require_weights(job: Job, what: str) -> None:
    """Refuse to render under a key whose weights are not the ones on this machine (a worker
    with another copy of a LoRA would otherwise store its picture under the job's key)."""
    problems = weights.check_weights(job, resolve_model_path)
    if problems:
        raise ConfigError(f"{what}: weights differ from the job's: {'; '.join(problems)}")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def load_image(store: ArtifactStore, key: str) -> Image.Image:
    return Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")

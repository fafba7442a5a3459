"""A film whose image model (a tiny Flux) is pinned to a GGUF-quantized transformer renders
through the flow: an image-model block pins `memory: {gguf: FILE}`, the stills are made by the
quantized transformer (GGUF parameters in the resident pipeline), the file's sha256 is in the
stills' key and lineage, and another GGUF file gives another key.

A tiny Flux built from configs, its transformer written to Q8_0 with the `gguf` package, a real
Prefect server and S3 bucket; nothing mocked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings

BOARD = """
title: GGUF
project: gguf-film
width: 128
height: 72
fps: 8
style: {model: some-flux, base_seed: 3}
shots:
  - {id: road, description: a mountain road at dawn, duration: 0.5}
"""


def test_a_flux_pinned_to_a_gguf_transformer_renders_the_film_keyed_by_the_file(
    film_env: dict[str, str], s3_settings: S3Settings, tmp_path: Path
) -> None:
    from diffusers import FluxTransformer2DModel
    from diffusers.quantizers.gguf.utils import GGUFParameter

    from blocks.models import ImageModel
    from flows.produce_video import produce_video
    from reelflow.gpu.pins import MemoryPins
    from reelflow.imaging.pipelines import get_pipeline_cache
    from reelflow.imaging.tiny_flux import build_tiny_flux, write_gguf
    from reelflow.render.jobs import ImageJob, identify_weights
    from reelflow.render.models import model_source

    models = Path(film_env["REELFLOW_MODELS"])
    flux = build_tiny_flux(models / "tiny-flux")
    transformer = FluxTransformer2DModel.from_pretrained(flux / "transformer")
    gguf = write_gguf(transformer, models / "unet" / "flux-tiny-Q8_0.gguf")
    with torch.no_grad():  # a retrained transformer: another file
        transformer.x_embedder.weight.mul_(1.5)
    other = write_gguf(transformer, models / "unet" / "flux-tiny-other-Q8_0.gguf")

    ImageModel(
        family="flux", source="@models/tiny-flux", dtype="float32", device="cpu", width=64,
        height=32, steps=1, variants=1, memory=MemoryPins(gguf="@models/unet/flux-tiny-Q8_0.gguf"),
    ).save("tiny-flux-gguf", overwrite=True)
    result = produce_video(storyboard=BOARD, approval="auto", profile="test",
                           image_model="tiny-flux-gguf", exports=[])  # fmt: skip
    store = ArtifactStore(s3_settings.with_bucket("film"))
    manifest = json.loads(store.get_bytes(result.manifest_key))
    (still,) = manifest["variants"]["road"]
    lineage = store.lineage(still)
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert lineage.spec["model"]["memory"] == {"gguf": "@models/unet/flux-tiny-Q8_0.gguf",
                                               "gguf_sha256": sha}
    assert lineage.extra["memory"]["gguf"] == "@models/unet/flux-tiny-Q8_0.gguf"
    assert lineage.spec["model"]["family"] == "flux"
    # the hi-res pass (Flux img2img sharing the quantized transformer) at twice the size
    from PIL import Image

    chosen = store.get_file(manifest["chosen_images"]["road"], tmp_path / "still.png")
    with Image.open(chosen) as image:
        assert image.size == (128, 64)

    # the stills were made by the quantized transformer the file holds
    job = ImageJob.model_validate(lineage.spec)
    pipe = get_pipeline_cache().text2image(model_source(job.model))
    assert type(pipe).__name__ == "FluxPipeline"
    assert isinstance(pipe.transformer.transformer_blocks[0].attn.to_q.weight, GGUFParameter)

    # the key follows the file's content: the same file gives the stored key, another file
    # (another sha256) another key
    def keyed(name: str) -> str:
        memory = {"gguf": name}
        return identify_weights(job.model_copy(update={
            "model": job.model.model_copy(update={"memory": memory})})).output_key()

    assert keyed("@models/unet/flux-tiny-Q8_0.gguf") == still
    assert keyed("@models/unet/flux-tiny-other-Q8_0.gguf") != still
    assert hashlib.sha256(other.read_bytes()).hexdigest() != sha

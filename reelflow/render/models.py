"""The models a step runs: the tiny demo/test models built once per machine, and the
translation of a job's model/LoRA choice into what imaging loads."""

from __future__ import annotations

from pathlib import Path

from reelflow.render.jobs import (
    MODELS_PREFIX,
    FrameJob,
    ImageJob,
    IPAdapterChoice,
    LoraChoice,
    ModelChoice,
    models_dir,
    resolve_model_path,
)
from reelflow.render.profiles import RenderProfile

#: tiny video models a profile or block may name -> their builder in reelflow.motion.tiny
TINY_VIDEO_MODELS = {
    "tiny-ltx": "build_tiny_ltx",
    "tiny-wan": "build_tiny_wan",
    "tiny-ltx2": "build_tiny_ltx2",
    "tiny-wan22": "reelflow.motion.tiny_wan:build_tiny_wan22",
    "tiny-wan22-ti2v": "reelflow.motion.tiny_wan:build_tiny_wan22_ti2v",
    "tiny-wan-vace": "reelflow.motion.tiny_wan:build_tiny_wan_vace",
    "tiny-skyreels-df": "reelflow.motion.tiny_wan:build_tiny_skyreels_df",
}


def tiny_video_models(profile: RenderProfile) -> list[str]:
    """The tiny video models a profile names: its backend's and its further backends'."""
    names = [profile.video_model, *(o.get("model") for o in profile.video_models.values())]
    return [name for name in names if name in TINY_VIDEO_MODELS]


def build_tiny_video_model(name: str, path: Path) -> Path:
    """Build the tiny video model ``name`` (a key of TINY_VIDEO_MODELS) at ``path``."""
    import importlib

    module, _, attr = TINY_VIDEO_MODELS[name].rpartition(":")
    return getattr(importlib.import_module(module or "reelflow.motion.tiny"), attr)(path)


def prepare_demo_models(
    lora_names: list[str], family: str = "sd15", video_model: str | list[str] | None = None
) -> dict[str, str]:
    """Build the tiny models a `demo`/`test` profile asks for (once; later calls find them).
    `video_model`: one tiny video model or several (`tiny_video_models(profile)`)."""
    root = models_dir()
    wanted = {"tiny-sd": root / "tiny-sd", "tiny-controlnet": root / "tiny-controlnet"}
    wanted |= {name: root / "loras" / f"{name}.safetensors" for name in lora_names}
    videos = [video_model] if isinstance(video_model, str) else list(video_model or [])
    videos = [name for name in videos if name in TINY_VIDEO_MODELS]
    wanted |= {name: root / name for name in videos}
    if all(
        (path / "model_index.json").exists() or path.is_file() or (path / "config.json").exists()
        for path in wanted.values()
    ):
        return {name: str(path) for name, path in wanted.items()}  # no torch import needed
    from reelflow.imaging.tiny import build_tiny_controlnet, build_tiny_lora, build_tiny_sd

    for name in videos:
        build_tiny_video_model(name, root / name)
    sd = build_tiny_sd(root / "tiny-sd", family=family)
    controlnet = build_tiny_controlnet(sd, root / "tiny-controlnet")
    built = {"tiny-sd": str(sd), "tiny-controlnet": str(controlnet)}
    for index, name in enumerate(sorted(set(lora_names))):
        path = build_tiny_lora(sd, root / "loras" / f"{name}.safetensors", seed=1000 + index)
        built[name] = str(path)
    return built


def image_spec(job: ImageJob | FrameJob, *, prompt: str, width: int, height: int, seed: int):
    from reelflow.imaging.generate import ImageSpec

    return ImageSpec(
        prompt=prompt,
        negative_prompt=job.negative_prompt,
        seed=seed,
        width=width,
        height=height,
        steps=job.steps,
        guidance=job.guidance,
        model=model_source(job.model),
        loras=[lora_spec(lora) for lora in job.loras],
        shot=job.shot,
    )


def ip_adapter_spec(choice: IPAdapterChoice):
    """What imaging loads for the job's IP-Adapter; the tiny one is built on first use (it
    is shaped after the tiny SD model, which exists by then)."""
    from reelflow.imaging.ip_adapter import IPAdapterSpec

    path = resolve_model_path(choice.path)
    if choice.path == f"{MODELS_PREFIX}tiny-ip-adapter":
        from reelflow.imaging.ip_adapter import build_tiny_ip_adapter

        build_tiny_ip_adapter(models_dir() / "tiny-sd", path)
    return IPAdapterSpec(path=path, scale=choice.scale)


def model_source(model: ModelChoice):
    from reelflow.imaging.models import ModelSource

    return ModelSource(
        family=model.family,
        source=resolve_model_path(model.source),
        dtype=model.dtype,
        device=model.device,
        memory={k: resolve_model_path(v) if k == "gguf" else v for k, v in model.memory.items()},
    )


def lora_spec(lora: LoraChoice):
    from reelflow.imaging.models import LoraSpec

    return LoraSpec(path=resolve_model_path(lora.path), name=lora.name, weight=lora.weight)

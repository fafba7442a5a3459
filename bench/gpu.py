"""8. GPU: full-size architectures with random weights, each under its memory plan.

Where CUDA exists: SDXL 1024² 30 steps, Flux-dev 1024² 28 steps, LTX-2 768x512 121 frames and
Wan 2.2 TI2V-5B 1280x704 121 frames, each built on the GPU from the configurations in
reelflow/gpu/architectures.py (nothing downloaded; the images are noise, the timings and memory
real). For each: the plan reelflow chooses for the free memory (reelflow/gpu/memory.py) is
applied, the hand-written diffusers call is timed, for the image models reelflow's own step
(`reelflow.imaging.generate` on the same resident pipeline) beside it, and the measured peak
memory is recorded against the plan's prediction. Without CUDA it says so in one line.

`run(ctx, device="cpu", cases=...)` runs the same code on the tiny models (the test does).
"""

from __future__ import annotations

import gc
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.common import Context, Section, scratch_dir

NO_CUDA = "gpu: no CUDA device here (torch.cuda.is_available() is False): nothing to measure"
PROMPT = "a bright yellow sports car on a snowy mountain road, cinematic"


@dataclass
class Case:
    """One model at one workload: built from `arch` with random weights, or (tiny) from the
    configs of a saved pipeline, whose tokenizers and scheduler it reuses."""

    name: str
    arch: Any  # reelflow.gpu.architectures.Architecture
    work: Any  # reelflow.gpu.architectures.Workload
    steps: int
    kind: Literal["image", "video"]
    family: str | None = None  # image models: the reelflow family (sd15, sdxl, flux)
    source_dir: Path | None = None
    extra_call: dict[str, Any] = field(default_factory=dict)


def full_size_cases(quick: bool = False) -> list[Case]:
    from reelflow.gpu.architectures import FLUX_DEV, LTX2, SDXL, WAN22_TI2V_5B, Workload

    video_steps = 2 if quick else 10
    return [
        Case("sdxl", SDXL, Workload(width=1024, height=1024), 4 if quick else 30, "image",
             family="sdxl"),
        Case("flux-dev", FLUX_DEV, Workload(width=1024, height=1024), 4 if quick else 28,
             "image", family="flux", extra_call={"guidance_scale": 3.5}),
        Case("ltx-2", LTX2, Workload(width=768, height=512, frames=121), video_steps, "video"),
        Case("wan2.2-ti2v-5b", WAN22_TI2V_5B, Workload(width=1280, height=704, frames=121),
             video_steps, "video"),
    ]


# --- building pipelines with random weights --------------------------------------------------


@contextmanager
def _default_dtype(dtype: Any):
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _word_tokenizer(max_length: int) -> Any:
    """A word-level fast tokenizer built in memory (T5, UMT5, Gemma stand-in): the ids differ
    from the real vocabulary, the shapes and the call signature do not."""
    from reelflow.motion.tiny import tiny_t5

    tokenizer = tiny_t5()[0]
    tokenizer.model_max_length = max_length
    return tokenizer


def _full_size_extras(case: Case) -> dict[str, Any]:
    """Tokenizers and scheduler of a full-size pipeline, made offline."""
    from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

    from reelflow.imaging.tiny import tiny_clip_tokenizer

    name = case.arch.pipeline_class
    if name == "StableDiffusionXLPipeline":
        return {"tokenizer": tiny_clip_tokenizer(), "tokenizer_2": tiny_clip_tokenizer(),
                "scheduler": EulerDiscreteScheduler(
                    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                    timestep_spacing="leading", steps_offset=1)}
    if name == "FluxPipeline":
        return {"tokenizer": tiny_clip_tokenizer(), "tokenizer_2": _word_tokenizer(512),
                "scheduler": FlowMatchEulerDiscreteScheduler(
                    shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                    base_image_seq_len=256, max_image_seq_len=4096)}
    if name == "WanImageToVideoPipeline":
        return {"tokenizer": _word_tokenizer(512), "expand_timesteps": True,
                "scheduler": FlowMatchEulerDiscreteScheduler(shift=5.0)}
    if name == "LTX2Pipeline":
        return {"tokenizer": _word_tokenizer(1024),
                "scheduler": FlowMatchEulerDiscreteScheduler(
                    use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                    base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)}
    raise ValueError(f"no offline tokenizers for {name}")


def _saved_extras(case: Case) -> dict[str, Any]:
    """The weightless components (tokenizers, scheduler, processors) of a saved pipeline."""
    import importlib

    index = json.loads((case.source_dir / "model_index.json").read_text())
    extras: dict[str, Any] = {}
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list):
            continue
        if entry[0] is None:
            extras[name] = None
        elif not (case.source_dir / name / "config.json").is_file():
            cls = getattr(importlib.import_module(entry[0]), entry[1])
            extras[name] = cls.from_pretrained(case.source_dir / name)
    return extras


def build_pipeline(case: Case, device: str, dtype: str) -> Any:
    """The case's pipeline with random weights, every component built directly on `device`."""
    import torch

    from reelflow.gpu.memory import build_component, diffusers_class

    torch.manual_seed(0)
    components: dict[str, Any] = {}
    with _default_dtype(getattr(torch, dtype)):
        for spec in case.arch.components:
            components[spec.name] = build_component(spec, device).eval()
    components |= _saved_extras(case) if case.source_dir else _full_size_extras(case)
    pipe = diffusers_class(case.arch.pipeline_class)(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- measuring -------------------------------------------------------------------------------


class _Meter:
    """Seconds and peak device memory of a block (CUDA); on a CPU the peak is not measured."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    @contextmanager
    def measure(self, into: dict[str, Any], name: str):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        yield
        if self.cuda:
            torch.cuda.synchronize()
        into[f"{name}_seconds"] = time.perf_counter() - start
        into[f"{name}_peak_bytes"] = torch.cuda.max_memory_allocated() if self.cuda else None


def _call_kwargs(case: Case) -> dict[str, Any]:
    import torch
    from PIL import Image

    kwargs = {"prompt": PROMPT, "num_inference_steps": case.steps, "width": case.work.width,
              "height": case.work.height, "output_type": "np",
              "generator": torch.Generator("cpu").manual_seed(0), **case.extra_call}
    if case.kind == "video":
        kwargs["num_frames"] = case.work.frames
        if "ImageToVideo" in case.arch.pipeline_class:
            kwargs["image"] = Image.new("RGB", (case.work.width, case.work.height), "gold")
    return kwargs


def _reelflow_image(case: Case, pipe: Any, device: str, dtype: str, scratch: Path) -> None:
    """reelflow's image step (`generate`) on the resident pipeline, adopted by a cache."""
    from reelflow.imaging.generate import ImageSpec, generate
    from reelflow.imaging.models import ModelSource
    from reelflow.imaging.pipelines import PipelineCache

    folder = scratch / case.name
    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_config(folder)  # model_index.json only: the family check reads it
    source = ModelSource(family=case.family, source=str(folder), dtype=dtype, device=device)
    cache = PipelineCache()
    cache.adopt(source, pipe)
    generate(ImageSpec(prompt=PROMPT, seed=0, width=case.work.width, height=case.work.height,
                       steps=case.steps, guidance=case.extra_call.get("guidance_scale", 5.0),
                       model=source), cache=cache)


def measure_case(case: Case, device: str, dtype: str, scratch: Path) -> dict[str, Any]:
    """Plan, build, apply, run the diffusers call (and reelflow's step for images)."""
    import torch

    from reelflow.gpu.memory import apply_memory_plan, device_budget, plan_memory

    budget = device_budget(device)
    plan = plan_memory(case.arch, budget=budget, device=device, work=case.work)
    row: dict[str, Any] = {"case": case.name, "plan": plan.summary(),
                           "pixel_options": plan.pixel_options(),
                           "runtime_options": plan.runtime_options(),
                           "predicted_peak_bytes": plan.peak_bytes}
    meter = _Meter(device)
    build_on = device if plan.offload == "none" else "cpu"
    with meter.measure(row, "build"):
        pipe = build_pipeline(case, build_on, dtype)
        apply_memory_plan(pipe, plan)
    with torch.inference_mode():
        with meter.measure(row, "diffusers"):
            pipe(**_call_kwargs(case))
        if case.kind == "image":
            with meter.measure(row, "reelflow"):
                _reelflow_image(case, pipe, device, dtype, scratch)
    del pipe
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the rows: time per side, measured peak vs predicted."""

    def gb(n: Any) -> str:
        return "-" if n is None else f"{n / 2**30:.1f}"

    lines = ["| case | plan | diffusers s | reelflow s | peak GB | predicted GB |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error']} | | | | |")
            continue
        reelflow = r.get("reelflow_seconds")
        lines.append(
            f"| {r['case']} | {r['plan']} | {r['diffusers_seconds']:.2f} | "
            f"{'-' if reelflow is None else f'{reelflow:.2f}'} | "
            f"{gb(r['diffusers_peak_bytes'])} | {gb(r['predicted_peak_bytes'])} |")
    return "\n".join(lines)


def run(ctx: Context, *, device: str | None = None, cases: list[Case] | None = None,
        dtype: str | None = None) -> Section:
    section = Section(
        key="gpu",
        title="8. GPU",
        method=(
            "full-size architectures with random weights built on the GPU from their configs "
            "(SDXL 1024² 30 steps, Flux-dev 1024² 28 steps, LTX-2 768x512 121 frames, Wan 2.2 "
            "TI2V-5B 1280x704 121 frames; video at 10 steps), each under reelflow's memory plan "
            "for the free memory: the diffusers call vs reelflow's step (images), measured "
            "peak vs the plan's prediction; runs only where CUDA exists"
        ),
    )
    if device is None:
        if not has_cuda():
            print(NO_CUDA, flush=True)
            section.status = "skipped"
            section.notes.append(NO_CUDA)
            return section
        device = "cuda"
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    cases = cases if cases is not None else full_size_cases(ctx.quick)
    rows: list[dict[str, Any]] = []
    with scratch_dir(ctx.work, "gpu") as scratch:
        for case in cases:
            print(f"[bench]   gpu: {case.name} ...", flush=True)
            try:
                rows.append(measure_case(case, device, dtype, scratch))
            except Exception as err:  # one case failing must not hide the others
                rows.append({"case": case.name, "error": f"{type(err).__name__}: {err}"[:300]})
    for row in rows:
        if "error" in row:
            section.notes.append(f"{row['case']}: {row['error']}")
            continue
        section.add(f"{row['case']} diffusers", f"{row['case']}: hand-written diffusers call",
                    [row["diffusers_seconds"]])
        if row.get("reelflow_seconds") is not None:
            section.add(f"{row['case']} reelflow", f"{row['case']}: reelflow.imaging.generate",
                        [row["reelflow_seconds"]])
            section.ratio(f"{row['case']}: reelflow / diffusers", f"{row['case']} reelflow",
                          f"{row['case']} diffusers", goal=1.05)
    section.notes.append("plans, times and peaks:\n" + table(rows))
    section.notes.append("rows: " + json.dumps(rows))
    if rows and all("error" in r for r in rows):
        section.status = "error"
    return section


def has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()

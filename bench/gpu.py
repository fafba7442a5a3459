"""8. GPU: full-size architectures with random weights, each under its memory plan.

Where CUDA exists: SDXL 1024² 30 steps, Flux-dev 1024² 28 steps, LTX-2 and Wan 2.2 TI2V-5B at
768x512 for 121 frames (the size the video frames-per-second figure is asked at; Wan's own
1280x704 workload is measured as a plan row), each built on the GPU from the configurations in
reelflow/gpu/architectures.py (nothing downloaded; the pictures are noise, the timings and memory
real). For each model, in this order:

1. the plan reelflow chooses for the device's free memory (reelflow/gpu/memory.py) is applied, a
   one-step warm-up runs, then the hand-written diffusers call (for video: the call and
   `export_to_video`) is timed beside reelflow's own step on the same resident pipeline
   (`reelflow.imaging.generate` for images; the backend's `render_shot` for video, which samples
   latents, decodes them in chunks and encodes the clip): goal ≤ 1.05. Video: frames per second
   of reelflow's clip step.
2. video rows: the plan at further workloads (Wan 1280x704); LTX-2's 10 s clip, its peak memory
   with and without tiled decode, through the diffusers call (the whole clip decoded at once) and
   through reelflow's clip step (chunked decode).
3. each speed option (reelflow/gpu/speed.py): first-block, TaylorSeer and pyramid-attention
   caches where the transformer has cache hooks, then `compile_repeated_blocks`; time and PSNR
   against the plain call. Random weights make the PSNR a check of the code path, not of quality.
4. the plans for tighter budgets (24 GB, 16 GB): each distinct plan is applied to a fresh build
   and run for one step; measured peak vs the plan's prediction (goal ≤ 1) and vs the budget.

Everything after step 1 is fitted into the section's time (`BENCH_GPU_SECONDS`, 400 s by
default, shared between the models by weight): a row that would not fit is skipped and says so.
With `BENCH_GPU_PARTIAL=FILE` the rows so far are written there after each model, so a run
stopped by a timeout still leaves its figures (bench/gpu_device.sh sets it).
Without CUDA it says so in one line.

`run(ctx, device="cpu", cases=..., settings=...)` runs the same code on the tiny models (the test
does).
"""

from __future__ import annotations

import gc
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.common import Context, Section, scratch_dir

NO_CUDA = "gpu: no CUDA device here (torch.cuda.is_available() is False): nothing to measure"
PROMPT = "a bright yellow sports car on a snowy mountain road, cinematic"
NEGATIVE = "blurry, distorted, low quality"
FPS = 24
CACHES = ("first-block", "taylorseer", "pab")


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
    pipeline_class: str | None = None  # built instead of arch.pipeline_class (same components)
    backend: str | None = None  # video: reelflow's backend whose clip step is measured
    plan_works: list[Any] = field(default_factory=list)  # more workloads: their plan's peak
    long_clip_seconds: float | None = None  # a clip this long, with and without tiled decode
    weight: float = 1.0  # its share of the section's time

    @property
    def built_class(self) -> str:
        return self.pipeline_class or self.arch.pipeline_class


@dataclass
class Settings:
    """What the section measures beyond step 1, and in how much time."""

    budgets: list[str] = field(default_factory=lambda: ["24GB", "16GB"])
    caches: tuple[str, ...] = CACHES
    compile: bool = True
    plan_steps: int = 1  # a peak is reached in the first step (and the decode)
    seconds: float = field(
        default_factory=lambda: float(os.environ.get("BENCH_GPU_SECONDS", "400")))


def full_size_cases(quick: bool = False) -> list[Case]:
    from reelflow.gpu.architectures import FLUX_DEV, LTX2, SDXL, WAN22_TI2V_5B, Workload

    video_steps = 2 if quick else 8
    clip = Workload(width=768, height=512, frames=121)
    return [
        Case("sdxl", SDXL, Workload(width=1024, height=1024), 4 if quick else 30, "image",
             family="sdxl", weight=1.0),
        Case("flux-dev", FLUX_DEV, Workload(width=1024, height=1024), 4 if quick else 28,
             "image", family="flux", extra_call={"guidance_scale": 3.5}, weight=2.0),
        Case("ltx-2", LTX2, clip, video_steps, "video", pipeline_class="LTX2ConditionPipeline",
             backend="ltx2", extra_call={"guidance_scale": 4.0}, long_clip_seconds=10.0,
             weight=2.5),
        Case("wan2.2-ti2v-5b", WAN22_TI2V_5B, clip, video_steps, "video", backend="wan22-ti2v",
             extra_call={"guidance_scale": 5.0},
             plan_works=[Workload(width=1280, height=704, frames=121)], weight=2.0),
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

    name = case.built_class
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
    if name in ("LTX2Pipeline", "LTX2ConditionPipeline"):
        return {"tokenizer": _word_tokenizer(1024),
                "scheduler": FlowMatchEulerDiscreteScheduler(
                    use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                    base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)}
    raise ValueError(f"no offline tokenizers for {name}")


def _saved_extras(case: Case) -> dict[str, Any]:
    """The weightless components (tokenizers, scheduler, processors) and the settings of a saved
    pipeline."""
    import importlib

    index = json.loads((case.source_dir / "model_index.json").read_text())
    extras: dict[str, Any] = {}
    for name, entry in index.items():
        if name.startswith("_"):
            continue
        if not isinstance(entry, list):  # a pipeline setting (expand_timesteps, boundary_ratio)
            extras[name] = entry
        elif entry[0] is None:
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
    pipe = diffusers_class(case.built_class)(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- measuring -------------------------------------------------------------------------------


class _Meter:
    """Seconds and peak device memory of a block: allocated (live tensors) and reserved (what
    the allocator held, the figure an out-of-memory error is about), and what was allocated
    before it (the weights). On a CPU the peaks are None."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    @contextmanager
    def measure(self, into: dict[str, Any], name: str):
        import torch

        base = None
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        yield
        if self.cuda:
            torch.cuda.synchronize()
        into[f"{name}_seconds"] = time.perf_counter() - start
        into[f"{name}_peak_bytes"] = torch.cuda.max_memory_allocated() if self.cuda else None
        into[f"{name}_reserved_bytes"] = torch.cuda.max_memory_reserved() if self.cuda else None
        into[f"{name}_base_bytes"] = base


class _Clock:
    """The section's time, shared between the cases by weight: a row runs only when its
    estimated seconds fit what is left of its case's share."""

    def __init__(self, seconds: float, weights: list[float]) -> None:
        self.end = time.perf_counter() + seconds
        self.weights = list(weights)
        self.case_end = self.end

    def next_case(self, weight: float) -> None:
        """The next case's share of what is left (its weight over the weights still to run)."""
        left = max(0.0, self.end - time.perf_counter())
        total = sum(self.weights) or weight
        self.case_end = time.perf_counter() + left * weight / total
        self.weights = self.weights[1:]

    def left(self) -> float:
        return self.case_end - time.perf_counter()

    def allows(self, seconds: float) -> bool:
        return seconds <= self.left()


def _skipped(estimate: float, clock: _Clock) -> str:
    return (f"skipped: needs ~{estimate:.0f} s, {max(0.0, clock.left()):.0f} s left of this "
            "model's share of the section's time")


def _uint8(array: Any) -> Any:
    import numpy as np

    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return arr


def _still(case: Case, scratch: Path, work: Any) -> Path:
    from PIL import Image

    path = scratch / f"{case.name}-{work.width}x{work.height}.png"
    if not path.exists():
        Image.new("RGB", (work.width, work.height), "gold").save(path)
    return path


def _frames_for(seconds: float, step: int = 8) -> int:
    """Frames of a `seconds` clip at FPS, snapped up to step*k + 1 (the video VAEs' counts)."""
    frames = round(seconds * FPS)
    return -(-(frames - 1) // step) * step + 1


def _call_kwargs(case: Case, pipe: Any, scratch: Path, *, steps: int | None = None,
                 work: Any = None) -> dict[str, Any]:
    """The hand-written call: what a diffusers user writes for this model and workload."""
    import torch
    from PIL import Image

    work = work or case.work
    kwargs = {"prompt": PROMPT, "num_inference_steps": steps or case.steps,
              "width": work.width, "height": work.height, "output_type": "np",
              "generator": torch.Generator("cpu").manual_seed(0), **case.extra_call}
    if case.kind == "video":
        kwargs["num_frames"] = work.frames
        kwargs["negative_prompt"] = NEGATIVE
        image = Image.open(_still(case, scratch, work)).convert("RGB")
        if case.built_class == "LTX2ConditionPipeline":
            from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

            kwargs["conditions"] = [LTX2VideoCondition(frames=image, index=0, crf=0)]
            kwargs["frame_rate"] = float(FPS)
        elif "ImageToVideo" in case.built_class:
            kwargs["image"] = image
    return kwargs


def _hand_call(case: Case, pipe: Any, kwargs: dict[str, Any], scratch: Path) -> Any:
    """The diffusers call by hand; a video is then written as diffusers' docs do
    (`export_to_video`, and the LTX-2 waveform as a WAV). Returns the uint8 picture(s)."""
    out = pipe(**kwargs)
    if case.kind == "image":
        return _uint8(out.images)
    from diffusers.utils import export_to_video

    frames = _uint8(out.frames[0])
    export_to_video(list(frames), str(scratch / f"{case.name}-hand.mp4"), fps=FPS)
    audio = getattr(out, "audio", None)
    if audio is not None:
        from reelflow.motion.ltx2 import write_wav

        wave = audio[0] if audio.ndim == 3 else audio
        write_wav(scratch / f"{case.name}-hand.wav", wave.float().cpu().numpy(),
                  int(pipe.vocoder.config.output_sampling_rate))
    return frames


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


@contextmanager
def _vae_tiling(pipe: Any, on: bool):
    """The VAE tiled (or not) for the block, then as it was."""
    vae = pipe.vae
    before = bool(getattr(vae, "use_tiling", False))
    (vae.enable_tiling if on else vae.disable_tiling)()
    try:
        yield
    finally:
        (vae.enable_tiling if before else vae.disable_tiling)()


def _reelflow_clip(case: Case, pipe: Any, device: str, dtype: str, scratch: Path, *,
                   steps: int | None = None, seconds: float | None = None,
                   vae_tiling: bool | None = None) -> Any:
    """reelflow's clip step (the backend's `render_shot`: latents sampled, decoded in chunks,
    encoded, LTX-2's sound muxed) on the resident pipeline. The backend finds the pipeline in
    the process's pipeline cache, where a worker would have loaded it; `vae_tiling` None keeps
    the backend's default. Returns the clip's probe."""
    from reelflow.motion import diffusion
    from reelflow.motion.backends import ClipRequest, get_backend

    options: dict[str, Any] = {"device": device, "dtype": dtype}
    if vae_tiling is not None:
        options["vae_tiling"] = vae_tiling
    model = scratch / case.name
    backend = get_backend(case.backend, model=str(model), **options)
    backend.adopt(pipe)  # the resident pipeline, as a worker would have loaded it
    request = ClipRequest(
        images=[_still(case, scratch, case.work)], motion_prompt=PROMPT,
        negative_prompt=NEGATIVE, duration=seconds or case.work.frames / FPS, fps=FPS,
        width=case.work.width, height=case.work.height, seed=0, steps=steps or case.steps,
        guidance_scale=case.extra_call.get("guidance_scale"),
    )
    tiled = backend.vae_tiling
    try:
        with _vae_tiling(pipe, tiled):
            return backend.render_shot(request, scratch / f"{case.name}-reelflow.mp4")
    finally:
        diffusion.clear_pipeline_cache()


def _available_ram() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _default_steps(backend: str) -> int:
    """The denoising steps a backend renders with when a storyboard names none."""
    from reelflow.motion.backends import get_backend

    return int(get_backend(backend, model="unused").default_steps)


def _free(device: str) -> None:
    """Give a dropped pipeline's device memory back (on a CPU there is nothing to measure, and a
    collection costs a second with transformers loaded)."""
    if device.startswith("cuda"):
        import torch

        gc.collect()
        torch.cuda.empty_cache()


def _oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err)


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:300]


class CaseRun:
    """One model's rows: its pipeline under the device's plan, then what fits in its time."""

    def __init__(self, case: Case, device: str, dtype: str, scratch: Path,
                 settings: Settings, clock: _Clock) -> None:
        self.case, self.device, self.dtype = case, device, dtype
        self.scratch, self.settings, self.clock = scratch, settings, clock
        self.meter = _Meter(device)
        self.pipe: Any = None
        self.applied: Any = None  # the plan the pipeline is under
        self.plain: Any = None  # the hand call's picture, for the speed options' PSNR
        self.row: dict[str, Any] = {"case": case.name, "speed": [], "plans": [],
                                    "long_clip": []}

    # -- building ------------------------------------------------------------------------
    def build(self, plan: Any) -> None:
        """A fresh pipeline under `plan`: built on the device (random init is fast there), then
        the plan applied, which moves what it offloads to the host (group offloading copies
        each group straight into pinned memory: one copy of the weights in RAM, not two)."""
        from reelflow.gpu.memory import apply_memory_plan

        self.pipe = None
        if self.device.startswith("cuda"):
            import torch

            torch._dynamo.reset()  # compiled blocks of an earlier pipeline hold no memory
        _free(self.device)
        pipe = build_pipeline(self.case, self.device, self.dtype)
        self.pipe = apply_memory_plan(pipe, plan)
        self.applied = plan

    def plan(self, budget: Any, work: Any = None) -> Any:
        from reelflow.gpu.memory import plan_memory

        return plan_memory(self.case.arch, budget=budget, device=self.device,
                           work=work or self.case.work)

    # -- step 1 --------------------------------------------------------------------------
    def core(self) -> dict[str, Any]:
        """The device's plan, the warm-up, the hand call vs reelflow's step (and fps)."""
        import torch

        from reelflow.gpu.memory import device_budget

        case, row = self.case, self.row
        plan = self.plan(device_budget(self.device))
        row.update(plan=plan.summary(), pixel_options=plan.pixel_options(),
                   runtime_options=plan.runtime_options(), predicted_peak_bytes=plan.peak_bytes,
                   budget_bytes=plan.budget_bytes)
        with self.meter.measure(row, "build"):
            self.build(plan)
        with torch.inference_mode():
            with self.meter.measure(row, "warmup"):  # CUDA's lazy init, cuBLAS/cuDNN setup
                if self.meter.cuda:
                    _hand_call(case, self.pipe,
                               _call_kwargs(case, self.pipe, self.scratch, steps=1), self.scratch)
            with self.meter.measure(row, "diffusers"):
                self.plain = _hand_call(case, self.pipe,
                                        _call_kwargs(case, self.pipe, self.scratch), self.scratch)
            with self.meter.measure(row, "reelflow"):
                if case.kind == "image":
                    _reelflow_image(case, self.pipe, self.device, self.dtype, self.scratch)
                else:
                    info = _reelflow_clip(case, self.pipe, self.device, self.dtype, self.scratch)
        if case.kind == "video":
            row["frames"] = int(info.frame_count)
            row["reelflow_fps"] = info.frame_count / row["reelflow_seconds"]
            row["diffusers_fps"] = case.work.frames / row["diffusers_seconds"]
            # the bench samples fewer steps than the backend's default: its fps there, from the
            # time one step adds (hand call minus the one-step warm-up)
            default = _default_steps(case.backend)
            per_step = self.step_seconds() if case.steps < 2 else max(
                0.0, row["diffusers_seconds"] - row["warmup_seconds"]) / (case.steps - 1)
            row["default_steps"] = default
            row["reelflow_fps_at_default_steps"] = info.frame_count / (
                row["reelflow_seconds"] + (default - case.steps) * per_step)
        return row

    def step_seconds(self) -> float:
        """One denoising step and a decode, roughly: the warm-up, or on a CPU (no warm-up) the
        hand call's time per step."""
        if self.meter.cuda:
            return self.row["warmup_seconds"]
        return self.row["diffusers_seconds"] / self.case.steps

    # -- step 2 --------------------------------------------------------------------------
    def plan_works(self) -> None:
        """The plan at each further workload, one step, on this pipeline when the plan's options
        are the ones it is under (else the row says it was not run)."""

        for work in self.case.plan_works:
            label = f"{work.width}x{work.height}x{work.frames}"
            entry = self._plan_entry(label, self.plan(self.row["budget_bytes"], work))
            estimate = 3 * self.step_seconds() * (work.width * work.height) / (
                self.case.work.width * self.case.work.height)
            if not self._same_options(entry["_plan"], self.applied):
                entry["note"] = "its plan differs from the device's: not run"
            elif not self.clock.allows(estimate):
                entry["note"] = _skipped(estimate, self.clock)
            else:
                kwargs = _call_kwargs(self.case, self.pipe, self.scratch, work=work,
                                      steps=self.settings.plan_steps)
                self._run_plan(entry, lambda k=kwargs: _hand_call(self.case, self.pipe, k,
                                                                  self.scratch))
            self.row["plans"].append(entry)

    def long_clip(self) -> None:
        """A `long_clip_seconds` clip's peak memory, one step: the diffusers call (the whole
        clip decoded at once, VAE tiled or not) and reelflow's clip step (chunked decode, tiled
        or not)."""
        import torch

        seconds = self.case.long_clip_seconds
        if not seconds:
            return
        frames = _frames_for(seconds)
        steps = self.settings.plan_steps
        work = self.case.work.model_copy(update={"frames": frames})
        sides = [("diffusers", False), ("diffusers", True), ("reelflow", False),
                 ("reelflow", True)]
        for side, tiled in sides:
            entry: dict[str, Any] = {"side": side, "tiled": tiled, "seconds_of_clip": seconds,
                                     "frames": frames}
            estimate = 2 * self.step_seconds() * frames / self.case.work.frames
            if not self.clock.allows(estimate):
                entry["note"] = _skipped(estimate, self.clock)
                self.row["long_clip"].append(entry)
                continue
            try:
                with torch.inference_mode(), self.meter.measure(entry, "run"):
                    if side == "diffusers":
                        kwargs = _call_kwargs(self.case, self.pipe, self.scratch, work=work,
                                              steps=steps)
                        with _vae_tiling(self.pipe, tiled):
                            _hand_call(self.case, self.pipe, kwargs, self.scratch)
                    else:
                        _reelflow_clip(self.case, self.pipe, self.device, self.dtype,
                                       self.scratch, steps=steps, seconds=seconds,
                                       vae_tiling=tiled)
            except Exception as err:  # an out-of-memory decode is this row's finding
                entry["error"] = ("out of memory: " if _oom(err) else "") + _error(err)
            _free(self.device)  # after the except block: its traceback held the tensors
            self.row["long_clip"].append(entry)

    # -- step 3 --------------------------------------------------------------------------
    def speed(self, reserve: float) -> None:
        """Each cache, then compilation: seconds and PSNR against the plain hand call.
        `reserve`: seconds kept for the budget plans that come after."""
        import torch

        from reelflow.gpu.speed import SpeedOptions, cache_state, compile_blocks, psnr

        plain = self.row["diffusers_seconds"]
        transformer = getattr(self.pipe, "transformer", None)
        denoiser = transformer if transformer is not None else getattr(self.pipe, "unet", None)

        def timed(entry: dict[str, Any]) -> None:
            kwargs = _call_kwargs(self.case, self.pipe, self.scratch)
            with torch.inference_mode(), self.meter.measure(entry, "run"):
                picture = _hand_call(self.case, self.pipe, kwargs, self.scratch)
            entry["psnr"] = psnr(picture, self.plain)
            entry["ratio"] = entry["run_seconds"] / plain

        for kind in self.settings.caches:
            entry: dict[str, Any] = {"option": kind}
            if not callable(getattr(denoiser, "enable_cache", None)):
                entry["note"] = f"not supported: {type(denoiser).__name__} has no cache hooks"
            elif not self.clock.allows(plain + reserve):
                entry["note"] = _skipped(plain, self.clock)
            else:
                try:
                    with cache_state(self.pipe, SpeedOptions(cache=kind), force=True):
                        timed(entry)
                except Exception as err:  # a cache this model does not take
                    entry["error"] = _error(err)
            self.row["speed"].append(entry)
        if not self.settings.compile:
            return
        entry = {"option": "compile"}
        self.row["speed"].append(entry)
        estimate = 2 * plain + 30
        if not self.clock.allows(estimate + reserve):
            entry["note"] = _skipped(estimate, self.clock)
            return
        options = SpeedOptions(compile=True)
        holder = self.pipe if transformer is not None else _UnetAsTransformer(self.pipe)
        try:
            start = time.perf_counter()
            entry["note"] = compile_blocks(holder, options, self.device)
            if entry["note"] != "compiled repeated blocks":
                return
            with torch.inference_mode():  # the first call compiles
                _hand_call(self.case, self.pipe, _call_kwargs(self.case, self.pipe,
                                                              self.scratch), self.scratch)
            entry["compile_seconds"] = time.perf_counter() - start
            timed(entry)
        except Exception as err:
            entry["error"] = _error(err)

    # -- step 4 --------------------------------------------------------------------------
    def budgets(self) -> None:
        """Each tighter budget's plan, on a fresh build, one step: peak vs prediction."""

        measured: dict[str, dict[str, Any]] = {}
        for budget in self.settings.budgets:
            entry = self._plan_entry(budget, self.plan(budget))
            plan = entry["_plan"]
            same = self._options(plan)
            if self._same_options(plan, self.plan(self.row["budget_bytes"])):
                entry["note"] = "the device's own plan: measured above"
                entry["measured_as"] = "device"
                for key in ("peak_bytes", "reserved_bytes", "seconds"):
                    entry[key] = self.row[f"diffusers_{key}"]
            elif same in measured:
                entry["note"] = f"the same plan as {measured[same]['label']}: measured there"
                entry["measured_as"] = measured[same]["label"]
                for key in ("peak_bytes", "reserved_bytes", "seconds", "error"):
                    if key in measured[same]:
                        entry[key] = measured[same][key]
            else:
                estimate = 1.5 * self.row["build_seconds"] + 5 * self.step_seconds() + 10
                ram = _available_ram()
                if not self.clock.allows(estimate):
                    entry["note"] = _skipped(estimate, self.clock)
                elif plan.host_bytes > 0.9 * ram:
                    entry["note"] = (f"skipped: its offloaded weights need {_gb(plan.host_bytes)}"
                                     f" GB of RAM, {_gb(ram)} GB available")
                else:
                    self._run_plan(entry, lambda: _hand_call(
                        self.case, self.pipe, _call_kwargs(self.case, self.pipe, self.scratch,
                                                           steps=self.settings.plan_steps),
                        self.scratch), build=plan)
                    measured[same] = entry
            self.row["plans"].append(entry)

    # -- plan rows -----------------------------------------------------------------------
    @staticmethod
    def _options(plan: Any) -> str:
        return json.dumps([plan.pixel_options(), plan.offload, plan.use_stream], sort_keys=True)

    def _same_options(self, a: Any, b: Any) -> bool:
        return self._options(a) == self._options(b)

    @staticmethod
    def _plan_entry(label: str, plan: Any) -> dict[str, Any]:
        return {"label": label, "_plan": plan, "plan": plan.summary(), "fits": plan.fits,
                "budget_bytes": plan.budget_bytes, "predicted_peak_bytes": plan.peak_bytes}

    def _run_plan(self, entry: dict[str, Any], call: Any, build: Any = None) -> None:
        """`call` measured into the plan row (after building the pipeline under `build`)."""
        import torch

        try:
            if build is not None:
                self.build(build)
            with torch.inference_mode(), self.meter.measure(entry, "run"):
                call()
            for key in ("peak_bytes", "reserved_bytes", "seconds"):
                entry[key] = entry.pop(f"run_{key}")
            entry.pop("run_base_bytes", None)
        except Exception as err:
            entry["error"] = ("out of memory: " if _oom(err) else "") + _error(err)
        if "error" in entry:
            _free(self.device)  # after the except block: its traceback held the tensors

    def close(self) -> dict[str, Any]:
        self.pipe = None
        self.plain = None
        _free(self.device)
        for entry in self.row["plans"]:
            entry.pop("_plan", None)
        return self.row


class _UnetAsTransformer:
    """A UNet pipeline seen by `compile_blocks` (which compiles `pipe.transformer`'s repeated
    blocks): SDXL's UNet declares its repeated transformer blocks too."""

    def __init__(self, pipe: Any) -> None:
        self.transformer = pipe.unet


def measure_case(case: Case, device: str, dtype: str, scratch: Path,
                 settings: Settings | None = None, clock: _Clock | None = None
                 ) -> dict[str, Any]:
    """Step 1 always; the further rows as far as the case's share of time allows."""
    settings = settings or Settings()
    clock = clock or _Clock(settings.seconds, [case.weight])
    if clock.weights:
        clock.next_case(case.weight)
    run = CaseRun(case, device, dtype, scratch, settings, clock)
    try:
        run.core()
        if case.kind == "video":
            run.plan_works()
            run.long_clip()
        distinct = {run._options(run.plan(b)) for b in settings.budgets} - {
            run._options(run.applied)}
        reserve = len(distinct) * (1.5 * run.row["build_seconds"] + 5 * run.step_seconds() + 10)
        run.speed(reserve)
        run.budgets()
    finally:
        row = run.close()
    return row


# --- the report ------------------------------------------------------------------------------


def _gb(n: Any) -> str:
    return "-" if n is None else f"{n / 2**30:.1f}"


def _s(n: Any) -> str:
    return "-" if n is None else f"{n:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the rows: time per side, measured peak vs predicted."""
    lines = ["| case | plan | diffusers s | reelflow s | fps (at default steps) | peak GB | "
             "predicted GB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error']} | | | | | |")
            continue
        fps = "-" if r.get("reelflow_fps") is None else (
            f"{r['reelflow_fps']:.2f} ({r['reelflow_fps_at_default_steps']:.2f} at "
            f"{r['default_steps']})")
        lines.append(
            f"| {r['case']} | {r['plan']} | {_s(r['diffusers_seconds'])} | "
            f"{_s(r.get('reelflow_seconds'))} | {fps} | "
            f"{_gb(r['diffusers_reserved_bytes'])} | {_gb(r['predicted_peak_bytes'])} |")
    return "\n".join(lines)


def _outcome(entry: dict[str, Any]) -> str:
    return entry.get("error") or entry.get("note") or ""


def speed_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| case | option | seconds | / plain | PSNR dB | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        for e in r.get("speed", []):
            ratio = e.get("ratio")
            psnr = e.get("psnr")
            lines.append(
                f"| {r['case']} | {e['option']} | {_s(e.get('run_seconds'))} | "
                f"{'-' if ratio is None else f'{ratio:.3f}'} | "
                f"{'-' if psnr is None else f'{psnr:.1f}'} | {_outcome(e)} |")
    return "\n".join(lines)


def plans_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| case | budget / workload | plan | peak GB (reserved) | predicted GB | note |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        for e in r.get("plans", []):
            lines.append(
                f"| {r['case']} | {e['label']} | {e['plan']} | {_gb(e.get('reserved_bytes'))} | "
                f"{_gb(e['predicted_peak_bytes'])} | {_outcome(e)} |")
    return "\n".join(lines)


def long_clip_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| case | clip | side | decode | peak GB (allocated) | weights GB | seconds | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for e in r.get("long_clip", []):
            decode = ("tiled" if e["tiled"] else "untiled") + (
                ", whole clip at once" if e["side"] == "diffusers" else ", chunked")
            lines.append(
                f"| {r['case']} | {e['seconds_of_clip']:g} s, {e['frames']} frames | "
                f"{e['side']} | {decode} | {_gb(e.get('run_peak_bytes'))} | "
                f"{_gb(e.get('run_base_bytes'))} | {_s(e.get('run_seconds'))} | {_outcome(e)} |")
    return "\n".join(lines)


def _figures(section: Section, row: dict[str, Any]) -> None:
    """The row's figures and goals: reelflow vs diffusers (≤ 1.05), fps, each speed option
    against the plain call, each plan's peak against its prediction (≤ 1) and its budget."""
    name = row["case"]
    section.add(f"{name} diffusers", f"{name}: hand-written diffusers call",
                [row["diffusers_seconds"]])
    step = "reelflow.imaging.generate" if row.get("frames") is None else "reelflow clip step"
    section.add(f"{name} reelflow", f"{name}: {step}", [row["reelflow_seconds"]])
    section.ratio(f"{name}: reelflow / diffusers", f"{name} reelflow", f"{name} diffusers",
                  goal=1.05)
    if row.get("reelflow_fps") is not None:
        section.add(f"{name} fps", f"{name}: frames per second of the clip step",
                    [row["reelflow_fps"]], unit="fps")
        section.add(f"{name} fps @ {row['default_steps']} steps",
                    f"{name}: the same at the backend's default steps (estimated from the "
                    "time a step adds)", [row["reelflow_fps_at_default_steps"]], unit="fps")
    for e in row["speed"]:
        if e.get("run_seconds") is None:
            continue
        fig = f"{name} {e['option']}"
        section.add(fig, f"{name}: the hand call with {e['option']}", [e["run_seconds"]])
        section.add(f"{fig} PSNR", f"{name}: {e['option']} against the plain call", [e["psnr"]],
                    unit="dB")
        section.ratio(f"{name}: {e['option']} / plain", fig, f"{name} diffusers")
    plans = [("device", {"label": "device", "reserved_bytes": row["diffusers_reserved_bytes"],
                         "predicted_peak_bytes": row["predicted_peak_bytes"],
                         "budget_bytes": row["budget_bytes"]}), *(
        (e["label"], e) for e in row["plans"])]
    for label, e in plans:
        if e.get("reserved_bytes") is None:
            continue
        fig = f"{name} peak @ {e.get('measured_as', label)}"
        if "measured_as" not in e:
            section.add(fig, f"{name}: peak reserved under the plan for {label}",
                        [e["reserved_bytes"] / 2**30], unit="GB")
            section.within(f"{name} @ {label}: peak / predicted", fig,
                           e["predicted_peak_bytes"] / 2**30)
        if e.get("budget_bytes") is not None and label != "device":
            section.within(f"{name} @ {label}: peak / budget", fig, e["budget_bytes"] / 2**30)
    long: dict[tuple[str, bool], str] = {}
    for e in row["long_clip"]:
        if e.get("run_peak_bytes") is None:
            continue
        decode = "tiled" if e["tiled"] else "untiled"
        long[e["side"], e["tiled"]] = fig = (
            f"{name} {e['seconds_of_clip']:g} s clip, {e['side']}, {decode}")
        section.add(fig, f"{name}: peak allocated, {e['frames']} frames, {e['side']} decode "
                    f"{decode}", [e["run_peak_bytes"] / 2**30], unit="GB")
    for (a, b), what in {(("diffusers", True), ("diffusers", False)): "diffusers tiled / untiled",
                         (("reelflow", True), ("reelflow", False)): "reelflow tiled / untiled",
                         (("reelflow", True), ("diffusers", False)):
                             "reelflow tiled / diffusers untiled"}.items():
        if a in long and b in long:
            section.ratio(f"{name} long clip peak: {what}", long[a], long[b])


def run(ctx: Context, *, device: str | None = None, cases: list[Case] | None = None,
        dtype: str | None = None, settings: Settings | None = None) -> Section:
    settings = settings or Settings()
    section = Section(
        key="gpu",
        title="8. GPU",
        method=(
            "full-size architectures with random weights built on the GPU from their configs "
            "(SDXL 1024² 30 steps, Flux-dev 1024² 28 steps, LTX-2 and Wan 2.2 TI2V-5B 768x512 "
            "121 frames at 8 steps; Wan's 1280x704 workload and LTX-2's 10 s clip at "
            f"{settings.plan_steps} step), each under reelflow's memory plan for the free "
            "memory: the diffusers call vs reelflow's image or clip step, frames per second, "
            "each speed option's time and PSNR (random weights: PSNR checks the code path, "
            f"not quality), the plans for {', '.join(settings.budgets)} applied and measured "
            f"(one step), peak vs prediction; rows that do not fit {settings.seconds:.0f} s "
            "are skipped and say so; runs only where CUDA exists"
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
    clock = _Clock(settings.seconds, [c.weight for c in cases])
    rows: list[dict[str, Any]] = []
    with scratch_dir(ctx.work, "gpu") as scratch:
        for case in cases:
            print(f"[bench]   gpu: {case.name} ...", flush=True)
            try:
                rows.append(measure_case(case, device, dtype, scratch, settings, clock))
            except Exception as err:  # one case failing must not hide the others
                rows.append({"case": case.name, "error": _error(err)})
            _free(device)
            if os.environ.get("BENCH_GPU_PARTIAL"):
                Path(os.environ["BENCH_GPU_PARTIAL"]).write_text(json.dumps(rows, indent=1))
    for row in rows:
        if "error" in row:
            section.notes.append(f"{row['case']}: {row['error']}")
            continue
        _figures(section, row)
    section.notes.append("plans, times and peaks:\n" + table(rows))
    section.notes.append("speed options against the plain call:\n" + speed_table(rows))
    section.notes.append("plans for other budgets and workloads (one step):\n"
                         + plans_table(rows))
    if any(r.get("long_clip") for r in rows):
        section.notes.append("a long clip's peak memory, with and without tiled decode:\n"
                             + long_clip_table(rows))
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

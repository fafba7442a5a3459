"""Generative image-to-video backends over diffusers: LTX-Video and Wan 2.x.

Both implement :class:`reelflow.motion.backends.VideoBackend`, so a task renders the same
:class:`ClipRequest` with them as with the animatic. What this module adds on top of the
pipelines is everything that makes a model's output fit the edit exactly:

- **sizes**: a model wants H, W divisible by its VAE compression x patch size (LTX: 32,
  Wan: 16). The request size is scaled to at most ``max_area`` pixels, snapped to that
  multiple for generation, and every frame is resized back to the requested size.
- **frame counts**: models make ``step*k + 1`` frames (LTX 8k+1, Wan 4k+1) up to a maximum per
  call. Long shots are split into chunks; each chunk is conditioned on the previous chunk's
  last frame, which is dropped once so the seam has no duplicate frame.
- **timing**: the generated frames are retimed to exactly ``round(duration * fps)`` output
  frames (first maps to first, last to last), which also converts the model's native frame
  rate (Wan: 16 fps) to the requested one.
- **streaming**: at most one chunk (what one pipeline call returns) is in memory; frames go to
  the encoder as soon as they exist. The LTX backends go further (``saves_latents``): they
  sample each window with ``output_type="latent"``, keep the latents (a failed decode resumes
  from them) and decode a few latent frames at a time (:mod:`reelflow.motion.latents`).

Pipelines load once per worker process (keyed by class, model, dtype, device and the model's
pinned memory choices) with ``local_files_only=True`` by default, since render machines do not
reach a model hub. A memory plan places each (:mod:`reelflow.gpu.pins`): a model's ``memory``
option pins offloading, fp8 storage or VAE tiling; the last two change pixels and so are in the
clip's key (they are in its job's options), offloading is recorded in the clip's sidecar only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
from PIL import Image

from reelflow.media.frames import VideoWriter
from reelflow.media.probe import VideoInfo
from reelflow.motion.backends import BackendConstraints, ClipRequest
from reelflow.motion.capabilities import LTX, WAN, BackendCapabilities
from reelflow.motion.common import cover_fit, load_rgb
from reelflow.motion.latents import DecodeSettings, LatentCache, decode_in_chunks
from reelflow.motion.windows import WindowPlan, plan_windows
from reelflow.progress import step

__all__ = [
    "DiffusionVideoBackend",
    "LTXBackend",
    "WanBackend",
    "clear_pipeline_cache",
    "load_pipeline",
    "load_planned_pipeline",
    "retime",
]

#: (class, model, dtype, device, pinned memory choices as JSON) -> resident pipeline
_PipeKey = tuple[str, str, str, str, str]
_PIPES: dict[_PipeKey, Any] = {}
_PIPE_LOCKS: dict[_PipeKey, threading.Lock] = {}
_PLANS: dict[_PipeKey, Any] = {}
_CACHE_LOCK = threading.Lock()


def load_pipeline(
    class_name: str,
    model: str | Path,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    local_files_only: bool = True,
    memory_plan: Any = None,
    memory: dict[str, Any] | None = None,
) -> tuple[Any, threading.Lock]:
    """Return the resident pipeline for ``(class_name, model, dtype, device, memory)`` and its
    lock (:func:`load_planned_pipeline` also returns the plan it was loaded with)."""
    pipe, lock, _plan = load_planned_pipeline(
        class_name, model, dtype=dtype, device=device, local_files_only=local_files_only,
        memory_plan=memory_plan, memory=memory,
    )  # fmt: skip
    return pipe, lock


def load_planned_pipeline(
    class_name: str,
    model: str | Path,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    local_files_only: bool = True,
    memory_plan: Any = None,
    memory: dict[str, Any] | None = None,
) -> tuple[Any, threading.Lock, Any]:
    """The resident pipeline, its lock and the memory plan it was loaded with.

    Loading a real video model takes a minute and tens of GB, so it happens once per process.
    The lock serialises calls: Prefect runs tasks in threads, and a pipeline's scheduler keeps
    per-call state. ``memory``: the model's pinned choices (:mod:`reelflow.gpu.pins`: offload,
    fp8, vae_tiling); the plan is made from them when the pipeline loads (on CUDA, unpinned
    choices are fitted to the free memory) and put into effect on it. The pins are part of the
    cache key, so another pin gets another resident pipeline (fp8 weights, offload hooks and
    tiling are properties of the loaded modules); the same pins always find the same one,
    whatever the free memory is by then. ``memory_plan`` (a
    :class:`reelflow.gpu.memory.MemoryPlan`) places it as given instead.
    """
    from reelflow.gpu.pins import memory_json

    pins = dict(memory or {})
    if memory_plan is not None:  # keyed by what it puts into effect, not by its figures
        placed = memory_json({**memory_plan.pixel_options(), **memory_plan.runtime_options()})
    else:
        placed = memory_json(pins)
    key = (class_name, str(model), dtype, device, placed)
    with _CACHE_LOCK:
        if key not in _PIPES:
            import diffusers
            import torch

            from reelflow.gpu.memory import apply_memory_plan
            from reelflow.gpu.pins import plan_for

            plan = memory_plan or plan_for(device, str(model), dtype, pins,
                                           model=Path(model).name)  # fmt: skip
            cls = getattr(diffusers, class_name)
            with step("loading video model", f"{Path(model).name} ({class_name})"):
                pipe = cls.from_pretrained(
                    str(model), dtype=getattr(torch, dtype), local_files_only=local_files_only
                )
                apply_memory_plan(pipe, plan)
            pipe.set_progress_bar_config(disable=True)
            _PIPES[key] = pipe
            _PIPE_LOCKS[key] = threading.Lock()
            _PLANS[key] = plan
        return _PIPES[key], _PIPE_LOCKS[key], _PLANS[key]


def clear_pipeline_cache() -> None:
    """Drop every resident pipeline (tests; a worker switching models)."""
    with _CACHE_LOCK:
        _PIPES.clear()
        _PIPE_LOCKS.clear()
        _PLANS.clear()


def retime(
    frames: Iterable[np.ndarray], n_src: int, n_out: int, *, blend: bool = True
) -> Iterator[np.ndarray]:
    """Stream ``n_out`` frames spanning the same time as ``n_src`` source frames.

    Output frame ``i`` sits at source position ``i * (n_src - 1) / (n_out - 1)``: the first and
    last frames are kept exactly (a first+last-frame shot must end on its pinned frame), and
    in between frames are linearly blended (``blend``) or the nearest is taken. Only two source
    frames are held at a time.
    """
    if n_src < 1 or n_out < 1:
        raise ValueError(f"frame counts must be >= 1: {n_src=} {n_out=}")
    it = iter(frames)
    ratio = (n_src - 1) / (n_out - 1) if n_out > 1 else 0.0
    prev_idx, prev = 0, next(it)
    nxt: np.ndarray | None = None
    for i in range(n_out):
        pos = min(i * ratio, n_src - 1)
        lo = math.floor(pos + 1e-9)
        frac = pos - lo
        while prev_idx < lo:  # advance so that prev is source frame `lo`
            prev = nxt if nxt is not None else next(it)
            nxt = None
            prev_idx += 1
        if frac < 1e-6 or lo >= n_src - 1:
            yield prev
            continue
        if nxt is None:
            nxt = next(it)
        if not blend:
            yield nxt if frac >= 0.5 else prev
            continue
        mixed = prev.astype(np.float32) * (1 - frac) + nxt.astype(np.float32) * frac
        yield np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def _to_uint8(frames: Any) -> np.ndarray:
    """Pipeline output (F,H,W,3 float in [0,1], possibly batched) -> uint8 frames."""
    arr = np.asarray(frames)
    if arr.ndim == 5:
        arr = arr[0]
    if arr.dtype != np.uint8:
        arr = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return arr


class DiffusionVideoBackend:
    """Shared chunking, sizing and retiming for diffusers image-to-video pipelines.

    Subclasses name the pipeline class and implement :meth:`_call`, one pipeline call.
    ``model`` is a local directory (``save_pretrained`` layout) or a hub id already in the
    local cache. ``max_frames`` caps frames per call (memory and the model's trained length);
    ``native_fps`` is the rate the model generates motion at (None: the request's fps);
    ``max_area`` caps the generation size in pixels, frames are scaled up to the request size.
    """

    name: ClassVar[str]
    capabilities: ClassVar[BackendCapabilities]
    pipeline_class: ClassVar[str]
    default_max_frames: ClassVar[int]
    default_fps: ClassVar[float | None] = None
    default_steps: ClassVar[int] = 30
    default_guidance: ClassVar[float] = 3.0
    default_negative: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    #: samples with ``output_type="latent"`` and decodes itself (:meth:`_sample`,
    #: :meth:`_decode_window`), so its latents can be kept before the decode
    saves_latents: ClassVar[bool] = False

    def __init__(
        self,
        model: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        max_frames: int | None = None,
        native_fps: float | None = None,
        max_area: int | None = None,
        local_files_only: bool = True,
        vae_tiling: bool = False,
        blend_retime: bool = True,
        crf: int = 18,
        preset: str = "medium",
        decode_chunk: int = 4,
        decode_context: int = 1,
        memory: dict[str, Any] | str | None = None,
    ) -> None:
        from reelflow.gpu.pins import video_pins

        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = model
        self.device = device
        self.dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
        self.steps = steps or self.default_steps
        self.guidance_scale = self.default_guidance if guidance_scale is None else guidance_scale
        self.max_frames = max_frames or self.default_max_frames
        self.native_fps = native_fps if native_fps is not None else self.default_fps
        self.max_area = max_area
        self.local_files_only = local_files_only
        #: pinned memory choices (offload, fp8, vae_tiling), as the clip job carries them
        self.memory = video_pins(memory)
        self.vae_tiling = vae_tiling or bool(self.memory.get("vae_tiling"))
        #: the memory plan the resident pipeline was loaded with (once it is loaded)
        self.memory_plan: Any = None
        self.blend_retime = blend_retime
        self.crf = crf
        self.preset = preset
        self.decode_chunk = decode_chunk
        self.decode_context = decode_context
        #: windows sampled by this instance (resumed windows are decoded, not sampled)
        self.sampled_windows = 0
        self._pipe: Any = None
        self._lock: threading.Lock | None = None
        #: chunk sizes of the most recent render, for logs and tests
        self.last_chunks: list[int] = []
        self.last_generation_size: tuple[int, int] | None = None

    # -- model -----------------------------------------------------------------------------
    @property
    def pipe(self) -> Any:
        """The resident pipeline, loaded on first use."""
        if self._pipe is None:
            self._pipe, self._lock, self.memory_plan = load_planned_pipeline(
                self.pipeline_class,
                self.model,
                dtype=self.dtype,
                device=self.device,
                local_files_only=self.local_files_only,
                memory=self.pinned_memory(),
            )
        return self._pipe

    def adopt(self, pipe: Any, plan: Any = None) -> None:
        """Render with ``pipe``, already loaded (a benchmark's full-size model built with random
        weights, which no folder holds), instead of loading ``self.model``."""
        self._pipe, self._lock, self.memory_plan = pipe, threading.Lock(), plan

    def pinned_memory(self) -> dict[str, Any]:
        """The memory choices the pipeline is loaded with: the pins, and VAE tiling when the
        backend decodes tiled (its own option, or LTX-2's default), so a tiled and an untiled
        backend never share one VAE."""
        pins = dict(self.memory)
        if self.vae_tiling:
            pins["vae_tiling"] = True
        return pins

    def memory_lineage(self) -> dict[str, Any]:
        """The sidecar's record of the memory choices a clip was made with: the pins (offload
        included, which the key leaves out) and the plan the pipeline was loaded with."""
        from reelflow.gpu.pins import runtime_lineage

        record = runtime_lineage(self.memory, self.device)
        if self.memory_plan is not None:
            plan = self.memory_plan
            record["plan"] = {"offload": plan.offload, "use_stream": plan.use_stream,
                              "storage_dtype": plan.storage_dtype, "vae_tiling": plan.vae_tiling,
                              "summary": plan.summary()}  # fmt: skip
        return record

    def _compression(self) -> tuple[int, int]:
        """(spatial multiple, temporal step) the loaded pipeline requires."""
        raise NotImplementedError

    @property
    def constraints(self) -> BackendConstraints:
        spatial, temporal = self._compression()
        return BackendConstraints(
            size_multiple=spatial,
            frame_step=temporal,
            frame_offset=1,
            max_frames=self.max_frames,
            native_fps=self.native_fps,
        )

    @property
    def identity(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "pipeline": self.pipeline_class,
            "model": str(self.model),
            "dtype": self.dtype,
            "version": self.version,
        }

    # -- planning --------------------------------------------------------------------------
    def generation_size(self, width: int, height: int) -> tuple[int, int]:
        """Size to generate at: the request's aspect, at most ``max_area``, snapped."""
        c = self.constraints
        if self.max_area and width * height > self.max_area:
            scale = math.sqrt(self.max_area / (width * height))
            width, height = width * scale, height * scale  # type: ignore[assignment]
        m = c.size_multiple
        return max(m, round(width / m) * m), max(m, round(height / m) * m)

    def native_frames(self, request: ClipRequest) -> int:
        """Frames to generate so the model moves at its native rate over the shot."""
        fps = self.native_fps or request.fps
        return max(2, round(request.duration * fps))

    def window_plan(self, request: ClipRequest) -> WindowPlan:
        """The model calls that make ``request``'s clip, and how they join."""
        return plan_windows(
            self.constraints.chunks(self.native_frames(request)),
            native_fps=self.native_fps or request.fps,
            output_frames=request.n_frames,
            long_video=self.capabilities.long_video,
        )

    @property
    def decode_settings(self) -> DecodeSettings | None:
        """How the latents are decoded (None: the pipeline decodes inside its own call)."""
        if not self.saves_latents:
            return None
        return DecodeSettings(tiled=self.vae_tiling, temporal_chunk=self.decode_chunk,
                              context=self.decode_context)  # fmt: skip

    def made_with(self, request: ClipRequest) -> dict[str, Any]:
        """What the lineage and the review say made a clip: window plan and decode."""
        decode = self.decode_settings
        return {
            # a chained plan has no parameters: its record stays as it was
            "window_plan": self.window_plan(request).model_dump(mode="json", exclude_none=True),
            "decode": decode.model_dump(mode="json") if decode else None,
        }

    # -- rendering -------------------------------------------------------------------------
    def _pipeline_args(
        self, request: ClipRequest, *, num_frames: int, width: int, height: int, seed: int,
        output_type: str,
    ) -> dict[str, Any]:  # fmt: skip
        """The arguments every pipeline here takes alike: prompt and negative prompt, size,
        frames, steps and guidance (the request's, else the backend's), the seeded generator
        and the output type. Each backend adds its conditions."""
        return {
            "prompt": self._prompt(request),
            "negative_prompt": request.negative_prompt or self.default_negative,
            "width": width,
            "height": height,
            "num_frames": num_frames,
            "num_inference_steps": request.steps or self.steps,
            "guidance_scale": (
                self.guidance_scale if request.guidance_scale is None else request.guidance_scale
            ),
            "generator": self._generator(seed),
            "output_type": output_type,
            "return_dict": False,
        }

    def _invoke(
        self,
        first: Image.Image,
        last: Image.Image | None,
        *,
        num_frames: int,
        width: int,
        height: int,
        request: ClipRequest,
        seed: int,
        output_type: str,
    ) -> Any:
        """One pipeline call starting on ``first`` (ending on ``last``), its output as asked."""
        raise NotImplementedError

    def _call(
        self,
        first: Image.Image,
        last: Image.Image | None,
        *,
        num_frames: int,
        width: int,
        height: int,
        request: ClipRequest,
        seed: int,
    ) -> np.ndarray:
        """One pipeline call: ``num_frames`` uint8 frames starting on ``first`` (the
        pipeline's own decode)."""
        frames = self._invoke(first, last, num_frames=num_frames, width=width, height=height,
                              request=request, seed=seed, output_type="np")  # fmt: skip
        return _to_uint8(frames)

    def _sample(
        self,
        first: Image.Image,
        last: Image.Image | None,
        *,
        num_frames: int,
        width: int,
        height: int,
        request: ClipRequest,
        seed: int,
    ) -> dict[str, Any]:
        """One window sampled with ``output_type="latent"`` (``saves_latents`` backends)."""
        raise NotImplementedError

    def _decode_window(self, tensors: dict[str, Any], request: ClipRequest) -> Iterator[np.ndarray]:
        """The uint8 frames of one window's saved latents, as they are decoded."""
        raise NotImplementedError

    def _decode_video(self, video: Any) -> Iterator[np.ndarray]:
        """Frames of video latents ([B, C, F, H, W], the VAE's own scale) from the pipeline's
        VAE, a few latent frames at a time (``decode_chunk``), as the pipeline would decode them
        with its default ``decode_timestep`` of 0."""
        import torch

        pipe, lock = self.pipe, self._lock
        assert lock is not None
        device = pipe._execution_device  # where the VAE runs, offloaded or not
        timestep = None
        if getattr(pipe.vae.config, "timestep_conditioning", False):
            timestep = torch.zeros(video.shape[0], device=device, dtype=pipe.vae.dtype)

        def decode(part: Any) -> np.ndarray:
            with lock, torch.inference_mode():
                part = part.to(device, pipe.vae.dtype)
                pixels = pipe.vae.decode(part, timestep, return_dict=False)[0]
                frames = pipe.video_processor.postprocess_video(pixels, output_type="np")
            return _to_uint8(frames)

        yield from decode_in_chunks(
            decode, video, temporal_ratio=pipe.vae_temporal_compression_ratio,
            chunk=self.decode_chunk, context=self.decode_context,
        )  # fmt: skip

    def _window(
        self,
        index: int,
        cond: Image.Image,
        end: Image.Image | None,
        *,
        num_frames: int,
        size: tuple[int, int],
        request: ClipRequest,
        latents: LatentCache | None,
    ) -> Iterator[np.ndarray]:
        """One window's frames. A ``saves_latents`` backend takes its latents from ``latents``
        when they were kept by an earlier attempt, else samples and keeps them, then decodes."""
        seed = (request.seed + index) % 2**32
        call = dict(num_frames=num_frames, width=size[0], height=size[1], request=request,
                    seed=seed)  # fmt: skip
        if not self.saves_latents:
            return iter(self._call(cond, end, **call))  # type: ignore[arg-type]
        tensors = latents.load(index) if latents is not None else None
        if tensors is None:
            tensors = self._sample(cond, end, **call)  # type: ignore[arg-type]
            self.sampled_windows += 1
            if latents is not None:
                meta = {"backend": self.name, "window": str(index),
                        "num_frames": str(num_frames), "seed": str(seed)}  # fmt: skip
                latents.save(index, tensors, meta)
        return self._decode_window(tensors, request)

    def _generated(
        self,
        first: np.ndarray,
        last: np.ndarray | None,
        request: ClipRequest,
        size: tuple[int, int],
        latents: LatentCache | None = None,
    ) -> tuple[Iterator[np.ndarray], int]:
        """Windowed generation: an iterator over the frames and how many it will yield."""
        gw, gh = size
        plan = self.window_plan(request)
        self.last_chunks = list(plan.windows)
        self.last_generation_size = size

        def frames() -> Iterator[np.ndarray]:
            cond = Image.fromarray(cover_fit(first, gw, gh))
            end = Image.fromarray(cover_fit(last, gw, gh)) if last is not None else None
            for index, count in enumerate(plan.windows):
                is_last = index == len(plan.windows) - 1
                made, final = 0, None
                for final in self._window(index, cond, end if is_last else None,
                                          num_frames=count, size=size, request=request,
                                          latents=latents):  # fmt: skip
                    # Later windows start on the previous one's last frame: drop the duplicate.
                    if index == 0 or made > 0:
                        yield final
                    made += 1
                if made != count or final is None:
                    raise RuntimeError(f"{self.name} returned {made} frames, not {count}")
                if not is_last:
                    last_frame = final if final.shape[:2] == (gh, gw) else cover_fit(final, gw, gh)
                    cond = Image.fromarray(last_frame)

        return frames(), plan.generated_frames

    def _render(
        self,
        first: np.ndarray,
        last: np.ndarray | None,
        request: ClipRequest,
        out: Path,
        latents: LatentCache | None = None,
    ) -> VideoInfo:
        size = self.generation_size(request.width, request.height)
        generated, total = self._generated(first, last, request, size, latents)
        return self._encode(generated, total, request, out)

    def _encode(
        self, generated: Iterable[np.ndarray], total: int, request: ClipRequest, out: Path
    ) -> VideoInfo:
        """Retime ``total`` generated frames to the request's frame count and size, to ``out``."""
        w, h = request.width, request.height
        with VideoWriter(out, width=w, height=h, fps=request.fps, crf=self.crf,
                         preset=self.preset) as writer:  # fmt: skip
            for frame in retime(generated, total, request.n_frames, blend=self.blend_retime):
                if frame.shape[:2] != (h, w):
                    interp = cv2.INTER_AREA if frame.shape[1] > w else cv2.INTER_CUBIC
                    frame = cv2.resize(frame, (w, h), interpolation=interp)
                writer.write(frame)
        assert writer.info is not None
        return writer.info

    def render_shot(
        self, request: ClipRequest, out: Path, *, latents: LatentCache | None = None
    ) -> VideoInfo:
        """Animate ``request.image`` with the model, conditioned on the motion prompt.
        ``latents``: where a ``saves_latents`` backend keeps (and finds) its sampled windows."""
        return self._render(load_rgb(request.image), None, request, out, latents)

    def render_transition(
        self,
        first: Path,
        last: Path,
        request: ClipRequest,
        out: Path,
        *,
        latents: LatentCache | None = None,
    ) -> VideoInfo:
        """Generate from ``first`` to ``last``: the final chunk is pinned to ``last``."""
        return self._render(load_rgb(first), load_rgb(last), request, out, latents)

    def _prompt(self, request: ClipRequest) -> str:
        if request.motion_prompt:
            return request.motion_prompt
        return f"camera {request.movement.replace('-', ' ')}, smooth cinematic motion"

    def _generator(self, seed: int) -> Any:
        import torch

        return torch.Generator(device="cpu").manual_seed(seed)


class LTXBackend(DiffusionVideoBackend):
    """LTX-Video through ``LTXConditionPipeline``: image conditions at frame 0 and, for
    transitions, at the chunk's last frame (LTX conditions on any frame index). Windows are
    sampled as latents, kept, then decoded in chunks."""

    name = "ltx"
    capabilities = LTX
    pipeline_class = "LTXConditionPipeline"
    default_max_frames = 121  # ~5 s at 24 fps, LTX's trained range
    default_fps = 24.0
    default_steps = 30
    default_guidance = 3.0
    default_negative = "worst quality, inconsistent motion, blurry, jittery, distorted"
    saves_latents = True

    def _compression(self) -> tuple[int, int]:
        p = self.pipe
        spatial = p.vae_spatial_compression_ratio * p.transformer_spatial_patch_size
        # The pipeline itself insists on multiples of 32 whatever the VAE's compression.
        return (
            math.lcm(32, spatial),
            p.vae_temporal_compression_ratio * p.transformer_temporal_patch_size,
        )

    def _sample(
        self,
        first: Image.Image,
        last: Image.Image | None,
        *,
        num_frames: int,
        width: int,
        height: int,
        request: ClipRequest,
        seed: int,
    ) -> dict[str, Any]:
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        conditions = [LTXVideoCondition(image=first, frame_index=0)]
        if last is not None:
            conditions.append(LTXVideoCondition(image=last, frame_index=num_frames - 1))
        pipe = self.pipe
        assert self._lock is not None
        with self._lock:
            out = pipe(
                conditions=conditions,
                frame_rate=round(self.native_fps or request.fps),
                **self._pipeline_args(request, num_frames=num_frames, width=width,
                                      height=height, seed=seed, output_type="latent"),
            )[0]  # fmt: skip
            vae = pipe.vae  # "latent" output is normalised; kept at the VAE's own scale
            video = pipe._denormalize_latents(out, vae.latents_mean, vae.latents_std,
                                              vae.config.scaling_factor)  # fmt: skip
        return {"video": video}

    def _decode_window(self, tensors: dict[str, Any], request: ClipRequest) -> Iterator[np.ndarray]:
        return self._decode_video(tensors["video"])


class WanBackend(DiffusionVideoBackend):
    """Wan 2.x image-to-video through ``WanImageToVideoPipeline``; transitions use its
    ``last_image`` conditioning. Wan generates at 16 fps; output is retimed to the request."""

    name = "wan"
    capabilities = WAN
    pipeline_class = "WanImageToVideoPipeline"
    default_max_frames = 81  # ~5 s at 16 fps
    default_fps = 16.0
    default_steps = 30
    default_guidance = 5.0
    default_negative = "blurry, static, distorted, low quality, jittery"
    saves_latents = True

    def _compression(self) -> tuple[int, int]:
        p = self.pipe
        patch = p.transformer.config.patch_size
        return p.vae_scale_factor_spatial * int(patch[1]), p.vae_scale_factor_temporal

    def last_image_mode(self) -> str:
        """How the loaded Wan checkpoint treats ``last_image``.

        ``"optional"``: Wan 2.2-style (no CLIP image embedding) -- conditioned in latent space.
        ``"required"``: Wan2.1-FLF2V -- its image embedder expects exactly two images.
        ``"unsupported"``: Wan2.1-I2V -- one image embedding, no last frame.
        """
        cfg = self.pipe.transformer.config
        if cfg.image_dim is None:
            return "optional"
        return "required" if cfg.pos_embed_seq_len else "unsupported"

    def _generated(
        self,
        first: np.ndarray,
        last: np.ndarray | None,
        request: ClipRequest,
        size: tuple[int, int],
        latents: LatentCache | None = None,
    ) -> tuple[Iterator[np.ndarray], int]:
        # Fail before any GPU time is spent when the checkpoint cannot do what is asked.
        mode = self.last_image_mode()
        if last is not None and mode == "unsupported":
            raise ValueError(
                f"{self.model} is an image-to-video Wan checkpoint without last-frame support; "
                "use a FLF2V or Wan 2.2 checkpoint (or the animatic) for transitions"
            )
        if mode == "required":
            if last is None:
                raise ValueError(f"{self.model} is a first-last-frame checkpoint: transitions only")
            if len(self.constraints.chunks(self.native_frames(request))) > 1:
                raise ValueError(
                    f"{self.model} needs a last frame in every call, so it cannot chunk; "
                    "raise max_frames or shorten the transition"
                )
        return super()._generated(first, last, request, size, latents)

    def _extra_call_args(self) -> dict[str, Any]:
        """Further pipeline arguments of a checkpoint's shape (Wan 2.2's second guidance)."""
        return {}

    def _invoke(
        self,
        first: Image.Image,
        last: Image.Image | None,
        *,
        num_frames: int,
        width: int,
        height: int,
        request: ClipRequest,
        seed: int,
        output_type: str,
    ) -> Any:
        """One pipeline call starting on ``first`` (ending on ``last``), its output as asked."""
        pipe = self.pipe
        kwargs = self._extra_call_args()
        if last is not None:
            kwargs["last_image"] = last
        args = self._pipeline_args(request, num_frames=num_frames, width=width, height=height,
                                   seed=seed, output_type=output_type)  # fmt: skip
        assert self._lock is not None
        with self._lock:
            return pipe(image=first, **args, **kwargs)[0]

    def _sample(
        self,
        first: Image.Image,
        last: Image.Image | None,
        *,
        num_frames: int,
        width: int,
        height: int,
        request: ClipRequest,
        seed: int,
    ) -> dict[str, Any]:
        out = self._invoke(first, last, num_frames=num_frames, width=width, height=height,
                           request=request, seed=seed, output_type="latent")  # fmt: skip
        return {"video": wan_vae_scale(self.pipe, out)}

    def _decode_window(self, tensors: dict[str, Any], request: ClipRequest) -> Iterator[np.ndarray]:
        return decode_wan_video(self, tensors["video"])


def wan_vae_scale(pipe: Any, latents: Any) -> Any:
    """A Wan pipeline's ``"latent"`` output (normalised) at its VAE's own scale, as the
    pipeline scales them before its decode."""
    import torch

    cfg = pipe.vae.config
    shape = (1, cfg.z_dim, 1, 1, 1)
    mean = torch.tensor(cfg.latents_mean).view(shape).to(latents.device, latents.dtype)
    std = torch.tensor(cfg.latents_std).view(shape).to(latents.device, latents.dtype)
    return latents * std + mean


def decode_wan_video(backend: DiffusionVideoBackend, video: Any) -> Iterator[np.ndarray]:
    """Frames of Wan video latents (VAE scale) as the pipeline's own decode makes them, a few
    latent frames at a time (``decode_chunk``): Wan's VAE is causal like LTX's."""
    import torch

    pipe, lock = backend.pipe, backend._lock
    assert lock is not None
    device = pipe._execution_device

    def decode(part: Any) -> np.ndarray:
        with lock, torch.inference_mode():
            part = part.to(device, pipe.vae.dtype)
            pixels = pipe.vae.decode(part, return_dict=False)[0]
            frames = pipe.video_processor.postprocess_video(pixels, output_type="np")
        return _to_uint8(frames)

    yield from decode_in_chunks(
        decode, video, temporal_ratio=pipe.vae_scale_factor_temporal,
        chunk=backend.decode_chunk, context=backend.decode_context,
    )  # fmt: skip

"""`reelflow doctor`: before anything renders, what each model of a storyboard needs here.

For a storyboard and a profile, on this machine (CUDA's free memory, else RAM) or for a card
of a given size (`gpu_memory="24GB"`), it names each model the run would load, where each of
its components would live, the predicted peak, and what does not fit. Nothing is loaded: the
models are sized from their configurations on the meta device (reelflow/gpu/memory.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from reelflow.gpu.architectures import (
    ARCHITECTURES,
    FLUX_DEV,
    LTX2,
    SD15,
    SDXL,
    WAN22_A14B,
    WAN22_TI2V_5B,
    Architecture,
    Workload,
    find_architecture,
)
from reelflow.gpu.memory import (
    MemoryPlan,
    architecture_from_dir,
    device_budget,
    format_bytes,
    host_budget,
    plan_memory,
)
from reelflow.gpu.pins import video_pins

_BY_FAMILY = {"sd15": SD15, "sdxl": SDXL, "flux": FLUX_DEV}
_BY_BACKEND = {"ltx": LTX2, "ltx2": LTX2, "wan": WAN22_A14B, "wan22": WAN22_A14B,
               "wan22-ti2v": WAN22_TI2V_5B, "wan-vace": WAN22_A14B, "skyreels-v2-df": WAN22_A14B}
# VACE-14B and SkyReels-V2-DF-14B are one 14B Wan transformer (VACE: plus its VACE blocks):
# planned as A14B (two experts), a bound
#: what a video backend generates per call at most (frames) and its native rate
_VIDEO_LIMITS = {"ltx": (121, 24.0), "ltx2": (121, 24.0), "wan": (81, 16.0),
                 "wan22": (81, 16.0), "wan22-ti2v": (121, 24.0), "wan-vace": (81, 16.0),
                 "skyreels-v2-df": (97, 24.0)}


class ModelCheck(BaseModel):
    """One model of the run: what it is, what it renders, and its plan (None: no model)."""

    stage: Literal["images", "clips"]
    name: str
    architecture: str | None = None
    workload: Workload | None = None
    plan: MemoryPlan | None = None
    note: str = ""

    def text(self) -> str:
        head = f"{self.stage}: {self.name}"
        if self.architecture and self.architecture != self.name:
            head += f" (sized as {self.architecture})"
        if self.workload is not None:
            w = self.workload
            head += f" at {w.width}x{w.height}" + (f", {w.frames} frames" if w.frames > 1 else "")
        lines = [head]
        if self.note:
            lines.append(f"  {self.note}")
        if self.plan is not None:
            lines += ["  " + line for line in self.plan.describe().splitlines()]
        return "\n".join(lines)


class DoctorReport(BaseModel):
    storyboard: str
    profile: str
    device: str
    budget_bytes: int | None
    host_budget_bytes: int | None
    checks: list[ModelCheck]

    @property
    def fits(self) -> bool:
        return all(c.plan is None or c.plan.fits for c in self.checks)

    def text(self) -> str:
        budget = "no limit" if self.budget_bytes is None else format_bytes(self.budget_bytes)
        where = f"device {self.device} ({budget})"
        if self.host_budget_bytes is not None:
            where += f", RAM for offloaded weights {format_bytes(self.host_budget_bytes)}"
        elif self.device == "cpu":
            where = f"no CUDA device: the CPU, in RAM ({budget})"
        lines = [f"doctor: {self.storyboard}, profile {self.profile}, {where}"]
        lines += [check.text() for check in self.checks]
        misfits = [c.name for c in self.checks if c.plan is not None and not c.plan.fits]
        lines.append(f"does not fit: {', '.join(misfits)}" if misfits
                     else "every model fits")
        return "\n".join(lines)


def _architecture(name: str, fallback: Architecture) -> tuple[Architecture, str]:
    """A model named by a storyboard or profile: a pipeline folder on this machine is read from
    its configs; a known name is sized from the repo's full-size configs; anything else as the
    family's reference model, which the note says."""
    from reelflow.render.jobs import resolve_model_path

    path = Path(resolve_model_path(name)).expanduser()
    if (path / "model_index.json").is_file():
        return architecture_from_dir(path), ""
    known = find_architecture(name)
    if known is not None:
        return known, ""
    return fallback, f"{name} is not on this machine: sized as {fallback.name}"


def _image_check(storyboard, profile, budget, ram, device) -> ModelCheck | None:
    from reelflow.render.jobs import generation_size
    from reelflow.render.jobs.resolve import guess_family

    name = profile.image_model or storyboard.style.model
    if name == "previz":
        return None
    if name == "tiny":
        name = "@models/tiny-sd"
    family = profile.image_family or guess_family(storyboard.style.model)  # as the render
    arch, note = _architecture(name, _BY_FAMILY[family])
    width, height = generation_size(storyboard, profile, family)
    if profile.hires_fix:  # the hi-res pass decodes the largest image of the run
        width, height = int(width * profile.hires_scale), int(height * profile.hires_scale)
    work = Workload(width=width, height=height)
    pins = profile.memory.job_options() if profile.memory else {}
    plan, pin_note = _pinned_plan(arch, pins, budget, ram, device, work, "the profile pins")
    note = "; ".join(filter(None, [note, pin_note]))
    return ModelCheck(stage="images", name=name, architecture=arch.name, workload=work,
                      plan=plan, note=note)


def _pinned_plan(arch, pins, budget, ram, device, work, who) -> tuple[MemoryPlan, str]:
    """The plan under a model's pins, and a note naming the pin a pixel-changing choice the
    plan needs would take (a render never chooses those on its own: gpu/pins.py)."""
    pin = {k: v for k, v in pins.items() if k in ("offload", "fp8", "vae_tiling")}
    plan = plan_memory(arch, budget=budget, host_budget=ram, device=device, work=work, pin=pin)
    unpinned = [(what, key) for what, key, on in (("fp8 storage", "fp8", plan.storage_dtype),
                                                  ("VAE tiling", "vae_tiling", plan.vae_tiling))
                if on and key not in pin]
    if not unpinned:
        return plan, ""
    what = " and ".join(w for w, _ in unpinned)
    keys = ", ".join(f"{k}: true" for _, k in unpinned)
    verb = "change" if len(unpinned) > 1 else "changes"
    return plan, f"{what} {verb} pixels: a render uses it only when {who} memory: {{{keys}}}"


def _clip_check(storyboard, profile, budget, ram, device, video_model) -> ModelCheck | None:
    backend = profile.video_backend
    if video_model:  # a model named for the check picks its backend
        lowered = video_model.lower()
        backend = ("skyreels-v2-df" if "skyreels" in lowered else "wan" if "wan" in lowered
                   else "ltx" if "ltx" in lowered else backend)
    if backend not in _BY_BACKEND:
        return ModelCheck(stage="clips", name=backend, note=f"{backend}: no model to load")
    name = video_model or profile.video_options.get("model") or profile.video_model
    name = f"@models/{name}" if str(name).startswith("tiny-") else name
    arch, note = _architecture(name, _BY_BACKEND[backend]) if name else (_BY_BACKEND[backend], "")
    max_frames, fps = _VIDEO_LIMITS[backend]
    max_frames = int(profile.video_options.get("max_frames", max_frames))
    longest = max(shot.duration for shot in storyboard.shots)
    step = arch.temporal_compression
    frames = min(max_frames, round(longest * fps))
    frames = (max(frames - 1, 0) // step) * step + 1  # the model's step*k + 1
    width, height = storyboard.width, storyboard.height
    max_area = profile.video_options.get("max_area")
    if max_area and width * height > max_area:
        scale = (max_area / (width * height)) ** 0.5
        width, height = int(width * scale), int(height * scale)
    work = Workload(width=width, height=height, frames=frames)
    pins = video_pins(profile.video_options.get("memory"))
    if profile.video_options.get("vae_tiling", backend == "ltx2"):  # the backend's own option
        pins["vae_tiling"] = True
    plan, pin_note = _pinned_plan(arch, pins, budget, ram, device, work,
                                  "the video model's options pin")  # fmt: skip
    note = "; ".join(filter(None, [note, pin_note]))
    return ModelCheck(stage="clips", name=name or backend, architecture=arch.name,
                      workload=work, plan=plan, note=note)


def doctor(
    storyboard: str | Path,
    profile: str = "full",
    *,
    gpu_memory: str | int | None = None,
    host_memory: str | int | None = None,
    video_model: str | None = None,
) -> DoctorReport:
    """Plan every model a render of `storyboard` under `profile` would load.

    `gpu_memory` plans for a card of that size (`"24GB"`); without it, for this machine: the
    free memory of its CUDA device, or, with none, the CPU and its RAM. `host_memory` is the
    RAM offloaded weights may use (default: what is available now). `video_model` names the
    clip model when the profile's generative backend does not (`"wan2.2-a14b"`, `"ltx-2"`).
    Errors in the storyboard or the profile name raise as the render would.
    """
    import torch

    from reelflow.render.profiles import get_profile
    from reelflow.storyboard.loading import load_storyboard

    board = load_storyboard(storyboard, check_files=False)
    chosen = get_profile(profile)
    on_cuda = gpu_memory is not None or torch.cuda.is_available()
    device = "cuda" if on_cuda else "cpu"
    ram = host_budget(host_memory)
    budget = device_budget(device, gpu_memory) if on_cuda else ram
    if not on_cuda:  # the CPU's memory is the RAM: nothing to offload to
        ram = None
    checks = [
        check
        for check in (
            _image_check(board, chosen, budget, ram, device),
            _clip_check(board, chosen, budget, ram, device, video_model),
        )
        if check is not None
    ]
    return DoctorReport(storyboard=str(storyboard), profile=profile, device=device,
                        budget_bytes=budget, host_budget_bytes=ram, checks=checks)


REFERENCE_MODELS = ("flux1-dev", "wan2.2-i2v-a14b", "ltx-2", "sdxl-base-1.0")


def reference_plans(
    budgets: tuple[str, ...] = ("24GB", "80GB"), host_memory: str = "128GB"
) -> str:
    """The plans of the full-size models (Flux-dev, Wan 2.2 A14B, LTX-2, SDXL) at their usual
    sizes on cards of each size in `budgets`: what a creator's card can run, at a glance."""
    blocks = []
    for budget in budgets:
        blocks.append(f"== {budget} card, {host_memory} RAM")
        for name in REFERENCE_MODELS:
            arch = ARCHITECTURES[name]
            work = arch.default_workload
            size = f"{work.width}x{work.height}" + (
                f", {work.frames} frames" if work.frames > 1 else "")
            plan = plan_memory(arch, budget=budget, host_budget=host_memory, work=work)
            blocks.append(f"-- {name} at {size}\n{plan.describe()}")
    return "\n".join(blocks)

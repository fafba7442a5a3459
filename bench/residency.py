"""3. Model residency: the image stage for nine shots vs a plain diffusers loop.

Both sides run in a fresh interpreter with torch and diffusers imported before the timer, and
load the same pre-built tiny SD model inside it. Per shot: K variants in one batched call with
one CPU generator per variant (seed + i), then the hi-res fix of variant 0 (Lanczos upscale +
img2img at the same seed), with the shot's LoRA stack. reelflow goes through
`reelflow.imaging.generate` (resident `PipelineCache`, `apply_loras`); the plain loop loads the
pipeline once, derives img2img with `from_pipe`, loads each LoRA file once and calls
`set_adapters` per shot. The final images of both sides are compared pixel by pixel.
"""

from __future__ import annotations

import time
from typing import Any

from bench import boards
from bench.common import Context, Section, alternate, run_worker, scratch_dir
from bench.orchestration import models_dir


def image_jobs(quick: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The seed film's image jobs under the demo (quick: test) profile, as plain JSON."""
    from reelflow.render.jobs import plan_render
    from reelflow.render.profiles import get_profile
    from reelflow.storyboard import parse_storyboard

    profile = get_profile("test" if quick else "demo")
    board = parse_storyboard(boards.dump(boards.seed_board(quick)))
    jobs = []
    for job in plan_render(board, profile).images:
        jobs.append({
            "shot": job.shot, "prompt": job.prompt, "negative": job.negative_prompt,
            "seed": job.seed, "width": job.width, "height": job.height, "steps": job.steps,
            "guidance": job.guidance, "variants": job.variants,
            "model": job.model.source,
            "loras": [{"path": lora.path, "name": lora.name, "weight": lora.weight}
                      for lora in job.loras],
        })
    hires = {"scale": profile.hires_scale, "strength": profile.hires_strength}
    return jobs, hires


def _resolve(jobs: list[dict[str, Any]]) -> None:
    from reelflow.render.jobs import resolve_model_path

    for job in jobs:
        job["model"] = resolve_model_path(job["model"])
        for lora in job["loras"]:
            lora["path"] = resolve_model_path(lora["path"])


def reelflow_side(jobs: list[dict[str, Any]], hires: dict[str, float], out: str) -> dict[str, Any]:
    import numpy as np
    import torch  # noqa: F401
    from diffusers import StableDiffusionPipeline  # noqa: F401

    from reelflow.imaging.generate import ImageSpec, generate_variants, hires_fix
    from reelflow.imaging.models import LoraSpec, ModelSource
    from reelflow.imaging.pipelines import get_pipeline_cache

    _resolve(jobs)
    start = time.perf_counter()
    finals = []
    for job in jobs:
        spec = ImageSpec(
            prompt=job["prompt"], negative_prompt=job["negative"], seed=job["seed"],
            width=job["width"], height=job["height"], steps=job["steps"],
            guidance=job["guidance"], shot=job["shot"],
            model=ModelSource(family="sd15", source=job["model"], dtype="float32", device="cpu"),
            loras=[LoraSpec(**lora) for lora in job["loras"]],
        )
        variants = generate_variants(spec, job["variants"])
        finals.append(np.asarray(hires_fix(variants[0][1], spec, **hires)))
    seconds = time.perf_counter() - start
    np.savez(out, *finals)
    return {"seconds": seconds, "loads": get_pipeline_cache().loads}


def plain_side(jobs: list[dict[str, Any]], hires: dict[str, float], out: str) -> dict[str, Any]:
    import numpy as np
    import torch
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionPipeline,
    )
    from PIL import Image

    def to_pil(array: Any) -> Image.Image:
        return Image.fromarray((np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8))

    _resolve(jobs)
    start = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(
        jobs[0]["model"], dtype=torch.float32, local_files_only=True
    )
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    img2img = StableDiffusionImg2ImgPipeline.from_pipe(
        pipe, scheduler=EulerDiscreteScheduler.from_config(pipe.scheduler.config),
        dtype=torch.float32,
    )
    img2img.set_progress_bar_config(disable=True)
    loaded: set[str] = set()
    finals = []
    for job in jobs:
        for lora in job["loras"]:
            if lora["name"] not in loaded:
                pipe.load_lora_weights(lora["path"], adapter_name=lora["name"])
                loaded.add(lora["name"])
        pipe.set_adapters([lo["name"] for lo in job["loras"]],
                          adapter_weights=[lo["weight"] for lo in job["loras"]])
        k = job["variants"]
        neg = [job["negative"]] * k if job["negative"] else None
        images = pipe(
            prompt=[job["prompt"]] * k, negative_prompt=neg,
            num_inference_steps=job["steps"], guidance_scale=job["guidance"],
            width=job["width"], height=job["height"],
            generator=[torch.Generator("cpu").manual_seed(job["seed"] + i) for i in range(k)],
            output_type="np",
        ).images
        first = to_pil(images[0])
        size = (round(first.width * hires["scale"]) // 8 * 8,
                round(first.height * hires["scale"]) // 8 * 8)
        steps = job["steps"]
        while int(steps * hires["strength"]) < 1:
            steps += 1
        refined = img2img(
            prompt=[job["prompt"]], negative_prompt=neg[:1] if neg else None,
            image=first.resize(size, Image.LANCZOS), strength=hires["strength"],
            num_inference_steps=steps, guidance_scale=job["guidance"],
            generator=[torch.Generator("cpu").manual_seed(job["seed"])], output_type="np",
        ).images[0]
        finals.append(np.asarray(to_pil(refined)))
    seconds = time.perf_counter() - start
    np.savez(out, *finals)
    return {"seconds": seconds, "loads": 1}


def run(ctx: Context) -> Section:
    import numpy as np

    jobs, hires = image_jobs(ctx.quick)
    j0 = jobs[0]
    section = Section(
        key="residency",
        title="3. Model residency",
        method=(
            f"Image stage of the seed film: {len(jobs)} shots x {j0['variants']} variants at "
            f"{j0['width']}x{j0['height']}, {j0['steps']} steps, then hi-res fix "
            f"x{hires['scale']:g} (strength {hires['strength']}) of variant 0, LoRA stacks "
            "per shot, tiny SD model (float32, CPU). reelflow.imaging (resident "
            "PipelineCache) vs a plain diffusers loop loading the pipeline once; fresh "
            "interpreter per run, imports before the timer, the model load inside it; "
            "sides alternate."
        ),
    )
    models = models_dir(ctx)
    env = {"REELFLOW_MODELS": str(models)}
    loads: list[int] = []
    with scratch_dir(ctx.work, "residency") as tmp:
        outs = {"reelflow": tmp / "reelflow.npz", "plain": tmp / "plain.npz"}

        def side(name: str):
            def call(_: int) -> float:
                res = run_worker(f"residency:{name}_side",
                                 {"jobs": jobs, "hires": hires, "out": str(outs[name])}, env=env)
                if name == "reelflow":
                    loads.append(res["loads"])
                return res["seconds"]
            return call

        samples = alternate(ctx.reps, {"reelflow": side("reelflow"), "plain": side("plain")})
        a, b = np.load(outs["reelflow"]), np.load(outs["plain"])
        diffs = [int(np.abs(a[k].astype(int) - b[k].astype(int)).max()) for k in a.files]
    section.add("reelflow", f"reelflow.imaging generate_variants + hires_fix, {len(jobs)} shots",
                samples["reelflow"])
    section.add("plain", "plain diffusers loop, pipeline loaded once", samples["plain"])
    section.ratio("reelflow / plain", "reelflow", "plain", goal=1.10)
    section.notes.append(f"base-model loads per reelflow run (PipelineCache.loads): {loads}")
    section.notes.append(
        f"final images identical on both sides: {'yes' if max(diffs) == 0 else 'no'} "
        f"(max abs pixel difference per shot: {diffs})"
    )
    return section



"""No lost sampling, long shots and the latent upsampler, on the tiny LTX-2 (built from configs).

- A clip's windows are sampled with ``output_type="latent"`` and kept in the bucket before the
  decode; a decode that fails is resumed from them: every window is sampled once, in all.
- A shot longer than the backend's window renders through the chained-windows fallback with
  the exact frame count, and its lineage and the clips review say so.
- The optional LTX-2 latent-upsampler pass doubles the sampled latents before the decode.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from reelflow.media.probe import probe
from reelflow.store.artifacts import ArtifactStore


def _tiny_ltx2() -> str:
    """The tiny LTX-2 in this session's models folder (shared with tests/test_ltx2.py)."""
    from reelflow.motion.tiny import build_tiny_ltx2
    from reelflow.render.jobs import models_dir

    build_tiny_ltx2(models_dir() / "tiny-ltx2")
    return "@models/tiny-ltx2"


def test_a_failed_decode_of_a_long_shot_resumes_from_its_kept_latents(
    film_env: dict[str, str], store: ArtifactStore, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from reelflow.motion.latents import FAIL_DECODE_ENV
    from reelflow.render import clips
    from reelflow.render.jobs import ClipJob
    from reelflow.render.jobs.resolve import identify_weights
    from reelflow.render.review import clips_markdown

    still = tmp_path / "still.png"
    Image.new("RGB", (64, 32), (200, 80, 40)).save(still)
    still_key = store.put_file("projects/long/shots/s01/stills/a.png", still, "image/png")
    # 2.5 s at 8 fps = 20 frames on a 17-frame window: two windows (17 + 9, seam dropped)
    options = {"model": _tiny_ltx2(), "steps": 2, "max_frames": 17, "native_fps": 8,
               "max_area": 64 * 32, "preset": "ultrafast", "decode_chunk": 1}  # fmt: skip
    job = identify_weights(ClipJob(
        project="long", shot="s01", duration=2.5, fps=8, width=64, height=32,
        movement="push-in", motion_prompt="snow", backend="ltx2", backend_options=options,
        seed=3, image_key=still_key,
    ))  # fmt: skip
    assert job.model_sha256
    backend = clips._backend(job.backend, job.backend_options)
    sampled = backend.sampled_windows

    monkeypatch.setenv(FAIL_DECODE_ENV, str(tmp_path / "failed-once"))
    with pytest.raises(RuntimeError, match="injected"):
        clips.render_clip(store, job)
    assert backend.sampled_windows == sampled + 1  # the first window, then its decode failed
    kept = clips.latents_key(job.output_key(), 0)
    assert store.complete(kept) and not store.complete(job.output_key())
    sidecar = store.lineage(kept)
    assert sidecar.kind == "clip-latents" and sidecar.spec_hash == job.spec_hash()
    assert sidecar.extra["shapes"]["video"][2] == 3  # 17 frames: 3 latent frames (8x)

    key = clips.render_clip(store, job)  # the retry decodes what was kept
    assert backend.sampled_windows == sampled + 2  # only the window never sampled
    info = probe(store.get_file(key, tmp_path / "clip.mp4"))
    assert info.frame_count == 20 and (info.width, info.height) == (64, 32)
    extra = store.lineage(key).extra
    assert extra["model_sha256"] == job.model_sha256
    assert extra["window_plan"] == {
        "method": "chained-windows", "windows": [17, 9], "overlap": 1, "native_fps": 8.0,
        "output_frames": 20, "generated_frames": 25,
    }  # fmt: skip
    assert extra["decode"] == {"tiled": True, "temporal_chunk": 1, "context": 1,
                               "streamed": True}  # fmt: skip
    assert extra["latents"] == [kept, clips.latents_key(key, 1)]
    table = clips_markdown(store, "long", {"s01": key}, {}, {}, "ltx2", lambda k, alt: alt)
    assert ("2 windows, fallback: chained windows (17+9 frames, seams of 1) -> 25 generated, "
            "20 frames") in table  # fmt: skip
    assert f"model {job.model_sha256[:12]}" in table and "decode tiled" in table

    assert clips.render_clip(store, job) == key  # done: nothing sampled or decoded
    assert backend.sampled_windows == sampled + 2


def test_the_latent_upsampler_doubles_the_sampled_latents_before_the_decode(
    film_env: dict[str, str], tmp_path: Path
) -> None:
    from reelflow.motion.backends import ClipRequest, get_backend
    from reelflow.motion.latents import FolderLatents
    from reelflow.motion.upsample import build_tiny_ltx2_upsampler
    from reelflow.render.jobs import models_dir, resolve_model_path

    upsampler = build_tiny_ltx2_upsampler(models_dir() / "tiny-ltx2-upsampler")
    backend = get_backend("ltx2", model=resolve_model_path(_tiny_ltx2()), steps=2, max_frames=9,
                          native_fps=8, preset="ultrafast", upsample=True,
                          upsampler=str(upsampler))  # fmt: skip
    still = tmp_path / "still.png"
    Image.new("RGB", (128, 64), (30, 90, 200)).save(still)
    request = ClipRequest(images=[still], duration=1.0, fps=8, width=128, height=64)
    kept = FolderLatents(tmp_path / "latents")
    info = backend.render_shot(request, tmp_path / "clip.mp4", latents=kept)
    assert info.frame_count == 8 and (info.width, info.height) == (128, 64)
    assert backend.last_generation_size == (64, 32)  # sampled at half the size
    latents = kept.load(0)
    assert latents is not None and list(latents["video"].shape) == [1, 4, 2, 4, 8]
    frames = list(backend._decode_window(latents, request))  # decoded from the doubled latents
    assert len(frames) == 9 and frames[0].shape == (64, 128, 3)
    assert backend.made_with(request)["latent_upsample"] == {
        "upsampler": str(upsampler), "sampled_at": [64, 32]}


def test_an_upsampler_folder_keys_the_clip_by_its_content(tmp_path: Path) -> None:
    """The upsampler's weights are in the clip's key, not its path: moved, the same clip;
    retrained, another clip; no upsampler, the key as it always was."""
    import shutil

    from reelflow.motion.upsample import build_tiny_ltx2_upsampler
    from reelflow.render.jobs import ClipJob
    from reelflow.render.jobs.resolve import identify_weights

    first = build_tiny_ltx2_upsampler(tmp_path / "up-a", seed=0)
    moved = Path(shutil.copytree(first, tmp_path / "elsewhere" / "up-a"))
    other = build_tiny_ltx2_upsampler(tmp_path / "up-b", seed=1)

    def job(**options: object) -> ClipJob:
        return identify_weights(ClipJob(
            project="p", shot="s", duration=1.0, fps=8, width=64, height=32, movement="static",
            motion_prompt="", backend="ltx2", seed=1,
            backend_options={"steps": 2, "upsample": True, **options}))  # fmt: skip

    plain = ClipJob(project="p", shot="s", duration=1.0, fps=8, width=64, height=32,
                    movement="static", motion_prompt="", backend="ltx2", seed=1,
                    backend_options={"steps": 2, "upsample": True})  # fmt: skip
    assert job().spec_hash() == plain.spec_hash() and job().upsampler_sha256 is None
    a, b = job(upsampler=str(first)), job(upsampler=str(moved))
    assert a.upsampler_sha256 and a.upsampler_sha256 == b.upsampler_sha256
    assert a.spec_hash() == b.spec_hash()
    assert job(upsampler=str(other)).spec_hash() != a.spec_hash()


def test_a_window_plan_needs_a_long_video_method_for_more_than_one_window() -> None:
    from reelflow.motion.backends import BackendConstraints
    from reelflow.motion.windows import plan_windows

    windows = BackendConstraints(frame_step=8, frame_offset=1, max_frames=41).chunks(160)
    assert windows == [41, 41, 41, 41]  # 20 s at 8 fps on a 5 s window
    plan = plan_windows(windows, native_fps=8, output_frames=480, long_video="chained-windows")
    assert plan.method == "chained-windows" and plan.generated_frames == 41 + 3 * 40
    assert "fallback: chained windows" in plan.describe()
    with pytest.raises(ValueError, match="no long-video method"):
        plan_windows(windows, native_fps=8, output_frames=480, long_video="none")
    single = plan_windows([41], native_fps=8, output_frames=120, long_video="none")
    assert single.describe() == "1 window of 41 frames -> 120 frames"

"""Wan 2.2 (two-expert A14B, TI2V-5B), Wan VACE and SkyReels-V2 diffusion forcing as video
backends: tiny pipelines built from configs (a UMT5 text encoder and tokenizer made in code),
saved with `save_pretrained` and loaded through `from_pretrained(..., local_files_only=True)`,
like a real checkpoint.

Through the flow (`test-wan`: the run's backend is a tiny A14B, a shot may choose the tiny
VACE or the tiny SkyReels-V2): a shot with a library character renders on VACE conditioned on
the character's references, whose version is in the clip's key; changing the reference
re-renders exactly that shot. A shot longer than SkyReels-V2's window renders in one call by
diffusion forcing, which its lineage and the clips review name. TI2V-5B is rendered through its
backend's render function.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from reelflow.storyboard import Character
from tests.support.deployed import task_states

STORYBOARD = """
title: Wan 2.2 · VACE
project: wan-film
width: 128
height: 72
fps: 8
style: {model: some-real-model, base_seed: 5}
characters:
  - name: lan
shots:
  - {id: rider, description: a rider on a snowy road, duration: 1.0, characters: [lan],
     video: {backend: wan-vace}}
  - {id: street, description: an empty city street, duration: 1.0,
     transition_in: crossfade, transition_duration: 0.25}
  - {id: road, description: a long snowy road, duration: 1.5, video: {backend: skyreels-v2-df}}
"""

LAN = Character(name="lan", description="a rider in a red jacket", trigger_words=["lanrider"])


def png(stripe: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (48, 48), (200, 30, 30))
    ImageDraw.Draw(image).rectangle((18, 0, 28, 48), fill=stripe)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _request(tmp_path: Path, **fields: Any) -> Any:
    from reelflow.motion.backends import ClipRequest

    still = tmp_path / "still.png"
    Image.new("RGB", (96, 54), (40, 90, 200)).save(still)
    return ClipRequest(images=[still], duration=1.0, fps=12, width=96, height=54, **fields)


TINY_OPTIONS = {"steps": 2, "max_frames": 9, "native_fps": 8, "max_area": 64 * 32,
                "preset": "ultrafast"}  # fmt: skip


@pytest.mark.slow
def test_tiny_wan22_ti2v_renders_first_frame_clips_and_refuses_a_last_frame(
    tmp_path: Path,
) -> None:
    from reelflow.motion.backends import get_backend
    from reelflow.motion.tiny_wan import build_tiny_wan22_ti2v

    model = build_tiny_wan22_ti2v(tmp_path / "tiny-wan22-ti2v")
    backend = get_backend("wan22-ti2v", model=str(model), **TINY_OPTIONS)
    pipe = backend.pipe
    assert type(pipe).__name__ == "WanImageToVideoPipeline"
    assert pipe.config.expand_timesteps and pipe.transformer_2 is None
    assert pipe.vae.config.z_dim == 48 and pipe.vae_scale_factor_spatial == 16
    assert type(pipe.text_encoder).__name__ == "UMT5EncoderModel"
    assert (backend.constraints.size_multiple, backend.constraints.frame_step) == (32, 4)
    info = backend.render_shot(_request(tmp_path), tmp_path / "clip.mp4")
    assert (info.width, info.height, info.frame_count) == (96, 54, 12)
    assert backend.last_chunks == [9] and backend.last_generation_size == (64, 32)
    assert backend.identity["expand_timesteps"] == "true" and backend.identity["vae_z_dim"] == "48"
    still = tmp_path / "still.png"
    with pytest.raises(ValueError, match="conditions on the first frame only"):
        backend.render_transition(still, still, _request(tmp_path), tmp_path / "t.mp4")
    # the other shape's backend refuses this checkpoint when it loads, naming what it lacks
    with pytest.raises(ValueError, match="not a Wan 2.2 A14B checkpoint .*transformer_2"):
        _ = get_backend("wan22", model=str(model), **TINY_OPTIONS).constraints


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", ["wan22-ti2v", "wan-vace", "skyreels-v2-df"])
def test_a_wan_clip_whose_decode_fails_resumes_from_its_kept_latents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend_name: str
) -> None:
    """Wan keeps each window's latents before its chunked decode (as LTX does): a decode that
    fails is retried from them without sampling again, and its picture is the one a single
    whole decode makes (VACE: the reference's latent frame left out, not decoded; SkyReels-V2:
    the diffusion-forcing pipeline's latents, at the same VAE scale)."""
    from reelflow.media.frames import iter_frames
    from reelflow.motion import tiny_wan
    from reelflow.motion.backends import get_backend
    from reelflow.motion.latents import FAIL_DECODE_ENV, FolderLatents

    build = {"wan22-ti2v": tiny_wan.build_tiny_wan22_ti2v, "wan-vace": tiny_wan.build_tiny_wan_vace,
             "skyreels-v2-df": tiny_wan.build_tiny_skyreels_df}[backend_name]  # fmt: skip
    model = build(tmp_path / backend_name)
    options = {"overlap_history": 5} if backend_name == "skyreels-v2-df" else {}
    backend = get_backend(backend_name, model=str(model), decode_chunk=1, **TINY_OPTIONS,
                          **options)  # fmt: skip
    assert backend.saves_latents and backend.decode_settings is not None
    ref = tmp_path / "ref.png"
    Image.new("RGB", (48, 48), "red").save(ref)
    refs = [ref] if backend_name == "wan-vace" else []
    backend.decode_chunk = 1000  # the whole window's latents in one decode, as the pipeline
    whole = backend.render_shot(_request(tmp_path, reference_images=refs), tmp_path / "w.mp4")
    backend.decode_chunk = 1
    sampled = backend.sampled_windows
    kept = FolderLatents(tmp_path / "latents")
    monkeypatch.setenv(FAIL_DECODE_ENV, str(tmp_path / "failed-once"))
    with pytest.raises(RuntimeError, match="injected"):
        backend.render_shot(_request(tmp_path, reference_images=refs), tmp_path / "clip.mp4",
                            latents=kept)  # fmt: skip
    assert backend.sampled_windows == sampled + 1 and kept.load(0) is not None
    assert kept.load(0)["video"].shape[2] == 3  # 9 frames: 3 latent frames, no reference's
    info = backend.render_shot(_request(tmp_path, reference_images=refs), tmp_path / "clip.mp4",
                               latents=kept)  # fmt: skip
    assert backend.sampled_windows == sampled + 1  # decoded from the kept latents
    assert info.frame_count == whole.frame_count == 12
    a = np.stack(list(iter_frames(tmp_path / "w.mp4"))).astype(float)
    b = np.stack(list(iter_frames(tmp_path / "clip.mp4"))).astype(float)
    assert _psnr(a, b) > 30  # decoded a latent frame at a time = decoded whole

    # the kept latents are at the VAE's scale, without the reference: the pipeline's own
    # decode of the same call (output_type="np") gives the same window
    from reelflow.motion.common import cover_fit, load_rgb
    from reelflow.motion.diffusion import decode_wan_video

    request = _request(tmp_path, reference_images=refs)
    if refs:  # VACE reads the render's references from its thread-local
        backend._local.references = backend.references(request)
    cond = Image.fromarray(cover_fit(load_rgb(request.image), 64, 32))
    own = backend._call(cond, None, num_frames=9, width=64, height=32, request=request,
                        seed=request.seed)  # fmt: skip
    ours = np.stack(list(decode_wan_video(backend, kept.load(0)["video"])))
    assert ours.shape == own.shape == (9, 32, 64, 3)
    assert _psnr(own.astype(float), ours.astype(float)) > 30


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / max(float(np.mean((a - b) ** 2)), 1e-9)))


@pytest.mark.slow
def test_vace_conditions_on_the_reference_images(tmp_path: Path) -> None:
    """The reference images reach the pipeline: with one, another clip (same seed; the tiny
    model's random weights tell a reference from none, hardly one colour from another);
    the control video keeps the still (and a transition's last frame), masked black."""
    from reelflow.media.frames import read_frames
    from reelflow.motion.backends import get_backend
    from reelflow.motion.tiny_wan import build_tiny_wan_vace
    from reelflow.motion.vace import control_video

    first, last = Image.new("RGB", (64, 32), "blue"), Image.new("RGB", (64, 32), "white")
    frames, masks = control_video(first, last, 9)
    assert frames[0] is first and np.asarray(frames[-1]).min() == 255
    assert [int(np.asarray(m).max()) for m in masks] == [0, *[255] * 7, 0]
    assert [int(np.asarray(m).max()) for m in control_video(first, None, 5)[1]] == [0, *[255] * 4]

    model = build_tiny_wan_vace(tmp_path / "tiny-wan-vace")
    backend = get_backend("wan-vace", model=str(model), **TINY_OPTIONS)
    assert type(backend.pipe.transformer).__name__ == "WanVACETransformer3DModel"
    ref = tmp_path / "ref.png"
    Image.new("RGB", (48, 48), "red").save(ref)
    clips = {}
    for name, refs in (("plain", []), ("referenced", [ref])):
        request = _request(tmp_path, reference_images=refs)
        out = tmp_path / f"{name}.mp4"
        assert backend.render_shot(request, out).frame_count == 12
        clips[name] = np.stack(list(read_frames(out))).astype(np.int16)
    assert np.abs(clips["plain"] - clips["referenced"]).mean() > 0.5


def test_a_vace_clip_key_carries_its_characters_version_and_references() -> None:
    """Only a shot on a reference-image backend carries them; other shots' keys are as before."""
    from reelflow.render.jobs import clip_job
    from reelflow.render.profiles import get_profile
    from reelflow.storyboard import parse_storyboard

    profile = get_profile("test-wan")
    base = parse_storyboard(STORYBOARD)

    def cast(version: str, refs: list[str]) -> Any:
        return base.model_copy(
            update={"characters": [LAN.model_copy(update={"version": version,
                                                          "reference_images": refs})]}
        )  # fmt: skip

    one, two = cast("aaa", ["characters/lan/front.png"]), cast("bbb", ["characters/lan/front.png"])
    rider = [clip_job(b, b.shot("rider"), profile, still_key="s.png") for b in (one, two)]
    assert rider[0].backend == "wan-vace"
    assert rider[0].backend_options["model"] == "@models/tiny-wan-vace"
    assert rider[0].characters == {"lan": "aaa"}
    assert rider[0].reference_keys == ["characters/lan/front.png"]
    assert rider[0].output_key() != rider[1].output_key()  # same still, another reference
    street = [clip_job(b, b.shot("street"), profile, still_key="s.png") for b in (one, two)]
    assert street[0].output_key() == street[1].output_key()
    assert street[0].backend == "wan22" and "characters" not in street[0].model_dump()
    # a storyboard may keep a VACE shot off its references
    off = parse_storyboard(STORYBOARD.replace("{backend: wan-vace}",
                                              "{backend: wan-vace, reference_images: false}"))
    off = off.model_copy(update={"characters": one.characters})
    assert clip_job(off, off.shot("rider"), profile, still_key="s.png").reference_keys == []


@pytest.mark.slow
def test_vace_shot_rerenders_alone_when_its_characters_reference_changes(
    film_env: dict[str, str], s3_settings: S3Settings, tmp_path: Path
) -> None:
    from flows.produce_video import produce_video
    from reelflow.media.probe import probe
    from reelflow.render import weights
    from reelflow.render.jobs import resolve_model_path
    from reelflow.render.review import made_with_line
    from reelflow.storyboard.characters import add_character

    store = ArtifactStore(s3_settings.with_bucket("film"))
    store.ensure_bucket()
    add_character(store, LAN, {"front.png": png((0, 0, 0))})

    def render() -> tuple[dict[str, Any], dict[str, list[str]]]:
        state = produce_video(storyboard=STORYBOARD, approval="auto", profile="test-wan",
                              exports=[], return_state=True)  # fmt: skip
        assert state.is_completed(), state.message
        manifest = json.loads(store.get_bytes(state.result().manifest_key))
        return manifest, task_states(state.state_details.flow_run_id)

    first, _ = render()
    rider, street = (store.lineage(first["clips"][s]) for s in ("rider", "street"))
    # lineage names the backend, its pipeline and the model's content hash
    assert rider.extra["backend"] == "wan-vace"
    assert rider.extra["backend_identity"]["pipeline"] == "WanVACEPipeline"
    assert rider.spec["model_sha256"] == weights.try_content_hash(
        resolve_model_path("@models/tiny-wan-vace")
    )
    assert rider.spec["characters"] == {"lan": first["characters"]["lan"]}
    assert rider.spec["reference_keys"] == ["characters/lan/front.png"]
    assert "characters/lan/front.png" in rider.parents
    assert street.extra["backend"] == "wan22"
    assert street.extra["backend_identity"]["experts"] == "2"
    assert street.spec["model_sha256"] == weights.try_content_hash(
        resolve_model_path("@models/tiny-wan22")
    )
    assert "reference_keys" not in street.spec
    # 1.5 s at 8 fps on a 9-frame window: one call of 13 frames, diffusion forcing through two
    # windows (the second re-reads 2 latent frames of history), retimed to the shot's 12 frames
    road = store.lineage(first["clips"]["road"])
    assert road.extra["backend"] == "skyreels-v2-df"
    assert road.extra["backend_identity"]["pipeline"] == (
        "SkyReelsV2DiffusionForcingImageToVideoPipeline")
    assert road.extra["window_plan"] == {
        "method": "diffusion-forcing", "windows": [9, 12], "overlap": 8, "native_fps": 8.0,
        "output_frames": 12, "generated_frames": 13,
        "parameters": {"base_num_frames": 9, "overlap_history": 5, "ar_step": 0,
                       "addnoise_condition": 20.0},
    }  # fmt: skip
    assert road.extra["frames"] == 12 and len(road.extra["latents"]) == 1  # one call, kept
    assert probe(store.get_file(first["clips"]["road"], tmp_path / "road.mp4")).frame_count == 12
    assert ("2 windows, diffusion forcing in one call (9+12 frames, seams of 8; base_num_frames "
            "9, overlap_history 5, ar_step 0, addnoise_condition 20) -> 13 generated, "
            "12 frames") in made_with_line(road.extra)  # the clips review's cell

    add_character(store, LAN, {"front.png": png((255, 255, 255))})
    try:
        second, states = render()
    finally:
        add_character(store, LAN, {"front.png": png((0, 0, 0))})
    assert states["clip-rider"] == ["Completed"]
    assert states["clip-street"] == ["Cached"] and states["clip-road"] == ["Cached"]
    assert second["clips"]["street"] == first["clips"]["street"]
    assert second["clips"]["rider"] != first["clips"]["rider"]
    again = store.lineage(second["clips"]["rider"])
    assert again.spec["characters"]["lan"] == second["characters"]["lan"]
    assert second["characters"]["lan"] != first["characters"]["lan"]


def test_a_video_model_block_gives_further_backends_their_models() -> None:
    from blocks.models import VideoModel
    from reelflow.render.jobs.builders import backend_video_options
    from reelflow.render.profiles import get_profile

    block = VideoModel(backend="wan22", model="/models/wan22-a14b", options={"steps": 40},
                       models={"wan-vace": {"model": "/models/vace", "steps": 30}})  # fmt: skip
    profile = block.apply(get_profile("full"))
    assert backend_video_options(profile, "wan22") == {"steps": 40, "model": "/models/wan22-a14b"}
    assert backend_video_options(profile, "wan-vace") == {"model": "/models/vace", "steps": 30}
    assert backend_video_options(profile, "ltx") == {}
    sky = VideoModel(backend="wan22", models={"skyreels-v2-df": {"model": "/models/df"}})
    assert backend_video_options(sky.apply(get_profile("full")), "skyreels-v2-df") == {
        "model": "/models/df"}
    from reelflow.motion.capabilities import ANIMATIC, declare

    declare(ANIMATIC.model_copy(update={"name": "unwired-block-test", "available": False,
            "unavailable_reason": "declared but not wired in this version"}))  # fmt: skip
    with pytest.raises(ValueError, match="backend unwired-block-test is declared but not wired"):
        VideoModel(backend="wan22", models={"unwired-block-test": {"model": "x"}})
    with pytest.raises(ValueError, match="models.wan-vace names no model"):
        VideoModel(backend="wan22", models={"wan-vace": {"steps": 2}})

"""Video backends say what they can do, and a storyboard that asks one for more is refused at
`validate` and at the flow's first step (check_inputs), in one line naming the shot and the
backend, before a still is paid for."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from cli.main import main
from reelflow.errors import InputError
from reelflow.motion.backends import (
    AnimaticBackend,
    BackendCapabilities,
    BackendNotWired,
    available_backends,
    capabilities,
    get_backend,
    register_backend,
)
from reelflow.motion.capabilities import ANIMATIC, declare
from reelflow.render.inputs import check_inputs
from reelflow.render.jobs import clip_job
from reelflow.render.profiles import get_profile
from reelflow.storyboard import parse_storyboard

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "su7-winter-spring.yaml"
TRANSITION = "s05-winter-to-spring"  # the seed's first+last-frame shot

BOARD = """
title: "Backends test"
project: backends-film
width: 160
height: 96
fps: 8
style: {palette: ["#f5c518"], base_seed: 3{style_video}}
shots:
  - {id: a, description: a yellow car on a snowy road, duration: 3.0{video_a}}
  - {id: b, description: the car at the summit, duration: 1.0}
  - {id: c, description: winter melts into spring, duration: 1.0,
     first_frame: {shot: a, frame: last}, last_frame: {shot: b, frame: first}{video_c}}
"""


def board(style_video: str = "", video_a: str = "", video_c: str = "") -> str:
    def field(text: str) -> str:
        return f", video: {text}" if text else ""

    return (
        BOARD.replace("{style_video}", field(style_video))
        .replace("{video_a}", field(video_a))
        .replace("{video_c}", field(video_c))
    )


def validate(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "board.yaml"
    path.write_text(text, encoding="utf-8")
    code = main(["validate", str(path)])
    out = capsys.readouterr()
    return code, (out.out + out.err).strip()


def seed_with(tmp_path: Path, style_video: str) -> Path:
    """The seed film with a `video:` choice in its style (loras and paths as they are)."""
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "  variants: 3\n", f"  variants: 3\n  video: {style_video}\n", 1
    )
    path = tmp_path / "seed.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module", autouse=True)
def test_backends() -> None:
    """Backends only a test needs: one short window and no long-video method, one that
    takes exact sizes only, one declared but not wired (none exists among the real ones)."""
    register_backend("one-window-test", AnimaticBackend, ANIMATIC.model_copy(
        update={"max_frames": 16, "long_video": "none"}))  # fmt: skip
    register_backend("exact-size-test", AnimaticBackend, ANIMATIC.model_copy(
        update={"size_multiple": 64, "snaps_size": False}))  # fmt: skip
    declare(ANIMATIC.model_copy(update={"name": "unwired-test", "available": False,
            "unavailable_reason": "declared but not wired in this version"}))  # fmt: skip


def test_every_backend_declares_what_it_can_do() -> None:
    names = available_backends()
    assert {"animatic", "ltx", "wan", "ltx2", "wan22", "wan22-ti2v", "wan-vace",
            "skyreels-v2-df"} <= set(names)  # fmt: skip
    for name in names:
        declared = capabilities(name)
        assert isinstance(declared, BackendCapabilities) and declared.name == name
        assert declared.available or "not wired" in declared.unavailable_reason
    assert get_backend("animatic").capabilities is capabilities("animatic")
    with pytest.raises(BackendNotWired, match="backend unwired-test is declared but not wired"):
        get_backend("unwired-test")
    # motion/ltx2.py, wan22.py, vace.py, skyreels.py
    for wired in ("ltx2", "wan22", "wan22-ti2v", "wan-vace", "skyreels-v2-df"):
        assert capabilities(wired).available, wired
    with pytest.raises(TypeError, match="must declare its capabilities"):
        register_backend("silent-test", object)  # type: ignore[arg-type]
    # what each model is asked for exists in the pinned diffusers
    ltx2, vace, ti2v = capabilities("ltx2"), capabilities("wan-vace"), capabilities("wan22-ti2v")
    assert ltx2.audio and ltx2.keyframes and ltx2.last_frame and ltx2.size_multiple == 32
    assert vace.reference_images and not ltx2.reference_images
    assert not ti2v.last_frame and ti2v.size_multiple == 32
    sky = capabilities("skyreels-v2-df")  # the model's own long-video method, first frame only
    assert sky.long_video == "diffusion-forcing" and not sky.last_frame


def test_declarations_follow_the_pinned_diffusers() -> None:
    """Pipeline classes, the arguments each declared ability needs, and default window lengths
    and frame rates, read from diffusers' own signatures (no model is built)."""
    import diffusers

    def params(name: str) -> dict[str, inspect.Parameter]:
        caps = capabilities(name)
        assert caps.pipeline is not None
        return dict(inspect.signature(getattr(diffusers, caps.pipeline).__call__).parameters)

    ltx2 = params("ltx2")
    assert {"conditions", "frame_rate"} <= set(ltx2)
    assert ltx2["frame_rate"].default == capabilities("ltx2").native_fps
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

    assert "index" in inspect.signature(LTX2VideoCondition).parameters  # any latent index
    wan = params("wan22")
    assert "last_image" in wan and wan["num_frames"].default == capabilities("wan22").max_frames
    vace = params("wan-vace")
    assert "reference_images" in vace
    assert vace["num_frames"].default == capabilities("wan-vace").max_frames
    sky = params("skyreels-v2-df")
    assert sky["base_num_frames"].default == capabilities("skyreels-v2-df").max_frames
    assert sky["fps"].default == capabilities("skyreels-v2-df").native_fps
    assert {"overlap_history", "ar_step", "addnoise_condition", "causal_block_size"} <= set(sky)
    from reelflow.motion import diffusion, skyreels, vace, wan22

    wired = {"ltx": diffusion.LTXBackend, "wan": diffusion.WanBackend, "wan22": wan22.Wan22Backend,
             "wan22-ti2v": wan22.Wan22TI2VBackend, "wan-vace": vace.WanVACEBackend,
             "skyreels-v2-df": skyreels.SkyReelsDFBackend}  # fmt: skip
    for name, cls in wired.items():  # the wired ones' render code uses the declared window
        assert cls.capabilities is capabilities(name)
        assert cls.default_max_frames == capabilities(name).max_frames
        assert cls.default_fps == capabilities(name).native_fps


@pytest.mark.parametrize(
    ("choices", "line", "count"),
    [
        ({"video_c": "{backend: wan22-ti2v}"},
         "shot c: backend wan22-ti2v cannot end a clip on a given frame (this shot is a "
         "first+last-frame transition); backends that can: animatic, ", 1),
        ({"style_video": "{backend: one-window-test}"},
         "shot a: backend one-window-test renders at most 2 s in one window (16 frames) and has "
         "no long-video method; this shot is 3 s", 1),
        ({"video_a": "{backend: exact-size-test}"},
         "shot a: backend exact-size-test needs a size that is a multiple of 64 and does not "
         "snap it; the film is 160x96", 1),
        ({"style_video": "{backend: ltx, reference_images: true}"},
         "shot a: backend ltx takes no reference images (video.reference_images); backends "
         "that do: wan-vace", 3),  # the same problem on a, b and c
        ({"video_a": "{backend: wan-vace, reference_images: true}"},
         "shot a: backend wan-vace is asked for reference images (video.reference_images) but "
         "the shot names no character; they are its characters' library references", 1),
        ({"video_a": "{backend: wan, audio: true}"},
         "shot a: backend wan takes no audio (video.audio); backends that do: ltx2", 1),
        ({"video_c": "{backend: skyreels-v2-df}"},
         "shot c: backend skyreels-v2-df cannot end a clip on a given frame (this shot is a "
         "first+last-frame transition); backends that can: animatic, ", 1),
        ({"video_c": "{backend: unwired-test}"},
         "shot c: backend unwired-test is declared but not wired in this version", 1),
    ],
)
def test_validate_refuses_what_a_backend_cannot_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], choices: dict[str, str], line: str,
    count: int,
) -> None:
    code, out = validate(tmp_path, board(**choices), capsys)
    assert code == 2
    # every problem is listed (issue 22): the first is the one asked about, and each line
    # names the file and a shot
    lines = out.splitlines()
    assert len(lines) == count, lines
    assert lines[0].startswith(f"{tmp_path / 'board.yaml'}: {line}")
    assert all(ln.startswith(f"{tmp_path / 'board.yaml'}: shot ") for ln in lines)


def test_validate_passes_what_the_backends_can_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the style's LTX, a shot of 3 s on a 2 s window (one-window-test) refused above, here the
    # transition on ltx (last frame), shot a on wan (chained windows), 160x96 snapped to 16/32
    ok = board(style_video="{backend: ltx}", video_a="{backend: wan}")
    code, out = validate(tmp_path, ok, capsys)
    assert code == 0, out
    assert out.endswith(": ok (3 shots, 5 s, 160x96@8)")
    # a shot's own choice overrides the style's: the transition leaves the unwired backend
    mixed = board(style_video="{backend: unwired-test}", video_c="{backend: animatic}")
    lines = validate(tmp_path, mixed, capsys)[1].splitlines()  # a, b still on the unwired one
    assert [ln.split(": ", 1)[1] for ln in lines] == [
        f"shot {s}: backend unwired-test is declared but not wired in this version"
        for s in "ab"
    ]
    wan = board(style_video="{backend: wan22-ti2v}", video_c="{backend: wan-vace}")
    code, out = validate(tmp_path, wan, capsys)  # TI2V: first frames; VACE: the transition
    assert code == 0, out
    code, out = validate(tmp_path, board(video_c="{backend: animatic}"), capsys)
    assert code == 0, out


def test_a_20_s_shot_passes_on_a_backend_with_the_models_own_long_video_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SkyReels-V2 diffusion forcing takes a 20 s shot on its 97-frame (~4 s) window in one
    call; a backend with a short window and no long-video method refuses it; `plan` says how."""
    long = board(video_a="{backend: skyreels-v2-df}").replace("duration: 3.0", "duration: 20.0")
    code, out = validate(tmp_path, long, capsys)
    assert code == 0, out
    assert out.endswith(": ok (3 shots, 22 s, 160x96@8)")
    refused = board(video_a="{backend: one-window-test}").replace("duration: 3.0",
                                                                  "duration: 20.0")  # fmt: skip
    code, out = validate(tmp_path, refused, capsys)
    assert code == 2 and "shot a: backend one-window-test renders at most 2 s" in out
    path = tmp_path / "long.yaml"
    path.write_text(long, encoding="utf-8")
    assert main(["plan", str(path), "--profile", "previz"]) == 0
    assert ("clip: backend skyreels-v2-df (SkyReelsV2DiffusionForcingImageToVideoPipeline), "
            "one call, diffusion forcing over windows of 97 frames") in capsys.readouterr().out


def test_unknown_backend_is_a_file_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = validate(tmp_path, board(video_a="{backend: sora}"), capsys)
    assert code == 2
    assert "board.yaml:9 shots[0].video.backend: unknown video backend 'sora'" in out


def test_the_seed_transition_is_refused_on_a_first_frame_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The seed film's winter -> spring shot needs a last frame: validate and the flow's first
    step say so naming the shot, before anything renders."""
    path = seed_with(tmp_path, "{backend: wan22-ti2v}")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()  # the one problem (TI2V is wired: the other shots are fine)
    assert len(lines) == 1, lines
    assert f"shot {TRANSITION}: backend wan22-ti2v cannot end a clip on a given frame" in lines[0]
    with pytest.raises(InputError, match=f"^shot {TRANSITION}: backend wan22-ti2v cannot end"):
        check_inputs(str(path), profile="demo")


def test_check_inputs_refuses_a_generative_backend_without_a_model(tmp_path: Path) -> None:
    path = tmp_path / "board.yaml"
    path.write_text(board(video_a="{backend: ltx}"), encoding="utf-8")
    with pytest.raises(InputError) as caught:
        check_inputs(str(path), profile="previz")
    assert str(caught.value) == (
        "shot a: backend ltx needs a model and the run has none for it (the run's video backend "
        "is animatic); name one in a video-model block"
    )
    # a video-model block may give the model: the flow checks again once it is applied
    assert check_inputs(str(path), profile="previz", video_model="ltx-block").storyboard
    path.write_text(board(video_c="{backend: unwired-test}"), encoding="utf-8")
    with pytest.raises(InputError, match="^shot c: backend unwired-test is declared but not"):
        check_inputs(str(path), profile="previz")
    # the profile (a video-model block's `models`) may give a further backend its model
    path.write_text(board(video_c="{backend: wan-vace}"), encoding="utf-8")
    with pytest.raises(InputError, match="^shot c: backend wan-vace needs a model and the run"):
        check_inputs(str(path), profile="test-ltx2")
    assert check_inputs(str(path), profile="test-wan").storyboard  # test-wan has tiny-wan-vace


def test_a_shot_renders_on_its_own_backend() -> None:
    """The run's model goes with the run's backend; a shot that chooses another backend gets
    that backend and none of the run's options, and only its clip key changes."""
    profile = get_profile("test").model_copy(
        update={"video_backend": "ltx", "video_model": "tiny-ltx", "video_options": {"steps": 2}}
    )
    plain = parse_storyboard(board())
    chosen = parse_storyboard(board(video_a="{backend: animatic}"))
    a_run, a_own = clip_job(plain, plain.shot("a"), profile), clip_job(chosen, chosen.shot("a"),
                                                                        profile)  # fmt: skip
    assert a_run.backend == "ltx" and a_run.backend_options["steps"] == 2
    assert a_own.backend == "animatic" and a_own.backend_options == {}
    assert a_own.output_key() != a_run.output_key()
    b_run, b_own = clip_job(plain, plain.shot("b"), profile), clip_job(chosen, chosen.shot("b"),
                                                                        profile)  # fmt: skip
    assert b_run.output_key() == b_own.output_key()


def test_plan_says_how_each_clip_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "board.yaml"
    path.write_text(board(video_a="{backend: ltx}").replace("width: 160", "width: 176"),
                    encoding="utf-8")  # fmt: skip
    assert main(["plan", str(path), "--profile", "previz"]) == 0
    out = capsys.readouterr().out
    assert ("    clip: backend ltx (LTXConditionPipeline), generated at 192x96 (multiples of 32), "
            "resized to 176x96, moves at 24 fps, retimed to 8\n") in out
    assert "    clip: backend animatic\n" in out


def test_the_clips_review_names_each_shots_backend(store, tmp_path: Path) -> None:  # noqa: ANN001
    """With backends chosen per shot, the clips gate's table says which one made each clip."""
    from PIL import Image

    from reelflow.motion.backends import ClipRequest
    from reelflow.render.review import clips_markdown

    still = tmp_path / "still.png"
    Image.new("RGB", (64, 36), (240, 200, 30)).save(still)
    request = ClipRequest(images=[still], duration=0.5, fps=8, width=64, height=36)
    clip = AnimaticBackend(preset="ultrafast").render_shot(request, tmp_path / "a.mp4").path
    keys = {shot: store.put_file(f"projects/review-film/shots/{shot}/clips/x.mp4", clip,
                                 "video/mp4") for shot in ("a", "c")}  # fmt: skip
    table = clips_markdown(store, "review-film", keys, {}, {}, {"a": "animatic", "c": "ltx"},
                           lambda key, alt: alt)  # fmt: skip
    rows = [row for row in table.splitlines() if row.startswith("| **")]
    assert rows[0].endswith("| animatic |") and rows[1].endswith("| ltx |")

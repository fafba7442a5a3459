"""Previz that tells the story: a first+last-frame shot morphs from the shot it continues to a
panel of its own (its card, the restyle it asks for), a panel drawn again shows the reviewer's
notes, nothing crosses the card's text and none of it is cut, and `reelflow regenerate` redraws
a panel (no weights needed) and says it is bit-identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli.main as cli
from reelflow.imaging import previz
from reelflow.media.ffmpeg import run as ffmpeg_run
from reelflow.media.frames import iter_frames
from reelflow.render.clips import render_clip
from reelflow.render.common import load_image
from reelflow.render.images import render_variants, take_frame
from reelflow.render.jobs import clip_job, frame_job, frame_refs, image_job
from reelflow.render.profiles import get_profile
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import Storyboard, load_storyboard

SEED = Path(__file__).resolve().parents[1] / "examples" / "su7-winter-spring.yaml"
PALETTE = ["#f5c518", "#e8f1f8", "#7fa7c9", "#f2a7c3", "#6fae5a"]
EN = (
    "low-angle close-up of the rear of the car, rear lights and spoiler, steam rising from the "
    "exhaust, tracks in fresh snow"
)
ZH = "低角度特写：车尾、尾灯与扰流板，排气管冒着白汽，新雪上留下车辙，远处山峰泛着金色"
SIZES = [(320, 180, EN), (180, 320, ZH)]
MOVES = ["push-in", "pull-out", "pan-left", "tracking", "tilt-up", "orbit", "static"]


def _args(movement: str, width: int, height: int, description: str, **extra) -> dict:
    return {
        "shot": "s08-airplane-banner",
        "description": description,
        "size": "full",
        "angle": "low",
        "movement": movement,
        "width": width,
        "height": height,
        "seed": 11,
        **extra,
    }


def _draw(monkeypatch: pytest.MonkeyPatch, args: dict, leave_out: str | None = None) -> np.ndarray:
    """The panel as int16 pixels, drawn with one of its steps (`_camera_move`, `_subject`)
    left out when asked: the difference is what that step draws."""
    with monkeypatch.context() as m:
        if leave_out:
            m.setattr(previz, leave_out, lambda *a, **k: None)
        return np.asarray(previz.draw_panel(palette=PALETTE, **args), np.int16)


def _inside(box: tuple[float, ...], outer: tuple[float, ...]) -> bool:
    return box[0] >= outer[0] and box[1] >= outer[1] and box[2] <= outer[2] and box[3] <= outer[3]


def _mask_in_box(mask: np.ndarray, box: tuple[float, ...]) -> int:
    x0, y0, x1, y1 = (int(v) for v in (box[0], box[1], np.ceil(box[2]), np.ceil(box[3])))
    return int(mask[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1].sum())


# -- nothing crosses the card ------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "description"), SIZES, ids=["16x9-en", "9x16-zh"])
@pytest.mark.parametrize("movement", MOVES)
def test_no_arrow_or_image_pixel_crosses_the_card(
    monkeypatch: pytest.MonkeyPatch, movement: str, width: int, height: int, description: str
) -> None:
    reference = Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (90, 60, 3), dtype=np.uint8)
    )
    args = _args(movement, width, height, description)
    layout = previz.layout_panel(**args, reference_aspect=reference.width / reference.height)
    card = layout.card.box
    # geometry: every mark (line, head, width) and the reference's box end below the card
    for mark in layout.marks:
        box = previz.mark_box(mark, layout.line_width)
        assert box[1] > card[3], f"{movement}: mark {mark[0]} {box} reaches into card {card}"
    assert layout.subject[1] > card[3] and _inside(layout.subject, (0, 0, width, height))
    # pixels: what the arrows draw, and what the reference image draws, never inside the card
    arrows = np.abs(_draw(monkeypatch, args) - _draw(monkeypatch, args, "_camera_move")).sum(2) > 0
    assert arrows.sum() > 20, "no camera mark drawn"
    assert _mask_in_box(arrows, card) == 0, f"{movement}: an arrow crosses the card"
    with_ref = {**args, "reference": reference}
    image = np.abs(_draw(monkeypatch, with_ref) - _draw(monkeypatch, with_ref, "_subject")).sum(2)
    assert (image > 0).sum() > 100, "no reference image drawn"
    assert _mask_in_box(image > 0, card) == 0, f"{movement}: the reference image crosses the card"


@pytest.mark.parametrize(
    ("width", "height", "repeat"), [(720, 1280, 3), (1280, 720, 3), (180, 320, 1)]
)
def test_narrow_cards_keep_the_framing_and_the_text_whole(
    width: int, height: int, repeat: int
) -> None:
    """The narrowest card (9:16, a tracking shot's safe area) with a long Chinese description,
    a restyle and notes: every word of the label whole, the text set smaller, nothing cut."""
    framing = ("extreme-close-up", "eye-level", "tracking-right")
    long_zh = ZH * repeat
    layout = previz.layout_panel(
        shot="s08-airplane-banner",
        description=long_zh,
        size=framing[0],
        angle=framing[1],
        movement=framing[2],
        width=width,
        height=height,
        seed=3,
        notes=["镜头再推近一些，车身要完整"],
        restyle="spring scene, green grass, pink blossoms, warm sunlight, no snow",
    )
    card = layout.card
    text = {role: " ".join(line.text for line in card.lines if line.role == role)
            for role in ("label", "description", "restyle", "notes")}  # fmt: skip
    assert all("…" not in line.text for line in card.lines), [line.text for line in card.lines]
    for word in ("s08-airplane-banner", *framing):
        assert word in text["label"], f"{width}x{height}: {word!r} not whole in {text['label']!r}"
    assert text["description"].replace(" ", "") == long_zh
    assert "warm sunlight, no snow" in text["restyle"]
    assert "车身要完整" in text["notes"].replace(" ", "")
    for line in card.lines:  # every glyph inside the card, the card inside the frame
        assert _inside(line.box(), card.box), (line.text, line.box(), card.box)
    assert _inside(card.box, (0, 0, width, height))


# -- a redrawn panel shows the notes -----------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "description"), SIZES, ids=["16x9-en", "9x16-zh"])
def test_a_redrawn_panel_shows_the_reviewer_notes(
    monkeypatch: pytest.MonkeyPatch, width: int, height: int, description: str
) -> None:
    notes = ["the car should fill the frame", "warmer light"]
    first = _args("pan-left", width, height, description)
    again = {**first, "seed": first["seed"] + 1000, "take": 1, "notes": notes}
    layout = previz.layout_panel(**again)
    notes_box = layout.card.text_box("notes")
    assert notes_box is not None and _inside(notes_box, layout.card.box)
    shown = " ".join(line.text for line in layout.card.lines if line.role == "notes")
    assert shown.startswith("notes: ") and all(n in shown for n in notes)
    assert any("take 2" in line.text for line in layout.card.lines if line.role == "label")
    # a visibly different panel: the subject on the other side, the notes drawn on the card
    before = previz.layout_panel(**first)
    assert abs(layout.center[0] - before.center[0]) > 0.15 * width
    a, b = _draw(monkeypatch, first), _draw(monkeypatch, again)
    assert (np.abs(a - b).sum(2) > 30).mean() > 0.05
    silent = _draw(monkeypatch, {**again, "notes": []})
    noted = np.abs(b - silent).sum(2) > 0
    assert _mask_in_box(noted, notes_box) > 20, "the notes text is not drawn"


def test_the_image_job_of_a_rejected_shot_carries_its_notes() -> None:
    board = load_storyboard(SEED)
    shot = board.shots[2]
    profile = get_profile("previz")
    first = image_job(board, shot, profile)
    again = image_job(board, shot, profile, notes=["lower the horizon"], round_=1)
    assert first.panel is not None and again.panel is not None
    assert again.panel.notes == ["lower the horizon"] and again.panel.take == 1
    assert first.panel.notes == [] and first.panel.take == 0
    assert again.variant_keys() != first.variant_keys()


# -- the seed film's winter -> spring shot -----------------------------------------------------


def _vertical_chinese(board: Storyboard) -> Storyboard:
    zh = {
        "s04-summit": "跑车抵达山口之巅，车头朝向镜头，山谷依旧一片白",
        "s05-winter-to-spring": "同一山顶，冬雪消融，春天到来，青草与花朵取代白雪",
    }
    shots = [s.model_copy(update={"description": zh.get(s.id, s.description)})
             for s in board.shots]  # fmt: skip
    return board.model_copy(update={"aspect": "9:16", "width": 720, "height": 1280,
                                    "shots": shots})  # fmt: skip


def _freezes(clip: Path, seconds: float) -> list[str]:
    stderr = ffmpeg_run(
        ["-i", clip, "-vf", f"freezedetect=d={seconds}", "-f", "null", "-"],
        what="freezedetect",
        loglevel="info",
    )
    return [line for line in stderr.splitlines() if "freeze_start" in line]


@pytest.mark.parametrize("vertical", [False, True], ids=["16x9-en", "9x16-zh"])
def test_seed_transition_morphs_from_the_summit_to_its_own_panel(
    store: ArtifactStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    vertical: bool,
) -> None:
    board = load_storyboard(SEED)
    if vertical:
        board = _vertical_chinese(board)
    profile = get_profile("previz")
    size = {"width": 180, "height": 320} if vertical else {"width": 320, "height": 180}
    small = {**size, "fps": 12}
    summit, shot = board.shot("s04-summit"), board.shot("s05-winter-to-spring")
    still_job = image_job(board, summit, profile).model_copy(update=size)
    still = render_variants(store, still_job)[0]
    summit_clip = render_clip(
        store, clip_job(board, summit, profile, still_key=still).model_copy(update=small)
    )
    frames, jobs = {}, {}
    for field, ref in frame_refs(shot):
        jobs[field] = frame_job(board, shot, ref, profile, summit_clip)
        frames[field] = take_frame(store, jobs[field])
    # the first frame continues the summit as it is; the restyled last frame is the shot's own
    # panel: its card (id, description, the restyle's words), the summit's composition
    assert jobs["first_frame_key"].panel is None
    own = jobs["last_frame_key"].panel
    assert own is not None and own.restyle == shot.last_frame.restyle
    assert own.composition_of == "s04-summit" and own.description == shot.description
    assert jobs["last_frame_key"].loras == []  # previz reads no LoRA file
    width, height = size["width"], size["height"]
    expected = previz.draw_panel(
        shot=shot.id, description=shot.description, size=own.size, angle=own.angle,
        movement=own.movement, palette=own.palette, width=width, height=height,
        seed=jobs["last_frame_key"].seed, restyle=own.restyle, composition_of="s04-summit",
    )  # fmt: skip
    own_panel = np.asarray(load_image(store, frames["last_frame_key"]).convert("RGB"))
    assert np.array_equal(own_panel, np.asarray(expected))
    card = previz.layout_panel(
        shot=shot.id, description=shot.description, size=own.size, angle=own.angle,
        movement=own.movement, width=width, height=height, seed=jobs["last_frame_key"].seed,
        restyle=own.restyle, composition_of="s04-summit",
    ).card  # fmt: skip
    assert shot.id in card.lines[0].text
    assert any(line.role == "restyle" for line in card.lines)

    key = render_clip(store, clip_job(board, shot, profile, **frames).model_copy(update=small))
    clip = store.get_file(key, tmp_path / "s05.mp4")
    # the acceptance (freezedetect's defaults: 2 s), and no half second held either
    assert _freezes(clip, 2) == [] and _freezes(clip, 0.5) == []
    video = [f.astype(np.int16) for f in iter_frames(clip)]
    start = np.asarray(load_image(store, frames["first_frame_key"]).convert("RGB"), np.int16)
    end = own_panel.astype(np.int16)
    from_start = [float(np.abs(f - start).mean()) for f in video]
    to_end = [float(np.abs(f - end).mean()) for f in video]
    assert from_start[0] < 3 and to_end[-1] < 3  # from the summit's panel to its own
    assert to_end[0] > 15 and from_start[-1] > 15  # ... which look different
    thirds = [0, len(video) // 3, 2 * len(video) // 3, len(video) - 1]
    assert all(from_start[a] < from_start[b] for a, b in zip(thirds, thirds[1:], strict=False))
    assert all(to_end[a] > to_end[b] for a, b in zip(thirds, thirds[1:], strict=False))
    Image.fromarray(video[len(video) // 2].astype(np.uint8)).save(tmp_path / "middle.png")

    # `reelflow regenerate` redraws a panel (no weights needed) and says it is bit-identical
    settings = store.settings
    monkeypatch.setenv("REELFLOW_S3_ENDPOINT", settings.endpoint)
    monkeypatch.setenv("REELFLOW_S3_ACCESS_KEY", settings.access_key)
    monkeypatch.setenv("REELFLOW_S3_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("REELFLOW_S3_BUCKET", settings.bucket)
    for panel_key in (still, frames["last_frame_key"]):
        capsys.readouterr()
        assert cli.main(["regenerate", panel_key]) == 0
        out = capsys.readouterr().out
        assert "bit-identical" in out and "previz panel" in out, out

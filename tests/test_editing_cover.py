"""Cover: frame scoring, best-frame choice, title rendering with the pip-installed CJK font."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from reelflow.editing.cover import (
    best_frame,
    crop_to_aspect,
    make_cover,
    render_title,
    score_frame,
)
from reelflow.editing.fonts import DEFAULT_FONT_FAMILY, FontNotFoundError, cjk_font_path
from reelflow.media.frames import iter_frames
from reelflow.store.artifacts import ArtifactStore
from tests.support.clips import lavfi_clip

W, H = 320, 180


@pytest.fixture(scope="module")
def mixed_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s: blurred for the first second, sharp for the second, black for the third."""
    return lavfi_clip(
        tmp_path_factory.mktemp("cover") / "mixed.mp4", "testsrc2", 3, f"{W}x{H}", 24,
        vf="boxblur=8:enable='lt(t,1)',drawbox=c=black:t=fill:enable='gte(t,2)'",
    )


def test_font_is_pip_installed_cjk_font() -> None:
    from PIL import ImageFont

    path = cjk_font_path()
    assert "site-packages" in str(path) or "dist-packages" in str(path)
    font = ImageFont.truetype(str(path), 32)
    assert font.getname()[0] == DEFAULT_FONT_FAMILY
    # a real CJK glyph differs from the .notdef box that a Latin-only font would draw
    assert font.getmask("冬").getbbox() != font.getmask("\uffff").getbbox()


def test_missing_font_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FontNotFoundError):
        cjk_font_path(tmp_path / "none.otf")


def test_score_prefers_sharp_exposed_frames() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.integers(40, 215, (H, W, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 6)
    black = np.zeros_like(sharp)
    assert score_frame(sharp).sharpness > score_frame(blurred).sharpness
    assert score_frame(sharp).total > score_frame(blurred).total > score_frame(black).total
    blown = np.full_like(sharp, 255)
    assert score_frame(blown).exposure == 0.0


def test_composition_rewards_subject_on_a_third() -> None:
    def square_at(cx: float) -> np.ndarray:
        img = np.full((H, W, 3), 90, np.uint8)
        x, y = int(cx * W), int(H / 3)
        img[y - 15 : y + 15, x - 15 : x + 15] = 230
        return img

    assert score_frame(square_at(1 / 3)).composition > score_frame(square_at(0.5)).composition


def test_best_frame_picks_the_sharp_second(mixed_clip: Path) -> None:
    frame = best_frame(mixed_clip, samples=9)
    assert frame.shape == (H, W, 3)
    frames = list(f.copy() for f in iter_frames(mixed_clip))
    # the chosen frame is one of the sharp ones (24..47), not blurred or black
    diffs = [np.abs(frame.astype(int) - f.astype(int)).mean() for f in frames]
    assert 24 <= int(np.argmin(diffs)) < 48


def test_render_title_draws_text_in_the_requested_band() -> None:
    base = np.full((H, W, 3), 100, np.uint8)
    for position, band in (("bottom", slice(H // 2, H)), ("top", slice(0, H // 2))):
        out = np.asarray(
            render_title(base, "冬山到春城", "Winter to Spring", position=position, size_ratio=0.15)
        )
        changed = np.abs(out.astype(int) - base.astype(int)).sum(axis=2) > 30
        other = slice(0, H // 2) if band.start else slice(H // 2, H)
        assert changed[band].sum() > 200  # title pixels where asked
        assert changed[other].sum() < changed[band].sum() / 10
        assert (out[band] > 240).all(axis=2).sum() > 50  # white glyphs
        assert (out[band] < 30).all(axis=2).sum() > 50  # black stroke


def test_render_title_scales_with_size_ratio() -> None:
    base = Image.new("RGB", (W, H), (100, 100, 100))

    def ink(ratio: float) -> int:
        out = np.asarray(render_title(base, "春城", size_ratio=ratio, shadow=0))
        return int((np.abs(out.astype(int) - 100).sum(axis=2) > 30).sum())

    assert ink(0.16) > 2.5 * ink(0.08)


def test_crop_to_aspect_follows_the_subject() -> None:
    img = np.full((H, W, 3), 50, np.uint8)
    img[60:120, 250:300] = 255  # subject on the right
    crop = crop_to_aspect(img, (9, 16))
    assert crop.shape[1] == round(H * 9 / 16) and crop.shape[0] == H
    assert (crop == 255).all(axis=2).sum() == 60 * 50  # the whole subject is inside


def test_make_cover_writes_titled_png(mixed_clip: Path, tmp_path: Path) -> None:
    raw = best_frame(mixed_clip, samples=9)
    out = make_cover(
        mixed_clip, tmp_path / "cover.png", "冬山到春城", "Winter to Spring", samples=9
    )
    cover = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert cover.shape == raw.shape
    diff = np.abs(cover - raw.astype(int)).sum(axis=2) > 60
    assert diff.sum() > 300  # the title is drawn
    # ...placed by edge density, never in the caption band (bottom quarter of a 16:9 frame)
    assert diff[round(H * 0.76) :].sum() < 20
    vertical = make_cover(
        mixed_clip, tmp_path / "v.png", "春城", aspect=(9, 16), size=(270, 480), samples=5
    )
    assert Image.open(vertical).size == (270, 480)


def test_auto_title_goes_to_the_emptiest_band_outside_the_caption_band() -> None:
    """A busy subject (a 'face') in the upper half, flat sky lower down: the title avoids the
    subject, and never enters the bottom band where captions and the app's interface sit."""
    from reelflow.editing.caption_layout import SAFE_AREAS
    from reelflow.editing.cover import title_band

    rng = np.random.default_rng(1)
    w, h = 360, 640
    img = np.full((h, w, 3), 120, np.uint8)
    img[60:330] = rng.integers(0, 255, (270, w, 3), dtype=np.uint8)  # subject: top half
    img[520:] = rng.integers(0, 255, (120, w, 3), dtype=np.uint8)  # busy foreground
    y = title_band(img, 60)
    assert 330 <= y and y + 60 <= h * (1 - SAFE_AREAS["9:16"].bottom)
    out = np.asarray(render_title(img, "冬去春来", "From Winter to Spring", position="auto"))
    changed = np.abs(out.astype(int) - img.astype(int)).sum(axis=2) > 30
    rows = np.flatnonzero(changed.any(axis=1))
    assert rows[0] >= 300 and rows[-1] <= h * (1 - SAFE_AREAS["9:16"].bottom)


def test_cover_of_a_vertical_version_is_a_vertical_crop_of_the_master(
    store: ArtifactStore, tmp_path: Path, mixed_clip: Path
) -> None:
    from reelflow.render.edit import make_cover as make_cover_job
    from reelflow.render.jobs import CoverJob
    from reelflow.store.artifacts import Lineage

    assert isinstance(store, ArtifactStore)
    master = store.put_file("projects/p/edits/m.mp4", mixed_clip, "video/mp4", Lineage(kind="edit"))
    job = CoverJob(
        project="p", source_key=master, title="冬去春来", width=W, height=H, aspect="9:16"
    )
    key = make_cover_job(store, job)
    cover = Image.open(store.get_file(key, tmp_path / "c.png"))
    assert abs(cover.width / cover.height - 9 / 16) < 0.02 and cover.height == H
    assert store.lineage(key).parents == [master]

"""Deliverables a platform accepts: each version at its platform preset's size (a 9:16 of a
landscape film is 1080x1920, reframed then upscaled), its captions sized for that frame (Chinese
glyphs at least 4.5% of the width), English lines balanced, the cover at the same size with its
title where the frame is calmest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reelflow.editing.caption_layout import layout_caption
from reelflow.editing.cover import render_title, saliency_map
from reelflow.editing.fonts import cjk_font_path
from reelflow.media.ffmpeg import run
from reelflow.media.frames import iter_frames
from reelflow.media.probe import probe
from reelflow.render.edit import assemble_film, export_version, make_cover
from reelflow.render.jobs import (
    CaptionCue,
    CoverJob,
    EditClip,
    EditJob,
    ExportSpec,
    VersionJob,
    parse_export,
)
from reelflow.render.profiles import get_profile
from reelflow.store.artifacts import ArtifactStore

W, H, FPS = 160, 90, 8
ZH = "雪山之巅，一抹亮黄"  # the seed film's captions
EN = "A flash of yellow on the snowy peaks"


def test_each_platform_preset_has_its_delivery_size() -> None:
    film = (1280, 720)
    assert parse_export("9:16").delivery_size(film) == (1080, 1920)  # not the 404x720 crop
    assert parse_export("16:9").delivery_size(film) == (1920, 1080)
    assert parse_export("1:1").delivery_size(film) == (1080, 1080)
    assert parse_export("9:16,size=720p").delivery_size(film) == (720, 1280)
    assert parse_export("9:16,size=720x1280").delivery_size(film) == (720, 1280)
    assert parse_export("16:9").delivery_size((3840, 2160)) == (3840, 2160)  # never scaled down
    # the test profile delivers at the reframed film's size: the suite encodes small pictures
    assert parse_export("9:16").delivery_size(film, get_profile("test").delivery) is None
    assert get_profile("demo").delivery == get_profile("full").delivery == "platform"
    assert get_profile("previz").delivery == "film"  # a quick preview; size= still asks


def _glyph_rows(frame: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) row of each run of rows holding white glyph pixels (the fill, not the
    black outline), top to bottom: one run per caption line."""
    rows = np.flatnonzero((frame > 200).all(axis=2).any(axis=1))
    assert rows.size, "no caption drawn"
    runs, start = [], rows[0]
    for before, row in zip(rows[:-1], rows[1:], strict=True):
        if row - before > 3:
            runs.append((int(start), int(before)))
            start = row
    runs.append((int(start), int(rows[-1])))
    return runs


@pytest.fixture
def two_shot_film(store: ArtifactStore, tmp_path: Path) -> str:
    """A tiny 16:9 two-shot film of flat grey (so a caption's glyphs are measurable)."""
    clips = []
    for i, grey in enumerate(["0x606060", "0x505050"]):
        path = tmp_path / f"c{i}.mp4"
        run(
            ["-f", "lavfi", "-i", f"color=c={grey}:size={W}x{H}:rate={FPS}:duration=1",
             "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
            what=f"make clip {i}",
        )  # fmt: skip
        key = store.put_file(f"projects/p/clips/c{i}.mp4", path, "video/mp4", {"kind": "clip"})
        clips.append(EditClip(shot=f"s{i}", key=key, duration=1.0, transition="cut",
                              transition_duration=0.0, trim_waste=False))  # fmt: skip
    return assemble_film(store, EditJob(project="p", clips=clips, width=W, height=H, fps=FPS,
                                        crf=23))  # fmt: skip


def test_vertical_version_and_cover_are_1080x1920_with_readable_chinese(
    store: ArtifactStore, two_shot_film: str, tmp_path: Path
) -> None:
    export = ExportSpec(aspect="9:16")
    size = export.delivery_size((W, H))
    captions = [CaptionCue(duration=1.0, zh=ZH), CaptionCue(duration=1.0, zh="春天")]
    job = VersionJob(project="p", master_key=two_shot_film, source_aspect="16:9", export=export,
                     captions=captions, title="冬去春来", size=size)  # fmt: skip
    film = store.get_file(export_version(store, job), tmp_path / "tall.mp4")
    info = probe(film)
    assert (info.width, info.height) == (1080, 1920) and info.frame_count == 2 * FPS
    frame = next(iter(iter_frames(film)))
    (line,) = _glyph_rows(frame)  # nine characters: one line
    assert line[1] - line[0] + 1 >= 0.045 * info.width, line  # was 3.6% at 404x720
    cover_job = CoverJob(project="p", source_key=two_shot_film, title="冬去春来", width=W,
                         height=H, aspect="9:16", size=size)  # fmt: skip
    cover = Image.open(store.get_file(make_cover(store, cover_job), tmp_path / "cover.png"))
    assert cover.size == (1080, 1920)


@pytest.mark.parametrize("size", [(1080, 1920), (720, 1280), (1920, 1080), (1080, 1080)])
def test_english_captions_never_leave_a_word_alone(size: tuple[int, int]) -> None:
    texts = [EN, "Cutting through the crisp winter air", "We walk to the park together to see "
             "the cherry blossoms, then have a coffee and stroll home"]  # fmt: skip
    for text in texts:
        for languages in ([ZH, text], [text]):
            layout = layout_caption(languages, *size, font_path=cjk_font_path())
            english = layout.blocks[-1].lines
            assert " ".join(english) == text  # nothing lost
            if len(english) > 1:
                assert all(len(line.split()) >= 2 for line in english), english
    lines = layout_caption([EN], 1080, 1920, font_path=cjk_font_path()).blocks[0].lines
    assert len(lines) == 2 and min(len(line) for line in lines) >= 0.6 * max(map(len, lines))


@pytest.mark.parametrize(("w", "h", "subject"), [
    (1080, 1920, (slice(420, 1000), slice(150, 800))),  # upper middle, off-centre
    (1080, 1920, (slice(250, 700), slice(300, 1000))),  # near the top
    (1920, 1080, (slice(100, 600), slice(200, 900))),  # 16:9, upper left
    (1920, 1080, (slice(0, 920), slice(700, 1300))),  # 16:9, a centred column: title aside
])  # fmt: skip
def test_cover_title_avoids_the_subject(w: int, h: int, subject: tuple[slice, slice]) -> None:
    """A textured subject on a calm gradient sky: the title is drawn where the frame is calm,
    not on the subject, and stays out of the caption band."""
    from reelflow.editing.caption_layout import preset_for

    rng = np.random.default_rng(3)
    sky = np.linspace(150, 210, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(sky, (h, w, 3)).astype(np.uint8).copy()
    rows, cols = subject
    img[rows, cols] = rng.integers(0, 255, img[rows, cols].shape, dtype=np.uint8)
    sal = saliency_map(img)
    sy, sx = sal.shape[0] / h, sal.shape[1] / w
    inside = sal[int(rows.start * sy) : int(rows.stop * sy),
                 int(cols.start * sx) : int(cols.stop * sx)]  # fmt: skip
    assert inside.mean() > 3 * sal.mean() / 2  # the map finds the subject
    out = np.asarray(render_title(img, "冬去春来", "From Winter to Spring", position="auto"))
    changed = np.abs(out.astype(int) - img.astype(int)).sum(axis=2) > 40
    assert changed.sum() > 2000  # the title is drawn
    assert changed[rows, cols].sum() == 0  # ...and not on the subject
    ys = np.flatnonzero(changed.any(axis=1))
    assert ys[-1] <= h * (1 - preset_for(w, h).bottom)


def test_an_asked_size_is_kept_at_every_profile() -> None:
    """`size=1080p` is what the creator asked, also at a profile that delivers at the film's
    own size; asking the film's size and the preset's at such a profile is one line, refused."""
    from reelflow.errors import InputError
    from reelflow.render.inputs import check_parameters

    film = (1280, 720)
    asked = parse_export("9:16,size=1080p")
    assert asked.delivery_size(film, "film") == (1080, 1920) and asked.name == "9x16-h264"
    with pytest.raises(InputError, match="asked at the film's size and at 1080x1920"):
        check_parameters(profile="previz", exports=["9:16", "9:16,size=1080p"])
    _, exports = check_parameters(profile="demo", exports=["9:16", "9:16,size=1080p"])
    assert {e.name for e in exports or []} == {"9x16-h264"}  # one version at the platform size

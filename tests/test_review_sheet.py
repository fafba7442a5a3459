"""Contact sheets a director reads at a glance: the round, shot id and description above the
row, each take's number and scores under it (as the form's dropdown names them), a rejected
shot's replaced take beside its new ones; Chinese drawn in the CJK font. Checked without OCR:
by the sheet's geometry and by where ink is drawn."""

from __future__ import annotations

import numpy as np
from PIL import Image

from reelflow.render.decisions import GateSpec, score_label, variant_label
from reelflow.render.review import variant_sheet

THUMB, PAD = 64, 4


def _takes(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (THUMB, THUMB), (60 * i + 40, 120, 200)) for i in range(count)]


def _ink(sheet: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(sheet.convert("L").crop(box)) < 128


def test_sheet_has_a_title_row_and_labels_numbered_as_the_form() -> None:
    spec = GateSpec(gate="images", shots={"a": 2}, identity={"a": [0.81, 0.42]},
                    quality={"a": [0.54, 0.61]})
    labels = [variant_label(spec, "a", i) for i in range(2)]
    assert labels == ["#0 · identity 0.81 · quality 0.54", "#1 · identity 0.42 · quality 0.61"]
    assert labels[1] == score_label(1, [0.81, 0.42], [0.54, 0.61])
    title = "round 2 · a: 雪中的黄色跑车"
    titled = variant_sheet(_takes(2), labels, title, thumb=THUMB, padding=PAD)
    bare = variant_sheet(_takes(2), ["#0", "#1"], "", thumb=THUMB, padding=PAD)
    title_h = max(14, THUMB // 14) * 2
    # the title band is drawn (ink above the images), and empty without a title
    assert _ink(titled, (0, 0, titled.width, title_h)).sum() > 50
    assert _ink(bare, (0, 0, bare.width, title_h)).sum() == 0
    # three label lines (number, identity, quality) make the sheet taller than one
    assert titled.height - bare.height == 2 * max(14, THUMB // 14)
    def labels_ink(sheet: Image.Image) -> int:
        return int(_ink(sheet, (0, title_h + THUMB + 2, sheet.width, sheet.height)).sum())

    assert labels_ink(titled) > labels_ink(bare) > 0
    # Chinese is drawn as glyphs in the CJK font, not as identical .notdef boxes
    tofu = variant_sheet(_takes(2), labels, "round 2 · a: \uffff\uffff\uffff\uffff\uffff",
                         thumb=THUMB, padding=PAD)
    other = variant_sheet(_takes(2), labels, "round 2 · a: 赛博朋克夜色", thumb=THUMB, padding=PAD)
    band = (0, 0, titled.width, title_h)
    assert not np.array_equal(_ink(titled, band), _ink(tofu, band))
    assert not np.array_equal(_ink(titled, band), _ink(other, band))


def test_a_rejected_shots_replaced_take_is_framed_beside_its_new_takes() -> None:
    labels = ["#0 · quality 0.50", "#1 · quality 0.70"]
    before = (Image.new("RGB", (THUMB, THUMB), "black"), "replaced · #1 · round 1")
    sheet = variant_sheet(_takes(2), labels, "round 2 · b", before, thumb=THUMB, padding=PAD)
    plain = variant_sheet(_takes(2), labels, "round 2 · b", thumb=THUMB, padding=PAD)
    assert sheet.width - plain.width == THUMB + PAD + 2 * PAD  # one more cell, set apart
    title_h = max(14, THUMB // 14) * 2
    first = np.asarray(sheet.crop((PAD, title_h, PAD + THUMB, title_h + THUMB)).convert("L"))
    assert first.mean() < 10  # the replaced take comes first
    frame = np.asarray(sheet.convert("RGB"))[title_h - 2, PAD + THUMB // 2]
    assert tuple(frame) == (0x88, 0x88, 0x88)  # and is framed

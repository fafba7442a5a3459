"""Contact sheets (style boards, variant sheets) set Chinese labels in the CJK font, not tofu."""

from __future__ import annotations

import numpy as np
from PIL import Image

from reelflow.imaging.checks import contact_sheet


def _label_ink(label: str) -> np.ndarray:
    sheet = contact_sheet([Image.new("RGB", (64, 64), "grey")], [label], thumb=64, padding=4)
    return np.asarray(sheet.convert("L"))[64 + 4 :] < 128


def test_chinese_style_names_are_drawn_as_glyphs() -> None:
    chinese, tofu = _label_ink("水墨"), _label_ink("\uffff\uffff")
    assert chinese.sum() > 20
    assert not np.array_equal(chinese, tofu)  # two real ideographs, not two .notdef boxes
    assert not np.array_equal(_label_ink("水墨"), _label_ink("赛博"))

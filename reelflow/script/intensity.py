"""How intense a shot reads from its words alone: the base of the emotion curve (calibration)
and of camera proposals (camera), which both build on it."""

from __future__ import annotations

import re

from reelflow.storyboard import Shot, Storyboard

_HIGH = re.compile(
    r"\b(sudden\w*|explo\w+|crash\w*|storm\w*|scream\w*|rac(e|es|ing)|speed\w*|chase\w*|"
    r"fight\w*|burst\w*|climax|reveal\w*|transform\w*|melt\w*|bloom\w*|blossom\w*|erupt\w*|"
    r"dramatic\w*|lightning|roar\w*|tears|shock\w*|collid\w*|panic\w*|triumph\w*)\b"
)
_MID = re.compile(
    r"\b(fast|rush\w*|leap\w*|jump\w*|rises?|rising|soar\w*|glow\w*|shin\w+|joy\w*|cheer\w*|"
    r"celebrat\w*|welcom\w*|announc\w*|giant|huge|towering|finally|arriv\w*|carv\w*|spray)\b"
)
_CALM = re.compile(
    r"\b(quiet\w*|calm\w*|still|gentl\w*|slow\w*|peaceful\w*|distance|fading|rest\w*|"
    r"sleep\w*|soft\w*|empty|lonely|silen\w*|parked|waits?)\b"
)
def clamp(value: float) -> int:
    return max(0, min(10, round(value)))


def text_intensity(shot: Shot) -> int:
    """Intensity the words alone suggest: the base for camera proposals (which change camera)."""
    text = " ".join([shot.description, shot.prompt or "", shot.motion_prompt or ""]).lower()
    high = min(2, len(_HIGH.findall(text)))
    mid = min(2, len(_MID.findall(text)))
    calm = min(2, len(_CALM.findall(text)))
    return clamp(4 + 2 * high + mid - calm)


def text_intensity_curve(storyboard: Storyboard) -> list[int]:
    return [text_intensity(shot) for shot in storyboard.shots]

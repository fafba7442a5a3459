"""The storyboard: the contract (models), loading with file:line errors, prompts, characters."""

from reelflow.storyboard.loading import (
    json_schema,
    load_storyboard,
    parse_storyboard,
    save_storyboard,
)
from reelflow.storyboard.model import (
    Angle,
    Camera,
    Caption,
    Character,
    FrameRef,
    HexColor,
    InpaintRegion,
    LoraRef,
    Movement,
    Music,
    Outpaint,
    Reference,
    Sampler,
    Shot,
    ShotSize,
    Slug,
    Sound,
    Storyboard,
    StyleLock,
    Transition,
    VideoChoice,
    VoiceOver,
)
from reelflow.storyboard.problems import StoryboardError

__all__ = [
    "Angle", "Camera", "Caption", "Character", "FrameRef", "HexColor", "InpaintRegion",
    "LoraRef", "Movement", "Music", "Outpaint", "Reference", "Sampler", "Shot", "ShotSize",
    "Slug", "Sound", "Storyboard", "StoryboardError", "StyleLock", "Transition", "VideoChoice",
    "VoiceOver", "json_schema", "load_storyboard", "parse_storyboard", "save_storyboard",
]  # fmt: skip

"""Camera language: propose it where the storyboard leaves it out, and flag jarring sequences.

The storyboard's camera vocabulary is fixed (`ShotSize`, `Angle`, `Movement`) precisely so that
rules can reason about it: sizes are ordered from extreme-wide to extreme-close-up, so "a jump of
five steps" and "the same framing twice" are computable. A director gets the LLM's suggestions when
an endpoint is configured, and sensible rules otherwise; explicit choices in the storyboard are
never overwritten.
"""

from __future__ import annotations

import json
import logging
import re
from typing import get_args

from pydantic import BaseModel, Field

from reelflow.llm import ChatClient, system, user
from reelflow.script.intensity import text_intensity_curve
from reelflow.storyboard import Angle, Camera, Movement, Shot, ShotSize, Storyboard

log = logging.getLogger("reelflow.script.camera")

SIZES: tuple[str, ...] = get_args(ShotSize)
"""Shot sizes from widest to tightest; index distance is the size of a cut's jump."""
ANGLES: tuple[str, ...] = get_args(Angle)
MOVEMENTS: tuple[str, ...] = get_args(Movement)

DEFAULT_MAX_SIZE_JUMP = 4
"""close-up to wide (4 steps) is ordinary cutting; extreme-wide to close-up (5) is not."""
_OPPOSITE = {"pan-left": "pan-right", "pan-right": "pan-left", "tilt-up": "tilt-down",
             "tilt-down": "tilt-up", "push-in": "pull-out", "pull-out": "push-in"}


def size_index(size: str) -> int:
    return SIZES.index(size)


def _continuous(previous: Shot, shot: Shot) -> bool:
    """A shot that starts from the previous one's frame is a deliberate match/morph, not a cut."""
    return shot.first_frame is not None and shot.first_frame.shot == previous.id


def check_sequence(
    storyboard: Storyboard, *, max_size_jump: int = DEFAULT_MAX_SIZE_JUMP
) -> list[str]:
    """Problems between neighbouring shots, one line each, naming both shots.

    - same size and angle back to back on a hard cut: reads as a jump cut;
    - a size jump of more than `max_size_jump` steps (e.g. extreme-wide to close-up): the eye
      loses the subject unless an intermediate size or a transition bridges it;
    - a camera move reversing the previous one across a cut (pan-left then pan-right).
    Shots that start from the previous shot's frame (`first_frame`) are exempt from the first
    two: they are continuous by design.
    """
    problems: list[str] = []
    for previous, shot in zip(storyboard.shots, storyboard.shots[1:], strict=False):
        a, b = previous.camera, shot.camera
        pair = f"{previous.id} -> {shot.id}"
        continuous = _continuous(previous, shot)
        if a.size == b.size and a.angle == b.angle and shot.transition_in == "cut" \
                and not continuous:
            problems.append(
                f"{pair}: same size ({a.size}) and angle ({a.angle}) on a hard cut reads as a "
                "jump cut; change the size by at least one step or the angle"
            )
        jump = abs(size_index(a.size) - size_index(b.size))
        if jump > max_size_jump and not continuous:
            bridge = "" if shot.transition_in == "cut" else f" even with a {shot.transition_in}"
            problems.append(
                f"{pair}: size jumps {jump} steps ({a.size} to {b.size}){bridge}; insert an "
                "intermediate size or reframe one of them"
            )
        if _OPPOSITE.get(a.movement) == b.movement and shot.transition_in == "cut":
            problems.append(
                f"{pair}: camera move reverses ({a.movement} then {b.movement}) across a cut; "
                "keep the direction or put a static shot between"
            )
    return problems


# -- proposals --------------------------------------------------------------------------------

_KEYWORDS: list[tuple[str, str, str]] = [
    # (regex, field, value): first match per field wins, so order matters
    (r"\b(aerial|drone|bird'?s[- ]eye)\b", "angle", "aerial"),
    (r"\b(overhead|top[- ]down|from above)\b", "angle", "overhead"),
    (r"\b(low[- ]angle|towering|looming|heroic|looks? up)\b", "angle", "low"),
    (r"\b(high[- ]angle|looks? down on|from the summit|below)\b", "angle", "high"),
    (r"\b(uneasy|disorient\w*|dizzy|drunk|chaos|chaotic)\b", "angle", "dutch"),
    (r"\b(extreme close[- ]up|macro|eyes?|droplets?|texture)\b", "size", "extreme-close-up"),
    (r"\b(close[- ]up|detail|face|hands?|tears?|expression)\b", "size", "close-up"),
    (r"\b(aerial|landscape|vista|panorama\w*|skyline|establishing|valley|range)\b",
     "size", "extreme-wide"),
    (r"\b(wide|street|road|avenue|field|crowd|city)\b", "size", "wide"),
    (r"\b(full[- ]body|standing|whole (car|figure|body))\b", "size", "full"),
    (r"\b(talks?|conversation|sits?|waist)\b", "size", "medium"),
    (r"\b(towering|tower|skyline rises|rises?|climbs?)\b", "movement", "tilt-up"),
    (r"\b(reveals?|fading into the distance|drives? away|walks? away|leaves?)\b",
     "movement", "pull-out"),
    (r"\b(approach\w*|realis\w*|realiz\w*|notices?|focus\w*)\b", "movement", "push-in"),
    (r"\b(around|circles?|orbit\w*|360)\b", "movement", "orbit"),
    (r"\b(drives?|driving|speeding|runs?|running|walks?|walking|chase\w*|follows?)\b",
     "movement", "tracking"),
    (r"\b(still|quiet|waits?|parked|calm)\b", "movement", "static"),
]


def keyword_camera(text: str) -> dict[str, str]:
    """Camera fields the description names or strongly implies ("aerial view" -> aerial)."""
    found: dict[str, str] = {}
    lowered = text.lower()
    for pattern, field, value in _KEYWORDS:
        if field not in found and re.search(pattern, lowered):
            found[field] = value
    return found


_SIZE_BY_INTENSITY = ("wide", "wide", "full", "full", "medium", "medium", "medium-close-up",
                      "medium-close-up", "close-up", "close-up", "extreme-close-up")


def _size_for(intensity: int) -> str:
    """Calm shots sit wide, intense ones close: 0-10 onto wide..extreme-close-up."""
    return _SIZE_BY_INTENSITY[max(0, min(10, intensity))]


def _missing(shot: Shot) -> set[str]:
    """Camera fields the storyboard did not set explicitly (pydantic tracks what was given)."""
    if "camera" not in shot.model_fields_set:
        return {"size", "angle", "movement"}
    return {"size", "angle", "movement"} - shot.camera.model_fields_set


def rule_camera(storyboard: Storyboard, curve: list[int] | None = None) -> dict[str, Camera]:
    """A full camera proposal per shot from keywords, story position and the emotion curve."""
    if curve is None:
        curve = text_intensity_curve(storyboard)
    n = len(storyboard.shots)
    peak = max(range(n), key=lambda i: (curve[i], -i))
    proposals: dict[str, Camera] = {}
    for i, shot in enumerate(storyboard.shots):
        hints = keyword_camera(" ".join([shot.description, shot.scene]))
        size = hints.get("size")
        if size is None:
            size = "extreme-wide" if i == 0 and n > 1 else _size_for(curve[i])
        angle = hints.get("angle") or ("low" if i == peak and n > 2 else "eye-level")
        movement = hints.get("movement")
        if movement is None:
            rise = curve[i] - (curve[i - 1] if i else curve[i])
            if i == n - 1 and n > 1:
                movement = "pull-out"
            elif i == 0:
                movement = "push-in"
            elif rise >= 2 or i == peak:
                movement = "push-in"
            elif rise <= -2:
                movement = "pull-out"
            elif curve[i] >= 6:
                movement = "tracking"
            else:
                movement = "static"
        proposals[shot.id] = Camera(size=size, angle=angle, movement=movement)
    return proposals


class CameraChoice(BaseModel):
    """The LLM's camera for one shot; the vocabularies are the storyboard's own."""

    id: str
    size: ShotSize
    angle: Angle
    movement: Movement
    reason: str = Field("", description="one short sentence, for the review")


class CameraPlan(BaseModel):
    shots: list[CameraChoice]


CAMERA_PROMPT = """You are a director of photography planning camera language for an AI short film.
For every shot listed, choose size, angle and movement from the allowed values so that the cut
sequence reads well: vary sizes, avoid the same size and angle twice in a row on a hard cut, avoid
jumps of more than four sizes, build towards the emotional turn and resolve at the end.
Shots marked with fixed fields must keep those values. Answer with JSON only."""


def _llm_camera(storyboard: Storyboard, client: ChatClient) -> dict[str, Camera]:
    ids = [shot.id for shot in storyboard.shots]
    listing = [
        {"id": s.id, "description": s.description, "scene": s.scene, "duration": s.duration,
         "fixed": {f: getattr(s.camera, f) for f in ("size", "angle", "movement")
                   if f not in _missing(s)}}
        for s in storyboard.shots
    ]

    def covers_every_shot(plan: CameraPlan) -> None:
        got = [c.id for c in plan.shots]
        if sorted(got) != sorted(ids):
            raise ValueError(f"give exactly one entry per shot id {ids}; got {got}")

    plan, _ = client.structured(
        [system(CAMERA_PROMPT),
         user(f"Film: {storyboard.title}\nLogline: {storyboard.logline}\n"
              f"Shots:\n{json.dumps(listing, ensure_ascii=False, indent=1)}")],
        CameraPlan,
        check=covers_every_shot,
    )
    for choice in plan.shots:
        if choice.reason:
            log.info("camera %s: %s", choice.id, choice.reason)
    return {c.id: Camera(size=c.size, angle=c.angle, movement=c.movement) for c in plan.shots}


def _separate(previous: Camera, camera: Camera, free: set[str]) -> Camera:
    """Nudge a proposal off the previous shot's size+angle, using only fields we may change."""
    if (camera.size, camera.angle) != (previous.size, previous.angle):
        return camera
    if "size" in free:
        i = size_index(camera.size)
        step = 1 if i < len(SIZES) - 1 else -1
        return camera.model_copy(update={"size": SIZES[i + step]})
    if "angle" in free:
        return camera.model_copy(
            update={"angle": "low" if camera.angle == "eye-level" else "eye-level"}
        )
    return camera


def propose_camera(storyboard: Storyboard, client: ChatClient | None = None) -> Storyboard:
    """A copy of `storyboard` with every camera field it left unset filled in.

    Explicitly set fields are kept even when the LLM suggests otherwise; the director decides.
    """
    if not any(_missing(shot) for shot in storyboard.shots):
        return storyboard.model_copy(deep=True)
    proposals = _llm_camera(storyboard, client) if client is not None \
        else rule_camera(storyboard)
    shots: list[Shot] = []
    previous: Camera | None = None
    for shot in storyboard.shots:
        free = _missing(shot)
        if free:
            proposal = proposals[shot.id]
            values = {f: getattr(proposal if f in free else shot.camera, f)
                      for f in ("size", "angle", "movement")}
            camera = Camera(**values)
            if previous is not None and shot.transition_in == "cut":
                camera = _separate(previous, camera, free)
            shot = shot.model_copy(update={"camera": camera}, deep=True)
            shot.__pydantic_fields_set__.add("camera")
        shots.append(shot)
        previous = shot.camera
    return storyboard.model_copy(update={"shots": shots}, deep=True)

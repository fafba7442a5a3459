"""From a brief to storyboard drafts, and from a director's notes to revisions.

The SOP's point is that the script is calibrated, not generated: the director gets two or three
versions in different directions to choose from, then sends notes. With an LLM the versions are
written by the model; without one, `template_plan` expands the brief deterministically into a
four-part shot list (setup, development, turn, payoff) with durations that add up exactly and camera
language chosen by rules, so a run works offline and a test is reproducible.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reelflow.llm import ChatClient, system, user
from reelflow.script.camera import SIZES, check_sequence, size_index
from reelflow.storyboard import (
    Angle,
    Camera,
    Caption,
    Character,
    Movement,
    Shot,
    ShotSize,
    Slug,
    Storyboard,
    StyleLock,
)
from reelflow.storyboard.slugs import slugify

log = logging.getLogger("reelflow.script.drafts")

Aspect = Literal["16:9", "9:16", "1:1", "4:3", "21:9"]
Act = Literal["setup", "development", "turn", "payoff"]

# output size (even, H.264-friendly) and image size per aspect
FRAME_SIZES: dict[str, tuple[int, int]] = {
    "16:9": (1280, 720), "9:16": (720, 1280), "1:1": (1024, 1024), "4:3": (960, 720),
    "21:9": (1680, 720),
}
IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "16:9": (1536, 864), "9:16": (864, 1536), "1:1": (1024, 1024), "4:3": (1152, 864),
    "21:9": (2016, 864),
}
MIN_SHOT_TENTHS = 5  # 0.5 s


class Brief(BaseModel):
    """What a director asks for before any storyboard exists.

    `subjects` are recurring characters: `"su7: bright yellow sports car"` names one (the name
    becomes its slug), a bare description gets a slug made from its first words.
    """

    model_config = ConfigDict(extra="forbid")

    title: str = ""
    project: Slug | None = None
    subjects: list[str] = Field(min_length=1)
    scenes: list[str] = Field(min_length=1)
    mood: str = "cinematic"
    shots: int = Field(8, ge=1, le=60)
    total_seconds: float = Field(24.0, gt=0, le=600)
    aspect: Aspect = "16:9"
    language: Literal["en", "zh"] = Field("en", description="language of captions")

    @field_validator("total_seconds")
    @classmethod
    def _tenths(cls, value: float) -> float:
        return round(value, 1)  # plans are exact to 0.1 s

    @model_validator(mode="after")
    def _enough_time(self) -> Brief:
        if self.total_seconds * 10 < self.shots * MIN_SHOT_TENTHS:
            raise ValueError(
                f"{self.shots} shots need at least {self.shots * MIN_SHOT_TENTHS / 10:g} s "
                f"(0.5 s each); got {self.total_seconds:g} s"
            )
        return self


def brief_characters(brief: Brief) -> list[tuple[Character, str]]:
    """Characters from the brief's subjects, with the phrase shot descriptions use for each."""
    out: list[tuple[Character, str]] = []
    seen: set[str] = set()
    for subject in brief.subjects:
        name, sep, description = subject.replace("：", ":", 1).partition(":")
        if sep and re.fullmatch(r"\s*[\w -]+\s*", name) and description.strip():
            slug = slugify(name, "subject")
            phrase = name.strip()
            description = description.strip()
        else:
            slug = slugify(subject, "subject", max_words=3)
            phrase = description = subject.strip()
        base, k = slug, 2
        while slug in seen:
            slug, k = f"{base}-{k}", k + 1
        seen.add(slug)
        out.append((Character(name=slug, description=description), phrase))
    return out


def split_tenths(weights: list[float], total_tenths: int) -> list[int]:
    """Integer tenths proportional to `weights`, each >= 0.5 s, summing exactly to the total.

    Largest remainders get the spare tenths (ties by position), so the split is deterministic.
    """
    n = len(weights)
    spare = total_tenths - MIN_SHOT_TENTHS * n
    if spare < 0:
        raise ValueError(f"{total_tenths / 10:g} s is too short for {n} shots of 0.5 s")
    scale = sum(weights)
    raw = [w / scale * spare for w in weights]
    parts = [math.floor(r) for r in raw]
    order = sorted(range(n), key=lambda i: (-(raw[i] - parts[i]), i))
    for i in order[: spare - sum(parts)]:
        parts[i] += 1
    return [MIN_SHOT_TENTHS + p for p in parts]


# -- the template planner ---------------------------------------------------------------------


class Direction(BaseModel):
    """One way of telling the same brief: pacing per act and how close the camera sits."""

    name: str
    pitch: str
    weights: dict[str, float]
    size_bias: int = 0
    turn_camera: tuple[ShotSize, Angle, Movement] = ("close-up", "low", "push-in")


DIRECTIONS: dict[str, Direction] = {
    d.name: d
    for d in [
        Direction(name="classic", pitch="balanced four-part arc, steady build, a held ending",
                  weights={"setup": 1.2, "development": 1.0, "turn": 0.8, "payoff": 1.3}),
        Direction(name="slow-burn", pitch="long establishing shots, wide frames, a restrained turn",
                  weights={"setup": 1.6, "development": 1.1, "turn": 0.7, "payoff": 1.0},
                  size_bias=-1, turn_camera=("medium-close-up", "low", "push-in")),
        Direction(name="kinetic", pitch="short cuts, close frames, movement everywhere",
                  weights={"setup": 0.9, "development": 0.75, "turn": 0.6, "payoff": 1.3},
                  size_bias=1, turn_camera=("extreme-close-up", "dutch", "push-in")),
    ]
}


def plan_acts(n: int) -> list[Act]:
    """Act of each shot: ~25 % setup, development, one turn at ~70 %, payoff after it."""
    if n == 1:
        return ["setup"]
    if n == 2:
        return ["setup", "payoff"]
    if n == 3:
        return ["setup", "turn", "payoff"]
    turn = min(n - 2, max(2, round(0.7 * (n - 1))))
    setup = max(1, min(turn - 1, math.floor(n * 0.25 + 0.5)))
    return (["setup"] * setup + ["development"] * (turn - setup) + ["turn"]
            + ["payoff"] * (n - turn - 1))


_DEV_CAMERAS: list[tuple[ShotSize, Angle, Movement]] = [
    ("full", "eye-level", "tracking"),
    ("medium", "low", "static"),
    ("medium-close-up", "eye-level", "push-in"),
    ("medium", "high", "tracking"),
]


def _template_camera(acts: list[Act], direction: Direction) -> list[Camera]:
    n = len(acts)
    raw: list[tuple[str, str, str]] = []
    dev = 0
    for i, act in enumerate(acts):
        first_of_act = i == 0 or acts[i - 1] != act
        if act == "setup":
            raw.append(("extreme-wide", "high", "push-in") if first_of_act
                       else ("wide", "eye-level", "pan-right"))
        elif act == "development":
            raw.append(_DEV_CAMERAS[dev % len(_DEV_CAMERAS)])
            dev += 1
        elif act == "turn":
            raw.append(direction.turn_camera)
        elif i == n - 1:
            raw.append(("wide", "eye-level", "pull-out"))
        else:
            raw.append(("medium", "eye-level", "tracking") if first_of_act
                       else ("full", "high", "static"))
    cameras: list[Camera] = []
    for i, (size, angle, movement) in enumerate(raw):
        index = size_index(size)
        if acts[i] != "turn" and not (i == 0 and size == "extreme-wide"):
            index = max(0, min(len(SIZES) - 1, index + direction.size_bias))
        cameras.append(Camera(size=SIZES[index], angle=angle, movement=movement))
    return _smooth(cameras)


def _smooth(cameras: list[Camera], max_jump: int = 4) -> list[Camera]:
    """Make a rule-built sequence pass `check_sequence`: no repeated framing, no big jumps."""
    out = [cameras[0]]
    for camera in cameras[1:]:
        previous = out[-1]
        a, b = size_index(previous.size), size_index(camera.size)
        if abs(a - b) > max_jump:
            b = a + max_jump if b > a else a - max_jump
            camera = camera.model_copy(update={"size": SIZES[b]})
        if (camera.size, camera.angle) == (previous.size, previous.angle):
            angle = "eye-level" if camera.angle != "eye-level" else "low"
            camera = camera.model_copy(update={"angle": angle})
        opposite = {"pan-left": "pan-right", "pan-right": "pan-left", "tilt-up": "tilt-down",
                    "tilt-down": "tilt-up", "push-in": "pull-out", "pull-out": "push-in"}
        if opposite.get(previous.movement) == camera.movement:
            camera = camera.model_copy(update={"movement": "static"})
        out.append(camera)
    return out


def _template_description(act: Act, k: int, last: bool, subject: str, scene: str,
                          mood: str, language: str = "en") -> str:
    if language == "zh":
        return _template_description_zh(act, k, last, subject, scene, mood)
    if act == "setup":
        return (f"establishing view of {scene}, {subject} appears small in the frame" if k == 0
                else f"{subject} in {scene}, the {mood} world taking shape")
    if act == "development":
        beats = [f"{subject} moves through {scene}",
                 f"detail of {subject} as the journey builds, {scene}",
                 f"{subject} pushes on while {scene} changes around it",
                 f"{subject} closer now, {scene} rushing past"]
        return beats[k % len(beats)]
    if act == "turn":
        return f"suddenly everything changes for {subject}: the turning point in {scene}"
    if last:
        return f"final image: {subject} in {scene}, the moment settles and the {mood} mood holds"
    return f"{subject} arrives, the payoff unfolds in {scene}"


def _template_description_zh(act: Act, k: int, last: bool, subject: str, scene: str,
                             mood: str) -> str:
    if act == "setup":
        return (f"{scene}的全景，{subject}在画面中很小" if k == 0
                else f"{scene}中的{subject}，{mood}的世界渐渐展开")
    if act == "development":
        beats = [f"{subject}穿行在{scene}",
                 f"{subject}的细节，旅程渐入佳境，{scene}",
                 f"{subject}继续向前，{scene}在周围变化",
                 f"{subject}越来越近，{scene}飞速掠过"]
        return beats[k % len(beats)]
    if act == "turn":
        return f"突然，{subject}的一切都变了：{scene}中的转折"
    if last:
        return f"最后的画面：{scene}中的{subject}，一切归于平静，{mood}的情绪久久停留"
    return f"{subject}到来，高潮在{scene}中展开"


_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
#: the planner's own words, for a brief written in Chinese
_ZH = {
    "and": "和",
    "cinematic": "电影感",
    "classic": "均衡的四段式弧线，稳步推进，结尾定格",
    "slow-burn": "舒缓的建立镜头，大景别，克制的转折",
    "kinetic": "快切，近景，处处是运动",
}


class Look(BaseModel):
    """A palette and lighting a mood word suggests: a starting point the creator edits."""

    words: tuple[str, ...]
    palette: list[str]
    lighting: str
    lighting_zh: str


#: the first look one of whose words appears in the brief's mood wins; `DEFAULT_LOOK` otherwise
LOOKS = [
    Look(words=("warm", "cozy", "nostalg", "golden", "sunset", "autumn",
                "温暖", "温馨", "怀旧", "金色", "夕阳", "秋"),
         palette=["#f2a65a", "#c8553d", "#ffe8c2", "#5b3a29"],
         lighting="warm golden-hour light, soft long shadows",
         lighting_zh="温暖的黄金时刻光线，柔和的长影"),
    Look(words=("cold", "winter", "snow", "ice", "frost", "lonely",
                "寒", "冬", "雪", "冰", "孤独"),
         palette=["#dfe9f3", "#8fb8de", "#3e5c76", "#1d2d44"],
         lighting="cold diffuse daylight, blue shadows", lighting_zh="清冷的漫射日光，蓝色阴影"),
    Look(words=("dark", "noir", "night", "myster", "tense", "suspense",
                "暗", "夜", "黑色", "悬疑", "紧张"),
         palette=["#0b0c10", "#1f2833", "#c5c6c7", "#66fcf1"],
         lighting="low-key lighting, hard rim light, deep shadows",
         lighting_zh="低调布光，硬轮廓光，深邃阴影"),
    Look(words=("dream", "fantasy", "magic", "ethereal", "梦", "奇幻", "魔法", "空灵"),
         palette=["#e0c3fc", "#8ec5fc", "#f9f7ff", "#6a4c93"],
         lighting="soft glowing haze, gentle bloom, pastel light",
         lighting_zh="柔和发光的薄雾，轻柔的光晕，粉彩色调的光"),
    Look(words=("spring", "fresh", "hope", "bright", "joy", "happy",
                "春", "清新", "希望", "明亮", "欢快"),
         palette=["#ffd6e0", "#c1fba4", "#7bf1a8", "#90f1ef"],
         lighting="bright soft daylight, gentle backlight",
         lighting_zh="明亮柔和的日光，温柔的逆光"),
    Look(words=("epic", "heroic", "grand", "史诗", "壮阔", "英雄"),
         palette=["#1b263b", "#e0a458", "#f4f1de", "#7a3b2e"],
         lighting="dramatic side light, volumetric rays", lighting_zh="戏剧性的侧光，体积光"),
    Look(words=("energetic", "kinetic", "urban", "neon", "动感", "都市", "霓虹"),
         palette=["#ff006e", "#3a86ff", "#ffbe0b", "#111111"],
         lighting="neon city light, high contrast", lighting_zh="霓虹都市光，高对比度"),
]
DEFAULT_LOOK = Look(words=(), palette=["#2b2d42", "#8d99ae", "#edf2f4", "#ef233c"],
                    lighting="cinematic key light, soft fill, natural contrast",
                    lighting_zh="电影感主光，柔和补光，自然反差")


def mood_look(mood: str) -> Look:
    text = mood.lower()
    return next((look for look in LOOKS if any(word in text for word in look.words)),
                DEFAULT_LOOK)


def _template_captions(acts: list[Act], title: str, main_phrase: str, last_scene: str,
                       lang: str) -> dict[int, Caption]:
    """A skeleton of on-screen text: the title over the first shot, a line at the turn, a closing
    line over the last shot, in the brief's language; the creator rewrites them."""
    if lang == "zh":
        lines = {0: title, len(acts) - 1: f"{last_scene}，{main_phrase}"}
        turn = "然后，一切都变了。"
    else:
        lines = {0: title, len(acts) - 1: f"{main_phrase}, {last_scene}"}
        turn = "Then, everything changed."
    if "turn" in acts and acts.index("turn") not in lines:
        lines[acts.index("turn")] = turn
    return {i: Caption(**{lang: text}) for i, text in lines.items()}


def brief_language(brief: Brief) -> Literal["en", "zh"]:
    """The language the brief is written in (its subjects and scenes), which the offline plan
    writes in: a Chinese brief gets Chinese descriptions, logline and title, not a mix."""
    text = " ".join([*brief.subjects, *brief.scenes, brief.title])
    return "zh" if _CJK.search(text) else "en"


def template_plan(brief: Brief, direction: str = "classic") -> Storyboard:
    """A deterministic storyboard from a brief: four acts, exact total, rule-based camera."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; choose from {', '.join(DIRECTIONS)}")
    style = DIRECTIONS[direction]
    n = brief.shots
    acts = plan_acts(n)
    cast = brief_characters(brief)
    main, main_phrase = cast[0]
    lang = brief_language(brief)
    mood = _ZH.get(brief.mood, brief.mood) if lang == "zh" else brief.mood
    # weights: per act, alternating +-15 % inside an act so equal lengths stay rare
    weights, position = [], {}
    for act in acts:
        k = position.get(act, 0)
        position[act] = k + 1
        weights.append(style.weights[act] * (1.15 if k % 2 == 0 else 0.85))
    weights[-1] *= 1.2  # the last image is held
    tenths = split_tenths(weights, round(brief.total_seconds * 10))
    cameras = _template_camera(acts, style)
    shots: list[Shot] = []
    counters: dict[str, int] = {}
    for i, act in enumerate(acts):
        k = counters.get(act, 0)
        counters[act] = k + 1
        scene = brief.scenes[min(len(brief.scenes) - 1, i * len(brief.scenes) // n)]
        # secondary subjects take turns in development and payoff shots
        character, phrase = main, main_phrase
        extra = cast[1 + (k % (len(cast) - 1))] if len(cast) > 1 and act in (
            "development", "payoff") and k % 2 == 1 else None
        names = [character.name]
        if extra is not None:
            phrase = (f"{main_phrase}和{extra[1]}" if lang == "zh"
                      else f"{main_phrase} and {extra[1]}")
            names.append(extra[0].name)
        shots.append(Shot(
            id=f"s{i + 1:02d}-{act}",
            description=_template_description(act, k, i == n - 1, phrase, scene, mood, lang),
            duration=tenths[i] / 10,
            camera=cameras[i],
            characters=names,
            scene=scene,
            transition_in="crossfade" if i > 0 and act != acts[i - 1] and act != "turn"
            else "cut",
            transition_duration=min(0.4, tenths[i] / 10 / 2, tenths[i - 1] / 10 / 2)
            if i > 0 else 0.5,
        ))
    if lang == "zh":
        title = brief.title or f"{main_phrase}：{mood}"
        logline = (f"{main_phrase}穿越{'、'.join(brief.scenes)}：{_ZH[style.name]}"
                   f"（{n}个镜头，{brief.total_seconds:g}秒，{mood}）")
        visual_style = f"电影感，{mood}" if mood != "电影感" else mood
    else:
        title = brief.title or f"{main_phrase}: {brief.mood}"
        logline = (f"{main_phrase} through {', '.join(brief.scenes)}: {style.pitch} "
                   f"({n} shots, {brief.total_seconds:g} s, {brief.mood})")
        visual_style = f"cinematic, {brief.mood}"
    width, height = FRAME_SIZES[brief.aspect]
    img_w, img_h = IMAGE_SIZES[brief.aspect]
    captions = _template_captions(acts, title, main_phrase, brief.scenes[-1], lang)
    for i, caption in captions.items():
        shots[i] = shots[i].model_copy(update={"caption": caption})
    look = mood_look(brief.mood)
    storyboard = Storyboard(
        title=title,
        project=brief.project or slugify(title),
        logline=logline,
        aspect=brief.aspect, width=width, height=height,
        style=StyleLock(visual_style=visual_style, width=img_w, height=img_h,
                        palette=look.palette,
                        lighting=look.lighting_zh if lang == "zh" else look.lighting),
        characters=[c for c, _ in cast],
        shots=shots,
    )
    problems = check_sequence(storyboard)
    if problems:  # a bug in the rules above, not in the brief
        log.warning("template plan has camera problems: %s", "; ".join(problems))
    return storyboard


# -- the LLM drafter --------------------------------------------------------------------------


class DraftCamera(BaseModel):
    size: ShotSize
    angle: Angle
    movement: Movement


class DraftCharacter(BaseModel):
    name: Slug
    description: str = Field(min_length=1)


class DraftShot(BaseModel):
    id: Slug
    act: Act
    description: str = Field(min_length=1, description="English, concrete, visual")
    scene: str = ""
    duration: float = Field(gt=0)
    camera: DraftCamera
    characters: list[Slug] = []
    dialogue: str | None = None
    caption: str | None = Field(None, description="on-screen text in the brief's language")


class Draft(BaseModel):
    direction: str = Field(description="one line: how this version differs")
    title: str = Field(min_length=1)
    logline: str
    characters: list[DraftCharacter]
    shots: list[DraftShot] = Field(min_length=1)


class DraftSet(BaseModel):
    versions: list[Draft] = Field(min_length=1)


DRAFT_PROMPT = """You are a film director's writing partner for AI short films.
Write {versions} storyboard versions of the brief, each in a clearly different direction (pace,
point of view, where the turn falls), never three variations of one idea. Every version:
- has exactly {shots} shots whose durations add up to {total:g} seconds;
- follows setup -> development -> turn -> payoff, marking each shot's act;
- uses shot ids like "s01-arrival" (lowercase letters, digits, dashes), unique per version;
- lists recurring characters once (slug names) and names them in each shot that shows them;
- describes each shot in concrete, visual English a text-to-image model can draw;
- picks camera size, angle and movement that serve the emotion; avoids the same size and angle
  twice in a row and jumps of more than four sizes;
- writes captions, if any, in {language}.
Answer with JSON only."""


def _storyboard_from_draft(draft: Draft, brief: Brief, fit_total: bool = True) -> Storyboard:
    """Turn a model's draft into a valid Storyboard; ValueError explains what is wrong."""
    if len(draft.shots) != brief.shots:
        raise ValueError(f"version '{draft.title}' has {len(draft.shots)} shots, "
                         f"the brief asks for {brief.shots}")
    given = sum(s.duration for s in draft.shots)
    if fit_total and abs(given - brief.total_seconds) > 0.05:
        log.info("rescaling draft durations from %.2f s to %.1f s", given, brief.total_seconds)
    durations = split_tenths([s.duration for s in draft.shots],
                             round(brief.total_seconds * 10)) if fit_total else None
    shots = []
    for i, d in enumerate(draft.shots):
        caption = None
        if d.caption:
            caption = Caption(zh=d.caption) if brief.language == "zh" else Caption(en=d.caption)
        shots.append(Shot(
            id=d.id, description=d.description, scene=d.scene,
            duration=durations[i] / 10 if durations else d.duration,
            camera=Camera(**d.camera.model_dump()), characters=d.characters,
            dialogue=d.dialogue, caption=caption,
        ))
    width, height = FRAME_SIZES[brief.aspect]
    img_w, img_h = IMAGE_SIZES[brief.aspect]
    return Storyboard(
        title=draft.title,
        project=brief.project or slugify(brief.title or draft.title),
        logline=draft.logline,
        aspect=brief.aspect, width=width, height=height,
        style=StyleLock(visual_style=f"cinematic, {brief.mood}", width=img_w, height=img_h),
        characters=[Character(name=c.name, description=c.description) for c in draft.characters],
        shots=shots,
    )


def write_drafts(brief: Brief, client: ChatClient | None = None,
                 versions: int = 3) -> list[Storyboard]:
    """`versions` storyboards in different directions: LLM-written, or template plans offline."""
    if client is None:
        names = list(DIRECTIONS)
        if not 1 <= versions <= len(names):
            raise ValueError(f"the template planner has {len(names)} directions; "
                             f"ask for 1-{len(names)} versions")
        return [template_plan(brief, name) for name in names[:versions]]
    if not 1 <= versions <= 5:
        raise ValueError("ask for 1-5 versions")

    def all_valid(answer: DraftSet) -> None:
        if len(answer.versions) != versions:
            raise ValueError(f"give exactly {versions} versions, got {len(answer.versions)}")
        problems = []
        for k, draft in enumerate(answer.versions):
            try:
                _storyboard_from_draft(draft, brief)
            except ValueError as exc:
                problems.append(f"version {k + 1}: {' '.join(str(exc).split())}")
        if problems:
            raise ValueError("; ".join(problems))

    language = {"en": "English", "zh": "Simplified Chinese"}[brief.language]
    prompt = DRAFT_PROMPT.format(versions=versions, shots=brief.shots,
                                 total=brief.total_seconds, language=language)
    answer, _ = client.structured(
        [system(prompt), user(brief.model_dump_json(indent=1))], DraftSet, check=all_valid
    )
    return [_storyboard_from_draft(draft, brief) for draft in answer.versions]


# -- revision ---------------------------------------------------------------------------------


class Revision(BaseModel):
    """The outcome of a round of notes: the storyboard to continue with, and what happened."""

    storyboard: Storyboard
    notes: str
    applied: bool
    summary: str = ""
    warnings: list[str] = []


class RevisedStory(BaseModel):
    summary: str = Field(description="what changed, for the director, one or two sentences")
    title: str = Field(min_length=1)
    logline: str
    characters: list[DraftCharacter]
    shots: list[DraftShot] = Field(min_length=1)


REVISE_PROMPT = """You revise an AI short film storyboard according to the director's notes.
Change only what the notes ask for, keep shot ids of shots you keep, use new slug ids for new
shots, keep camera vocabulary values, keep descriptions concrete and visual (English).
Return the complete revised storyboard and a short summary of the changes. Answer with JSON only."""


def _merge_revision(old: Storyboard, revised: RevisedStory) -> Storyboard:
    """Apply the model's story changes while keeping everything it was not asked about
    (LoRAs, seeds, frame references, transitions, prompts, the style lock)."""
    old_chars = {c.name: c for c in old.characters}
    characters = []
    for c in revised.characters:
        base = old_chars.get(c.name)
        characters.append(base.model_copy(update={"description": c.description}) if base
                          else Character(name=c.name, description=c.description))
    old_shots = {s.id: s for s in old.shots}
    shots = []
    for d in revised.shots:
        update = {"description": d.description, "scene": d.scene, "duration": d.duration,
                  "camera": Camera(**d.camera.model_dump()), "characters": d.characters,
                  "dialogue": d.dialogue}
        base = old_shots.get(d.id)
        data = base.model_dump() if base else {"id": d.id}
        data.update({k: v.model_dump() if isinstance(v, BaseModel) else v
                     for k, v in update.items()})
        if d.caption and not (base and base.caption):
            data["caption"] = {"en": d.caption}
        shots.append(data)
    data = old.model_dump()
    data.update(title=revised.title, logline=revised.logline,
                characters=[c.model_dump() for c in characters], shots=shots)
    return Storyboard.model_validate(data)


def revise(storyboard: Storyboard, notes: str, client: ChatClient | None = None) -> Revision:
    """Revise a storyboard from a director's notes; without an LLM the notes are only recorded."""
    if client is None:
        warning = "no LLM endpoint configured: notes recorded, storyboard unchanged"
        log.warning("%s (%s)", warning, storyboard.project)
        return Revision(storyboard=storyboard.model_copy(deep=True), notes=notes,
                        applied=False, warnings=[warning])

    def mergeable(answer: RevisedStory) -> None:
        _merge_revision(storyboard, answer)

    story = storyboard.model_dump(mode="json", exclude={"style", "music"}, exclude_defaults=True)
    answer, _ = client.structured(
        [system(REVISE_PROMPT),
         user(f"Storyboard:\n{json.dumps(story, ensure_ascii=False, indent=1)}\n\n"
              f"Director's notes:\n{notes}")],
        RevisedStory, check=mergeable,
    )
    revised = _merge_revision(storyboard, answer)
    return Revision(storyboard=revised, notes=notes, applied=True, summary=answer.summary)


# -- one shot's prompt ------------------------------------------------------------------------


class ShotPrompt(BaseModel):
    prompt: str = Field(min_length=1, description="the complete new prompt, English")
    rationale: str = ""


REFINE_PROMPT = """You edit the image prompt of one shot of an AI short film.
Apply the director's notes to the prompt and change nothing else: keep the subject's identity
words, the composition and the camera unless the notes say otherwise. Write comma-separated
English clauses. Return the complete new prompt. Answer with JSON only."""


def prompt_diff(old: str, new: str, shot_id: str) -> str:
    """A unified diff of two prompts, one comma clause per line, for the review page."""
    def clauses(text: str) -> list[str]:
        return [c.strip() + "\n" for c in text.split(",") if c.strip()]

    return "".join(difflib.unified_diff(clauses(old), clauses(new),
                                        fromfile=f"{shot_id} (before)",
                                        tofile=f"{shot_id} (after)"))


def refine_shot_prompt(storyboard: Storyboard, shot_id: str, notes: str,
                       client: ChatClient | None = None) -> tuple[Shot, str]:
    """Rewrite one shot's prompt from notes; returns the new shot and a diff of the prompts.

    The prompt edited is the one `prompts.py` uses as the shot's subject part (`prompt`, else the
    description). Offline the notes are appended as an explicit clause, so they still take effect.
    """
    shot = storyboard.shot(shot_id)
    old = shot.prompt or shot.description
    if client is None:
        clause = " ".join(notes.split()).rstrip(".")
        new = f"{old.rstrip(' ,.')}, {clause}" if clause else old
    else:
        context = {
            "prompt": old, "scene": shot.scene, "camera": shot.camera.model_dump(),
            "characters": [storyboard.character(n).model_dump(include={"name", "description",
                                                                      "trigger_words"})
                           for n in shot.characters],
            "style": storyboard.style.visual_style,
        }
        answer, _ = client.structured(
            [system(REFINE_PROMPT),
             user(f"Shot {shot_id}:\n{json.dumps(context, ensure_ascii=False, indent=1)}\n\n"
                  f"Notes:\n{notes}")],
            ShotPrompt,
        )
        new = " ".join(answer.prompt.split())
    return shot.model_copy(update={"prompt": new}, deep=True), prompt_diff(old, new, shot_id)


def replace_shot(storyboard: Storyboard, shot: Shot) -> Storyboard:
    """A copy of `storyboard` with the shot of the same id replaced (validated again)."""
    storyboard.shot(shot.id)  # KeyError naming the shot if it is not there
    data = storyboard.model_dump()
    data["shots"] = [shot.model_dump() if s["id"] == shot.id else s for s in data["shots"]]
    return Storyboard.model_validate(data)

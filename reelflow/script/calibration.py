"""Script calibration: the LLM as a structural script editor, not as the writer.

The SOP's first stage checks a script before anything is drawn: is there a setup, a development, a
turn and a payoff; does the logic hold; are characters described the same way everywhere; does the
emotion build and release, or stay flat. A `CalibrationReport` answers those questions per
storyboard version so a director can compare versions side by side.

Deterministic rule checks always run (they are cheap, reproducible and catch what LLMs overlook:
durations, equal-length rhythm, a character mentioned but not attached to a shot, colour
contradictions, jarring camera cuts). With an LLM client the structure, logic and emotion curve come
from the model and the rule findings are added to its problems.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from reelflow.llm import ChatClient, system, user
from reelflow.script.camera import check_sequence
from reelflow.script.intensity import clamp, text_intensity
from reelflow.storyboard import Storyboard

ACTS = ("setup", "development", "turn", "payoff")
Severity = Literal["error", "warning", "info"]
Category = Literal["structure", "logic", "character", "duration", "rhythm", "emotion", "camera"]

MIN_SHOT_SECONDS = 1.0
MAX_SHOT_SECONDS = 10.0
"""Most image-to-video models generate 2-10 s; a longer shot needs several clips or a still."""


class Problem(BaseModel):
    """One concrete thing to fix, with the shots it concerns."""

    category: Category
    severity: Severity = "warning"
    shots: list[str] = []
    message: str
    source: Literal["rules", "llm"] = "rules"


class Acts(BaseModel):
    """Which shots carry which part of the four-part structure (a shot belongs to one act)."""

    setup: list[str] = []
    development: list[str] = []
    turn: list[str] = []
    payoff: list[str] = []

    def missing(self) -> list[str]:
        return [act for act in ACTS if not getattr(self, act)]

    def act_of(self, shot_id: str) -> str | None:
        for act in ACTS:
            if shot_id in getattr(self, act):
                return act
        return None


class Beat(BaseModel):
    """A point of the emotion curve: how intense one shot is, 0 (still) to 10 (climax)."""

    shot: str
    start: float
    duration: float
    intensity: int = Field(ge=0, le=10)
    note: str = ""


class CharacterCheck(BaseModel):
    name: str
    shots: list[str] = []
    consistent: bool = True
    notes: list[str] = []


class CalibrationReport(BaseModel):
    """Everything a director needs to judge one storyboard version before images are made."""

    title: str
    project: str
    storyboard_hash: str
    source: Literal["rules", "llm+rules"] = "rules"
    acts: Acts
    logic_breaks: list[str] = []
    characters: list[CharacterCheck] = []
    emotion_curve: list[Beat]
    problems: list[Problem] = []
    summary: str = ""

    @property
    def structure_complete(self) -> bool:
        return not self.acts.missing()

    @property
    def intensities(self) -> list[int]:
        return [beat.intensity for beat in self.emotion_curve]

    def count(self, severity: Severity) -> int:
        return sum(1 for p in self.problems if p.severity == severity)

    def to_markdown(self) -> str:
        """A compact review table for a Prefect markdown artifact."""
        lines = [f"### {self.title} ({self.source})", "", self.summary, "",
                 "| act | shots |", "|---|---|"]
        lines += [f"| {act} | {', '.join(getattr(self.acts, act)) or '**missing**'} |"
                  for act in ACTS]
        lines += ["", "emotion: " + " ".join(str(i) for i in self.intensities), ""]
        if self.logic_breaks:
            lines += ["**logic breaks**", *[f"- {b}" for b in self.logic_breaks], ""]
        lines += [f"- **{p.severity}** [{p.category}] {p.message}" for p in self.problems]
        return "\n".join(lines).strip() + "\n"


# -- emotion from text and camera -------------------------------------------------------------

_SIZE_BONUS = {"extreme-wide": -1, "close-up": 1, "extreme-close-up": 1}
_MOVE_BONUS = {"push-in": 1, "pull-out": -1}
_ANGLE_BONUS = {"low": 1, "dutch": 1}


def rule_emotion_curve(storyboard: Storyboard) -> list[int]:
    """Words first, then framing and pace: close, low, pushing-in, short shots feel more intense.

    The words dominate (a high-intensity word counts twice what a framing choice does) because the
    camera is usually chosen to serve the story's intensity, not the other way round."""
    mean = storyboard.duration / len(storyboard.shots)
    curve = []
    for shot in storyboard.shots:
        value = text_intensity(shot)
        value += _SIZE_BONUS.get(shot.camera.size, 0) + _MOVE_BONUS.get(shot.camera.movement, 0)
        value += _ANGLE_BONUS.get(shot.camera.angle, 0)
        if shot.duration < 0.7 * mean:
            value += 1
        elif shot.duration > 1.4 * mean:
            value -= 1
        curve.append(clamp(value))
    return curve


def _beats(storyboard: Storyboard, curve: list[int], notes: list[str] | None = None) -> list[Beat]:
    beats, start = [], 0.0
    for i, (shot, intensity) in enumerate(zip(storyboard.shots, curve, strict=True)):
        note = notes[i] if notes else ""
        beats.append(Beat(shot=shot.id, start=round(start, 3), duration=shot.duration,
                          intensity=intensity, note=note))
        start += shot.duration
    return beats


def positional_acts(ids: list[str], turn: int | None = None) -> Acts:
    """Split shots into the four acts: about a quarter of setup, the turn at `turn` (default
    ~70 % in), development between, payoff after. Fewer than four shots cannot hold all four."""
    n = len(ids)
    if n == 1:
        return Acts(setup=ids[:])
    if n == 2:
        return Acts(setup=ids[:1], payoff=ids[1:])
    if n == 3:
        return Acts(setup=ids[:1], turn=ids[1:2], payoff=ids[2:])
    if turn is None or not 2 <= turn <= n - 2:
        turn = min(n - 2, max(2, round(0.7 * (n - 1))))
    setup_end = max(1, min(turn - 1, math.floor(n * 0.25 + 0.5)))
    return Acts(setup=ids[:setup_end], development=ids[setup_end:turn], turn=[ids[turn]],
                payoff=ids[turn + 1:])


# -- rule checks ------------------------------------------------------------------------------

_COLOURS = {"red", "orange", "yellow", "green", "blue", "purple", "violet", "pink", "white",
            "black", "grey", "gray", "brown", "silver", "golden", "gold", "blonde", "blond",
            "crimson", "teal", "cyan", "magenta", "beige"}
_STOP = {"the", "and", "with", "from", "that", "this", "its", "his", "her", "their", "into",
         "onto", "over", "under", "bright", "dark", "light", "very", "front", "back", "number"}


_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def _words(text: str) -> list[str]:
    """Latin words, and Chinese counted as two-character words (Chinese has no spaces: a
    description of eight characters is about four words, not none)."""
    latin = re.findall(r"[a-z][a-z'-]*", _CJK_RUN.sub(" ", text.lower()))
    chinese = [run[i:i + 2] for run in _CJK_RUN.findall(text) for i in range(0, len(run), 2)]
    return latin + chinese


def _character_checks(storyboard: Storyboard) -> tuple[list[CharacterCheck], list[Problem]]:
    checks: list[CharacterCheck] = []
    problems: list[Problem] = []
    for character in storyboard.characters:
        check = CharacterCheck(
            name=character.name,
            shots=[s.id for s in storyboard.shots if character.name in s.characters],
        )
        desc_words = _words(character.description)
        if len(desc_words) < 4:
            check.consistent = False
            check.notes.append("described in fewer than four words: too vague to stay the same")
            problems.append(Problem(
                category="character", shots=check.shots,
                message=f"character {character.name}: description '{character.description}' is "
                        "too vague to keep the look consistent; name colours, shape, clothing"))
        if not (character.trigger_words or character.lora or character.reference_images):
            check.notes.append("no trigger words, LoRA or reference images: identity is text only")
            problems.append(Problem(
                category="character", severity="info", shots=check.shots,
                message=f"character {character.name}: no trigger words, LoRA or reference "
                        "images; expect drift between shots"))
        colours = {w for w in desc_words if w in _COLOURS}
        nouns = {w for w in desc_words if w not in _COLOURS and w not in _STOP and len(w) > 2}
        spoken = re.compile(rf"\b{re.escape(character.name.replace('-', ' '))}\b", re.I)
        for shot in storyboard.shots:
            text = " ".join([shot.description, shot.prompt or ""])
            if character.name not in shot.characters:
                if spoken.search(text.replace("-", " ")):
                    problems.append(Problem(
                        category="character", shots=[shot.id],
                        message=f"{shot.id}: mentions '{character.name}' but does not list the "
                                "character, so its description, trigger words and LoRA are not "
                                "applied there"))
                continue
            words = _words(text)
            for colour, noun in zip(words, words[1:], strict=False):
                if colour in _COLOURS and noun in nouns and colours and colour not in colours:
                    check.consistent = False
                    note = (f"{shot.id} calls it '{colour} {noun}' but the character is "
                            f"{'/'.join(sorted(colours))}")
                    check.notes.append(note)
                    problems.append(Problem(category="character", shots=[shot.id],
                                            message=f"character {character.name}: {note}"))
        checks.append(check)
    return checks, problems


def _duration_checks(storyboard: Storyboard) -> list[Problem]:
    problems: list[Problem] = []
    for shot in storyboard.shots:
        if shot.duration < MIN_SHOT_SECONDS:
            problems.append(Problem(
                category="duration", shots=[shot.id],
                message=f"{shot.id}: {shot.duration:g} s is too short to read; "
                        f"use at least {MIN_SHOT_SECONDS:g} s"))
        elif shot.duration > MAX_SHOT_SECONDS:
            problems.append(Problem(
                category="duration", shots=[shot.id],
                message=f"{shot.id}: {shot.duration:g} s is longer than video models generate "
                        f"(2-{MAX_SHOT_SECONDS:g} s); split it or plan a still"))
    return problems


def _rhythm_checks(storyboard: Storyboard) -> list[Problem]:
    """Equal-length shots make a metronome, not a rhythm."""
    shots = storyboard.shots
    if len(shots) < 4:
        return []
    rounded = [round(s.duration, 1) for s in shots]
    value, count = Counter(rounded).most_common(1)[0]
    if count / len(shots) >= 0.6:
        same = [s.id for s, d in zip(shots, rounded, strict=True) if d == value]
        return [Problem(
            category="rhythm", shots=same,
            message=f"{count} of {len(shots)} shots last {value:g} s: a monotonous rhythm; "
                    "shorten the build-up shots and let the payoff breathe")]
    problems = []
    run = [0]
    for i in range(1, len(shots) + 1):
        if i < len(shots) and rounded[i] == rounded[run[0]]:
            run.append(i)
            continue
        if len(run) >= 3:
            ids = [shots[j].id for j in run]
            problems.append(Problem(
                category="rhythm", shots=ids,
                message=f"{len(run)} consecutive shots of {rounded[run[0]]:g} s "
                        f"({ids[0]} to {ids[-1]}): vary the pace"))
        run = [i]
    return problems


def _structure_checks(storyboard: Storyboard, acts: Acts, curve: list[int]) -> list[Problem]:
    problems: list[Problem] = []
    shots = storyboard.shots
    n = len(shots)
    for act in acts.missing():
        why = f"only {n} shot{'s' if n > 1 else ''}" if n < 4 else "no shot carries it"
        problems.append(Problem(category="structure", message=f"no {act}: {why}"))
    if n >= 3 and max(curve) - min(curve) < 2:
        problems.append(Problem(
            category="emotion", shots=[s.id for s in shots],
            message=f"flat emotion curve (intensity {min(curve)}-{max(curve)}): nothing builds "
                    "to a turn; tighten framing and pace towards the climax"))
    if n >= 4:
        peak = max(range(n), key=lambda i: (curve[i], -i))
        if peak < 0.4 * (n - 1) and max(curve) - min(curve) >= 2:
            problems.append(Problem(
                category="emotion", shots=[shots[peak].id],
                message=f"the emotional peak comes early ({shots[peak].id}, shot {peak + 1} of "
                        f"{n}): the rest of the film can only come down"))
        if not acts.payoff:
            problems.append(Problem(
                category="structure", severity="info", shots=[shots[-1].id],
                message=f"the film ends on its peak ({shots[-1].id}): no payoff shot after the "
                        "turn"))
    if n >= 3 and shots[0].camera.size in ("close-up", "extreme-close-up"):
        problems.append(Problem(
            category="structure", severity="info", shots=[shots[0].id],
            message=f"{shots[0].id}: opens on a {shots[0].camera.size} without establishing "
                    "where we are"))
    return problems


def _camera_checks(storyboard: Storyboard) -> list[Problem]:
    problems = []
    for line in check_sequence(storyboard):
        pair = line.split(":", 1)[0].split(" -> ")
        problems.append(Problem(category="camera", shots=pair, message=line))
    return problems


def rule_acts(storyboard: Storyboard, curve: list[int]) -> Acts:
    """Acts by position, with the turn anchored on the emotional peak when it lies late enough."""
    ids = [s.id for s in storyboard.shots]
    n = len(ids)
    peak = max(range(n), key=lambda i: (curve[i], -i))
    if n >= 4 and peak == n - 1 and peak >= 0.4 * (n - 1):
        # ends on its peak: the last shot is the turn and there is no payoff
        setup_end = max(1, min(n - 2, math.floor(n * 0.25 + 0.5)))
        return Acts(setup=ids[:setup_end], development=ids[setup_end:-1], turn=ids[-1:])
    return positional_acts(ids, peak if peak >= 0.4 * (n - 1) else None)


# -- LLM --------------------------------------------------------------------------------------


class LLMBeat(BaseModel):
    shot: str
    intensity: int = Field(ge=0, le=10)
    note: str = ""


class LLMCharacter(BaseModel):
    name: str
    consistent: bool
    notes: str = ""


class LLMProblem(BaseModel):
    category: Category
    severity: Severity
    shots: list[str]
    message: str


class LLMCalibration(BaseModel):
    """What the model is asked to fill in; ids must be the storyboard's shot ids."""

    acts: Acts
    logic_breaks: list[str]
    characters: list[LLMCharacter]
    emotion_curve: list[LLMBeat]
    problems: list[LLMProblem]
    summary: str


CALIBRATE_PROMPT = """You are a script editor for short films, checking structure, not rewriting.
Given a storyboard as JSON:
- assign every shot id to exactly one act: setup, development, turn, payoff;
- list logic breaks (events that do not follow, missing motivation, unexplained jumps);
- judge each character's consistency across shots (look, behaviour, motive);
- rate each shot's emotional intensity 0-10, in shot order, with a short note;
- list concrete problems, each naming the shot ids it concerns;
- write a two-sentence summary a director can compare across versions.
Answer with JSON only."""


def _llm_calibration(storyboard: Storyboard, client: ChatClient) -> LLMCalibration:
    ids = [s.id for s in storyboard.shots]

    def consistent_ids(answer: LLMCalibration) -> None:
        curve_ids = [b.shot for b in answer.emotion_curve]
        if curve_ids != ids:
            raise ValueError(f"emotion_curve must have one entry per shot in order {ids}, "
                             f"got {curve_ids}")
        placed = [i for act in ACTS for i in getattr(answer.acts, act)]
        unknown = sorted(set(placed) - set(ids))
        if unknown:
            raise ValueError(f"acts name unknown shot ids {unknown}; use only {ids}")

    story = storyboard.model_dump(mode="json", include={"title", "logline", "characters",
                                                       "shots"}, exclude_defaults=True)
    answer, _ = client.structured(
        [system(CALIBRATE_PROMPT), user(json.dumps(story, ensure_ascii=False))],
        LLMCalibration,
        check=consistent_ids,
    )
    return answer


def calibrate(storyboard: Storyboard, client: ChatClient | None = None) -> CalibrationReport:
    """Check one storyboard version: LLM judgement when a client is given, rules always."""
    character_checks, character_problems = _character_checks(storyboard)
    rule_problems = [*_duration_checks(storyboard), *_rhythm_checks(storyboard),
                     *character_problems, *_camera_checks(storyboard)]
    if client is None:
        curve = rule_emotion_curve(storyboard)
        acts = rule_acts(storyboard, curve)
        beats = _beats(storyboard, curve)
        logic_breaks: list[str] = []
        llm_problems: list[Problem] = []
        summary = ""
        source: Literal["rules", "llm+rules"] = "rules"
    else:
        answer = _llm_calibration(storyboard, client)
        curve = [b.intensity for b in answer.emotion_curve]
        acts = answer.acts
        beats = _beats(storyboard, curve, [b.note for b in answer.emotion_curve])
        logic_breaks = answer.logic_breaks
        llm_problems = [Problem(source="llm", **p.model_dump()) for p in answer.problems]
        llm_problems += [Problem(source="llm", category="logic", message=b)
                         for b in logic_breaks]
        for verdict in answer.characters:
            for check in character_checks:
                if check.name == verdict.name:
                    check.consistent = check.consistent and verdict.consistent
                    if verdict.notes:
                        check.notes.append(verdict.notes)
        summary = answer.summary
        source = "llm+rules"
    problems = [*llm_problems, *_structure_checks(storyboard, acts, curve), *rule_problems]
    if not summary:
        peak = max(beats, key=lambda b: b.intensity)
        summary = (
            f"{len(storyboard.shots)} shots, {storyboard.duration:g} s; structure "
            f"{'complete' if not acts.missing() else 'missing ' + ', '.join(acts.missing())}; "
            f"peak {peak.intensity}/10 at {peak.shot}; "
            f"{sum(p.severity != 'info' for p in problems)} problem(s) to look at."
        )
    return CalibrationReport(
        title=storyboard.title, project=storyboard.project,
        storyboard_hash=storyboard.content_hash(), source=source, acts=acts,
        logic_breaks=logic_breaks, characters=character_checks, emotion_curve=beats,
        problems=problems, summary=summary,
    )


# -- plot -------------------------------------------------------------------------------------

_ACT_COLOURS = {"setup": "#dbe9f6", "development": "#eeeeee", "turn": "#fde2c8",
                "payoff": "#dcefd8"}


def plot_emotion_curve(report: CalibrationReport, path: str | Path) -> Path:
    """Draw intensity over film time, acts shaded, shots labelled; write a PNG to `path`.

    Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend state), so it
    is safe in worker threads and on headless machines.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the emotion-curve plot needs matplotlib: pip install 'reelflow[plot]'"
        ) from exc

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    beats = report.emotion_curve
    fig = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for beat in beats:
        act = report.acts.act_of(beat.shot)
        if act:
            ax.axvspan(beat.start, beat.start + beat.duration, color=_ACT_COLOURS[act], lw=0)
    xs = [b.start + b.duration / 2 for b in beats]
    ys = [b.intensity for b in beats]
    ax.plot(xs, ys, color="#c0392b", marker="o", lw=2)
    for i, (x, y, beat) in enumerate(zip(xs, ys, beats, strict=True)):
        # alternate above/below so neighbouring shot ids do not overprint each other
        ax.annotate(beat.shot, (x, y), textcoords="offset points",
                    xytext=(0, 7 if i % 2 == 0 else -13), ha="center", fontsize=7)
    end = beats[-1].start + beats[-1].duration if beats else 1.0
    ax.set_xlim(0, end)
    ax.set_ylim(-0.8, 10.8)
    ax.set_xlabel("seconds")
    ax.set_ylabel("intensity")
    # the project slug, not the title: titles are often CJK and the default font has no glyphs
    ax.set_title(f"{report.project}: emotion curve ({report.source})", fontsize=9)
    for act, colour in _ACT_COLOURS.items():
        ax.plot([], [], color=colour, lw=8, label=act)
    ax.legend(loc="upper left", fontsize=7, ncol=4, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path

"""Reviewers' decisions at the gates: what each gate accepts, checking an answer against the run,
and carrying earlier decisions into the next round.

Why here (plain Python, no Prefect): the flow publishes a :class:`GateSpec` next to each pause
(the shots on the table, their variants and scores, the form's defaults). :func:`answer_model`
makes the pause's form from it (the Prefect UI renders its JSON schema, the server checks answers
against it); ``reelflow approve`` reads the spec back and validates its answer with the same
model *before* resuming (:func:`form_data`), so a typo never consumes the gate and the CLI and
the UI accept the same answers. :func:`decision` turns a form's answer into the picks/rejections
the stages act on; :func:`carry_picks` makes a pick made in round 1 the default of round 2, so
rejecting one shot never resets another's choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from reelflow.errors import InputError

__all__ = [
    "GATE_OPTIONS",
    "AnswerError",
    "GateSpec",
    "LineOnTable",
    "LineRetake",
    "answer_model",
    "carry_picks",
    "check_answer",
    "check_fields",
    "decision",
    "form_data",
    "score_label",
    "variant_label",
    "version_label",
]

GateName = Literal["storyboard", "images", "clips"]

#: answer field -> the `reelflow approve` option that sets it, per gate
GATE_OPTIONS: dict[str, dict[str, str]] = {
    "storyboard": {"approve": "", "version": "--version", "notes": "--notes"},
    "images": {"picks": "--pick", "reject": "--reject"},
    "clips": {"regenerate": "--reject", "new_seeds": "--new-seed", "retake": "--retake",
              "voices": "--voice", "speeds": "--speed", "lang": "--lang"},
}

#: the clips gate's voice-over options, by the line's form field they set
LINE_OPTIONS: dict[str, str] = {"retake": "text", "voices": "voice", "speeds": "speed"}


class AnswerError(InputError):
    """An answer that does not fit the gate it is given to (exit 2; the gate keeps waiting)."""


class LineOnTable(BaseModel):
    """A voice-over line as the clips gate shows it: its audio object, text, length and how it
    was spoken (the form's defaults; a changed field re-takes the line)."""

    key: str
    text: str
    voice: str
    speed: float
    duration: float
    engine: str = ""


class LineRetake(BaseModel):
    """A line re-taken at the clips gate: the shot, the language, and how it is spoken now."""

    shot: str
    language: Literal["zh", "en"]
    text: str
    voice: str
    speed: float


class GateSpec(BaseModel):
    """What one pause offers: published by the flow, read by ``reelflow approve``."""

    gate: GateName
    round: int = 1
    project: str = ""
    #: shot id -> number of variants on the table (clips: 1 per shot)
    shots: dict[str, int] = Field(default_factory=dict)
    #: storyboard gate: how many alternative versions there are
    versions: int = 1
    #: the form's defaults (e.g. the carried picks), so the CLI answers like the pre-filled form
    defaults: dict[str, Any] = Field(default_factory=dict)
    #: shot id -> what it shows (the form's and the contact sheet's titles)
    descriptions: dict[str, str] = Field(default_factory=dict)
    #: shot id -> quality score per variant, and identity score per variant (shots with
    #: characters): the variants' labels in the form
    quality: dict[str, list[float]] = Field(default_factory=dict)
    identity: dict[str, list[float]] = Field(default_factory=dict)
    #: clips gate: shot id -> the seed of the clip on the table
    seeds: dict[str, int] = Field(default_factory=dict)
    #: storyboard gate: the versions' names (titles), as the form lists them
    version_names: list[str] = Field(default_factory=list)
    #: storyboard gate: whether notes can be acted on (an LLM revises); the offline planner
    #: cannot, so its gate refuses notes instead of dropping them
    revisions: bool = True
    #: clips gate: shot id -> language -> its voice-over line (the film's language first)
    lines: dict[str, dict[str, LineOnTable]] = Field(default_factory=dict)

    def languages(self) -> list[str]:
        """The languages of the lines on the table, the film's first."""
        return list(dict.fromkeys(lang for lines in self.lines.values() for lang in lines))

    def language(self) -> str:
        """The film's language: the one `--retake` re-takes unless `--lang` says otherwise."""
        return next(iter(self.languages()), "zh")

    def approve_command(self, run_id: str) -> str:
        """The command to run next, with a real example of each option this gate takes."""
        shot = next(iter(self.shots), "SHOT")
        examples = {
            "storyboard": '[--version N] [--notes "..."]',
            "images": f'[--pick {shot}=N] [--reject {shot}="notes"]',
            "clips": f'[--reject {shot}="notes"] [--new-seed {shot}=SEED]',
        }
        if self.gate == "clips" and self.lines:
            voiced = next(iter(self.lines))
            examples["clips"] += (f' [--retake {voiced}="new text"] [--voice {voiced}=VOICE] '
                                  f"[--speed {voiced}=1.2] [--lang zh|en]")
        return f"reelflow approve {run_id} {examples[self.gate]}"


def check_fields(gate: str, answer: Mapping[str, Any]) -> None:
    """Raise :class:`AnswerError` for a non-empty field that ``gate`` does not take, or for
    empty notes given where notes are what the option means."""
    options = GATE_OPTIONS[gate]
    for name, value in answer.items():
        if name in ("reviewer", "metadata") or not value:
            continue
        if name not in options:
            option = next(
                (opts[name] for opts in GATE_OPTIONS.values() if opts.get(name)), f"'{name}'"
            )
            takes = ", ".join(o for o in options.values() if o) or "no options"
            raise AnswerError(f"{option} is not taken at the {gate} gate (it takes {takes})")
    _check_notes(gate, answer)


def _check_notes(gate: str, answer: Mapping[str, Any]) -> None:
    """Raise :class:`AnswerError` for empty notes where notes are what the option means: a
    rejection or regeneration says what to change, and so does a storyboard revision."""
    options = GATE_OPTIONS[gate]
    for name in ("reject", "regenerate"):
        if name not in options:
            continue
        for shot, notes in (answer.get(name) or {}).items():
            if not str(notes).strip():
                instead = (
                    f"; or --new-seed {shot}=SEED for a new seed alone" if gate == "clips" else ""
                )
                raise AnswerError(
                    f'{options[name]} {shot}=: empty notes; say what to change '
                    f'({options[name]} {shot}="warmer light"{instead})'
                )
    notes = answer.get("notes")
    asks_revision = answer.get("approve") is False or (
        "notes" in answer and answer.get("approve") is not True)
    if gate == "storyboard" and asks_revision:
        if not str(notes or "").strip():
            raise AnswerError(
                "--notes: empty; a revision needs notes that say what to change "
                "(leave --notes out to approve)"
            )


def check_answer(spec: GateSpec, answer: Mapping[str, Any]) -> None:
    """Raise :class:`AnswerError` (one line) if ``answer`` does not fit the gate described by
    ``spec``: a field this gate does not take, an unknown shot, a variant out of range.

    ``answer`` is in the decision's shape (``picks``, ``reject``, ...: what `reelflow approve`
    is given); it is checked by the gate's form model (:func:`answer_model`), the same model the
    UI's form is built from, so the CLI and the UI refuse the same answers."""
    form_data(spec, answer)


def form_data(spec: GateSpec, answer: Mapping[str, Any]) -> dict[str, Any]:
    """The form's answer (as the UI sends it) for an answer in the decision's shape, validated
    by the gate's form model; raises :class:`AnswerError` (one line, named by the CLI option)."""
    check_fields(spec.gate, answer)
    if spec.gate == "clips":
        _check_lines(spec, answer)
    language = str(answer.get("lang") or spec.language())
    data: dict[str, Any] = {}
    for name, value in answer.items():
        field = _FORM_FIELDS[spec.gate].get(name)
        if spec.gate == "clips" and name == "lang":
            continue
        if spec.gate == "clips" and name in LINE_OPTIONS and isinstance(value, Mapping):
            for shot, item in value.items():  # a line's field, under its language
                line = data.setdefault(shot, {}).setdefault(language, {})
                line[LINE_OPTIONS[name]] = item
            continue
        if name == "reviewer" or (spec.gate == "storyboard" and name in ("version", "notes",
                                                                         "approve")):
            data[name] = value
        elif field and isinstance(value, Mapping):
            for shot, item in value.items():
                data.setdefault(shot, {})[field] = item
                if spec.gate == "clips":  # the form's switch reads as what was asked
                    data[shot]["regenerate"] = True
        elif value not in (None, {}, []):
            data[name] = value  # a field this gate does not take: the model refuses it
    if spec.gate == "storyboard" and "approve" not in data and "notes" in data:
        data["approve"] = False  # `--notes` asks for a revision
    model = answer_model(spec)
    try:
        return model.model_validate(data).model_dump(mode="json", by_alias=True)
    except ValidationError as exc:
        raise AnswerError(_refusal(spec, answer, exc)) from None


def _check_lines(spec: GateSpec, answer: Mapping[str, Any]) -> None:
    """Raise :class:`AnswerError` for a re-take the clips gate cannot make: a language the run
    does not speak, a shot without a line in it, an empty text or voice (the form's model
    refuses an out-of-range speed)."""
    spoken = spec.languages()
    lang = answer.get("lang")
    if lang is not None and lang not in spoken:
        raise AnswerError(f"--lang {lang}: this run speaks {', '.join(spoken) or 'no lines'}")
    language = str(lang or spec.language())
    for name, field in LINE_OPTIONS.items():
        option = GATE_OPTIONS["clips"][name]
        for shot, value in (answer.get(name) or {}).items():
            if shot not in spec.shots:
                continue  # the form's model names it: no such shot
            if language not in spec.lines.get(shot, {}):
                voiced = [s for s, lines in spec.lines.items() if language in lines]
                raise AnswerError(f"{option} {shot}: shot {shot} has no {language} voice-over "
                                  f"line (lines: {', '.join(voiced) or 'none'})")
            if field != "speed" and not str(value).strip():
                raise AnswerError(f'{option} {shot}=: empty {field}; give the line\'s new '
                                  f'{field} ({option} {shot}="...")')


#: the decision's field -> the form's field per shot, per gate
_FORM_FIELDS: dict[str, dict[str, str]] = {
    "storyboard": {},
    "images": {"picks": "pick", "reject": "notes"},
    "clips": {"regenerate": "notes", "new_seeds": "seed"},
}


def _refusal(spec: GateSpec, answer: Mapping[str, Any], exc: ValidationError) -> str:
    """The form model's first refusal as the CLI's one line: `--pick a=5: out of range, ...`."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    options = GATE_OPTIONS[spec.gate]
    if spec.gate == "storyboard":
        where = loc[0] if loc else ""
        option = options.get(where) or "--notes"
        value = answer.get(where)
        return f"{option} {value}: {error['msg']}" if where == "version" else (
            f"{option}: {error['msg']}")
    by_field = {form: name for name, form in _FORM_FIELDS[spec.gate].items()}
    if len(loc) >= 3 and loc[1] in ("zh", "en"):  # a voice-over line's field
        shot, name = loc[0], {v: k for k, v in LINE_OPTIONS.items()}.get(loc[2], "retake")
        value = " ".join(str((answer.get(name) or {}).get(shot, "")).split())
        return f"{options[name]} {shot}={value}: {error['msg']}"
    if len(loc) >= 2 and loc[1] in by_field:
        shot, name = loc[0], by_field[loc[1]]
        value = " ".join(str((answer.get(name) or {}).get(shot, "")).split())
        return f"{options[name]} {shot}={value}: {error['msg']}"
    shot = loc[0] if loc else "?"
    name = next((n for n in options if isinstance(answer.get(n), Mapping)
                 and shot in answer[n]), "")
    option = options.get(name) or f"'{shot}'"
    if shot not in spec.shots and name:
        known = ", ".join(spec.shots) or "none"
        return f"{option} {shot}: no such shot at the {spec.gate} gate (shots: {known})"
    return f"{option} {shot}: {error['msg']}"


# -- the form each pause shows, built from its spec ------------------------------------------

#: notes that are empty (nothing asked) or say something: blank notes are refused. Python's `re`
#: runs it on both sides (the model here, `jsonschema` on the Prefect server).
OPTIONAL_NOTES = r"^$|\S"
_SHOT_CONFIG = ConfigDict(extra="forbid", regex_engine="python-re")


def variant_label(spec: GateSpec, shot: str, index: int) -> str:
    """A variant as the form's dropdown and the contact sheet name it: `#1 · identity 0.81 ·
    quality 0.54` (identity only for shots with characters)."""
    return score_label(index, spec.identity.get(shot), spec.quality.get(shot))


def score_label(
    index: int, identity: Sequence[float] | None = None, quality: Sequence[float] | None = None
) -> str:
    """`#index · identity x · quality y`, each score where there is one for this variant."""
    parts = [f"#{index}"]
    if identity and index < len(identity):
        parts.append(f"identity {identity[index]:.2f}")
    if quality and index < len(quality):
        parts.append(f"quality {quality[index]:.2f}")
    return " · ".join(parts)


def version_label(spec: GateSpec, index: int) -> str:
    """A storyboard version as the form's dropdown names it: `#1 · 雪夜归途`."""
    names = spec.version_names
    return f"#{index} · {names[index]}" if index < len(names) and names[index] else f"#{index}"


def _choice(labels: list[str], what: str) -> Any:
    """Before-validator: a variant number (the CLI's `--pick a=1`) becomes its label; a number
    out of range is refused with the range."""

    def to_label(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | str):
            return value
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            return value
        index = int(value)
        if 0 <= index < len(labels):
            return labels[index]
        raise PydanticCustomError(
            "out_of_range",
            "out of range, {what} has {count} {kind}(s) (0..{last})",
            {"what": what, "count": len(labels), "last": len(labels) - 1,
             "kind": "version" if what == "this storyboard" else "variant"},
        )

    return BeforeValidator(to_label)


def _label_index(label: str) -> int:
    return int(label.split(" ", 1)[0].lstrip("#"))


def _title(spec: GateSpec, shot: str) -> str:
    description = spec.descriptions.get(shot, "")
    if len(description) > 80:
        description = description[:79] + "…"
    return f"{shot}: {description}" if description else shot


def _images_shot(spec: GateSpec, shot: str) -> type[BaseModel]:
    labels = [variant_label(spec, shot, i) for i in range(max(1, spec.shots[shot]))]
    picked = int((spec.defaults.get("picks") or {}).get(shot, 0))
    picked = picked if 0 <= picked < len(labels) else 0
    choice = Annotated[Literal[tuple(labels)], _choice(labels, f"shot {shot}")]  # type: ignore[misc]
    return create_model(
        f"Shot {shot}",
        __config__=_SHOT_CONFIG,
        __doc__="The variant to keep, or notes that reject the shot (only it is regenerated).",
        pick=(choice, Field(labels[picked], title="variant",
                            description="the take to keep (numbered as on the contact sheet)")),
        notes=(str, Field("", pattern=OPTIONAL_NOTES, title="notes (reject)",
                          description="filled: the shot is regenerated with these notes")),
    )


def _clips_shot(spec: GateSpec, shot: str) -> type[BaseModel]:
    seed = spec.seeds.get(shot, 0)
    lines = {
        language: (_line_model(shot, language, line), Field(
            _line_model(shot, language, line)(), title=f"voice-over ({language}): "
            f"{line.duration:.2f} s", description="change the text, voice or speed to re-take "
            "the line (only it is spoken again and mixed; no picture is re-made)"))
        for language, line in spec.lines.get(shot, {}).items()
    }  # fmt: skip
    return create_model(
        f"Clip {shot}",
        __config__=_SHOT_CONFIG,
        __doc__="Keep the clip, or make it again (with notes and/or another seed); re-take its "
        "voice-over line.",
        regenerate=(bool, Field(False, description="make a new take of this clip")),
        notes=(str, Field("", pattern=OPTIONAL_NOTES,
                          description="filled: a new take with these notes")),
        seed=(int, Field(seed, ge=0, description=f"another seed makes a new take ({seed} now)")),
        **lines,
    )


#: what a line's text and voice must hold: something (an empty line is not a re-take)
SOME_TEXT = r"\S"


def _line_model(shot: str, language: str, line: LineOnTable) -> type[BaseModel]:
    return create_model(
        f"Line {shot} {language}",
        __config__=_SHOT_CONFIG,
        __doc__="The line as spoken now; a changed field re-takes it.",
        text=(str, Field(line.text, pattern=SOME_TEXT, description="what is said")),
        voice=(str, Field(line.voice, pattern=SOME_TEXT,
                          description=f"the {line.engine or 'engine'}'s voice")),
        speed=(float, Field(line.speed, ge=0.5, le=2.0, description="1.0: the engine's pace")),
    )


def _storyboard_checks(model: Any) -> Any:
    if not model.approve and not model.notes.strip():
        raise PydanticCustomError(
            "revision_without_notes",
            "empty; a revision needs notes that say what to change (or approve)",
        )
    return model


NO_REVISIONS = (
    "notes need an LLM to revise the storyboard and this run has none (the offline planner); "
    "approve a version (leave --notes out), or run `reelflow script --llm NAME`"
)


def _no_revisions(model: Any) -> Any:
    if model.notes.strip() or not model.approve:
        raise PydanticCustomError("revision_without_llm", NO_REVISIONS)
    return model


def answer_model(spec: GateSpec, base: type[BaseModel] | None = None) -> type[BaseModel]:
    """The form of one pause, made from its spec: per shot a dropdown of its variants (labelled
    with their scores) and notes that reject it; per clip a regenerate switch, notes and seed;
    the storyboard's versions by name. Defaults are the current picks. Its JSON schema is what
    the Prefect UI renders and its server checks; `reelflow approve` validates with it too.

    ``base`` is the class it derives from (Prefect's ``RunInput`` in flows/forms.py: the core
    does not import Prefect)."""
    base = base or _Answer
    name = f"{spec.gate.capitalize()}Review"
    reviewer = (str, Field("", description="who decides"))
    if spec.gate == "storyboard":
        labels = [version_label(spec, i) for i in range(max(1, spec.versions))]
        chosen = int(spec.defaults.get("version") or 0)
        chosen = chosen if 0 <= chosen < len(labels) else 0
        choice = Annotated[Literal[tuple(labels)], _choice(labels, "this storyboard")]  # type: ignore[misc]
        return create_model(
            name, __base__=base,
            __validators__={"checks": model_validator(mode="after")(
                _storyboard_checks if spec.revisions else _no_revisions)},
            version=(choice, Field(labels[chosen], description="the version to continue with")),
            approve=(bool, Field(True, description="false sends the notes back for a revision")),
            notes=(str, Field("", description="what to change (a revision)")),
            reviewer=reviewer,
        )  # fmt: skip
    make = _images_shot if spec.gate == "images" else _clips_shot
    fields: dict[str, Any] = {}
    for index, shot in enumerate(spec.shots):
        shot_model = make(spec, shot)
        fields[f"shot_{index}"] = (shot_model, Field(
            shot_model(), alias=shot, title=_title(spec, shot)))
    return create_model(name, __base__=base, reviewer=reviewer, **fields)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def decision(spec: GateSpec, answer: BaseModel) -> dict[str, Any]:
    """A form's answer in the decision's shape the stages act on and the manifest keeps:
    images ``picks``/``reject``, clips ``regenerate``/``new_seeds``/``again``, storyboard
    ``version``/``approve``/``notes``."""
    data = answer.model_dump(mode="json", by_alias=True)
    reviewer = str(data.pop("reviewer", "") or "")
    if spec.gate == "storyboard":
        notes = str(data.get("notes") or "")
        return {"version": _label_index(data["version"]), "approve": bool(data["approve"])
                and not notes.strip(), "notes": notes, "reviewer": reviewer}
    shots = {shot: data[shot] for shot in spec.shots if shot in data}
    if spec.gate == "images":
        return {
            "picks": {shot: _label_index(item["pick"]) for shot, item in shots.items()},
            "reject": {s: item["notes"] for s, item in shots.items() if item["notes"].strip()},
            "reviewer": reviewer,
        }
    regenerate = {s: item["notes"] for s, item in shots.items() if item["notes"].strip()}
    new_seeds = {s: item["seed"] for s, item in shots.items()
                 if item["seed"] != spec.seeds.get(s, item["seed"])}
    again = [s for s, item in shots.items()
             if item["regenerate"] and s not in regenerate and s not in new_seeds]
    retakes = []
    for shot, item in shots.items():
        for language, line in spec.lines.get(shot, {}).items():
            asked = item.get(language) or {}
            now = {"text": asked.get("text", line.text), "voice": asked.get("voice", line.voice),
                   "speed": float(asked.get("speed", line.speed))}
            if now != {"text": line.text, "voice": line.voice, "speed": line.speed}:
                retakes.append({"shot": shot, "language": language, **now})
    return {"regenerate": regenerate, "new_seeds": new_seeds, "again": again,
            "retakes": retakes, "reviewer": reviewer}


def carry_picks(
    fresh: Mapping[str, int],
    earlier: Mapping[str, int],
    *,
    regenerated: Iterable[str] = (),
    counts: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """The next round's picks: ``fresh`` defaults overridden by the ``earlier`` round's picks,
    except for shots that were ``regenerated`` (their variants are new, so the fresh default
    holds) and picks no longer in range of ``counts``."""
    regenerated = set(regenerated)
    out = dict(fresh)
    for shot, index in earlier.items():
        if shot not in out or shot in regenerated:
            continue
        if counts is not None and not 0 <= index < counts.get(shot, 0):
            continue
        out[shot] = index
    return out

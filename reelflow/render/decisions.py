"""Reviewers' decisions at the gates: what each gate accepts, checking an answer against the run,
and carrying earlier decisions into the next round.

Why here (plain Python, no Prefect): the flow publishes a :class:`GateSpec` next to each pause
(the shots on the table, how many variants each has, the form's defaults); ``reelflow approve``
reads it back and refuses a bad answer *before* resuming, so a typo never consumes the gate; the
flow checks UI answers with the same :func:`check_answer`. :func:`carry_picks` makes a pick made
in round 1 the default of round 2, so rejecting one shot never resets another's choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from reelflow.errors import InputError

__all__ = [
    "GATE_OPTIONS",
    "AnswerError",
    "GateSpec",
    "carry_picks",
    "check_answer",
    "check_fields",
]

GateName = Literal["storyboard", "images", "clips"]

#: answer field -> the `reelflow approve` option that sets it, per gate
GATE_OPTIONS: dict[str, dict[str, str]] = {
    "storyboard": {"approve": "", "version": "--version", "notes": "--notes"},
    "images": {"picks": "--pick", "reject": "--reject"},
    "clips": {"regenerate": "--reject", "new_seeds": "--new-seed"},
}


class AnswerError(InputError):
    """An answer that does not fit the gate it is given to (exit 2; the gate keeps waiting)."""


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

    def approve_command(self, run_id: str) -> str:
        """The command to run next, with a real example of each option this gate takes."""
        shot = next(iter(self.shots), "SHOT")
        examples = {
            "storyboard": '[--version N] [--notes "..."]',
            "images": f'[--pick {shot}=N] [--reject {shot}="notes"]',
            "clips": f'[--reject {shot}="notes"] [--new-seed {shot}=SEED]',
        }
        return f"reelflow approve {run_id} {examples[self.gate]}"


def _shots(spec: GateSpec, values: Iterable[str], option: str) -> None:
    unknown = sorted(set(values) - set(spec.shots))
    if unknown:
        known = ", ".join(spec.shots) or "none"
        raise AnswerError(
            f"{option} {unknown[0]}: no such shot at the {spec.gate} gate (shots: {known})"
        )


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
    ``spec``: a field this gate does not take, an unknown shot, a variant out of range."""
    check_fields(spec.gate, answer)
    options = GATE_OPTIONS[spec.gate]
    if spec.gate == "storyboard":
        version = int(answer.get("version") or 0)
        if not 0 <= version < max(1, spec.versions):
            raise AnswerError(
                f"--version {version}: out of range, this storyboard has {spec.versions} "
                f"version(s) (0..{spec.versions - 1})"
            )
        return
    for name, value in answer.items():
        if name in options and isinstance(value, Mapping):
            _shots(spec, value, options[name])
    for shot, index in (answer.get("picks") or {}).items():
        count = spec.shots[shot]
        if not 0 <= int(index) < count:
            raise AnswerError(
                f"--pick {shot}={index}: out of range, shot {shot} has {count} variant(s) "
                f"(0..{count - 1})"
            )


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

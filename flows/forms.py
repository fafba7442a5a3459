"""The gates' forms and names, shared by the two sides of an approval: the flow that waits
(flows/gates.py) and the reviewer's client that answers (flows/reviewer.py, called by the CLI).

What a person fills in is made for each pause from the gate's spec (:func:`review_form`: per
shot a dropdown of its variants, notes that reject it, ...); its JSON schema is what the Prefect
UI renders and what the server checks an answer against before it resumes the run, and
`reelflow approve` validates with the same model. The classes below are the decisions the
stages act on and the manifest keeps (the form's answer is turned into one of them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from prefect.input import RunInput
from pydantic import BaseModel, Field

from reelflow.render.decisions import GateSpec, LineRetake, answer_model

Approval = Literal["manual", "auto", "quality-gate"]
Gate = Literal["storyboard", "images", "clips"]

#: the tag every run that waits at a reelflow gate carries: `pending_runs` filters on it
GATE_TAG = "reelflow"
#: invalid answers one gate round takes before the run fails (each one needs its own pause key)
MAX_ATTEMPTS = 10

#: notes that say something: the server refuses an empty or blank rejection from the UI
Notes = Annotated[str, Field(pattern=r"\S")]


class StoryboardReview(RunInput):
    """Approve the storyboard, choose one of its alternative versions, or ask for a revision."""

    approve: bool = Field(True, description="false sends the notes back for a revision")
    version: int = Field(0, ge=0, description="which alternative version to continue with")
    notes: str = Field("", description="what to change (needed when approve is false)")
    reviewer: str = ""


class ImagesReview(RunInput):
    """Per shot: the chosen variant, or a rejection with notes (only those shots regenerate)."""

    picks: dict[str, int] = Field(
        default_factory=dict, description="shot id -> chosen variant number (default 0)"
    )
    reject: dict[str, Notes] = Field(
        default_factory=dict, description="shot id -> notes; the shot is regenerated with them"
    )
    reviewer: str = ""


class ClipsReview(RunInput):
    """Per shot: approve (default) or regenerate with notes and/or a new seed."""

    regenerate: dict[str, Notes] = Field(
        default_factory=dict, description="shot id -> notes for the regenerated clip"
    )
    new_seeds: dict[str, int] = Field(
        default_factory=dict, description="shot id -> seed for the regenerated clip"
    )
    again: list[str] = Field(
        default_factory=list, description="shots made again with a fresh seed, no notes"
    )
    retakes: list[LineRetake] = Field(
        default_factory=list, description="voice-over lines spoken again (text, voice, speed)"
    )
    reviewer: str = ""


FORMS: dict[str, type[RunInput]] = {
    "storyboard": StoryboardReview,
    "images": ImagesReview,
    "clips": ClipsReview,
}


def review_form(spec: GateSpec) -> type[RunInput]:
    """The form of one pause, made from its spec (reelflow/render/decisions.py `answer_model`)
    as a Prefect `RunInput`, so the UI renders it and the server validates answers with it."""
    return answer_model(spec, base=_FormBase)  # type: ignore[return-value]


class _FormBase(RunInput):
    """RunInput forbids unknown fields already; shots are fields aliased by their ids."""

    model_config = {**RunInput.model_config, "populate_by_name": True}  # type: ignore[misc]


class ApprovalRecord(BaseModel):
    """One decision, as the run manifest keeps it: who, when, what."""

    gate: Gate
    round: int
    policy: Approval
    reviewer: str
    decided_at: datetime
    decision: dict[str, Any]


def pause_key(gate: str, round_: int, attempt: int = 0) -> str:
    """The pause key of one wait: `images-2`, then `images-2-retry1`, ... after invalid answers.

    A deployed run re-runs from the top on every resume and finds each earlier key's answer
    again, so a new answer needs a new key; the attempt number keeps the keys bounded."""
    return f"{gate}-{round_}" if attempt == 0 else f"{gate}-{round_}-retry{attempt}"


def gate_of(key: str) -> str:
    """The gate a pause key belongs to (`images-2-retry1` -> `images`)."""
    return key.split("-", 1)[0]


def round_of(key: str) -> str:
    """The gate and round a pause key belongs to, as `reelflow pending` shows it (`images-2`)."""
    return key.split("-retry", 1)[0]


def spec_key(key: str) -> str:
    """The flow run input that holds the :class:`GateSpec` of the pause ``key``."""
    return f"{key}-reelflow-spec"

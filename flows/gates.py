"""Approval gates: the points where a person decides before the next expensive stage.

Each gate is a typed form (a Prefect `RunInput`). A local run pauses and waits in-process; a
deployed run suspends (the worker exits and the GPU is freed) and, on resume, re-runs from the top
with every finished task Cached. `auto` approves with the form's defaults; `quality-gate` approves
when the stage's checks pass and waits for a person otherwise.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from uuid import UUID

from prefect.context import get_run_context
from prefect.flow_runs import pause_flow_run, resume_flow_run, suspend_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field, ValidationError

Approval = Literal["manual", "auto", "quality-gate"]
Gate = Literal["storyboard", "images", "clips"]

R = TypeVar("R", bound=RunInput)


class StoryboardReview(RunInput):
    """Approve the storyboard, choose one of its alternative versions, or ask for a revision."""

    approve: bool = Field(True, description="false sends the notes back for a revision")
    version: int = Field(0, ge=0, description="which alternative version to continue with")
    notes: str = Field("", description="what to change (used when approve is false)")
    reviewer: str = ""


class ImagesReview(RunInput):
    """Per shot: the chosen variant, or a rejection with notes (only those shots regenerate)."""

    picks: dict[str, int] = Field(
        default_factory=dict, description="shot id -> chosen variant number (default 0)"
    )
    reject: dict[str, str] = Field(
        default_factory=dict, description="shot id -> notes; the shot is regenerated with them"
    )
    reviewer: str = ""


class ClipsReview(RunInput):
    """Per shot: approve (default) or regenerate with notes and/or a new seed."""

    regenerate: dict[str, str] = Field(
        default_factory=dict, description="shot id -> notes for the regenerated clip"
    )
    new_seeds: dict[str, int] = Field(
        default_factory=dict, description="shot id -> seed for the regenerated clip"
    )
    reviewer: str = ""


FORMS: dict[str, type[RunInput]] = {
    "storyboard": StoryboardReview,
    "images": ImagesReview,
    "clips": ClipsReview,
}


class ApprovalRecord(BaseModel):
    """One decision, as the run manifest keeps it: who, when, what."""

    gate: Gate
    round: int
    policy: Approval
    reviewer: str
    decided_at: datetime
    decision: dict[str, Any]


def poll_interval() -> int:
    return int(os.environ.get("REELFLOW_POLL_INTERVAL", "5"))


def gate_timeout() -> int:
    return int(os.environ.get("REELFLOW_GATE_TIMEOUT", str(24 * 3600)))


def _is_deployed_run() -> bool:
    context = get_run_context()
    flow_run = getattr(context, "flow_run", None)
    return bool(flow_run and flow_run.deployment_id)


def _announce_gate(key: str) -> None:
    """Label the run with the gate it is about to wait at (`reelflow.gate`): the Paused and
    Suspended events carry no pause key, and the gate notification (deployments/automations.py)
    reads this label to say which gate a run waits at."""
    from prefect.client.orchestration import get_client

    flow_run = getattr(get_run_context(), "flow_run", None)
    if flow_run is None:
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run_labels(flow_run.id, {"reelflow.gate": key})


def wait_for_review(
    gate: Gate,
    round_: int,
    form: type[R],
    *,
    description: str,
    policy: Approval,
    checks_passed: bool = False,
    **defaults: Any,
) -> tuple[R, ApprovalRecord]:
    """Block (or suspend) until a reviewer answers the gate's form; auto policies answer at once."""
    if policy == "auto" or (policy == "quality-gate" and checks_passed):
        answer = form(**defaults)
        reviewer = policy
    else:
        key = f"{gate}-{round_}"
        request = form.with_initial_data(description=description, **defaults)
        while True:
            _announce_gate(key)
            try:
                if _is_deployed_run():
                    answer = suspend_flow_run(
                        wait_for_input=request, key=key, timeout=gate_timeout()
                    )
                else:
                    answer = pause_flow_run(
                        wait_for_input=request,
                        key=key,
                        timeout=gate_timeout(),
                        poll_interval=poll_interval(),
                    )
                break
            except ValidationError as exc:  # validators run after the resume: ask again
                key = f"{key}-retry"
                description = f"**The last answer was invalid:** {exc.errors()[0]['msg']}\n\n" + (
                    description
                )
        reviewer = getattr(answer, "reviewer", "") or "unknown"
    record = ApprovalRecord(
        gate=gate,
        round=round_,
        policy=policy,
        reviewer=reviewer,
        decided_at=datetime.now(UTC),
        decision=answer.model_dump(mode="json", exclude={"metadata"}),
    )
    return answer, record


# -- the reviewer's side (CLI) -----------------------------------------------------------------


def _waiting_gate(flow_run: Any) -> str:
    state = flow_run.state
    if state is None or not state.is_paused():
        name = state.name if state else "unknown"
        raise LookupError(f"run {flow_run.id} is not waiting for approval (state: {name})")
    key = state.state_details.pause_key or ""
    gate = key.split("-", 1)[0]
    if gate not in FORMS:
        raise LookupError(f"run {flow_run.id} is paused at '{key}', which is not a reelflow gate")
    return gate


def approve_run(
    run_id: str,
    *,
    picks: dict[str, int] | None = None,
    rejects: dict[str, str] | None = None,
    new_seeds: dict[str, int] | None = None,
    notes: str = "",
    version: int | None = None,
    reviewer: str = "",
) -> str:
    """Resume a paused run with the answer for whichever gate it waits at; returns the gate."""
    from prefect.client.orchestration import get_client

    try:
        flow_run_id = UUID(run_id)
    except ValueError:
        raise ValueError(f"'{run_id}' is not a flow run id") from None
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    gate = _waiting_gate(flow_run)
    answer: dict[str, Any]
    if gate == "storyboard":
        answer = {"approve": not notes, "notes": notes, "version": version or 0}
    elif gate == "images":
        answer = {"picks": picks or {}, "reject": rejects or {}}
    else:
        answer = {"regenerate": rejects or {}, "new_seeds": new_seeds or {}}
    answer["reviewer"] = reviewer
    FORMS[gate].model_validate(answer)  # fail here, with the CLI's message, not in the flow
    resume_flow_run(flow_run_id, run_input=answer)
    return gate


def pending_runs() -> list[dict[str, str]]:
    """Runs that wait at a gate, newest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStateName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=dict(name=FlowRunFilterStateName(any_=["Paused", "Suspended"]))
            )
        )
    out = []
    for run in runs:
        key = run.state.state_details.pause_key if run.state else ""
        out.append({"id": str(run.id), "name": run.name, "gate": key or "?"})
    return out

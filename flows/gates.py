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

from reelflow.render.decisions import AnswerError, GateSpec, check_answer, check_fields

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


def spec_key(pause_key: str) -> str:
    """The flow run input that holds the :class:`GateSpec` of the pause ``pause_key``."""
    return f"{pause_key}-reelflow-spec"


def _announce_gate(key: str, spec: GateSpec | None = None) -> None:
    """Label the run with the gate it is about to wait at (`reelflow.gate`, and
    `reelflow.project`): the Paused and Suspended events carry no pause key, and the gate
    notification (deployments/automations.py) and `reelflow pending` read these labels. The
    gate's spec (shots, variant counts, defaults) is saved as a run input for `reelflow approve`,
    and the command to run next is printed where the person who started the run sees it."""
    import sys

    from prefect.client.orchestration import get_client
    from prefect.logging import get_run_logger

    flow_run = getattr(get_run_context(), "flow_run", None)
    if flow_run is None:
        return
    labels: dict[str, Any] = {"reelflow.gate": key}
    if spec is not None and spec.project:
        labels["reelflow.project"] = spec.project
    with get_client(sync_client=True) as client:
        client.update_flow_run_labels(flow_run.id, labels)
        if spec is not None:
            try:  # a resumed (re-run) flow publishes the same pause again
                client.delete_flow_run_input(flow_run.id, spec_key(key))
            except Exception:  # noqa: BLE001 - absent is the normal case
                pass
            client.create_flow_run_input(flow_run.id, spec_key(key), spec.model_dump_json())
    if spec is not None:
        line = (
            f"waiting at the {spec.gate} gate; to decide: {spec.approve_command(str(flow_run.id))}"
        )
        get_run_logger().info(line)
        print(f"\n{line}\n", file=sys.stderr, flush=True)


def wait_for_review(
    gate: Gate,
    round_: int,
    form: type[R],
    *,
    description: str,
    policy: Approval,
    checks_passed: bool = False,
    spec: GateSpec | None = None,
    **defaults: Any,
) -> tuple[R, ApprovalRecord]:
    """Block (or suspend) until a reviewer answers the gate's form; auto policies answer at once.

    ``spec`` (the shots and variant counts on the table) is published for `reelflow approve` to
    check answers against, and answers from the UI that do not fit it are asked again.
    """
    if spec is not None:
        spec = spec.model_copy(update={"defaults": {**spec.defaults, **defaults}})
    if policy == "auto" or (policy == "quality-gate" and checks_passed):
        answer = form(**defaults)
        reviewer = policy
    else:
        key = f"{gate}-{round_}"
        request = form.with_initial_data(description=description, **defaults)
        while True:
            _announce_gate(key, spec)
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
                if spec is not None:
                    check_answer(spec, answer.model_dump(mode="json", exclude={"metadata"}))
                break
            except (ValidationError, AnswerError) as exc:  # checked after the resume: ask again
                key = f"{key}-retry"
                why = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
                description = f"**The last answer was invalid:** {why}\n\n" + description
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


def _read_spec(client: Any, flow_run: Any) -> GateSpec | None:
    key = flow_run.state.state_details.pause_key or ""
    try:
        return GateSpec.model_validate_json(client.read_flow_run_input(flow_run.id, spec_key(key)))
    except Exception:  # noqa: BLE001 - runs paused by an older reelflow publish no spec
        return None


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
    """Resume a paused run with the answer for whichever gate it waits at; returns the gate.

    The answer is checked against the gate's published spec first (options this gate takes,
    shot ids, variant ranges): a bad answer raises :class:`AnswerError` and the run keeps
    waiting at the same gate. Picks not given keep the form's defaults (earlier rounds' picks).
    """
    from prefect.client.orchestration import get_client

    try:
        flow_run_id = UUID(run_id)
    except ValueError:
        raise AnswerError(f"'{run_id}' is not a flow run id") from None
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        gate = _waiting_gate(flow_run)
        spec = _read_spec(client, flow_run)
    given: dict[str, Any] = {
        "picks": picks or {},
        "regenerate" if gate == "clips" else "reject": rejects or {},
        "new_seeds": new_seeds or {},
        "notes": notes,
        "version": version,
    }
    given = {k: v for k, v in given.items() if v not in (None, "", {})}
    if spec is None:  # a run paused by an older reelflow: only the fields can be checked
        check_fields(gate, given)
    else:
        check_answer(spec, given)
    answer: dict[str, Any]
    if gate == "storyboard":
        answer = {"approve": not notes, "notes": notes, "version": version or 0}
    elif gate == "images":
        carried = dict((spec.defaults.get("picks") if spec else None) or {})
        answer = {"picks": {**carried, **(picks or {})}, "reject": rejects or {}}
    else:
        answer = {"regenerate": rejects or {}, "new_seeds": new_seeds or {}}
    answer["reviewer"] = reviewer
    FORMS[gate].model_validate(answer)  # fail here, with the CLI's message, not in the flow
    resume_flow_run(flow_run_id, run_input=answer)
    return gate


def pending_runs() -> list[dict[str, str]]:
    """Runs that wait at a gate, newest first: id, project, gate and how long they have waited."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStateName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=dict(name=FlowRunFilterStateName(any_=["Paused", "Suspended"]))
            )
        )
    now = datetime.now(UTC)
    out = []
    for run in runs:
        key = run.state.state_details.pause_key if run.state else ""
        labels = run.labels or {}
        since = run.state.timestamp if run.state else None
        out.append(
            {
                "id": str(run.id),
                "name": run.name,
                "project": str(labels.get("reelflow.project") or run.name),
                "gate": key or "?",
                "age": _age((now - since).total_seconds()) if since else "?",
            }
        )
    return out


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600)}h"

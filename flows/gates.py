"""Approval gates, the flow's side: the points where a run waits for a person before the next
expensive stage. The reviewer's side (answering, listing) is flows/reviewer.py; the forms both
sides share are in flows/forms.py.

Each gate is a typed form (a Prefect `RunInput`). A local run pauses and waits in-process; a
deployed run suspends (the worker exits and the GPU is freed) and, on resume, re-runs from the top
with every finished task Cached. `auto` approves with the form's defaults; `quality-gate` approves
when the stage's checks pass and waits for a person otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.logging import get_run_logger
from pydantic import ValidationError

from flows.forms import (
    FORMS,
    GATE_TAG,
    MAX_ATTEMPTS,
    Approval,
    ApprovalRecord,
    ClipsReview,
    Gate,
    ImagesReview,
    StoryboardReview,
    pause_key,
    review_form,
    spec_key,
)
from reelflow.errors import ReelflowError
from reelflow.progress import waiting
from reelflow.render.decisions import AnswerError, GateSpec, decision

__all__ = [
    "FORMS",
    "Approval",
    "ApprovalRecord",
    "ClipsReview",
    "Gate",
    "GateGaveUp",
    "ImagesReview",
    "StoryboardReview",
    "wait_for_review",
]

R = TypeVar("R", bound=RunInput)


class GateGaveUp(ReelflowError):
    """A gate round that got MAX_ATTEMPTS invalid answers in a row: the run fails, in one line."""


def poll_interval() -> int:
    return int(os.environ.get("REELFLOW_POLL_INTERVAL", "5"))


def gate_timeout() -> int:
    return int(os.environ.get("REELFLOW_GATE_TIMEOUT", str(24 * 3600)))


def _is_deployed_run() -> bool:
    context = get_run_context()
    flow_run = getattr(context, "flow_run", None)
    return bool(flow_run and flow_run.deployment_id)


def _announce_gate(key: str, spec: GateSpec | None = None) -> None:
    """Tag the run as reelflow's (`reelflow pending` filters on the tag on the server) and label
    it with the gate it is about to wait at (`reelflow.gate`, and `reelflow.project`): the Paused
    and Suspended events carry no pause key, and the gate notification
    (deployments/automations.py) and `reelflow pending` read these labels. The gate's spec
    (shots, variant counts, defaults) is saved as a run input for `reelflow approve`, and the
    command to run next is printed where the person who started the run sees it."""
    flow_run = getattr(get_run_context(), "flow_run", None)
    if flow_run is None:
        return
    labels: dict[str, Any] = {"reelflow.gate": key}
    if spec is not None and spec.project:
        labels["reelflow.project"] = spec.project
    with get_client(sync_client=True) as client:
        tags = client.read_flow_run(flow_run.id).tags or []
        if GATE_TAG not in tags:
            client.update_flow_run(flow_run.id, tags=[*tags, GATE_TAG])
        client.update_flow_run_labels(flow_run.id, labels)
        if spec is not None:
            try:  # a resumed (re-run) flow publishes the same pause again
                client.delete_flow_run_input(flow_run.id, spec_key(key))
            except Exception:  # noqa: BLE001 - absent is the normal case
                pass
            client.create_flow_run_input(flow_run.id, spec_key(key), spec.model_dump_json())
    if spec is not None:  # once: the run's log is what the console of `reelflow render` shows
        line = (
            f"waiting at the {spec.gate} gate; to decide: {spec.approve_command(str(flow_run.id))}"
        )
        get_run_logger().info(line)


def _why(exc: ValidationError | AnswerError) -> str:
    if isinstance(exc, AnswerError):
        return str(exc)
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


def wait_for_review(
    gate: Gate,
    round_: int,
    form: type[R],
    *,
    description: str,
    policy: Approval,
    checks_passed: bool = False,
    spec: GateSpec | None = None,
    check: Callable[[R], None] | None = None,
    **defaults: Any,
) -> tuple[R, ApprovalRecord]:
    """Block (or suspend) until a reviewer answers the gate's form; auto policies answer at once.

    ``spec`` (the shots, variants and scores on the table) makes the form the person fills in
    (flows/forms.py `review_form`) and is published for `reelflow approve`; the answer comes
    back as a ``form`` (the decision). Answers the form's model refuses after the server let
    them through are asked again, under a new pause key each time (at most MAX_ATTEMPTS; then
    :class:`GateGaveUp` fails the run). ``check`` acts on an answer before the gate lets it
    go (a re-taken voice-over line is spoken and measured): an AnswerError it raises is
    refused like one the form refuses, and the gate asks again with the reason.
    """
    if spec is not None:
        spec = spec.model_copy(update={"defaults": {**spec.defaults, **defaults}})
    if policy == "auto" or (policy == "quality-gate" and checks_passed):
        answer = form(**defaults)
        reviewer = policy
    else:
        asked: type[RunInput] = review_form(spec) if spec is not None else form
        why = ""
        for attempt in range(MAX_ATTEMPTS):
            key = pause_key(gate, round_, attempt)
            shown = description
            if why:
                shown = f"**The last answer was invalid:** {why}\n\n{description}"
            if spec is not None:  # the defaults are the form's own (the spec's)
                request = asked.with_initial_data(description=shown)
            else:
                request = asked.with_initial_data(description=shown, **defaults)
            _announce_gate(key, spec)
            try:
                with waiting(gate, round_):  # a person's time: not counted as the render's work
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
                    answer = form(**decision(spec, answer))
                if check is not None:
                    check(answer)
                break
            except (ValidationError, AnswerError) as exc:  # checked after the resume: ask again
                why = _why(exc)
        else:
            raise GateGaveUp(
                f"the {gate} gate (round {round_}) got {MAX_ATTEMPTS} invalid answers in a row; "
                f"the last: {why}"
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

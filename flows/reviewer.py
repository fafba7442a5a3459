"""Approval gates, the reviewer's side: answering a waiting run and listing the runs that wait.

It runs in the reviewer's process (`reelflow approve` / `reelflow pending`), not in the flow; the
flow's side is flows/gates.py and the forms both share are in flows/forms.py. Answers are checked
here, against the spec the flow published, before the run resumes: a bad answer never consumes
the gate.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterTags,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.flow_runs import resume_flow_run
from pydantic import ValidationError

from flows.forms import FORMS, GATE_TAG, gate_of, round_of, spec_key
from reelflow.render.decisions import (
    GATE_OPTIONS,
    AnswerError,
    GateSpec,
    check_fields,
    form_data,
)

__all__ = ["approve_run", "pending_runs"]


def _waiting_gate(flow_run: Any) -> str:
    state = flow_run.state
    if state is None or not state.is_paused():
        name = state.name if state else "unknown"
        raise LookupError(f"run {flow_run.id} is not waiting for approval (state: {name})")
    key = state.state_details.pause_key or ""
    gate = gate_of(key)
    if gate not in FORMS:
        raise LookupError(f"run {flow_run.id} is paused at '{key}', which is not a reelflow gate")
    return gate


def _read_spec(client: Any, flow_run: Any) -> GateSpec | None:
    key = flow_run.state.state_details.pause_key or ""
    try:
        return GateSpec.model_validate_json(client.read_flow_run_input(flow_run.id, spec_key(key)))
    except Exception:  # noqa: BLE001 - runs paused by an older reelflow publish no spec
        return None


def _wait_for_form(client: Any, flow_run: Any, timeout: float = 30.0) -> None:
    """Wait until the paused run's form (Prefect's run-input schema) is on the server.

    Prefect writes that schema just after the run enters Paused, and the server refuses a
    resume that comes in between ("Run input schema not found"); a reviewer who answers as
    soon as the gate appears (or a busy server, slow to write it) would hit that window.
    """
    keyset = flow_run.state.state_details.run_input_keyset
    if not keyset:  # paused without a form: nothing to wait for
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.read_flow_run_input(flow_run.id, keyset["schema"])
            return
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise
        if time.monotonic() > deadline:
            raise AnswerError(f"run {flow_run.id} is paused but its form did not appear within "
                              f"{timeout:.0f} s; try again")
        time.sleep(0.2)


def _form_error(gate: str, exc: ValidationError) -> AnswerError:
    """The form's refusal in one line, named by the CLI option that sets the field."""
    error = exc.errors()[0]
    field, *rest = error["loc"] or ("?",)
    option = GATE_OPTIONS[gate].get(str(field)) or str(field)
    where = " ".join([option, *(str(part) for part in rest)])
    return AnswerError(f"{where}: {error['msg']}")


def approve_run(
    run_id: str,
    *,
    picks: dict[str, int] | None = None,
    rejects: dict[str, str] | None = None,
    new_seeds: dict[str, int] | None = None,
    notes: str | None = None,
    version: int | None = None,
    reviewer: str = "",
    retakes: dict[str, str] | None = None,
    voices: dict[str, str] | None = None,
    speeds: dict[str, float] | None = None,
    lang: str | None = None,
) -> str:
    """Resume a paused run with the answer for whichever gate it waits at; returns the gate.

    The answer is checked with the form the run shows in the UI, made from the gate's
    published spec (options this gate takes, shot ids, variant ranges, notes that say
    something), and sent as that form's answer: a bad answer raises :class:`AnswerError` (one
    line) and the run keeps waiting at the same gate. Picks not given keep the form's defaults
    (earlier rounds' picks). No ``notes`` means "approve" at the storyboard gate; empty or
    blank notes are refused (they ask for a revision of nothing). At the clips gate
    ``retakes``/``voices``/``speeds`` re-take shots' voice-over lines (new text, voice, speed)
    in ``lang`` (default: the film's language).
    """
    try:
        flow_run_id = UUID(run_id)
    except ValueError:
        raise AnswerError(f"'{run_id}' is not a flow run id") from None
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        gate = _waiting_gate(flow_run)
        spec = _read_spec(client, flow_run)
        _wait_for_form(client, flow_run)
    given: dict[str, Any] = {
        "picks": picks or {},
        "regenerate" if gate == "clips" else "reject": rejects or {},
        "new_seeds": new_seeds or {},
        "notes": notes,
        "version": version,
        "retake": retakes or {},
        "voices": voices or {},
        "speeds": speeds or {},
        "lang": lang,
    }
    given = {k: v for k, v in given.items() if v not in (None, {})}
    if spec is not None:  # the form the UI shows checks it, and it is sent as the UI would
        answer = form_data(spec, {**given, "reviewer": reviewer})
    else:  # a run paused by an older reelflow: only the fields can be checked
        check_fields(gate, given)
        answer = _old_form_answer(gate, picks, rejects, new_seeds, notes, version, reviewer)
    resume_flow_run(flow_run_id, run_input=answer)
    return gate


def _old_form_answer(
    gate: str,
    picks: dict[str, int] | None,
    rejects: dict[str, str] | None,
    new_seeds: dict[str, int] | None,
    notes: str | None,
    version: int | None,
    reviewer: str,
) -> dict[str, Any]:
    """The answer to a run paused with the fixed forms of flows/forms.py (no spec published)."""
    answer: dict[str, Any]
    if gate == "storyboard":
        answer = {"approve": notes is None, "notes": notes or "", "version": version or 0}
    elif gate == "images":
        answer = {"picks": picks or {}, "reject": rejects or {}}
    else:
        answer = {"regenerate": rejects or {}, "new_seeds": new_seeds or {}}
    answer["reviewer"] = reviewer
    try:  # fail here, with the CLI's message, not in the flow
        FORMS[gate].model_validate(answer)
    except ValidationError as exc:
        raise _form_error(gate, exc) from None
    return answer


def pending_runs() -> list[dict[str, str]]:
    """reelflow's runs that wait at a gate, newest first: id, project, gate and how long they
    have waited. The server filters: paused or suspended, and tagged by a reelflow gate."""
    waiting = FlowRunFilter(
        state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused", "Suspended"])),
        tags=FlowRunFilterTags(all_=[GATE_TAG]),
    )
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=waiting, sort=FlowRunSort.START_TIME_DESC)
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
                "gate": round_of(key) if key else "?",
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

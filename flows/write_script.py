"""write-script: brief -> versions -> calibration -> the director's choice and notes -> approved.

The SOP's first stage, with the LLM as a script editor: two or three versions in different
directions, each calibrated (structure, logic, characters, emotion curve), shown side by side at
the storyboard gate; the director picks one and either approves it or sends notes, and the notes
come back as a revised, recalibrated version. Every round is kept in
`projects/{project}/scripts/{run}/rounds.json`. The result is an `s3://` URI that
`produce_video(storyboard=...)` takes as it is. Without an LLM endpoint the template planner
writes the versions and the rules calibrate them, so the stage works offline.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from flows.gates import Approval, ApprovalRecord, wait_for_review
from reelflow.llm import Usage
from reelflow.render.decisions import NO_REVISIONS, GateSpec
from reelflow.script.calibration import CalibrationReport
from reelflow.script.drafts import Brief, template_plan
from reelflow.script.rounds import (
    Calibrated,
    EndpointInfo,
    Revised,
    ScriptRound,
    ScriptRounds,
    VersionRecord,
    rounds_key,
)
from reelflow.storyboard import Storyboard
from tasks.common import RESULTS_BLOCK, get_store
from tasks.script import (
    calibrate_version,
    draft_versions,
    endpoint_info,
    revise_version,
    script_review,
)


class ScriptReview(RunInput):
    """The storyboard gate of the script stage: choose a version; approve it or send notes.

    Field names match `flows.gates.StoryboardReview`, so `reelflow approve RUN --version N
    [--notes ...]` answers this form too. Notes always mean a revision.
    """

    version: int = Field(0, ge=0, description="which version to continue with (0, 1, ...)")
    approve: bool = Field(True, description="approve the chosen version (ignored when notes)")
    notes: str = Field("", description="what to change in the chosen version; empty approves")
    reviewer: str = ""

    @property
    def wants_revision(self) -> bool:
        return bool(self.notes.strip()) or not self.approve


def _answer_problem(answer: ScriptReview, count: int, revisions: bool = True) -> str:
    """Why an answer cannot be acted on ('' when it can): the schema cannot know the count,
    nor whether an LLM is there to act on notes (the offline planner cannot revise)."""
    if answer.version >= count:
        return f"version {answer.version} does not exist: choose 0-{count - 1}"
    if not revisions and answer.wants_revision:
        return NO_REVISIONS
    if not answer.approve and not answer.notes.strip():
        return "not approved but no notes: write what to change, or approve"
    return ""


def _version_record(version: Calibrated) -> VersionRecord:
    store = get_store()
    board = store.get_json(version.storyboard_key, Storyboard)
    report = store.get_json(version.report_key, CalibrationReport)
    return VersionRecord(
        storyboard_key=version.storyboard_key, calibration_key=version.report_key,
        curve_key=version.curve_key, title=board.title, logline=board.logline,
        summary=report.summary, errors=report.count("error"), warnings=report.count("warning"),
    )


def _save(record: ScriptRounds) -> str:
    record.updated_at = datetime.now(UTC)
    key = rounds_key(record.project, record.run_id)
    parents = [v.storyboard_key for r in record.rounds for v in r.versions]
    return get_store().put_json(key, record, {"kind": "script-rounds", "parents": parents})


def _total(*usages: Usage) -> Usage:
    total = Usage()
    for usage in usages:
        total.add(usage)
    return total


@dataclass
class _Round:
    """What a round puts before the director: the calibrated versions, what they cost, and for a
    revision the notes it answers and the revision itself."""

    number: int
    calibrated: list[Calibrated]
    usage: Usage
    notes: str = ""
    revision: Revised | None = None


def _project_named(brief: Brief) -> Brief:
    """One project for every version, as the template planner names it."""
    if brief.project is not None:
        return brief
    return brief.model_copy(update={"project": template_plan(brief).project})


def _start_record(
    brief: Brief, versions: int, approval: Approval, endpoint: EndpointInfo | None
) -> ScriptRounds:
    project = str(brief.project)
    get_run_logger().info(
        "writing %d version(s) of %s with %s", versions, project,
        f"{endpoint.model} at {endpoint.base_url}" if endpoint else "the template planner")
    return ScriptRounds(
        run_id=str(flow_run.get_id() or "local"), project=project, brief=brief,
        endpoint=endpoint, approval_policy=approval, started_at=datetime.now(UTC),
    )


def _first_drafts(brief: Brief, llm_endpoint: str | None, versions: int) -> _Round:
    """`versions` storyboards in different directions, calibrated concurrently."""
    drafts = draft_versions(brief, llm_endpoint, versions)
    futures = calibrate_version.map(drafts.storyboard_keys, endpoint_name=unmapped(llm_endpoint))
    calibrated: list[Calibrated] = futures.result()
    return _Round(1, calibrated, _total(drafts.usage, *(c.usage for c in calibrated)))


def _record_round(record: ScriptRounds, step: _Round) -> ScriptRound:
    """Add the round to the record and save it, before the director is asked."""
    revision = step.revision
    current = ScriptRound(
        round=step.number, kind="revision" if revision else "drafts",
        versions=[_version_record(c) for c in step.calibrated],
        revised_from=revision.parent_key if revision else None,
        revision_summary=revision.summary if revision else "",
        revision_warnings=revision.warnings if revision else [],
        usage=step.usage,
    )
    record.rounds.append(current)
    _save(record)
    return current


def _ask_director(
    record: ScriptRounds,
    current: ScriptRound,
    step: _Round,
    approval: Approval,
    asks: Iterator[int],
    revisions: bool = True,
) -> tuple[ScriptReview, ApprovalRecord]:
    """The storyboard gate, asked again (with the reason) until the answer can be acted on.
    The quality gate proposes the version with the fewest calibration errors, then warnings.
    Without an LLM (``revisions`` False) notes are refused, in one line, and asked again."""
    description = script_review(step.number, step.calibrated, step.notes, step.revision)
    best = min(range(len(step.calibrated)),
               key=lambda k: (current.versions[k].errors, current.versions[k].warnings, k))
    prompt = description
    while True:
        answer, decision = wait_for_review(
            "storyboard", next(asks), ScriptReview, description=prompt, policy=approval,
            checks_passed=current.versions[best].errors == 0,
            spec=GateSpec(gate="storyboard", round=step.number, project=record.project,
                          versions=len(step.calibrated),
                          version_names=[v.title for v in current.versions],
                          revisions=revisions),
            version=best if approval == "quality-gate" else 0,
        )
        problem = _answer_problem(answer, len(step.calibrated), revisions)
        if not problem:
            return answer, decision
        get_run_logger().warning("script round %d: %s; asking again", step.number, problem)
        prompt = f"**The last answer could not be used:** {problem}\n\n{description}"


def _note_decision(
    current: ScriptRound, chosen: Calibrated, answer: ScriptReview, decision: ApprovalRecord
) -> None:
    current.chosen, current.chosen_key = answer.version, chosen.storyboard_key
    current.notes, current.reviewer = answer.notes, decision.reviewer
    current.policy, current.decided_at = decision.policy, decision.decided_at


def _approve(
    record: ScriptRounds, current: ScriptRound, chosen: Calibrated, decision: ApprovalRecord
) -> str:
    """Mark the chosen version approved in the record; its URI is the flow's result."""
    current.approved = True
    record.approved_key = chosen.storyboard_key
    rounds_at = _save(record)
    uri = get_store().uri(chosen.storyboard_key)
    get_run_logger().info(
        "approved version %d of round %d by %s: %s (rounds: %s; %d tokens)", current.chosen,
        current.round, decision.reviewer, uri, rounds_at, record.usage.total_tokens)
    return uri


def _revise(
    step: _Round, chosen: Calibrated, answer: ScriptReview, decision: ApprovalRecord,
    llm_endpoint: str | None,
) -> _Round:
    """The director's notes applied to the chosen version, recalibrated: the next round."""
    logger = get_run_logger()
    notes = answer.notes.strip()
    logger.info("round %d: %s sent notes on version %d; revising", step.number,
                decision.reviewer, answer.version)
    revision = revise_version(chosen.storyboard_key, notes, llm_endpoint)
    for warning in revision.warnings:
        logger.warning("revision: %s", warning)
    revised = calibrate_version(revision.storyboard_key, llm_endpoint)
    usage = _total(revision.usage, revised.usage)
    # the revision first (what approving without --version takes), then every earlier version,
    # still choosable: a director may prefer a draft from two rounds ago
    earlier = [c for c in step.calibrated if c.storyboard_key != revised.storyboard_key]
    return _Round(step.number + 1, [revised, *earlier], usage, notes, revision)


@flow(name="write-script", result_storage=RESULTS_BLOCK, persist_result=True, log_prints=True)
def write_script(
    brief: Brief | dict[str, Any],
    versions: int = 3,
    approval: Approval = "manual",
    llm_endpoint: str | None = None,
) -> str:
    """Write and calibrate `versions` storyboards from a brief; return the approved one's URI."""
    # 1. The brief, the endpoint (checked now: a missing block fails early and clearly, None
    #    means the template planner) and the record every round is kept in.
    brief = _project_named(Brief.model_validate(brief))
    record = _start_record(brief, versions, approval, endpoint_info(llm_endpoint))
    # 2. First drafts: `versions` storyboards in different directions, each calibrated.
    step = _first_drafts(brief, llm_endpoint, versions)
    asks = count(1)  # a new gate key for every question (a reused key returns the old answer)
    while True:
        # 3. The round goes into the record; the director picks a version, approves or notes.
        current = _record_round(record, step)
        answer, decision = _ask_director(record, current, step, approval, asks,
                                         revisions=llm_endpoint is not None)
        chosen = step.calibrated[answer.version]
        _note_decision(current, chosen, answer, decision)
        # 4. Approved: the chosen storyboard's s3:// URI, which produce_video takes as it is.
        if not answer.wants_revision:
            return _approve(record, current, chosen, decision)
        # 5. Notes: the chosen version revised and recalibrated is the next round.
        _save(record)
        step = _revise(step, chosen, answer, decision, llm_endpoint)

"""Stage 2: the storyboard gate. The contract is reviewed before anything is rendered."""

from __future__ import annotations

from flows.gates import StoryboardReview, wait_for_review
from flows.stages.run import RunContext
from reelflow.errors import StoryboardSentBack
from reelflow.progress import step
from reelflow.render.decisions import GateSpec
from tasks.review import storyboard_review


def review_storyboard(run: RunContext) -> None:
    """Approve, or stop with the reviewer's notes (revisions go through write-script)."""
    description = ""
    if run.attended:
        with step("review material", "storyboard gate"):
            description = storyboard_review(run.board, run.storyboard_keys[-1])
        description += run.estimate_note()
    answer, record = wait_for_review(
        "storyboard",
        1,
        StoryboardReview,
        description=description,
        policy=run.policy,
        checks_passed=True,
        spec=GateSpec(gate="storyboard", project=run.board.project),
    )
    run.approvals.append(record)
    if not answer.approve:
        raise StoryboardSentBack(run.board.project, answer.notes)

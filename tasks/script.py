"""Script-stage tasks: drafts, calibrations, revisions and the side-by-side review page.

Thin wrappers over `reelflow.script.drafts` and `reelflow.script.calibration`: arguments in,
object keys out.
The chat client is built inside each task from the saved `LLMEndpoint` block named by the caller,
so the API key never becomes a task input, a cache key, a result or a log line. LLM tasks cache on
what they were asked and on the endpoint's URL and model (not the block name, never the key): a
resumed or repeated run finds the answer it already paid for.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from reelflow.llm import ChatClient, Usage
from reelflow.script.calibration import CalibrationReport, calibrate, plot_emotion_curve
from reelflow.script.drafts import Brief, refine_shot_prompt, revise, write_drafts
from reelflow.script.rounds import (
    Calibrated,
    Drafts,
    EndpointInfo,
    Revised,
    calibration_key,
    calibration_spec,
    curve_key,
)
from reelflow.store import keys
from reelflow.storyboard import Storyboard
from tasks.common import get_store

# -- the endpoint, by name ----------------------------------------------------------------------


def endpoint_info(name: str | None) -> EndpointInfo | None:
    """URL and model of the named LLMEndpoint block (None offline); a missing block fails here."""
    if not name:
        return None
    from blocks.llm_endpoint import LLMEndpoint

    try:
        block = LLMEndpoint.load(name)
    except ValueError as exc:
        raise ValueError(
            f"no LLM endpoint block named '{name}' (type reelflow-llm-endpoint): save one with "
            "LLMEndpoint(base_url=..., model=..., api_key=...).save(NAME), or run without "
            "an endpoint to use the template planner"
        ) from exc
    return EndpointInfo.public(name, block.base_url, block.model)


@contextmanager
def chat_client(name: str | None) -> Iterator[ChatClient | None]:
    """A client for the named endpoint, closed afterwards; None offline."""
    if not name:
        yield None
        return
    from blocks.llm_endpoint import LLMEndpoint

    client = LLMEndpoint.load(name).client()
    try:
        yield client
    finally:
        client.close()


@dataclass
class EndpointIdentity(CachePolicy):
    """Cache key part: the endpoint's base URL and model, looked up from the block by name.

    Two blocks pointing at the same model share answers; changing a block's model misses; the key
    is never read, so rotating it keeps the cache.
    """

    parameter: str = "endpoint_name"

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        info = endpoint_info((inputs or {}).get(self.parameter))
        return hash_objects({"endpoint": info.identity() if info else "offline"})


LLM_CACHE = (INPUTS - "endpoint_name") + TASK_SOURCE + EndpointIdentity()


def _usage(client: ChatClient | None) -> Usage:
    return client.usage.model_copy() if client is not None else Usage()


def _put_storyboard(board: Storyboard, lineage: dict[str, Any]) -> str:
    key = keys.storyboard_key(board.project, board.content_hash())
    return get_store().put_json(key, board, {"kind": "storyboard", **lineage}, if_absent=True)


# -- tasks ------------------------------------------------------------------------------------


# No task-level retries on LLM tasks: the client already retries 429/5xx with backoff, and an
# answer that stayed invalid after repair would only be paid for again.
@task(name="draft-versions", cache_policy=LLM_CACHE)
def draft_versions(brief: Brief, endpoint_name: str | None, versions: int = 3) -> Drafts:
    """`versions` storyboards in different directions, stored by content hash."""
    info = endpoint_info(endpoint_name)
    with chat_client(endpoint_name) as client:
        boards = write_drafts(brief, client, versions)
        usage = _usage(client)
    writer: dict[str, str] | str = info.identity() if info else "template"
    storyboard_keys = [
        _put_storyboard(
            board,
            {"spec": {"brief": brief.model_dump(mode="json"), "version": k, "writer": writer}},
        )
        for k, board in enumerate(boards)
    ]
    return Drafts(storyboard_keys=storyboard_keys, usage=usage)


@task(name="calibrate-version", cache_policy=LLM_CACHE)
def calibrate_version(storyboard_key: str, endpoint_name: str | None) -> Calibrated:
    """Calibration report (JSON) and emotion curve (PNG) beside the storyboard.

    The keys are a hash of (storyboard, judging model), so a report already in the bucket is read
    back instead of being paid for again, even when the Prefect result is gone.
    """
    store = get_store()
    info = endpoint_info(endpoint_name)
    spec = calibration_spec(storyboard_key, info)
    report_key, png_key = calibration_key(storyboard_key, spec), curve_key(storyboard_key, spec)
    if store.complete(report_key) and store.complete(png_key):
        return Calibrated(storyboard_key=storyboard_key, report_key=report_key, curve_key=png_key)
    board = store.get_json(storyboard_key, Storyboard)
    with chat_client(endpoint_name) as client:
        report = calibrate(board, client)
        usage = _usage(client)
    lineage = {
        "spec": {"judge": info.identity() if info else "rules"},
        "spec_hash": spec,
        "parents": [storyboard_key],
    }
    with tempfile.TemporaryDirectory(prefix="reelflow-curve-") as tmp:
        png = plot_emotion_curve(report, Path(tmp) / "curve.png")
        store.put_file(png_key, png, "image/png", {"kind": "emotion-curve", **lineage})
    store.put_json(report_key, report, {"kind": "calibration", **lineage})
    return Calibrated(
        storyboard_key=storyboard_key, report_key=report_key, curve_key=png_key, usage=usage
    )


@task(name="revise-version", cache_policy=LLM_CACHE)
def revise_version(storyboard_key: str, notes: str, endpoint_name: str | None) -> Revised:
    """Apply a director's notes to one version; offline the notes are recorded, nothing changes."""
    store = get_store()
    info = endpoint_info(endpoint_name)
    board = store.get_json(storyboard_key, Storyboard)
    with chat_client(endpoint_name) as client:
        revision = revise(board, notes, client)
        usage = _usage(client)
    key = storyboard_key
    if revision.applied:
        key = _put_storyboard(
            revision.storyboard,
            {
                "spec": {"notes": notes, "writer": info.identity() if info else "template"},
                "parents": [storyboard_key],
                "extra": {"summary": revision.summary},
            },
        )
    return Revised(
        storyboard_key=key,
        parent_key=storyboard_key,
        applied=revision.applied,
        summary=revision.summary,
        warnings=revision.warnings,
        usage=usage,
    )


@dataclass(frozen=True)
class RefinedPrompt:
    """A shot's prompt rewritten from a reviewer's notes, and the diff the next review shows."""

    shot: str
    prompt: str
    diff: str
    usage: dict[str, int]


@task(name="refine-shot-prompt", task_run_name="refine-{shot_id}", cache_policy=LLM_CACHE)
def refine_prompt(
    storyboard: Storyboard, shot_id: str, notes: str, endpoint_name: str | None
) -> RefinedPrompt:
    """The LLM revises this shot's prompt only; every other shot keeps its prompt (and cache)."""
    with chat_client(endpoint_name) as client:
        shot, diff = refine_shot_prompt(storyboard, shot_id, notes, client)
        usage = _usage(client)
    return RefinedPrompt(
        shot=shot_id, prompt=shot.prompt or shot.description, diff=diff, usage=usage.model_dump()
    )


@task(name="zh-prompts", cache_policy=LLM_CACHE)
def zh_prompts(prompts: dict[str, str], endpoint_name: str | None) -> dict[str, str | None]:
    """Chinese renderings of the English prompts for the reviewer (cached in the bucket by
    prompt); None marks a missing one (no LLM configured, or it failed)."""
    from reelflow.script.translate import StoreCache, zh_rendering

    cache = StoreCache(get_store())
    with chat_client(endpoint_name) as client:
        return {shot: zh_rendering(prompt, client, cache) for shot, prompt in prompts.items()}


# -- the review page --------------------------------------------------------------------------


def _cell(text: object) -> str:
    """One markdown table cell: no pipes, no line breaks."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _problems_cell(report: CalibrationReport, limit: int = 4) -> str:
    counts = (
        f"{report.count('error')} errors, {report.count('warning')} warnings, "
        f"{report.count('info')} notes"
    )
    ranked = sorted(report.problems, key=lambda p: ["error", "warning", "info"].index(p.severity))
    lines = [f"**{p.severity}** {_cell(p.message)}" for p in ranked[:limit]]
    if len(ranked) > limit:
        lines.append(f"... and {len(ranked) - limit} more")
    return "<br>".join([counts, *lines])


def review_markdown(
    round_: int, versions: list[Calibrated], *, notes: str = "", revision: Revised | None = None
) -> str:
    """The storyboard gate's page: versions side by side, then each version's shot list."""
    store = get_store()
    boards = [store.get_json(v.storyboard_key, Storyboard) for v in versions]
    reports = [store.get_json(v.report_key, CalibrationReport) for v in versions]
    header = "| | " + " | ".join(f"version {k}" for k in range(len(versions))) + " |"
    rows = [header, "|---|" + "---|" * len(versions)]

    def row(label: str, cells: list[str]) -> None:
        rows.append(f"| **{label}** | " + " | ".join(cells) + " |")

    row("title", [_cell(b.title) for b in boards])
    row("logline", [_cell(b.logline) for b in boards])
    row("shots", [str(len(b.shots)) for b in boards])
    row("duration", [f"{b.duration:g} s" for b in boards])
    row(
        "structure",
        [
            "complete" if r.structure_complete else "missing " + ", ".join(r.acts.missing())
            for r in reports
        ],
    )
    row("emotion", [" ".join(str(i) for i in r.intensities) for r in reports])
    row("calibration", [f"{_cell(r.summary)} ({r.source})" for r in reports])
    row("problems", [_problems_cell(r) for r in reports])
    curves = []
    for v in versions:
        url = store.presigned_url(v.curve_key)
        curves.append(f"![emotion curve]({url})<br>[open]({url})")
    row("emotion curve", curves)
    row(
        "storyboard",
        [
            f"[{_cell(v.storyboard_key.rsplit('/', 1)[-1])}]"
            f"({store.presigned_url(v.storyboard_key)})"
            for v in versions
        ],
    )

    intro = [f"# Script, round {round_}", ""]
    if revision is not None:
        intro += [f"Revision of `{revision.parent_key}` from the notes: _{_cell(notes)}_", ""]
        if revision.summary:
            intro += [f"What changed: {_cell(revision.summary)}", ""]
        intro += [f"**warning:** {_cell(w)}" for w in revision.warnings]
        intro += [""] if revision.warnings else []
    intro += [
        "Choose a version (`version`, counted from 0). Approve it with empty notes, or write "
        "`notes` to have that version revised and calibrated again.",
        "",
    ]
    details = []
    for k, (board, report) in enumerate(zip(boards, reports, strict=True)):
        details += [
            "",
            f"## version {k}: {_cell(board.title)}",
            "",
            "| shot | act | sec | camera | intensity | description |",
            "|---|---|---|---|---|---|",
        ]
        for shot, beat in zip(board.shots, report.emotion_curve, strict=True):
            camera = f"{shot.camera.size}, {shot.camera.angle}, {shot.camera.movement}"
            details.append(
                f"| {shot.id} | {report.acts.act_of(shot.id) or '-'} | {shot.duration:g} | "
                f"{camera} | {beat.intensity} | {_cell(shot.description)} |"
            )
    return "\n".join([*intro, *rows, *details]) + "\n"


@task(name="script-review", cache_policy=NO_CACHE)
def script_review(
    round_: int, versions: list[Calibrated], notes: str = "", revision: Revised | None = None
) -> str:
    """Publish the review page as an artifact (fresh presigned URLs); returns its markdown."""
    markdown = review_markdown(round_, versions, notes=notes, revision=revision)
    create_markdown_artifact(
        markdown,
        key="script-review",
        description=f"script round {round_}: {len(versions)} version(s)",
    )
    return markdown

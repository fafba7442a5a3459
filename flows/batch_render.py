"""batch-render: the unattended queue. Every storyboard under `{prefix}incoming/` is rendered
with an automatic approval policy and moved to `{prefix}done/` or `{prefix}failed/`. One filed
under `{prefix}incoming/{project}/` must render into that project (projects are boundaries).

A failed storyboard gets a `{name}.reason.txt` beside it (the validation message, file:line
field.path, or the run's failure); a done one gets `{name}.result.json` (the film's URIs). One bad
storyboard never stops the batch: each is validated first and rendered as its own subflow run,
whose failure is recorded, not raised.
"""

from __future__ import annotations

import json
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from pydantic import BaseModel, Field

from flows.produce_video import produce_video
from reelflow.storyboard import StoryboardError
from reelflow.storyboard.loading import decode_storyboard
from reelflow.storyboard.sources import check_project_boundary, read_storyboard
from tasks.common import RESULTS_BLOCK, get_store

SUFFIXES = (".yaml", ".yml", ".json")


class BatchItem(BaseModel):
    source: str
    status: Literal["done", "failed"]
    moved_to: str
    reason: str = ""
    film_uri: str = ""


class BatchReport(BaseModel):
    prefix: str
    items: list[BatchItem] = Field(default_factory=list)

    @property
    def done(self) -> list[BatchItem]:
        return [i for i in self.items if i.status == "done"]

    @property
    def failed(self) -> list[BatchItem]:
        return [i for i in self.items if i.status == "failed"]


def _render_one(key: str, name: str, approval: str, profile: str,
                project: str | None) -> tuple[str, str]:
    """('', film uri) when the film was made, else (reason, ''). `project`: the folder of the
    queue it was filed in (`incoming/{project}/`), which it must render into."""
    store = get_store()
    try:  # bounded, UTF-8, and naming only objects under its own project (no local files)
        text = decode_storyboard(store.get_bytes(key, verify=False), name)
        board, _ = read_storyboard(text, store, name=name)
        check_project_boundary(board, project, name)
    except StoryboardError as exc:
        return "\n".join(exc.problems), ""
    render = produce_video.with_options(flow_run_name=f"batch-{name.rsplit('.', 1)[0]}")
    state = render(storyboard=text, approval=approval, profile=profile, return_state=True)
    if not state.is_completed():
        return f"{name}: the render ended {state.name}: {state.message}", ""
    return "", state.result().film_uri


@flow(name="batch-render", result_storage=RESULTS_BLOCK, persist_result=True, log_prints=True)
def batch_render(
    prefix: str = "queue/",
    approval: Literal["auto", "quality-gate"] = "auto",
    profile: str = "demo",
) -> BatchReport:
    """Render the queue once, oldest name first; returns what went where."""
    logger = get_run_logger()
    store = get_store()
    prefix = prefix.rstrip("/") + "/"
    incoming = [k for k in store.list(f"{prefix}incoming/") if k.endswith(SUFFIXES)]
    report = BatchReport(prefix=prefix)
    if not incoming:
        logger.info("nothing under %sincoming/", prefix)
        return report
    progress = create_progress_artifact(0.0, description=f"batch: {len(incoming)} storyboards")
    for index, key in enumerate(incoming, 1):
        name = key.rsplit("/", 1)[1]
        folder = key.removeprefix(f"{prefix}incoming/").rpartition("/")[0] or None
        try:
            reason, film_uri = _render_one(key, name, approval, profile, folder)
        except Exception as exc:  # one storyboard must never stop the batch
            reason, film_uri = f"{name}: {type(exc).__name__}: {exc}", ""
        status: Literal["done", "failed"] = "failed" if reason else "done"
        target = store.move(key, f"{prefix}{status}/{name}")
        if reason:
            store.put_bytes(f"{target}.reason.txt", reason.encode(), "text/plain",
                            {"kind": "batch-reason"})
            logger.warning("%s failed: %s", name, reason)
        else:
            store.put_bytes(f"{target}.result.json", json.dumps({"film": film_uri}).encode(),
                            "application/json", {"kind": "batch-result"})
            logger.info("%s done: %s", name, film_uri)
        report.items.append(BatchItem(source=key, status=status, moved_to=target,
                                      reason=reason, film_uri=film_uri))
        update_progress_artifact(progress, 100.0 * index / len(incoming))
    rows = ["| storyboard | status | film / reason |", "|---|---|---|"]
    for item in report.items:
        detail = item.film_uri or item.reason.splitlines()[0]
        rows.append(f"| {item.source} | {item.status} | {detail} |")
    create_markdown_artifact("# Batch\n\n" + "\n".join(rows), key="batch-report",
                             description="what the batch rendered")
    return report

"""Review tasks: publish the core's review material (reelflow/render/review.py) as artifacts on
the run, where the gate's form shows them. Tasks take object keys, not whole storyboards."""

from __future__ import annotations

import os

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from reelflow.render import review
from reelflow.store import keys
from reelflow.storyboard import Storyboard
from tasks.common import get_store


def _inline() -> bool:
    from prefect.settings import PREFECT_API_URL

    return review.review_images_inline(
        get_store().settings.endpoint,
        PREFECT_API_URL.value(),
        os.environ.get("REELFLOW_REVIEW_IMAGES", "auto"),
    )


def picture(key: str, label: str) -> str:
    """An inline image, or where the browser could not load it, a link artifact and a link."""
    url = get_store().presigned_url(key, expires=review.link_lifetime())
    if _inline():
        return f"![{label}]({url})"
    create_link_artifact(link=url, link_text=f"{label} (image)", key=f"{label}-image")
    return f"[{label} (image)]({url})"


@task(name="publish-storyboard")
def publish_storyboard(storyboard: Storyboard) -> str:
    """Store the storyboard under its content hash (the same storyboard is stored once)."""
    key = keys.storyboard_key(storyboard.project, storyboard.content_hash())
    return get_store().put_json(key, storyboard, {"kind": "storyboard"}, if_absent=True)


@task(name="storyboard-review")
def storyboard_review(storyboard: Storyboard, storyboard_key: str) -> str:
    """The board as the run holds it (just published under `storyboard_key`): not read back
    from the bucket and validated again in the same process."""
    markdown = review.storyboard_markdown(storyboard, storyboard_key)
    create_markdown_artifact(markdown, key="storyboard-review", description="storyboard gate")
    return markdown


@task(name="images-review")
def images_review(
    project: str,
    variants: dict[str, list[str]],
    prompts: dict[str, str],
    scores: dict[str, list[float]],
    diffs: dict[str, str] | None = None,
    zh: dict[str, str | None] | None = None,
    round_: int = 1,
    descriptions: dict[str, str] | None = None,
    identity: dict[str, list[float]] | None = None,
    replaced: dict[str, tuple[str, int]] | None = None,
    speed: str | None = None,
) -> str:
    markdown = review.images_markdown(
        get_store(), project, variants, prompts, scores, picture, diffs, zh, round_=round_,
        descriptions=descriptions, identity=identity, replaced=replaced, speed=speed,
    )
    create_markdown_artifact(markdown, key="images-review", description="images gate")
    return markdown


@task(name="clips-review")
def clips_review(
    project: str,
    clips: dict[str, str],
    prompts: dict[str, str],
    seeds: dict[str, int],
    backend: str | dict[str, str],
    round_: int = 1,
    replaced: dict[str, str] | None = None,
    speed: str | None = None,
    lines: list[dict[str, object]] | None = None,
    retaken: dict[str, str] | None = None,
) -> str:
    markdown = review.clips_markdown(
        get_store(), project, clips, prompts, seeds, backend, picture, round_=round_,
        replaced=replaced, speed=speed,
    )
    if lines:
        markdown += "\n\n" + review.lines_markdown(get_store(), lines, retaken or {}, round_)
    create_markdown_artifact(markdown, key="clips-review", description="clips gate")
    return markdown


@task(name="final-review")
def final_review(film_key: str, cover_key: str, manifest_key: str) -> None:
    markdown = review.final_markdown(get_store(), film_key, cover_key, manifest_key, picture)
    create_markdown_artifact(markdown, key="final", description="the finished film")

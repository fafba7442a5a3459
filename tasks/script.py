"""Script-stage tasks: drafts, calibrations, revisions and the side-by-side review page.

Thin wrappers over `reelflow.script.drafts` and `reelflow.script.calibration`: arguments in,
object keys out.
The chat client is built inside each task from the saved `LLMEndpoint` block named by the caller,
so the API key never becomes a task input, a cache key, a result or a log line. LLM tasks cache on
what they were asked and on the endpoint's URL and model (not the block name, never the key): a
resumed or repeated run finds the answer it already paid for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from reelflow.llm import ChatClient, Usage
from reelflow.script.drafts import Brief, refine_shot_prompt, revise, write_drafts
from reelflow.script.review import review_markdown
from reelflow.script.rounds import Calibrated, Drafts, EndpointInfo, Revised, calibrate_stored
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
    info = endpoint_info(endpoint_name)
    with chat_client(endpoint_name) as client:
        return calibrate_stored(get_store(), storyboard_key, info, client)


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


@task(name="script-review", cache_policy=NO_CACHE)
def script_review(
    round_: int, versions: list[Calibrated], notes: str = "", revision: Revised | None = None
) -> str:
    """Publish the review page as an artifact (fresh presigned URLs); returns its markdown."""
    markdown = review_markdown(get_store(), round_, versions, notes=notes, revision=revision)
    create_markdown_artifact(
        markdown,
        key="script-review",
        description=f"script round {round_}: {len(versions)} version(s)",
    )
    return markdown

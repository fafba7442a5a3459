"""The run manifest: what a run was given, what people decided, and what it produced."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from reelflow.store.keys import CODE_VERSION


class RunManifest(BaseModel):
    """`storyboard_key` is the board the run rendered (after any LLM prompt rewrite), and
    `storyboard_hash` its hash; `storyboards` lists every state the run went through."""

    run_id: str
    flow: str = "produce-video"
    project: str
    title: str
    storyboard_key: str
    storyboard_hash: str
    storyboards: list[str] = []
    profile: str
    approval_policy: str
    started_at: datetime
    finished_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    approvals: list[dict[str, Any]] = []
    prompt_notes: dict[str, list[str]] = {}
    prompt_diffs: dict[str, list[str]] = {}
    variants: dict[str, list[str]] = {}
    chosen_images: dict[str, str] = {}
    frames: dict[str, list[str]] = {}
    clips: dict[str, str] = {}
    film_key: str  # the delivered film: the first version, captions as the storyboard asks
    cover_key: str
    edit_key: str = ""  # the assembled picture
    master_key: str = ""  # the edit with its music (the edit itself without music)
    versions: dict[str, str] = {}
    version_covers: dict[str, str] = {}
    # export name -> what upscaled it: a learned upscaler (folder and content hash) or the filter
    version_upscalers: dict[str, str] = {}
    music_key: str | None = None
    edit_durations: list[float] = []
    duration: float
    code_version: str = CODE_VERSION
    llm_usage: dict[str, int] = {}
    characters: dict[str, str] = {}  # library character -> version rendered with
    identity: dict[str, Any] = {}  # {"method": ..., "scores": {shot: [per variant]}}
    trims: dict[str, dict[str, Any]] = {}  # shot -> waste trimmed by the edit (see edit_trims)
    #: per stage the estimate made before the run (expected, low, high) beside the step time it
    #: took (actual), seconds; reelflow/render/estimates.py
    estimate: dict[str, Any] = {}
    #: voice-over lines re-taken at the clips gate: shot, language, round, reviewer, the new
    #: text/voice/speed, the new line's key and length, and the key it replaced
    retakes: list[dict[str, Any]] = []

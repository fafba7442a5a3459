"""Stage 7: the record. The run manifest — inputs, decisions (who, when, what), outputs — next to
what it describes, and the final review artifact."""

from __future__ import annotations

from prefect.runtime import flow_run
from pydantic import BaseModel

from flows.history import estimate_and_actual
from flows.stages.clips import Clips
from flows.stages.delivery import Delivery
from flows.stages.images import Stills
from flows.stages.run import RunContext
from reelflow.progress import step
from reelflow.render.edit import edit_trims
from reelflow.render.manifest import RunManifest
from reelflow.store import keys
from tasks.common import get_store
from tasks.review import final_review


class FilmResult(BaseModel):
    project: str
    film_key: str  # the delivered film (`--out` saves it as final.mp4)
    cover_key: str
    master_key: str
    manifest_key: str
    film_uri: str
    cover_uri: str
    manifest_uri: str
    versions: dict[str, str] = {}  # export name -> key
    version_covers: dict[str, str] = {}


def record_run(run: RunContext, stills: Stills, clips: Clips, delivery: Delivery) -> FilmResult:
    with step("record", "the run manifest and the final review"):
        return _record(run, stills, clips, delivery)


def _record(run: RunContext, stills: Stills, clips: Clips, delivery: Delivery) -> FilmResult:
    board, store = run.board, get_store()
    run_id = str(flow_run.get_id() or "local")
    usage = stills.llm_usage
    manifest = RunManifest(
        run_id=run_id,
        project=board.project,
        title=board.title,
        storyboard_key=run.storyboard_keys[-1],
        storyboard_hash=board.content_hash(),
        storyboards=run.storyboard_keys,
        profile=run.profile_name,
        approval_policy=run.policy,
        started_at=run.started,
        approvals=[a.model_dump(mode="json") for a in run.approvals],
        prompt_notes=stills.notes,
        prompt_diffs=stills.prompt_diffs,
        llm_usage={
            k: sum(u.get(k, 0) for u in usage)
            for k in ("prompt_tokens", "completion_tokens", "total_tokens", "requests")
        },
        variants=stills.variants,
        chosen_images=stills.chosen,
        frames=clips.frames,
        clips=clips.keys,
        film_key=delivery.film_key,
        cover_key=delivery.cover_key,
        edit_key=delivery.edit_key,
        master_key=delivery.master_key,
        versions=delivery.versions,
        version_covers=delivery.version_covers,
        version_upscalers=delivery.upscalers,
        music_key=run.music_key,
        edit_durations=delivery.durations,
        duration=board.duration,
        characters=run.characters,
        identity=stills.identity.model_dump(mode="json") if stills.identity else {},
        trims=edit_trims(store, delivery.edit_key),
        estimate=estimate_and_actual(run.estimate),
        retakes=run.retakes,
    )
    parents = [*run.storyboard_keys, delivery.master_key, *delivery.versions.values()]
    manifest_key = store.put_json(
        keys.manifest_key(board.project, run_id),
        manifest,
        {"kind": "manifest", "parents": [*parents, *delivery.version_covers.values()]},
    )
    final_review(delivery.film_key, delivery.cover_key, manifest_key)
    return FilmResult(
        project=board.project,
        film_key=delivery.film_key,
        cover_key=delivery.cover_key,
        master_key=delivery.master_key,
        manifest_key=manifest_key,
        film_uri=store.uri(delivery.film_key),
        cover_uri=store.uri(delivery.cover_key),
        manifest_uri=store.uri(manifest_key),
        versions=delivery.versions,
        version_covers=delivery.version_covers,
    )

"""The run's context: what every stage reads (storyboard, profile, policy, the run's facts) and
what the run records as it goes (decisions, storyboards actually rendered, progress).

Step 1 of produce-video is `start_run`: the core's `check_inputs` (the same check the CLI makes
before a run exists, parameters included). The run's facts are resolved once, in step 3."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from blocks.models import ImageModel, VideoModel
from flows.gates import Approval, ApprovalRecord
from flows.history import estimate_this_run
from reelflow.render.estimates import Estimate, Stage
from reelflow.render.identity import IDENTITY_THRESHOLD, default_clip_model
from reelflow.render.inputs import check_backends, check_inputs
from reelflow.render.jobs import ExportSpec, RunFacts, SpeechJob, SpokenLine, resolve_run_facts
from reelflow.render.profiles import RenderProfile
from reelflow.script.camera import propose_camera
from reelflow.sound.lines import voiced_languages
from reelflow.storyboard import Storyboard
from tasks.common import get_store
from tasks.review import publish_storyboard


@dataclass
class RunContext:
    board: Storyboard
    base_dir: Path | None  # where its file references resolve; None: from the bucket
    profile_name: str
    profile: RenderProfile
    policy: Approval
    llm_endpoint: str | None
    fan_out: bool
    exports: list[ExportSpec] | None = None
    resolved_facts: RunFacts | None = None  # set in step 3, once the run's models exist
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    approvals: list[ApprovalRecord] = field(default_factory=list)
    storyboard_keys: list[str] = field(default_factory=list)  # every state the run rendered
    durations: list[float] = field(default_factory=list)  # each shot's clip length (timing)
    music_key: str | None = None  # the storyboard's music, stored by content
    lines: dict[str, SpokenLine] = field(default_factory=dict)  # shot -> its spoken line
    # language -> shot -> its line: every language the run's versions speak (`lang=`); `lines`
    # is the film's own language's
    voices: dict[str, dict[str, SpokenLine]] = field(default_factory=dict)
    # language -> shot -> the speech step that spoke its line (a re-take at the clips gate
    # changes its text, voice or speed); and each re-take, as the manifest keeps it
    speech: dict[str, dict[str, SpeechJob]] = field(default_factory=dict)
    retakes: list[dict[str, object]] = field(default_factory=list)
    progress_id: object | None = None
    steps_total: int = 1
    steps_done: int = 0
    characters: dict[str, str] = field(default_factory=dict)  # library character -> version
    clip_model: str | None = None  # local CLIP model for identity checks (else perceptual)
    estimate: Estimate | None = None  # from the studio's history, made in step 1

    def estimate_note(self, done: Stage | None = None) -> str:
        """The estimate as a gate's description shows it: every stage (``done`` None, the
        storyboard gate), else the stages after ``done``."""
        if self.estimate is None:
            return ""
        if done is None:
            stages = list(self.estimate.stages)
            named = f"{', '.join(stages[:-1])} and {stages[-1]}"
            return "\n\n" + self.estimate.markdown(f"Estimate: {named}")
        rest = self.estimate.remaining(done)
        return "\n\n" + rest.markdown(f"Estimate of what is left ({', '.join(rest.stages)})")

    @property
    def facts(self) -> RunFacts:
        """Model, token counter, LoRAs, weight hashes, cast: resolved once per run, in step 3
        (`resolve_facts`), after the models are built, so the weights' hashes are known."""
        if self.resolved_facts is None:
            raise RuntimeError("the run's facts are resolved in step 3 (prepare_run_models)")
        return self.resolved_facts

    def resolve_facts(self) -> RunFacts:
        self.resolved_facts = resolve_run_facts(
            self.board, self.profile, self.base_dir, cast=self.characters
        )
        return self.resolved_facts

    @property
    def attended(self) -> bool:
        """Whether a person may look at the review material (`auto` skips building it)."""
        return self.policy != "auto"

    def publish(self, board: Storyboard) -> str:
        """Adopt a (possibly rewritten) storyboard: stored by its hash, so the manifest's key
        and hash always name the board that was actually rendered."""
        self.board = board
        key = publish_storyboard(board)
        if not self.storyboard_keys or self.storyboard_keys[-1] != key:
            self.storyboard_keys.append(key)
        return key

    def advance(self) -> None:
        """One more step of the run's progress artifact (a shot's images or a clip of the
        first round), counted as each finishes. The terminal's lines come from the stages'
        counters (reelflow.progress.Counter), which also count later rounds."""
        if self.progress_id is None:
            self.progress_id = create_progress_artifact(
                0.0, key="render-progress", description="shots rendered"
            )
        self.steps_done += 1
        share = min(self.steps_done, self.steps_total) / self.steps_total
        update_progress_artifact(self.progress_id, 100.0 * share)


def read_storyboard(source: str) -> tuple[Storyboard, Path | None]:
    """A path on disk, an s3://bucket/key in the store, or the storyboard's YAML/JSON itself;
    checked by the core (limits, file confinement, existence) before any work starts. The
    folder is None for a storyboard from the bucket: it names project keys, not local files."""
    from reelflow.storyboard.sources import read_storyboard as read

    return read(source, get_store())


def start_run(
    storyboard: str,
    policy: Approval,
    profile: str,
    image_model: str | None,
    video_model: str | None,
    llm_endpoint: str | None,
    fan_out: bool,
    *,
    exports: list[ExportSpec] | None = None,
    quality_threshold: float = 0.3,
    identity_threshold: float = IDENTITY_THRESHOLD,
    identity_retries: int = 2,
) -> RunContext:
    """Check the run's inputs (one-line InputError naming the field, before any work), then the
    profile that fits the storyboard to this machine and its model blocks, and the run's facts.

    The storyboard is parsed here once (or taken from the caller in this process that checked
    it, see `check_inputs(keep_for_run=True)`); library characters complete it and version the
    jobs of exactly the shots they appear in."""
    inputs = check_inputs(
        storyboard,
        approval=policy,
        profile=profile,
        exports=exports,
        quality_threshold=quality_threshold,
        identity_threshold=identity_threshold,
        identity_retries=identity_retries,
        image_model=image_model,
        video_model=video_model,
        llm_endpoint=llm_endpoint,
        store=get_store(),
    )
    render_profile = inputs.profile
    if image_model:
        render_profile = ImageModel.load(image_model).apply(render_profile)
    if video_model:
        render_profile = VideoModel.load(video_model).apply(render_profile)
        check_backends(inputs.storyboard, render_profile)  # the block's model for its backend
    board = with_camera_language(inputs.storyboard)
    run = RunContext(
        board=board,
        base_dir=inputs.base_dir,
        profile_name=profile,
        profile=render_profile,
        policy=policy,
        llm_endpoint=llm_endpoint,
        fan_out=fan_out,
        exports=inputs.exports,
        characters=inputs.cast,
        clip_model=default_clip_model(),
    )
    run.publish(board)
    languages = voiced_languages(board, [export.lang for export in inputs.exports or []])
    run.estimate = estimate_this_run(board, profile, render_profile, languages)
    get_run_logger().info("\n".join(run.estimate.lines()))
    return run


def with_camera_language(board: Storyboard) -> Storyboard:
    """Camera fields the storyboard leaves out are proposed from its words and the story's
    shape (rules, deterministic), so every shot's prompt says how it is framed and moves."""
    proposed = propose_camera(board)
    filled = [
        f"{before.id}: {after.camera.size}, {after.camera.angle}, {after.camera.movement}"
        for before, after in zip(board.shots, proposed.shots, strict=True)
        if before.camera != after.camera
    ]
    if filled:
        get_run_logger().info("camera proposed where the storyboard left it out: %s",
                              "; ".join(filled))
    return proposed

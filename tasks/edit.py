"""Edit tasks: assembly of the approved clips, voice-over lines, the sound master, delivered
versions and their covers."""

from __future__ import annotations

from pathlib import Path

from prefect.cache_policies import NO_CACHE

from reelflow.progress import step
from reelflow.render import edit
from reelflow.render.jobs import (
    CoverJob,
    EditJob,
    MasterJob,
    MusicBedJob,
    MusicJob,
    SpeechJob,
    SpokenLine,
    VersionJob,
)
from reelflow.render.jobs.specs import ClipSoundJob, ClipStemJob
from reelflow.sound.sources import Take
from tasks.common import get_store, step_task


@step_task("assemble-film")
def assemble_film(job: EditJob) -> str:
    with step("edit", f"{len(job.clips)} clips, {job.width}x{job.height}"):
        return edit.assemble_film(get_store(), job)


@step_task("make-cover", "cover-{job.aspect}")
def make_cover(job: CoverJob) -> str:
    return edit.make_cover(get_store(), job)


@step_task("upload-input", cache_policy=NO_CACHE)
def upload_input(project: str, ref: str, base_dir: str | None) -> str:
    """Store a file the storyboard names (music, a reference image), confined to the
    storyboard's folder (`base_dir`; None: a bucket storyboard, which names project keys)."""
    return edit.store_input(get_store(), project, ref, Path(base_dir) if base_dir else None)


@step_task("music-bed")
def generate_music_bed(job: MusicBedJob) -> str:
    """The bed `music.prompt` asks for: a changed prompt re-runs this task and the mix only."""
    with step("music bed", f"{job.seconds:g} s from the prompt"):
        return edit.generate_music_bed(get_store(), job)


@step_task("snap-to-music")
def snap_to_music(job: MusicJob) -> list[float]:
    with step("beat detection", f"{len(job.durations)} cuts snapped to the music"):
        return edit.snap_to_music(get_store(), job)


@step_task("speech", "speech-{job.shot}")
def synthesize_line(job: SpeechJob) -> SpokenLine:
    """One shot's voice-over line: changing it re-runs this task only (and the mix). An
    endpoint line loads its block here, so the key is never a task input or result."""
    endpoint = None
    if job.engine == "endpoint" and job.endpoint:
        from blocks.speech_endpoint import load_speech_endpoint

        endpoint = load_speech_endpoint(job.endpoint)
    return edit.synthesize_line(get_store(), job, endpoint=endpoint)


@step_task("store-take", "take-{shot}", cache_policy=NO_CACHE)
def store_take(project: str, shot: str, ref: str, base_dir: str | None) -> Take:
    """A recorded voice-over line brought into the bucket, confined like the music."""
    return edit.store_take(get_store(), project, ref, Path(base_dir) if base_dir else None)


@step_task("master-with-music")
def master_with_music(job: MasterJob) -> str:
    with step("sound master", f"the edit with its sound at {job.target_lufs:g} LUFS"):
        return edit.master_with_music(get_store(), job)


@step_task("clip-sound-stem")
def clip_sound_stem(job: ClipStemJob) -> str | None:
    """The clips' own sound on a cut, as one stem for the mix (shared by every language)."""
    return edit.clip_sound_stem(get_store(), job)


@step_task("master-with-clip-sound")
def master_with_clip_sound(job: ClipSoundJob) -> str:
    return edit.master_with_clip_sound(get_store(), job)


@step_task("export-version", "version-{job.export.name}")
def export_version(job: VersionJob) -> str:
    return edit.export_version(get_store(), job)

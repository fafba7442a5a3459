"""The storyboard's own files (music, reference images) brought into the bucket, a music bed
generated from the storyboard's prompt, cuts snapped to the music's beats, and the master: the
edit with its music bed."""

from __future__ import annotations

import logging
from pathlib import Path

from reelflow.render.common import lineage_of, scratch
from reelflow.render.jobs import MasterJob, MusicBedJob, MusicJob
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore, Lineage

log = logging.getLogger("reelflow.render")


def store_input(store: ArtifactStore, project: str, ref: str, base_dir: Path | None) -> str:
    """The key of a file the storyboard brings in (music, a reference image), stored once per
    content. A local file must lie inside the storyboard's folder (or REELFLOW_ALLOWED_DIRS);
    a storyboard from the bucket (`base_dir` None) names an object under its project instead."""
    import hashlib

    from reelflow.errors import InputError
    from reelflow.storyboard.files import bucket_key, resolve_local

    try:
        if base_dir is None:
            key = bucket_key(ref, project, store.bucket)
            if not store.exists(key):
                raise ValueError(f"{ref!r}: no such object in the bucket")
            return key
        path = resolve_local(ref, base_dir, must_exist=True)
    except ValueError as exc:
        raise InputError(f"storyboard file reference: {exc}") from None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    key = keys.input_key(project, digest.hexdigest()[:16], path.suffix.lstrip(".") or "bin")
    return store.put_file(
        key,
        path,
        "application/octet-stream",
        Lineage(kind="input", extra={"filename": path.name}),
        if_absent=True,
    )


def generate_music_bed(store: ArtifactStore, job: MusicBedJob) -> str:
    """The bed `music.prompt` asks for, as a WAV object the mix takes like a music file; its
    lineage names the prompt, seed and model (path and content hash)."""
    from reelflow.render.weights import environment
    from reelflow.sound.music_model import generate_bed, music_model_folder

    key = job.output_key()
    if store.complete(key):
        return key
    with scratch() as tmp:
        info = generate_bed(music_model_folder(job.model), job.model_sha256, tmp / "bed.wav",
                            prompt=job.prompt, seed=job.seed, seconds=job.seconds,
                            steps=job.steps, guidance=job.guidance)  # fmt: skip
        log.info("music bed %r: %.1f s in %d window(s)", job.prompt, info.seconds,
                 len(info.windows))  # fmt: skip
        model = {"role": "music-model", "name": job.model, "source": job.model,
                 "sha256": job.model_sha256}
        extra = {"step": "music-bed", "prompt": job.prompt, "model": job.model,
                 "model_sha256": job.model_sha256, "weights": [model], "bed": info.model_dump(),
                 "environment": environment()}  # fmt: skip
        store.put_file(key, tmp / "bed.wav", "audio/wav", lineage_of("music", job, [], extra))
    return key


def snap_to_music(store: ArtifactStore, job: MusicJob) -> list[float]:
    """Shot durations whose cuts land on the music's beats (within tolerance and min length)."""
    from reelflow.editing.beats import detect_beats, snap_cuts

    with scratch() as tmp:
        music = store.get_file(job.music_key, tmp / "music")
        grid = detect_beats(music)
    snapped = snap_cuts(
        job.durations,
        list(grid.beats),
        tolerance=job.tolerance,
        min_shot=job.min_shot,
        fps=job.fps,
    )
    log.info("music at %.1f BPM: durations %s -> %s", grid.tempo, job.durations, snapped)
    return snapped


def master_with_music(store: ArtifactStore, job: MasterJob) -> str:
    """The film with its sound: the music bed alone (faded out, normalised), or the voice-over
    lines over it (ducked) with the mixed audio stored as an object of its own."""
    from reelflow.editing.audio import mux_music

    key = job.output_key()
    if store.complete(key):
        return key
    if job.voice or job.clip_sound_key:
        return _master_with_mix(store, job)
    if job.music_key is None:
        raise ValueError("a master needs music or voice-over lines")
    with scratch() as tmp:
        film = store.get_file(job.edit_key, tmp / "edit.mp4")
        music = store.get_file(job.music_key, tmp / "music")
        out = mux_music(
            film, music, tmp / "master.mp4", fade_out=job.fade_out, target_lufs=job.target_lufs
        )
        store.put_file(
            key,
            out,
            "video/mp4",
            lineage_of("edit", job, [job.edit_key, job.music_key], {"step": "music"}),
        )
    return key


def _master_with_mix(store: ArtifactStore, job: MasterJob) -> str:
    """The mix of the stems (the voice-over lines placed on the cut, the clips' own sound, the
    music bed) stored as an object of its own, then laid under the edit's picture (copied)."""
    from reelflow.media.probe import probe
    from reelflow.sound.mix import mix_sound, mux_audio, voice_track

    key, mix_key = job.output_key(), job.mix_key()
    lines = [clip.key for clip in job.voice]
    with scratch() as tmp:
        film = store.get_file(job.edit_key, tmp / "edit.mp4")
        duration = probe(film).duration
        if not store.complete(mix_key):
            placed = [
                (store.get_file(clip.key, tmp / f"line{i}.wav"), clip.start)
                for i, clip in enumerate(job.voice)
            ]
            voice = voice_track(placed, duration, tmp / "voice.wav") if placed else None
            music = store.get_file(job.music_key, tmp / "music") if job.music_key else None
            clips = (store.get_file(job.clip_sound_key, tmp / "clips.wav")
                     if job.clip_sound_key else None)  # fmt: skip
            mix_sound(
                voice,
                music,
                tmp / "mix.m4a",
                duration=duration,
                spans=[(c.start, c.start + c.duration) for c in job.voice],
                target_lufs=job.target_lufs,
                voice_level_db=job.voice_level_db,
                music_level_db=job.music_level_db,
                duck_db=job.duck_db,
                fade_out=job.fade_out,
                clips=clips,
                clips_level_db=job.clip_level_db,
            )
            parents = [*lines, *[k for k in (job.clip_sound_key, job.music_key) if k]]
            store.put_file(mix_key, tmp / "mix.m4a", "audio/mp4",
                           lineage_of("mix", job, parents, {"step": "mix"}))  # fmt: skip
        mix = store.get_file(mix_key, tmp / "mix.m4a")
        out = mux_audio(film, mix, tmp / "master.mp4", duration)
        store.put_file(key, out, "video/mp4",
                       lineage_of("edit", job, [job.edit_key, mix_key], {"step": "master"}))
    return key

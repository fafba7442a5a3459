"""The master of a film without music: the edit with its clips' own sound (LTX-2 makes the
picture and its sound together; the clip step stores the sound as the clip's stem)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelflow.render.common import lineage_of, scratch
from reelflow.render.edit.assembly import edit_trims
from reelflow.render.jobs.specs import ClipSoundJob, ClipStemJob
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore


def makes_sound(backend: str) -> bool:
    """Whether the backend's clips carry their own sound (its declared capabilities)."""
    from reelflow.motion.capabilities import capabilities

    try:
        return capabilities(backend).audio
    except KeyError:
        return False


def _shot_sounds(
    store: ArtifactStore, job: ClipSoundJob, tmp: Path
) -> tuple[list[Any], list[str | None]]:
    """Each shot's place in the edit with its stem fetched (None: a silent clip), and the
    stems' keys (None where a clip has none)."""
    from reelflow.editing.assemble import AssemblyClip, plan_segments
    from reelflow.editing.clip_sound import ShotSound

    stems = [keys.clip_audio_key(clip.key) for clip in job.clips]
    found = [stem if store.exists(stem) else None for stem in stems]
    if not any(found):
        return [], found
    trims = edit_trims(store, job.edit_key)  # the edit's in-points: its sound starts there too
    timeline = [
        AssemblyClip(path=Path(clip.shot), duration=clip.duration,
                     transition=clip.transition if index else "cut",
                     transition_duration=clip.transition_duration if index else 0.0)
        for index, clip in enumerate(job.clips)
    ]  # fmt: skip
    shots = []
    for index, (clip, seg) in enumerate(
        zip(job.clips, plan_segments(timeline, job.fps), strict=True)
    ):
        stem = found[index]
        audio = store.get_file(stem, tmp / f"{index:03d}.wav") if stem else None
        head = float((trims.get(clip.shot) or {}).get("head", 0.0))
        frames = seg.start_frame + seg.body_frames
        shots.append(ShotSound(audio=audio, seconds=frames / job.fps, start=head))
    return shots, found


def _silent_shots(job: ClipSoundJob, found: list[str | None]) -> list[str]:
    return [clip.shot for clip, stem in zip(job.clips, found, strict=True) if not stem]


def master_with_clip_sound(store: ArtifactStore, job: ClipSoundJob) -> str:
    """The edit with each shot's audio stem under its picture; the edit itself when no clip
    has a stem (a silent backend, or clips made before stems were kept)."""
    from reelflow.editing.clip_sound import lay_clip_sound

    key = job.output_key()
    if store.complete(key):
        return key
    with scratch() as tmp:
        shots, found = _shot_sounds(store, job, tmp)
        if not shots:
            return job.edit_key
        film = store.get_file(job.edit_key, tmp / "edit.mp4")
        out = lay_clip_sound(film, shots, tmp / "master.mp4")
        store.put_file(
            key,
            out,
            "video/mp4",
            lineage_of(
                "edit",
                job,
                [job.edit_key, *[stem for stem in found if stem]],
                {"step": "clip-sound", "silent_shots": _silent_shots(job, found)},
            ),
        )
    return key


def clip_sound_stem(store: ArtifactStore, job: ClipStemJob) -> str | None:
    """The clips' sound on this cut's timeline, alone (a WAV stem, an object of its own with the
    clips' stems as parents), for the mix beside the voice and the music; None when no clip
    has sound. Shared by every language and loudness of the cut."""
    from reelflow.editing.clip_sound import clip_sound_track

    key = job.output_key()
    if store.complete(key):
        return key
    with scratch() as tmp:
        shots, found = _shot_sounds(store, job, tmp)
        if not shots:
            return None
        out = clip_sound_track(shots, tmp / "clip-sound.wav")
        store.put_file(
            key,
            out,
            "audio/wav",
            lineage_of(
                "stem",
                job,
                [stem for stem in found if stem],
                {"step": "clip-sound-stem", "silent_shots": _silent_shots(job, found)},
            ),
        )
    return key

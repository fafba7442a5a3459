"""The master of a film without music: the edit with its clips' own sound (LTX-2 makes the
picture and its sound together; the clip step stores the sound as the clip's stem)."""

from __future__ import annotations

from pathlib import Path

from reelflow.render.common import lineage_of, scratch
from reelflow.render.edit.assembly import edit_trims
from reelflow.render.jobs.specs import ClipSoundJob
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore


def makes_sound(backend: str) -> bool:
    """Whether the backend's clips carry their own sound (its declared capabilities)."""
    from reelflow.motion.capabilities import capabilities

    try:
        return capabilities(backend).audio
    except KeyError:
        return False


def master_with_clip_sound(store: ArtifactStore, job: ClipSoundJob) -> str:
    """The edit with each shot's audio stem under its picture; the edit itself when no clip
    has a stem (a silent backend, or clips made before stems were kept)."""
    from reelflow.editing.assemble import AssemblyClip, plan_segments
    from reelflow.editing.clip_sound import ShotSound, lay_clip_sound

    key = job.output_key()
    if store.complete(key):
        return key
    stems = [keys.clip_audio_key(clip.key) for clip in job.clips]
    found = [stem if store.exists(stem) else None for stem in stems]
    if not any(found):
        return job.edit_key
    trims = edit_trims(store, job.edit_key)  # the edit's in-points: its sound starts there too
    timeline = [
        AssemblyClip(path=Path(clip.shot), duration=clip.duration,
                     transition=clip.transition if index else "cut",
                     transition_duration=clip.transition_duration if index else 0.0)
        for index, clip in enumerate(job.clips)
    ]  # fmt: skip
    with scratch() as tmp:
        film = store.get_file(job.edit_key, tmp / "edit.mp4")
        shots = []
        for index, (clip, seg) in enumerate(
            zip(job.clips, plan_segments(timeline, job.fps), strict=True)
        ):
            stem = found[index]
            audio = store.get_file(stem, tmp / f"{index:03d}.wav") if stem else None
            head = float((trims.get(clip.shot) or {}).get("head", 0.0))
            frames = seg.start_frame + seg.body_frames
            shots.append(ShotSound(audio=audio, seconds=frames / job.fps, start=head))
        out = lay_clip_sound(film, shots, tmp / "master.mp4")
        store.put_file(
            key,
            out,
            "video/mp4",
            lineage_of(
                "edit",
                job,
                [job.edit_key, *[stem for stem in found if stem]],
                {
                    "step": "clip-sound",
                    "silent_shots": [
                        clip.shot for clip, stem in zip(job.clips, found, strict=True) if not stem
                    ],
                },
            ),
        )
    return key

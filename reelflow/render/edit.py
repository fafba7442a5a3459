"""Edit steps: assembly, cover, music (beats, master) and delivered versions."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from reelflow.render.common import lineage_of, scratch
from reelflow.render.jobs import CoverJob, EditJob, MasterJob, MusicJob, VersionJob
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore, Lineage
from reelflow.store.keys import spec_hash

if TYPE_CHECKING:
    from reelflow.editing.assemble import Part

log = logging.getLogger("reelflow.render")


def _part_workers() -> int:
    """Parts encoded at once: each x264 runs ENCODE_THREADS threads, so cores / that."""
    from reelflow.editing.assemble import ENCODE_THREADS

    env = os.environ.get("REELFLOW_EDIT_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, (os.cpu_count() or 1) // ENCODE_THREADS)


def film_parts(job: EditJob) -> list[tuple[str, Part]]:
    """(object key, part) of every part of the film, in order: pure, no bucket access."""
    from reelflow.editing.assemble import AssemblyClip, plan_parts

    timeline = [
        AssemblyClip(
            path=Path(f"{index:03d}-{clip.shot}.mp4"),
            duration=clip.duration,
            transition=clip.transition if index else "cut",
            transition_duration=clip.transition_duration if index else 0.0,
        )
        for index, clip in enumerate(job.clips)
    ]
    sources = [clip.key for clip in job.clips]
    encode = {"width": job.width, "height": job.height, "fps": job.fps, "crf": job.crf,
              "preset": PART_PRESET}  # fmt: skip
    return [
        (keys.part_key(job.project, spec_hash({**part.spec(sources), "encode": encode})), part)
        for part in plan_parts(timeline, job.fps)
    ]


PART_PRESET = "medium"


def assemble_film(store: ArtifactStore, job: EditJob) -> str:
    """The film, from parts cached in the bucket: only parts not there yet are encoded (in
    parallel, bounded by the cores), then all are joined by stream copy.

    A part's key depends only on the clips it reads and its frame range, so after one shot's
    clip changes only its body and its transitions are encoded again.
    """
    from reelflow.editing.assemble import join_parts, render_part

    key = keys.edit_key(job.project, job.spec_hash())
    if store.exists(key):
        return key
    parts = film_parts(job)
    # dict: a part that appears twice (the same clip and frames) is encoded once
    missing = list({k: part for k, part in parts if not store.exists(k)}.items())
    with scratch() as tmp:
        needed = sorted({i for _, part in missing for i in part.shots})
        local = {
            i: store.get_file(job.clips[i].key, tmp / f"{i:03d}-{job.clips[i].shot}.mp4")
            for i in needed
        }

        def encode(item: tuple[str, Part]) -> str:
            part_key, part = item
            part = part.model_copy(
                update={
                    "clip": part.clip.model_copy(update={"path": local[part.shots[0]]}),
                    "next_clip": part.next_clip.model_copy(update={"path": local[part.shots[1]]})
                    if part.next_clip is not None
                    else None,
                }
            )
            out = render_part(
                part, tmp / f"new-{part.index:05d}.ts", width=job.width, height=job.height,
                fps=job.fps, crf=job.crf, preset=PART_PRESET,
            )  # fmt: skip
            store.put_file(
                part_key,
                out,
                "video/mp2t",
                lineage_of("edit-part", job, [job.clips[i].key for i in part.shots],
                           {"part": part.index, "kind": part.kind, "frames": part.frames}),
            )  # fmt: skip
            return part_key

        with ThreadPoolExecutor(max_workers=_part_workers()) as pool:
            list(pool.map(encode, missing))
        log.info("edit %s: encoded %d of %d parts", key, len(missing), len(parts))
        paths = [store.get_file(k, tmp / f"part-{i:05d}.ts") for i, (k, _) in enumerate(parts)]
        out = join_parts(paths, tmp / "film.mp4", fps=job.fps)
        store.put_file(
            key,
            out,
            "video/mp4",
            lineage_of(
                "edit",
                job,
                [clip.key for clip in job.clips],
                {
                    "parts": [
                        {"key": k, "frames": p.frames, "shots": list(p.shots)} for k, p in parts
                    ],
                    "encoded": [k for k, _ in missing],
                },
            ),
        )
    return key


def make_cover(store: ArtifactStore, job: CoverJob) -> str:
    from reelflow.editing.cover import make_cover as render_cover

    key = keys.cover_key(job.project, job.spec_hash())
    if store.exists(key):
        return key
    with scratch() as tmp:
        film = store.get_file(job.film_key, tmp / "film.mp4")
        out = render_cover(film, tmp / "cover.png", job.title)
        store.put_file(
            key,
            out,
            "image/png",
            lineage_of("cover", job, [job.film_key]),
        )
    return key


def store_input(store: ArtifactStore, project: str, path: Path) -> str:
    """Upload a file the storyboard brings in (music), once per content."""
    import hashlib

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
    """The film with its music bed, faded out and normalised to the target loudness."""
    from reelflow.editing.audio import mux_music

    key = keys.edit_key(job.project, f"{job.spec_hash()}-master")
    if store.exists(key):
        return key
    with scratch() as tmp:
        film = store.get_file(job.film_key, tmp / "film.mp4")
        music = store.get_file(job.music_key, tmp / "music")
        out = mux_music(
            film, music, tmp / "master.mp4", fade_out=job.fade_out, target_lufs=job.target_lufs
        )
        store.put_file(
            key,
            out,
            "video/mp4",
            lineage_of("edit", job, [job.film_key, job.music_key], {"step": "music"}),
        )
    return key


def export_version(store: ArtifactStore, job: VersionJob, source_aspect: str) -> str:
    """One delivered version: reframed, enhanced (fps, size, denoise), then captioned."""
    from reelflow.editing.enhance import enhance
    from reelflow.editing.subtitles import Caption, burn_subtitles, mux_soft_subtitles, write_srt
    from reelflow.editing.versions import export_version as reframe

    export = job.export
    key = keys.edit_key(job.project, f"{job.spec_hash()}-{export.name}")
    if store.exists(key):
        return key
    with scratch() as tmp:
        current = store.get_file(job.master_key, tmp / "master.mp4")
        if export.aspect != source_aspect or export.codec != "h264":
            current = reframe(current, tmp / "framed.mp4", aspect=export.aspect, codec=export.codec)
        if export.fps or export.size or export.denoise:
            current = enhance(
                current,
                tmp / "enhanced.mp4",
                size=export.size,
                fps=export.fps,
                denoise=export.denoise,
            )
        captions = [Caption(duration=c.duration, zh=c.zh, en=c.en) for c in job.captions]
        if export.captions != "none" and any(c.zh or c.en for c in captions):
            if export.captions == "burn":
                current = burn_subtitles(current, captions, tmp / "captioned.mp4")
            else:
                tracks = {
                    lang: write_srt(captions, tmp / f"{lang}.srt", languages=(lang,))
                    for lang in ("zh", "en")
                }
                current = mux_soft_subtitles(current, tracks, tmp / "captioned.mp4")
        store.put_file(
            key,
            current,
            "video/mp4",
            lineage_of("edit", job, [job.master_key], {"version": export.name}),
        )
    return key

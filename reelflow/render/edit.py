"""Edit steps: assembly, cover, music (beats, master) and delivered versions."""

from __future__ import annotations

import logging
from pathlib import Path

from reelflow.render.common import lineage_of, scratch
from reelflow.render.jobs import CoverJob, EditJob, MasterJob, MusicJob, VersionJob
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore, Lineage

log = logging.getLogger("reelflow.render")


def assemble_film(store: ArtifactStore, job: EditJob) -> str:
    from reelflow.editing.assemble import AssemblyClip, assemble

    key = job.output_key()
    if store.exists(key):
        return key
    with scratch() as tmp:
        clips = []
        for index, clip in enumerate(job.clips):
            path = store.get_file(clip.key, tmp / f"{index:03d}-{clip.shot}.mp4")
            clips.append(
                AssemblyClip(
                    path=path,
                    duration=clip.duration,
                    transition=clip.transition if index else "cut",
                    transition_duration=clip.transition_duration if index else 0.0,
                )
            )
        out = assemble(
            clips, tmp / "film.mp4", width=job.width, height=job.height, fps=job.fps, crf=job.crf
        )
        store.put_file(
            key,
            out,
            "video/mp4",
            lineage_of("edit", job, [clip.key for clip in job.clips]),
        )
    return key


def make_cover(store: ArtifactStore, job: CoverJob) -> str:
    from reelflow.editing.cover import make_cover as render_cover

    key = job.output_key()
    if store.exists(key):
        return key
    with scratch() as tmp:
        film = store.get_file(job.source_key, tmp / "film.mp4")
        width, height = (int(part) for part in job.aspect.split(":"))
        out = render_cover(film, tmp / "cover.png", job.title, aspect=(width, height))
        store.put_file(
            key,
            out,
            "image/png",
            lineage_of("cover", job, [job.source_key]),
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

    key = job.output_key()
    if store.exists(key):
        return key
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


def export_version(store: ArtifactStore, job: VersionJob) -> str:
    """One delivered version: reframed, enhanced (fps, size, denoise), then captioned."""
    from reelflow.editing.enhance import enhance
    from reelflow.editing.subtitles import Caption, burn_subtitles, mux_soft_subtitles, write_srt
    from reelflow.editing.versions import export_version as reframe

    export = job.export
    key = job.output_key()
    if store.exists(key):
        return key
    with scratch() as tmp:
        current = store.get_file(job.master_key, tmp / "master.mp4")
        if export.aspect != job.source_aspect or export.codec != "h264":
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

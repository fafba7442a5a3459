"""Edit steps: assembly, cover, music (beats, master) and delivered versions."""

from __future__ import annotations

import logging
from pathlib import Path

from reelflow.render.common import lineage_of, scratch
from reelflow.render.jobs import CoverJob, EditJob, MasterJob, MusicJob, VersionJob
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore, Lineage, ObjectNotFound

log = logging.getLogger("reelflow.render")


MAX_TRIM = 1.0
"""Seconds of waste the edit may cut from each end of a clip (see editing/waste.py)."""


def assemble_film(store: ArtifactStore, job: EditJob) -> str:
    """The clips in order at their shots' durations, black/frozen heads and tails trimmed
    (shots with `trim_waste` on); the trims go into the film's lineage (`edit_trims`)."""
    from reelflow.editing.assemble import AssemblyClip, assemble
    from reelflow.editing.waste import trim_for_shot

    key = job.output_key()
    if store.complete(key):
        return key
    trims: dict[str, dict[str, object]] = {}
    with scratch() as tmp:
        clips = []
        for index, clip in enumerate(job.clips):
            path = store.get_file(clip.key, tmp / f"{index:03d}-{clip.shot}.mp4")
            placed = AssemblyClip(
                path=path,
                duration=clip.duration,
                transition=clip.transition if index else "cut",
                transition_duration=clip.transition_duration if index else 0.0,
            )
            if clip.trim_waste and _generated(store, clip.key):
                placed, trim = trim_for_shot(clip.shot, placed, max_trim=MAX_TRIM)
                if trim is not None:
                    trims[clip.shot] = trim.as_dict()
            clips.append(placed)
        out = assemble(
            clips, tmp / "film.mp4", width=job.width, height=job.height, fps=job.fps, crf=job.crf
        )
        store.put_file(
            key,
            out,
            "video/mp4",
            lineage_of("edit", job, [clip.key for clip in job.clips], {"trims": trims}),
        )
    return key


UNTRIMMED_BACKENDS = {"animatic", "morph"}
"""Backends whose motion is designed, not generated: an eased camera move starts slowly on
purpose, and is not waste."""


def _generated(store: ArtifactStore, key: str) -> bool:
    """Whether a clip came from a generative backend (or from somewhere unknown)."""
    try:
        lineage = store.lineage(key)
    except ObjectNotFound:
        return True
    backend = lineage.extra.get("backend") or lineage.spec.get("backend")
    return backend not in UNTRIMMED_BACKENDS


def edit_trims(store: ArtifactStore, key: str) -> dict[str, dict[str, object]]:
    """shot -> waste trimmed, read from an edit's lineage; follows a mastered film or a
    version back to the assembly it was made from."""
    for _ in range(4):
        lineage = store.lineage(key)
        if "trims" in lineage.extra:
            return dict(lineage.extra["trims"])
        edits = [p for p in lineage.parents if "/edits/" in p]
        if lineage.kind != "edit" or not edits:
            break
        key = edits[0]
    return {}


def make_cover(store: ArtifactStore, job: CoverJob) -> str:
    from reelflow.editing.cover import make_cover as render_cover

    key = job.output_key()
    if store.complete(key):
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
    if store.complete(key):
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
    if store.complete(key):
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

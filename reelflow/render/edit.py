"""Edit steps: assembly, cover, music (beats, master) and delivered versions."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelflow.progress import report
from reelflow.render.common import lineage_of, scratch
from reelflow.render.jobs import CoverJob, EditJob, MasterJob, MusicJob, VersionJob
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore, Lineage, ObjectNotFound
from reelflow.store.keys import spec_hash

if TYPE_CHECKING:
    from reelflow.editing.assemble import AssemblyClip, Part

log = logging.getLogger("reelflow.render")


def _timeline(job: EditJob) -> list[AssemblyClip]:
    """The edit's clips on the timeline, untrimmed (paths are placeholders until downloaded)."""
    from reelflow.editing.assemble import AssemblyClip

    return [
        AssemblyClip(
            path=Path(f"{index:03d}-{clip.shot}.mp4"),
            duration=clip.duration,
            transition=clip.transition if index else "cut",
            transition_duration=clip.transition_duration if index else 0.0,
        )
        for index, clip in enumerate(job.clips)
    ]


def film_parts(
    job: EditJob, timeline: list[AssemblyClip] | None = None
) -> list[tuple[str, Part]]:
    """(object key, part) of every part of the film, in order: pure, no bucket access.
    ``timeline`` carries waste trims (in/out points) when there are any."""
    from reelflow.editing.assemble import plan_parts

    timeline = timeline if timeline is not None else _timeline(job)
    sources = [clip.key for clip in job.clips]
    encode = {"width": job.width, "height": job.height, "fps": job.fps, "crf": job.crf,
              "preset": PART_PRESET}  # fmt: skip
    return [
        (keys.part_key(job.project, spec_hash({**part.spec(sources), "encode": encode})), part)
        for part in plan_parts(timeline, job.fps)
    ]


PART_PRESET = "medium"
MAX_TRIM = 1.0
"""Seconds of waste the edit may cut from each end of a clip (see editing/waste.py)."""

#: Bump when a cached measurement (a clip's waste, a cover sample's score) changes meaning.
ANALYSIS_VERSION = 1


def assemble_film(store: ArtifactStore, job: EditJob) -> str:
    """The film, from parts cached in the bucket: only parts not there yet are encoded (in
    parallel, bounded by the cores), then all are joined by stream copy.

    A part's key depends only on the clips it reads, their trims and its frame range, so after
    one shot's clip changes only its body and its transitions are encoded again. Black/frozen
    heads and tails are trimmed (shots with `trim_waste` on, generated clips); the trims go into
    the film's lineage (`edit_trims`).
    """
    from reelflow.editing.assemble import join_parts, part_workers, render_part

    key = job.output_key()
    if store.complete(key):
        return key
    trims: dict[str, dict[str, object]] = {}
    with scratch() as tmp:
        timeline = _timeline(job)
        local: dict[int, Path] = {}
        for index, clip in enumerate(job.clips):
            if clip.trim_waste and _generated(store, clip.key):
                dest = tmp / f"{index:03d}-{clip.shot}.mp4"
                timeline[index], trim, path = _trim_waste(store, job.project, clip.key,
                                                          clip.shot, timeline[index], dest)
                if path is not None:
                    local[index] = path
                if trim is not None:
                    trims[clip.shot] = trim
        parts = film_parts(job, timeline)
        # dict: a part that appears twice (the same clip and frames) is encoded once
        missing = list({k: part for k, part in parts if not store.complete(k)}.items())
        for i in sorted({i for _, part in missing for i in part.shots} - set(local)):
            local[i] = store.get_file(job.clips[i].key, tmp / f"{i:03d}-{job.clips[i].shot}.mp4")

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

        report("edit", 0, len(missing), f"{len(missing)} of {len(parts)} parts to encode")
        with ThreadPoolExecutor(max_workers=part_workers()) as pool:
            for done, _ in enumerate(pool.map(encode, missing), 1):
                report("edit", done, len(missing), "parts encoded")
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
                    "trims": trims,
                    "parts": [
                        {"key": k, "frames": p.frames, "shots": list(p.shots)} for k, p in parts
                    ],
                    "encoded": [k for k, _ in missing],
                },
            ),
        )
    return key


def _trim_waste(
    store: ArtifactStore, project: str, clip_key: str, shot: str, placed: AssemblyClip,
    dest: Path,
) -> tuple[AssemblyClip, dict[str, object] | None, Path | None]:
    """``placed`` with its in/out points past the clip's black/frozen head and tail, the trim
    made (None: nothing cut), and the clip's local copy when it had to be downloaded.

    The measurement is kept in the bucket beside the edit's parts, so the next edit (after
    another shot changed) reads it instead of downloading and decoding this clip again."""
    from reelflow.editing.waste import trim_for_shot

    spec = {"waste": clip_key, "duration": placed.duration, "in": placed.in_point,
            "out": placed.out_point, "max_trim": MAX_TRIM, "version": ANALYSIS_VERSION}
    place = keys.analysis_key(project, spec_hash(spec))
    with suppress(ObjectNotFound):
        known = store.get_json(place)
        cut = placed.model_copy(update={"in_point": known["in"], "out_point": known["out"]})
        return cut, known["trim"], None
    path = store.get_file(clip_key, dest)
    cut, trim = trim_for_shot(shot, placed.model_copy(update={"path": path}), max_trim=MAX_TRIM)
    found = trim.as_dict() if trim is not None else None
    store.put_json(place, {"in": cut.in_point, "out": cut.out_point, "trim": found},
                   Lineage(kind="analysis", spec=spec, spec_hash=spec_hash(spec),
                           parents=[clip_key]))  # fmt: skip
    return cut, found, path


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
    """The cover of a version: a frame of the clean master (``job.source_key``: never a
    captioned version), cropped to ``job.aspect`` around the subject, with the title in the
    emptiest band outside the caption band.

    Each sample frame's score is kept in the bucket under the film part it lies in, so after
    one shot changed only the samples in the parts that were encoded again are decoded."""
    from reelflow.editing.cover import make_cover as render_cover
    from reelflow.editing.cover import score_samples
    from reelflow.media.probe import probe

    key = job.output_key()
    if store.complete(key):
        return key
    report("cover", detail=job.title)
    with scratch() as tmp:
        film = store.get_file(job.source_key, tmp / "film.mp4")
        places = _sample_places(store, job.project, job.source_key, probe(film).frame_count)
        known = {}
        for index, (place, _) in places.items():
            with suppress(ObjectNotFound):
                known[index] = float(store.get_json(place)["score"])
        scores = score_samples(film, known=known)
        for index, score in scores.items():
            if index in places and index not in known:
                place, spec = places[index]
                store.put_json(place, {"score": score}, Lineage(
                    kind="analysis", spec=spec, spec_hash=spec_hash(spec),
                    parents=[spec["cover-score"]]))  # fmt: skip
        width, height = (int(part) for part in job.aspect.split(":"))
        out = render_cover(film, tmp / "cover.png", job.title, aspect=(width, height),
                           known_scores=scores)
        store.put_file(
            key,
            out,
            "image/png",
            lineage_of("cover", job, [job.source_key]),
        )
    return key


def _sample_places(
    store: ArtifactStore, project: str, film_key: str, frame_count: int
) -> dict[int, tuple[str, dict[str, Any]]]:
    """Cover sample index -> (analysis key, spec) of its score: the film part the frame lies
    in and the frame's offset in it (a part's pixels are the same in every film that joins
    it). Empty for a film without recorded parts."""
    from reelflow.editing.cover import sample_indices

    parts, _ = _film_parts(store, film_key)
    starts, at = [], 0
    for part in parts:
        starts.append(at)
        at += int(part["frames"])
    places: dict[int, tuple[str, dict[str, Any]]] = {}
    for index in sample_indices(frame_count):
        if not parts or index >= at:
            continue
        n = max(i for i, start in enumerate(starts) if start <= index)
        spec = {"cover-score": parts[n]["key"], "frame": index - starts[n],
                "version": ANALYSIS_VERSION}
        places[index] = (keys.analysis_key(project, spec_hash(spec)), spec)
    return places


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


def _film_parts(store: ArtifactStore, key: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The parts an assembled film (or its music master) was joined from, and its edit spec;
    ``([], {})`` for a film made before parts were recorded."""
    lin = store.lineage(key)
    if lin.extra.get("parts"):
        return list(lin.extra["parts"]), lin.spec
    if lin.extra.get("step") == "music" and lin.parents:
        return _film_parts(store, lin.parents[0])
    return [], {}


#: Bump when a version part's filter graph changes: it is in every version part's spec.
VERSION_PART_VERSION = 1


def _part_captions(subs: Any, start_ms: int, end_ms: int) -> Any:
    """The caption events inside [start_ms, end_ms), shifted to the part's own clock."""
    import copy

    out = copy.copy(subs)
    out.events = []
    for event in subs.events:
        if event.end <= start_ms or event.start >= end_ms:
            continue
        e = event.copy()
        e.start, e.end = max(event.start, start_ms) - start_ms, min(event.end, end_ms) - start_ms
        out.events.append(e)
    return out


def export_version(store: ArtifactStore, job: VersionJob) -> str:
    """One delivered version: reframed, enhanced (fps, size, denoise), captioned.

    Built per part of the film, each in ONE encode (reframe, enhancement and burned captions in
    one filter graph), cached by (film part, version settings, that part's captions): a changed
    shot or caption re-encodes only the parts it touches, and the parts join by stream copy.
    A part with nothing to change (same framing and codec, no caption) is the film's own part.
    """
    export = job.export
    key = job.output_key()
    if store.complete(key):
        return key
    from reelflow.media.ffmpeg import has_filter

    parts, edit = _film_parts(store, job.master_key)
    if not parts or export.codec == "av1" or (export.captions == "burn" and not has_filter(
            "subtitles")):  # fmt: skip
        return _export_whole(store, job, key)
    return _export_by_part(store, job, key, parts, edit)


def _export_by_part(
    store: ArtifactStore,
    job: VersionJob,
    key: str,
    parts: list[dict[str, Any]],
    edit: dict[str, Any],
) -> str:
    from reelflow.editing.assemble import ENCODE_THREADS, join_parts, part_workers
    from reelflow.editing.enhance import enhance_filters
    from reelflow.editing.fonts import cjk_font_path
    from reelflow.editing.subtitles import Caption, build_subtitles, mux_soft_subtitles, write_srt
    from reelflow.editing.versions import crop_window, render_version_part

    export = job.export
    fps = int(edit["fps"])
    width, height = int(edit["width"]), int(edit["height"])
    aspect = export.aspect if export.aspect != job.source_aspect else None
    out_w, out_h = width, height
    if aspect is not None:
        _, _, out_w, out_h = crop_window(width, height, aspect)
    if export.size:
        out_w, out_h = export.size
    enhance = enhance_filters(size=export.size, fps=export.fps, denoise=export.denoise)
    rate = export.fps or fps
    captions = [Caption(duration=c.duration, zh=c.zh, en=c.en) for c in job.captions]
    burn = export.captions == "burn" and any(c.zh or c.en for c in captions)
    subs = build_subtitles(captions, width=out_w, height=out_h) if burn else None
    # the settings every part of this version shares (the film's own x264 settings for h264,
    # so a part with nothing to change can be the film's part, joined by stream copy)
    settings = {
        "aspect": aspect, "codec": export.codec, "enhance": enhance, "size": [out_w, out_h],
        "crf": int(edit["crf"]) if export.codec == "h264" else None, "threads": ENCODE_THREADS,
        "version": VERSION_PART_VERSION,
    }  # fmt: skip
    plan: list[tuple[str, dict[str, Any], Any, int]] = []  # (key, part, its captions, frames)
    at = 0
    for part in parts:
        first, n = at, int(part["frames"])
        at += n
        frames = round((first + n) * rate / fps) - round(first * rate / fps)
        part_subs = (
            _part_captions(subs, round(first * 1000 / fps), round((first + n) * 1000 / fps))
            if subs is not None
            else None
        )
        events = [[e.start, e.end, e.text] for e in part_subs.events] if part_subs else []
        if aspect is None and not enhance and export.codec == "h264" and not events:
            plan.append((part["key"], part, None, frames))  # the film's own part
            continue
        spec = {"part": part["key"], "settings": settings, "captions": events, "frames": frames}
        plan.append((keys.part_key(job.project, spec_hash(spec)), part, part_subs, frames))
    missing = {k: (p, c, f) for k, p, c, f in plan if k != p["key"] and not store.complete(k)}
    with scratch() as tmp:
        fonts = tmp / "fonts"
        fonts.mkdir()
        font = cjk_font_path()
        os.symlink(font, fonts / font.name)

        def encode(item: tuple[str, tuple[dict[str, Any], Any, int]]) -> None:
            part_key, (part, part_subs, frames) = item
            name = part_key.rsplit("/", 1)[-1].split(".")[0]
            src = store.get_file(part["key"], tmp / f"src-{name}.ts")
            ass = None
            if part_subs is not None and part_subs.events:
                ass = tmp / f"{name}.ass"
                part_subs.save(str(ass), format_="ass", encoding="utf-8")
            out = render_version_part(
                src, tmp / f"v-{name}.ts", frames=frames, aspect=aspect, codec=export.codec,
                crf=settings["crf"], preset=PART_PRESET, threads=ENCODE_THREADS,
                enhance=enhance, subtitles=ass, fonts_dir=fonts,
            )  # fmt: skip
            store.put_file(
                part_key,
                out,
                "video/mp2t",
                lineage_of("edit-part", job, [part["key"]], {"version": export.name}),
            )

        stage = f"version {export.name}"
        report(stage, 0, len(missing), f"{len(missing)} of {len(plan)} parts to encode")
        with ThreadPoolExecutor(max_workers=part_workers()) as pool:
            for done, _ in enumerate(pool.map(encode, missing.items()), 1):
                report(stage, done, len(missing), "parts encoded")
        log.info("version %s: encoded %d of %d parts", key, len(missing), len(plan))
        paths = [store.get_file(k, tmp / f"part-{i:05d}.ts") for i, (k, *_) in enumerate(plan)]
        tag = ["-tag:v", "hvc1"] if export.codec == "h265" else []
        video = join_parts(paths, tmp / "video.mp4", fps=rate, extra=tag)
        current = _with_audio(store, job.master_key, video, tmp)
        if export.captions == "soft" and any(c.zh or c.en for c in captions):
            tracks = {
                lang: write_srt(captions, tmp / f"{lang}.srt", languages=(lang,))
                for lang in ("zh", "en")
            }
            current = mux_soft_subtitles(current, tracks, tmp / "captioned.mp4")
        store.put_file(
            key,
            current,
            "video/mp4",
            lineage_of(
                "edit",
                job,
                [job.master_key],
                {
                    "version": job.export.name,
                    "parts": [{"key": k, "frames": f} for k, _, _, f in plan],
                    "encoded": sorted(missing),
                },
            ),
        )
    return key


def _with_audio(store: ArtifactStore, master_key: str, video: Path, tmp: Path) -> Path:
    """``video`` with the master's audio (music) copied in, when the master has any."""
    from reelflow.media.ffmpeg import run
    from reelflow.media.probe import probe

    master = store.get_file(master_key, tmp / "master.mp4")
    if not probe(master).has_audio:
        return video
    out = tmp / "with-audio.mp4"
    run(
        ["-i", str(video), "-i", str(master), "-map", "0:v", "-map", "1:a", "-c", "copy",
         "-movflags", "+faststart", str(out)],
        what="mux the master's audio into the version",
    )  # fmt: skip
    return out


def _export_whole(store: ArtifactStore, job: VersionJob, key: str) -> str:
    """The version from the whole master (films without recorded parts, AV1, no libass)."""
    from reelflow.editing.enhance import enhance
    from reelflow.editing.subtitles import (
        Caption,
        burn_subtitles,
        caption_languages,
        mux_soft_subtitles,
        write_srt,
    )
    from reelflow.editing.versions import export_version as reframe

    export = job.export
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
                current = burn_subtitles(
                    current, captions, tmp / "captioned.mp4", languages=caption_languages(captions)
                )
            else:
                # one track per language that has text: an empty SRT makes ffmpeg fail
                tracks = {
                    lang: write_srt(captions, tmp / f"{lang}.srt", languages=(lang,))
                    for lang in caption_languages(captions)
                }
                current = mux_soft_subtitles(current, tracks, tmp / "captioned.mp4")
        store.put_file(
            key,
            current,
            "video/mp4",
            lineage_of("edit", job, [job.master_key], {"version": export.name}),
        )
    return key

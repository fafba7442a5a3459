"""Delivered versions: the master reframed, enhanced and captioned, built per film part."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from reelflow.editing.upscaler import UpscalerChoice
from reelflow.progress import report
from reelflow.render.common import lineage_of, require_weights, scratch
from reelflow.render.edit.assembly import PART_PRESET, recorded_parts
from reelflow.render.jobs import VersionJob
from reelflow.render.jobs.resolve import resolve_model_path
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.keys import spec_hash

log = logging.getLogger("reelflow.render")


#: Bump when a version part's filter graph changes: it is in every version part's spec.
VERSION_PART_VERSION = 2
#: How lineage names the upscale of a version without a learned upscaler.
FILTER_UPSCALE = "filter (lanczos + unsharp)"


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
    """One delivered version: reframed, enhanced (fps, denoise), upscaled to its delivery size
    (``job.size``), captioned for that size.

    Built per part of the film, each in ONE encode (reframe, enhancement and burned captions in
    one filter graph), cached by (film part, version settings, that part's captions): a changed
    shot or caption re-encodes only the parts it touches, and the parts join by stream copy.
    This is the film's one real encode (``PART_PRESET``): the master's parts are a fast
    intermediate (``MASTER_PRESET``), so every part of a version is encoded here, even one with
    nothing to change, and a version never mixes the two presets' streams.
    """
    export = job.export
    key = job.output_key()
    if store.complete(key):
        return key
    from reelflow.media.ffmpeg import has_filter

    parts, edit = recorded_parts(store, job.master_key)
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
    from reelflow.editing.subtitles import Caption, add_soft_captions, build_subtitles
    from reelflow.editing.versions import crop_window, render_version_part

    export = job.export
    fps = int(edit["fps"])
    width, height = int(edit["width"]), int(edit["height"])
    aspect = export.aspect if export.aspect != job.source_aspect else None
    out_w, out_h = width, height
    if aspect is not None:
        _, _, out_w, out_h = crop_window(width, height, aspect)
    size = job.size or export.size
    if size == (out_w, out_h):
        size = None  # the reframed film is already the delivered size
    if size:
        out_w, out_h = size
    upscaler = job.upscaler if size else None  # learned, else the filter in `enhance`
    upscale = None
    if upscaler is not None:
        require_weights(job, f"version {export.name}")
        upscale = (upscaler, resolve_model_path(upscaler.path), (out_w, out_h))
    enhance = enhance_filters(size=None if upscaler else size, fps=export.fps,
                              denoise=export.denoise)  # fmt: skip
    rate = export.fps or fps
    captions = [Caption(duration=c.duration, zh=c.zh, en=c.en) for c in job.captions]
    burn = export.captions == "burn" and any(c.zh or c.en for c in captions)
    subs = build_subtitles(captions, width=out_w, height=out_h) if burn else None
    # the settings every part of this version shares (so its parts join by stream copy)
    settings = {
        "aspect": aspect, "codec": export.codec, "enhance": enhance, "size": [out_w, out_h],
        "crf": int(edit["crf"]) if export.codec == "h264" else None, "threads": ENCODE_THREADS,
        "preset": PART_PRESET,
        "version": VERSION_PART_VERSION,
    }  # fmt: skip
    if upscaler is not None:  # its content, not its path (a moved folder keeps the parts)
        settings["upscaler"] = upscaler.model_dump(mode="json", exclude={"path"})
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
        spec = {"part": part["key"], "settings": settings, "captions": events, "frames": frames}
        plan.append((keys.part_key(job.project, spec_hash(spec)), part, part_subs, frames))
    missing = {k: (p, c, f) for k, p, c, f in plan if not store.complete(k)}
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
                enhance=enhance, subtitles=ass, fonts_dir=fonts, upscale=upscale, fps=rate,
            )  # fmt: skip
            store.put_file(
                part_key,
                out,
                "video/mp2t",
                lineage_of("edit-part", job, [part["key"]],
                           {"version": export.name, "upscaler": upscaled_by(upscaler, bool(size))}),
            )  # fmt: skip

        stage = f"version {export.name}"
        report(stage, 0, len(missing), f"{len(missing)} of {len(plan)} parts to encode")
        with ThreadPoolExecutor(max_workers=part_workers()) as pool:
            encoding = [pool.submit(encode, item) for item in missing.items()]
            for done, finished in enumerate(as_completed(encoding), 1):  # as each one ends
                finished.result()
                report(stage, done, len(missing), "parts encoded")
        log.info("version %s: encoded %d of %d parts", key, len(missing), len(plan))
        paths = [store.get_file(k, tmp / f"part-{i:05d}.ts") for i, (k, *_) in enumerate(plan)]
        tag = ["-tag:v", "hvc1"] if export.codec == "h265" else []
        video = join_parts(paths, tmp / "video.mp4", fps=rate, extra=tag)
        current = _with_audio(store, job.master_key, video, tmp)
        if export.captions == "soft":
            current = add_soft_captions(current, captions, tmp / "captioned.mp4")
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
                    "upscaler": upscaled_by(upscaler, bool(size)),
                },
            ),
        )
    return key


def upscaled_by(upscaler: UpscalerChoice | None, scaled: bool = True) -> str:
    """What lineage and the manifest say took a version to its delivery size (``scaled``:
    whether it changed size at all after the reframe)."""
    if upscaler is not None:
        return upscaler.label
    return FILTER_UPSCALE if scaled else "none (the reframed film's own size)"


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
        add_soft_captions,
        burn_subtitles,
        caption_languages,
    )
    from reelflow.editing.versions import export_version as reframe
    from reelflow.media.probe import probe

    export = job.export
    with scratch() as tmp:
        current = store.get_file(job.master_key, tmp / "master.mp4")
        if export.aspect != job.source_aspect or export.codec != "h264":
            current = reframe(current, tmp / "framed.mp4", aspect=export.aspect, codec=export.codec)
        size = job.size or export.size
        if size and size == (probe(current).width, probe(current).height):
            size = None
        upscaler = job.upscaler if size else None
        if upscaler is not None:  # the learned upscaler, then the scale to the exact size
            current = _upscale_whole(job, upscaler, current, size, tmp)  # type: ignore[arg-type]
        elif export.fps or size or export.denoise:
            current = enhance(
                current,
                tmp / "enhanced.mp4",
                size=size,
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
                current = add_soft_captions(current, captions, tmp / "captioned.mp4")
        store.put_file(
            key,
            current,
            "video/mp4",
            lineage_of("edit", job, [job.master_key],
                       {"version": export.name, "upscaler": upscaled_by(upscaler, bool(size))}),
        )  # fmt: skip
    return key


def _upscale_whole(
    job: VersionJob, upscaler: UpscalerChoice, video: Path, size: tuple[int, int], tmp: Path
) -> Path:
    """``video`` (reframed) denoised and interpolated as the export asks, through the learned
    upscaler, scaled to ``size``; its sound copied."""
    from reelflow.editing.enhance import enhance_filters
    from reelflow.editing.upscaler import upscale_stream
    from reelflow.media.encode import VideoEncode
    from reelflow.media.probe import probe

    export = job.export
    require_weights(job, f"version {export.name}")
    info = probe(video)
    rate = export.fps or info.fps
    return upscale_stream(
        video, tmp / "upscaled.mp4", choice=upscaler, folder=resolve_model_path(upscaler.path),
        size_in=(info.width, info.height), before=enhance_filters(fps=export.fps,
                                                                   denoise=export.denoise),
        after=[f"scale={size[0]}:{size[1]}:flags=lanczos"],
        output_args=[*VideoEncode(crf=18).args(), "-movflags", "+faststart"],
        frames=round(info.duration * rate), fps=rate, audio=video, size_out=size,
    )  # fmt: skip

"""Assembly: the film from its parts, cached in the bucket, with waste trimmed.

Also what the later steps read back from a film's lineage: the parts it was joined from
(`recorded_parts`, which covers and versions reuse) and the trims made (`edit_trims`).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelflow.progress import report
from reelflow.render.common import lineage_of, scratch
from reelflow.render.jobs import EditJob
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore, Lineage, ObjectNotFound
from reelflow.store.keys import spec_hash

if TYPE_CHECKING:
    from reelflow.editing.assemble import AssemblyClip, Part

log = logging.getLogger("reelflow.render")

PART_PRESET = "medium"
"""x264 preset of what is delivered: each version's parts (the one real encode of a film)."""
MASTER_PRESET = "veryfast"
"""x264 preset of the clean master's parts. The master is an intermediate that every version
re-encodes (with its captions, reframing, upscale) and covers sample, so it is kept cheap: at
the same crf a fast preset gives about the same picture in a larger file, in a fraction of the
time, and the delivery costs about one encode instead of two (issue 22, item 6)."""
MAX_TRIM = 1.0
"""Seconds of waste the edit may cut from each end of a clip (see editing/waste.py)."""

#: Bump when a cached measurement (a clip's waste, a cover sample's score) changes meaning.
ANALYSIS_VERSION = 1


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
              "preset": MASTER_PRESET}  # fmt: skip
    return [
        (keys.part_key(job.project, spec_hash({**part.spec(sources), "encode": encode})), part)
        for part in plan_parts(timeline, job.fps)
    ]


def assemble_film(store: ArtifactStore, job: EditJob) -> str:
    """The film, from parts cached in the bucket: only parts not there yet are encoded (in
    parallel, bounded by the cores), then all are joined by stream copy. The parts are encoded
    with the fast ``MASTER_PRESET``: this clean master is what the versions are made from.

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
                fps=job.fps, crf=job.crf, preset=MASTER_PRESET,
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
            encoding = [pool.submit(encode, part) for part in missing]
            for done, finished in enumerate(as_completed(encoding), 1):  # as each one ends
                finished.result()
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


def recorded_parts(store: ArtifactStore, key: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The parts an assembled film (or its music master) was joined from, and its edit spec;
    ``([], {})`` for a film made before parts were recorded."""
    lin = store.lineage(key)
    if lin.extra.get("parts"):
        return list(lin.extra["parts"]), lin.spec
    if lin.extra.get("step") in ("music", "clip-sound", "master") and lin.parents:
        return recorded_parts(store, lin.parents[0])
    return [], {}

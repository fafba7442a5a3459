"""Covers: a frame of the clean master per version, its sample scores cached per film part."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from reelflow.progress import step
from reelflow.render.common import lineage_of, scratch
from reelflow.render.edit.assembly import ANALYSIS_VERSION, recorded_parts
from reelflow.render.jobs import CoverJob
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore, Lineage, ObjectNotFound
from reelflow.store.keys import spec_hash


def make_cover(store: ArtifactStore, job: CoverJob) -> str:
    """The cover of a version: a frame of the clean master (``job.source_key``: never a
    captioned version), cropped to ``job.aspect`` around the subject, upscaled to the version's
    delivered size (``job.size``), the title where the frame is calmest outside the caption band.

    Each sample frame's score is kept in the bucket under the film part it lies in, so after
    one shot changed only the samples in the parts that were encoded again are decoded."""
    from reelflow.editing.cover import make_cover as render_cover
    from reelflow.editing.cover import score_samples
    from reelflow.media.probe import probe

    key = job.output_key()
    if store.complete(key):
        return key
    with step("cover", job.title), scratch() as tmp:
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
                           size=job.size, known_scores=scores)
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

    parts, _ = recorded_parts(store, film_key)
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

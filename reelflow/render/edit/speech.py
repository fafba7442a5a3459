"""The speech step: one voice-over line spoken by its source (an engine, or a recorded take),
stored as a WAV with its sentences' timings in the sidecar (so a later run that finds the object
needs no engine to place the captions)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from reelflow.render.common import lineage_of, scratch
from reelflow.render.jobs import SpeechJob, SpokenLine
from reelflow.sound.sources import Take, speak_line
from reelflow.store.artifacts import ArtifactStore


def synthesize_line(
    store: ArtifactStore, job: SpeechJob, *, endpoint: object = None
) -> SpokenLine:
    """``endpoint``: the `SpeechEndpointConfig` (with its key) of an endpoint line; it is used
    for the request only and recorded nowhere."""
    key = job.output_key()
    if store.complete(key):
        found = store.lineage(key).extra.get("speech")
        if found:
            return SpokenLine.model_validate({"shot": job.shot, "key": key, **found})
    parents = [job.source] if job.engine == "recorded" and job.source else []
    with scratch() as tmp:
        take = store.get_file(parents[0], tmp / "take") if parents else None
        speech = speak_line(job.engine, job.text, job.voice, job.speed, tmp / "line.wav",
                            source=job.source, take=take, endpoint=endpoint)  # fmt: skip
        timing = {
            "duration": speech.duration,
            "sentences": [s.model_dump() for s in speech.sentences],
        }
        store.put_file(
            key,
            tmp / "line.wav",
            "audio/wav",
            lineage_of("speech", job, parents, {"step": "speech", "speech": timing,
                                                "sample_rate": speech.sample_rate}),
        )
    return SpokenLine(
        shot=job.shot,
        key=key,
        duration=speech.duration,
        sentences=speech.sentences,
    )


def store_take(store: ArtifactStore, project: str, ref: str, base_dir: Path | None) -> Take:
    """A recorded line brought into the bucket (confined like the music), with the sha256 of
    its bytes for the line's key."""
    from reelflow.render.edit.music import store_input
    from reelflow.store.artifacts import ObjectNotFound

    key = store_input(store, project, ref, base_dir)
    try:
        sha = store.lineage(key).sha256
    except ObjectNotFound:  # an object put in the bucket by hand, without a sidecar
        sha = hashlib.sha256(store.get_bytes(key, verify=False)).hexdigest()
    return Take(key=key, sha256=sha)

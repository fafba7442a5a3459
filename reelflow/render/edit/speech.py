"""The speech step: one voice-over line spoken by the storyboard's engine, stored as a WAV
with its sentences' timings in the sidecar (so a later run that finds the object needs no
engine to place the captions)."""

from __future__ import annotations

from reelflow.render.common import lineage_of, scratch
from reelflow.render.jobs import SpeechJob, SpokenLine
from reelflow.sound.speech import engine, speak
from reelflow.store.artifacts import ArtifactStore


def synthesize_line(store: ArtifactStore, job: SpeechJob) -> SpokenLine:
    key = job.output_key()
    if store.complete(key):
        found = store.lineage(key).extra.get("speech")
        if found:
            return SpokenLine.model_validate({"shot": job.shot, "key": key, **found})
    speaker = engine(job.engine)
    with scratch() as tmp:
        speech = speak(speaker, job.text, job.voice, job.speed, tmp / "line.wav")
        timing = {
            "duration": speech.duration,
            "sentences": [s.model_dump() for s in speech.sentences],
        }
        store.put_file(
            key,
            tmp / "line.wav",
            "audio/wav",
            lineage_of("speech", job, [], {"step": "speech", "speech": timing,
                                           "sample_rate": speech.sample_rate}),
        )
    return SpokenLine(
        shot=job.shot,
        key=key,
        duration=speech.duration,
        sentences=speech.sentences,
    )

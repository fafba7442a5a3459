"""Identity checks: does each variant (and each clip) still look like its characters?

A shot that names library characters carries their reference image keys in its ImageJob
(`character_refs`). Each variant is scored against each character's references with
`imaging.checks.character_consistency` (CLIP image embeddings when a CLIP model is local, else
the HSV-histogram + SSIM fallback); a shot's score is its weakest character's, because one
off-model character spoils the shot. The same score is written into every image's lineage when
it is rendered, so reading it back costs one small sidecar request per variant.

`identity_failures` is what `quality-gate` consults: a shot whose best variant is under the
threshold is not auto-approved, and the reason names the shot, the score and the method.
Clips are checked on their first, middle and last frames against the approved still.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image
from pydantic import BaseModel

from reelflow.render.jobs import ImageJob
from reelflow.store.artifacts import ArtifactStore, ObjectNotFound

log = logging.getLogger("reelflow.render.identity")

IDENTITY_THRESHOLD = 0.35
"""Default lowest identity score `quality-gate` lets through (0..1; perceptual scores of the
same character in a new pose are typically 0.4-0.7, of another subject 0.1-0.3)."""

DRIFT_THRESHOLD = 0.35
"""A clip frame scoring under this against the approved still is flagged as drifting."""


class IdentityReport(BaseModel):
    """Per shot with characters: one score per variant (0..1), and the method that made them."""

    method: str
    scores: dict[str, list[float]] = {}
    characters: dict[str, list[str]] = {}  # shot -> characters scored


class ClipDrift(BaseModel):
    """A clip's first/middle/last frames scored against its approved still."""

    shot: str
    method: str
    scores: dict[str, float]  # "first" | "middle" | "last" -> 0..1
    flagged: list[str]  # the frames under the threshold

    @property
    def drifts(self) -> bool:
        return bool(self.flagged)


def _image(store: ArtifactStore, key: str) -> Image.Image:
    return Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")


def identity_method(clip_model: str | Path | None = None) -> str:
    from reelflow.imaging.checks import consistency_method

    return consistency_method(clip_model)


def score_image(
    image: Image.Image,
    references: Mapping[str, Sequence[Image.Image]],
    clip_model: str | Path | None = None,
) -> dict[str, float]:
    """character -> 0..1 likeness of `image` to that character's closest reference."""
    from reelflow.imaging.checks import character_consistency

    return {
        name: round(character_consistency(image, list(refs), clip_model), 4)
        for name, refs in references.items()
        if refs
    }


def load_references(store: ArtifactStore, job: ImageJob) -> dict[str, list[Image.Image]]:
    return {name: [_image(store, k) for k in refs] for name, refs in job.character_refs.items()}


def identity_lineage(scores: Mapping[str, float], method: str) -> dict[str, object]:
    """The `identity` entry of an image's lineage extra."""
    return {
        "method": method,
        "characters": dict(scores),
        "score": min(scores.values()) if scores else None,
    }


def score_identity(
    store: ArtifactStore,
    jobs: Mapping[str, ImageJob],
    variants: Mapping[str, list[str]],
    clip_model: str | Path | None = None,
) -> IdentityReport:
    """{shot: [score per variant]} for every shot whose job has character references.

    Scores recorded in a variant's lineage by the same method are reused; others are computed
    (references are downloaded once per shot).
    """
    method = identity_method(clip_model)
    report = IdentityReport(method=method)
    for shot, job in jobs.items():
        if not job.character_refs or shot not in variants:
            continue
        references: dict[str, list[Image.Image]] | None = None
        row = []
        for key in variants[shot]:
            recorded = _recorded(store, key, method)
            if recorded is None:
                references = references or load_references(store, job)
                recorded = min(score_image(_image(store, key), references, clip_model).values())
            row.append(round(float(recorded), 4))
        report.scores[shot] = row
        report.characters[shot] = sorted(job.character_refs)
    return report


def _recorded(store: ArtifactStore, key: str, method: str) -> float | None:
    try:
        entry = store.lineage(key).extra.get("identity")
    except ObjectNotFound:
        return None
    if isinstance(entry, dict) and entry.get("method") == method and entry.get("score") is not None:
        return float(entry["score"])
    return None


def identity_failures(report: IdentityReport, threshold: float) -> dict[str, str]:
    """shot -> one-line reason, for each shot none of whose variants reaches `threshold`."""
    failures = {}
    for shot, row in report.scores.items():
        best = max(row) if row else 0.0
        if best < threshold:
            failures[shot] = (
                f"{shot}: best identity score {best:.2f} < {threshold:.2f} "
                f"({', '.join(report.characters.get(shot, []))}; {report.method})"
            )
    return failures


def pick_by_identity(
    quality: Mapping[str, list[float]], report: IdentityReport, threshold: float
) -> dict[str, int]:
    """The best variant per shot: the highest quality score among variants that pass the
    identity threshold (all variants when none or no identity check applies)."""
    picks = {}
    for shot, row in quality.items():
        ids = report.scores.get(shot)
        allowed = [i for i in range(len(row)) if ids is None or ids[i] >= threshold]
        if not allowed and ids:
            allowed = [max(range(len(ids)), key=ids.__getitem__)]
        allowed = allowed or list(range(len(row)))
        picks[shot] = max(allowed, key=row.__getitem__)
    return picks


def identity_markdown(report: IdentityReport, threshold: float) -> str:
    """A review section: identity score per variant, the method, and which shots fail."""
    if not report.scores:
        return ""
    lines = [
        f"### Identity ({report.method}, threshold {threshold:.2f})",
        "",
        "| shot | characters | scores per variant | |",
        "|---|---|---|---|",
    ]
    for shot, row in report.scores.items():
        ok = max(row, default=0.0) >= threshold
        cells = " ".join(f"#{i + 1} {s:.2f}" for i, s in enumerate(row))
        chars = ", ".join(report.characters.get(shot, []))
        lines.append(f"| {shot} | {chars} | {cells} | {'ok' if ok else '**under threshold**'} |")
    return "\n".join(lines) + "\n"


def clip_drift(
    store: ArtifactStore,
    shot: str,
    clip_key: str,
    still_key: str,
    *,
    threshold: float = DRIFT_THRESHOLD,
    clip_model: str | Path | None = None,
) -> ClipDrift:
    """Score the clip's first, middle and last frames against the approved still; flag the
    frames under `threshold` (a transition drifting off-model shows up before the edit)."""
    import tempfile

    from reelflow.imaging.checks import character_consistency
    from reelflow.media.frames import extract_frame
    from reelflow.media.probe import probe

    still = _image(store, still_key)
    with tempfile.TemporaryDirectory(prefix="reelflow-drift-") as tmp:
        path = store.get_file(clip_key, Path(tmp) / "clip.mp4")
        middle = max(0, probe(path).frame_count // 2)
        frames = {
            "first": extract_frame(path, "first"),
            "middle": extract_frame(path, middle),
            "last": extract_frame(path, "last"),
        }
    scores = {
        name: round(character_consistency(Image.fromarray(frame), [still], clip_model), 4)
        for name, frame in frames.items()
    }
    flagged = [name for name, score in scores.items() if score < threshold]
    if flagged:
        log.warning("clip %s drifts from its still at %s: %s", shot, ", ".join(flagged), scores)
    return ClipDrift(
        shot=shot, method=identity_method(clip_model), scores=scores, flagged=flagged
    )


def clips_drift(
    store: ArtifactStore,
    clips: Mapping[str, str],
    stills: Mapping[str, str],
    *,
    threshold: float = DRIFT_THRESHOLD,
    clip_model: str | Path | None = None,
) -> dict[str, ClipDrift]:
    """`clip_drift` for every shot that has both a clip and an approved still."""
    return {
        shot: clip_drift(
            store, shot, clips[shot], stills[shot], threshold=threshold, clip_model=clip_model
        )
        for shot in clips
        if shot in stills
    }


def default_clip_model() -> str | None:
    """The local CLIP model named by REELFLOW_CLIP_MODEL, if any (the method follows it)."""
    from reelflow.imaging.checks import CLIP_MODEL_ENV

    return os.environ.get(CLIP_MODEL_ENV) or None

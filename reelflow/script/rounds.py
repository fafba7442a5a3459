"""The record of a script session: every round of versions, calibrations, choices and notes.

The SOP's script stage is a conversation between the director and a script editor: versions,
calibration reports, a choice, notes, a revision, and again. `ScriptRounds` keeps every round in
the bucket (`projects/{project}/scripts/{run}/rounds.json`) so the approved storyboard can be
traced back to the brief, the versions it beat, the notes that shaped it, who decided, and what it
cost in tokens. Plain pydantic, no Prefect: the flow writes it, anyone can read it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, ValidationError

from reelflow.llm import ChatClient, Usage
from reelflow.script.drafts import Brief
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import Storyboard


class EndpointInfo(BaseModel):
    """What identifies an LLM endpoint for caching and records: never its key."""

    name: str
    base_url: str
    model: str

    @classmethod
    def public(cls, name: str, base_url: str, model: str) -> EndpointInfo:
        """Drop userinfo, query and fragment from the URL: some people put tokens there."""
        parts = urlsplit(base_url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        clean = urlunsplit((parts.scheme, host, parts.path, "", ""))
        return cls(name=name, base_url=clean, model=model)

    def identity(self) -> dict[str, str]:
        """The cache identity: the same model at the same URL answers the same question once."""
        return {"base_url": self.base_url.rstrip("/"), "model": self.model}


class Drafts(BaseModel):
    """What `draft-versions` returns: storyboard keys in version order, and what they cost."""

    storyboard_keys: list[str]
    usage: Usage = Usage()


class Calibrated(BaseModel):
    """What `calibrate-version` returns: the report and its emotion-curve PNG, in the bucket."""

    storyboard_key: str
    report_key: str
    curve_key: str
    usage: Usage = Usage()


class Revised(BaseModel):
    """What `revise-version` returns; `applied` is False offline (notes recorded only)."""

    storyboard_key: str
    parent_key: str
    applied: bool
    summary: str = ""
    warnings: list[str] = []
    usage: Usage = Usage()


class VersionRecord(BaseModel):
    """One version as the director saw it at a gate."""

    storyboard_key: str
    calibration_key: str
    curve_key: str
    title: str = ""
    logline: str = ""
    summary: str = Field("", description="the calibration summary")
    errors: int = 0
    warnings: int = 0


class ScriptRound(BaseModel):
    """One gate: the versions shown, and what the reviewer decided about them."""

    round: int = Field(ge=1)
    kind: Literal["drafts", "revision"]
    versions: list[VersionRecord]
    revised_from: str | None = Field(None, description="storyboard key the notes were applied to")
    revision_summary: str = ""
    revision_warnings: list[str] = []
    chosen: int | None = Field(None, description="index of the chosen version")
    chosen_key: str | None = None
    approved: bool = False
    notes: str = ""
    reviewer: str = ""
    policy: str = ""
    decided_at: datetime | None = None
    usage: Usage = Usage()

    @property
    def storyboard_keys(self) -> list[str]:
        return [v.storyboard_key for v in self.versions]

    @property
    def calibration_keys(self) -> list[str]:
        return [v.calibration_key for v in self.versions]


class ScriptRounds(BaseModel):
    """Everything one write-script run did, rewritten after each round."""

    run_id: str
    flow: str = "write-script"
    project: str
    brief: Brief
    endpoint: EndpointInfo | None = None
    approval_policy: str
    started_at: datetime
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    rounds: list[ScriptRound] = []
    approved_key: str | None = None
    code_version: str = keys.CODE_VERSION

    @property
    def usage(self) -> Usage:
        total = Usage()
        for r in self.rounds:
            total.add(r.usage)
        return total


# -- keys -------------------------------------------------------------------------------------


def calibration_spec(storyboard_key: str, endpoint: EndpointInfo | None) -> str:
    """Spec hash of a calibration: which storyboard, judged by which model (or the rules)."""
    judge: dict[str, str] | str = endpoint.identity() if endpoint else "rules"
    return keys.spec_hash({"storyboard": storyboard_key, "judge": judge})[:12]


_EXT = {"calibration": "json", "curve": "png"}


def _beside(storyboard_key: str, spec: str, what: str) -> str:
    keys.validate_key(storyboard_key)
    if not keys.HASH_RE.match(spec):
        raise ValueError(f"invalid calibration spec {spec!r}: expected lowercase hex")
    if not storyboard_key.endswith(".json") or "/storyboards/" not in storyboard_key:
        raise ValueError(f"not a storyboard key: {storyboard_key!r}")
    return keys.validate_key(f"{storyboard_key[: -len('.json')]}.{what}-{spec}.{_EXT[what]}")


def calibration_key(storyboard_key: str, spec: str) -> str:
    """`projects/p/storyboards/{hash}.calibration-{spec}.json`, beside the storyboard."""
    return _beside(storyboard_key, spec, "calibration")


def curve_key(storyboard_key: str, spec: str) -> str:
    """`projects/p/storyboards/{hash}.curve-{spec}.png`, beside the storyboard."""
    return _beside(storyboard_key, spec, "curve")


def rounds_key(project: str, run_id: str) -> str:
    run = str(run_id)
    if not keys.RUN_ID_RE.match(run) or len(run) > 128:
        raise ValueError(f"invalid run id {run!r}: use letters, digits and dashes")
    return keys.validate_key(f"{keys.project_prefix(project)}scripts/{run}/rounds.json")


def load_brief(path: str | Path) -> Brief:
    """A brief from a YAML or JSON file; a ValueError names the file and each bad field."""
    from reelflow.storyboard import yamlsafe

    path = Path(path)
    try:  # the bounded reader: size, alias expansion, depth, duplicate keys, UTF-8
        with path.open("rb") as fh:
            data, _ = yamlsafe.load(yamlsafe.decode(fh.read(yamlsafe.MAX_BYTES + 1), path.name),
                                    path.name)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    except yamlsafe.YamlLimitError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a brief is a mapping (subjects, scenes, mood, shots, ...)")
    try:
        return Brief.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(brief)'}: {e['msg']}"
                    for e in exc.errors()]
        raise ValueError(f"{path}: " + "; ".join(problems)) from None


def calibrate_stored(
    store: ArtifactStore,
    storyboard_key: str,
    info: EndpointInfo | None,
    client: ChatClient | None,
) -> Calibrated:
    """Calibration report (JSON) and emotion curve (PNG) beside the storyboard.

    The keys are a hash of (storyboard, judging model), so a report already in the bucket is read
    back instead of being paid for again, even when the orchestrator's cache is gone.
    """
    import tempfile
    from pathlib import Path

    from reelflow.script.calibration import calibrate, plot_emotion_curve

    spec = calibration_spec(storyboard_key, info)
    report_key, png_key = calibration_key(storyboard_key, spec), curve_key(storyboard_key, spec)
    if store.complete(report_key) and store.complete(png_key):
        return Calibrated(storyboard_key=storyboard_key, report_key=report_key, curve_key=png_key)
    board = store.get_json(storyboard_key, Storyboard)
    report = calibrate(board, client)
    usage = client.usage.model_copy() if client is not None else Usage()
    lineage = {
        "spec": {"judge": info.identity() if info else "rules"},
        "spec_hash": spec,
        "parents": [storyboard_key],
    }
    with tempfile.TemporaryDirectory(prefix="reelflow-curve-") as tmp:
        png = plot_emotion_curve(report, Path(tmp) / "curve.png")
        store.put_file(png_key, png, "image/png", {"kind": "emotion-curve", **lineage})
    store.put_json(report_key, report, {"kind": "calibration", **lineage})
    return Calibrated(
        storyboard_key=storyboard_key, report_key=report_key, curve_key=png_key, usage=usage
    )

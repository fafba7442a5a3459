"""`reelflow lineage`: from any object (or a downloaded file) back to what made it.

Every object's sidecar names its spec (the job), its parents and, since weights are hashed, the
weights and runtime that made it. Walking parents gives the chain film -> clips -> hi-res image ->
variant (prompt, seed, model and LoRA hashes); the run manifests of the project that name any
object in the chain add the storyboard and the approvals that chose it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from reelflow.errors import InputError
from reelflow.render import weights
from reelflow.render.jobs import (
    ClipJob,
    CoverJob,
    EditJob,
    FrameJob,
    HiresJob,
    ImageJob,
    Job,
    MasterJob,
    MusicBedJob,
    RetouchJob,
    VersionJob,
)
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore, ObjectNotFound, StoreError

MAX_RUNS = 200


class Node(BaseModel):
    key: str
    kind: str = "?"
    step: str | None = None
    shot: str | None = None
    sha256: str = ""
    spec_hash: str | None = None
    created_at: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    weights: list[dict[str, Any]] = Field(default_factory=list)
    environment: dict[str, Any] = Field(default_factory=dict)
    parents: list[Node] = Field(default_factory=list)
    note: str | None = None  # "no sidecar", "shown above"


class RunLink(BaseModel):
    """A run whose manifest names an object of the chain: its storyboard and decisions."""

    run_id: str
    manifest_key: str
    storyboard_key: str
    storyboard_hash: str
    profile: str
    approval_policy: str
    finished_at: str | None = None
    storyboards: list[str] = []  # every state the run went through (prompt rewrites)
    roles: list[str] = []  # "film", "chosen image of shot x", ...
    approvals: list[dict[str, Any]] = []


class LineageTree(BaseModel):
    root: Node
    runs: list[RunLink] = []


# -- jobs back from sidecars -----------------------------------------------------------------


def job_from_spec(spec: dict[str, Any]) -> Job | None:
    """The job a sidecar's spec was dumped from (by its fields), or None for inputs/blobs."""
    fields = set(spec)
    for cls, marker in (
        (HiresJob, {"variant_key", "scale"}),
        (RetouchJob, {"source_key", "inpaint"}),
        (FrameJob, {"source_shot", "frame"}),
        (ClipJob, {"backend", "movement"}),
        (VersionJob, {"master_key", "export"}),
        (MasterJob, {"film_key", "music_key"}),
        (CoverJob, {"film_key", "title"}),
        (EditJob, {"clips", "crf"}),
        (MusicBedJob, {"prompt", "model_sha256", "seconds"}),
        (ImageJob, {"prompt", "variants"}),
    ):
        if marker <= fields:
            try:
                return cls.model_validate(spec)
            except ValueError:
                return None
    return None


def _details(job: Job | None, extra: dict[str, Any]) -> dict[str, Any]:
    """What a reader wants to see of a step, by kind of job."""
    if isinstance(job, HiresJob):
        image = job.image
        return {"seed": job.seed, "scale": job.scale, "strength": job.strength,
                "prompt": image.prompt, "size": f"{image.width}x{image.height}",
                "steps": image.steps, "characters": image.characters}
    if isinstance(job, RetouchJob):
        return {"inpaint": [r.get("prompt") for r in job.inpaint], "outpaint": job.outpaint}
    if isinstance(job, ImageJob):
        return {"prompt": job.prompt, "negative_prompt": job.negative_prompt,
                "seed": extra.get("seed", job.seed), "variant": extra.get("variant"),
                "size": f"{job.width}x{job.height}", "steps": job.steps,
                "guidance": job.guidance, "sampler": job.sampler,
                "reference": job.reference, "characters": job.characters}
    if isinstance(job, FrameJob):
        return {"frame": job.frame, "source_shot": job.source_shot,
                "restyle_prompt": job.restyle_prompt, "seed": job.seed}
    if isinstance(job, ClipJob):
        return {"backend": job.backend, "movement": job.movement,
                "motion_prompt": job.motion_prompt, "seed": job.seed,
                "duration": job.duration, "size": f"{job.width}x{job.height}@{job.fps}"}
    if isinstance(job, EditJob):
        return {"clips": len(job.clips), "size": f"{job.width}x{job.height}@{job.fps}"}
    if isinstance(job, VersionJob):
        return {"version": job.export.name}
    if isinstance(job, CoverJob):
        return {"title": job.title}
    if isinstance(job, MusicBedJob):
        return {"prompt": job.prompt, "seed": job.seed, "seconds": job.seconds,
                "steps": job.steps, "guidance": job.guidance, "model": job.model}
    return {k: v for k, v in extra.items() if k in ("filename", "version", "step")}


# -- finding the object ----------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            sha.update(chunk)
    return sha.hexdigest()


def find_by_content(store: ArtifactStore, path: Path, prefix: str = "projects/") -> str:
    """The key of the object whose bytes are the file's: only same-size objects are checked
    (their sidecars hold the sha256 recorded at write time)."""
    sha, size = file_sha256(path), path.stat().st_size
    listing = store.sizes(prefix)
    for key, length in sorted(listing.items()):
        if length != size or keys.is_sidecar_name(key) or keys.sidecar_key(key) not in listing:
            continue
        try:
            if store.lineage(key).sha256 == sha:
                return key
        except (ObjectNotFound, StoreError):
            continue
    raise InputError(
        f"{path}: no object with its sha256 {sha[:12]} under s3://{store.bucket}/{prefix}"
    )


def resolve_target(store: ArtifactStore, target: str, prefix: str = "projects/") -> str:
    """A key from `KEY`, `s3://bucket/KEY` (of this store's bucket) or a local file."""
    if target.startswith("s3://"):
        bucket, _, key = target.removeprefix("s3://").partition("/")
        if bucket != store.bucket:
            raise InputError(f"{target}: bucket {bucket!r} is not the configured {store.bucket!r}")
        target = key
    elif Path(target).is_file():
        return find_by_content(store, Path(target), prefix)
    try:
        keys.validate_key(target)
    except ValueError as exc:
        raise InputError(f"{target}: {exc}") from None
    if not store.exists(target):
        raise InputError(f"{target}: no such object in s3://{store.bucket}/ (nor a local file)")
    return target


# -- the tree --------------------------------------------------------------------------------


def node_of(store: ArtifactStore, key: str) -> tuple[Node, list[str]]:
    """One object's node (without parents) and its parents' keys."""
    try:
        lin = store.lineage(key)
    except ObjectNotFound:
        return Node(key=key, note="no sidecar"), []
    job = job_from_spec(lin.spec)
    extra = lin.extra
    used = extra.get("weights") or (weights.used_weights(job) if job is not None else [])
    shot = extra.get("shot") or getattr(job, "shot", None)
    if shot is None and isinstance(job, HiresJob | RetouchJob):
        shot = job.image.shot
    step = extra.get("step")
    if step is None and "variant" in extra:
        step = "variant"
    return (
        Node(
            key=key,
            kind=lin.kind,
            step=step,
            shot=shot,
            sha256=lin.sha256,
            spec_hash=lin.spec_hash,
            created_at=lin.created_at.isoformat(),
            details={k: v for k, v in _details(job, extra).items() if v not in (None, "", [])},
            weights=used,
            environment=extra.get("environment") or {},
        ),
        list(lin.parents),
    )


def build_tree(store: ArtifactStore, key: str, seen: set[str] | None = None) -> Node:
    seen = set() if seen is None else seen
    if key in seen:
        return Node(key=key, note="shown above")
    seen.add(key)
    node, parents = node_of(store, key)
    node.parents = [build_tree(store, parent, seen) for parent in parents]
    return node


def _keys_of(node: Node) -> set[str]:
    out = {node.key}
    for parent in node.parents:
        out |= _keys_of(parent)
    return out


def _roles(manifest: dict[str, Any], wanted: set[str]) -> list[str]:
    roles = []
    for field in ("film_key", "master_key", "edit_key", "cover_key", "music_key",
                  "storyboard_key"):
        if manifest.get(field) and manifest.get(field) in wanted:
            roles.append(field.removesuffix("_key"))
    for field, label in (("chosen_images", "chosen image"), ("clips", "clip")):
        for shot, key in (manifest.get(field) or {}).items():
            if key in wanted:
                roles.append(f"{label} of shot {shot}")
    for shot, listed in (manifest.get("variants") or {}).items():
        for index, key in enumerate(listed):
            if key in wanted:
                roles.append(f"variant {index} of shot {shot}")
    for shot, listed in (manifest.get("frames") or {}).items():
        roles += [f"frame of shot {shot}" for key in listed if key in wanted]
    for name, key in (manifest.get("versions") or {}).items():
        if key in wanted:
            roles.append(f"version {name}")
    return roles


def runs_naming(store: ArtifactStore, project: str, wanted: set[str]) -> list[RunLink]:
    """The runs of the project whose manifest names an object of the chain, newest first."""
    prefix = f"{keys.project_prefix(project)}runs/"
    manifests = [k for k in store.list(prefix) if k.endswith("/manifest.json")][-MAX_RUNS:]
    links = []
    for key in manifests:
        try:
            data = store.get_json(key)
        except (StoreError, ValueError):
            continue
        roles = _roles(data, wanted)
        if not roles:
            continue
        links.append(
            RunLink(
                run_id=str(data.get("run_id")),
                manifest_key=key,
                storyboard_key=str(data.get("storyboard_key")),
                storyboard_hash=str(data.get("storyboard_hash")),
                storyboards=list(data.get("storyboards") or []),
                profile=str(data.get("profile")),
                approval_policy=str(data.get("approval_policy")),
                finished_at=data.get("finished_at"),
                roles=roles,
                approvals=list(data.get("approvals") or []),
            )
        )
    return sorted(links, key=lambda link: link.finished_at or "", reverse=True)


def lineage_tree(store: ArtifactStore, key: str) -> LineageTree:
    root = build_tree(store, key)
    project = key.split("/")[1] if key.startswith("projects/") else None
    runs = runs_naming(store, project, _keys_of(root)) if project else []
    return LineageTree(root=root, runs=runs)


# -- text ------------------------------------------------------------------------------------


def _short(value: str | None, n: int = 12) -> str:
    return value[:n] if value else "-"


def _headline(node: Node) -> str:
    parts = [node.kind]
    if node.step:
        parts.append(node.step)
    if node.shot:
        parts.append(f"shot {node.shot}")
    return f"{' '.join(parts)}  {node.key}"


def _lines(node: Node) -> list[str]:
    if node.note:
        return [f"{node.key}  ({node.note})"]
    lines = [_headline(node)]
    details = dict(node.details)
    prompt = details.pop("prompt", None)
    negative = details.pop("negative_prompt", None)
    characters = details.pop("characters", None)
    simple = ", ".join(f"{k} {v}" for k, v in details.items() if not isinstance(v, dict | list))
    lines.append(f"sha256 {_short(node.sha256)}  spec {node.spec_hash or '-'}"
                 + (f"  {simple}" if simple else ""))
    if prompt:
        lines.append(f"prompt: {prompt}")
    if negative:
        lines.append(f"negative: {negative}")
    if characters:  # library characters, by the version the image was made with
        lines.append("characters: " + ", ".join(
            f"{name} (version {_short(version)})" for name, version in sorted(characters.items())))
    for weight in node.weights:
        scale = f" x{weight['weight']:g}" if weight.get("weight") is not None else ""
        lines.append(
            f"{weight['role']} {weight['name']}{scale}  sha256 {_short(weight.get('sha256'))}"
        )
    env = node.environment
    if env:
        versions = ", ".join(f"{k} {env[k]}" for k in ("torch", "diffusers") if env.get(k))
        lines.append(f"made on {env.get('device')} {env.get('dtype') or ''} ({versions})".replace(
            "  ", " "))
    return lines


def _tree_lines(node: Node, prefix: str = "", last: bool = True, root: bool = True) -> list[str]:
    own = _lines(node)
    if root:
        out = [own[0], *[f"  {line}" for line in own[1:]]]
        child_prefix = ""
    else:
        branch = "└─ " if last else "├─ "
        cont = "   " if last else "│  "
        out = [prefix + branch + own[0], *[prefix + cont + "  " + line for line in own[1:]]]
        child_prefix = prefix + cont
    for index, parent in enumerate(node.parents):
        out += _tree_lines(parent, child_prefix, index == len(node.parents) - 1, root=False)
    return out


def _decision(approval: dict[str, Any]) -> str:
    decision = approval.get("decision") or {}
    shown = {k: v for k, v in decision.items() if v not in (None, "", {}, [], False)}
    text = ", ".join(f"{k}={v}" for k, v in shown.items()) or "approved"
    return (f"{approval.get('gate')} round {approval.get('round')}: {text} "
            f"({approval.get('reviewer')}, {approval.get('policy')}, {approval.get('decided_at')})")


def render_text(tree: LineageTree) -> str:
    lines = _tree_lines(tree.root)
    if tree.runs:
        lines.append("")
        lines.append("runs that used it:")
        for run in tree.runs:
            lines.append(
                f"  run {run.run_id} ({run.profile}, {run.approval_policy}, {run.finished_at}): "
                f"{'; '.join(run.roles)}"
            )
            states = [k for k in run.storyboards if k != run.storyboard_key]
            lines.append(f"    storyboard {run.storyboard_key}"
                         + (f" (earlier states: {', '.join(states)})" if states else ""))
            lines.extend(f"    {_decision(a)}" for a in run.approvals)
    return "\n".join(lines)

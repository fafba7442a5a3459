"""Check every object of a project against its lineage sidecar, and clear what a run remakes.

A bucket loses and damages objects behind the pipeline's back (lifecycle rules, cleanup scripts,
a restore from an older backup, a disk that flips bits). `verify_project` finds each object
without its sidecar, each sidecar without its object, each object whose size or sha256 differs
from what its sidecar recorded at write time, and each lineage parent that is gone. With
`repair=True` it removes the damaged objects: keys are deterministic and a cached step checks
that its outputs are still there, so the next run of the film makes exactly those again. Each
problem says which run (and which command) would remake it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from reelflow.errors import InputError
from reelflow.store.artifacts import ArtifactStore, IntegrityError, Lineage, ObjectNotFound
from reelflow.store.keys import JSON_SIDECAR_SUFFIX, project_prefix, sidecar_key, slug

Issue = Literal["no-sidecar", "no-object", "bad-sidecar", "size", "sha256", "missing-parent"]

#: Objects no run makes again: a run's manifest records what happened, once.
_RECORDS = "/runs/"


class Problem(BaseModel):
    """One damaged object. `key` is the object (for `no-object`, the orphaned sidecar)."""

    key: str
    issue: Issue
    detail: str
    remade_by: str = ""
    removed: bool = False

    def line(self) -> str:
        done = "removed; " if self.removed else ""
        hint = f" ({done}{self.remade_by})" if self.remade_by else ""
        return f"{self.issue}: {self.key}: {self.detail}{hint}"


class VerifyReport(BaseModel):
    """What `verify_project` checked and found; `problems` is empty for a sound project."""

    project: str
    checked: int
    problems: list[Problem] = []
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line per problem, then one line of totals."""
        lines = [p.line() for p in self.problems]
        removed = sum(p.removed for p in self.problems)
        tail = f", {removed} removed: re-run to remake them" if self.repaired else ""
        lines.append(f"project {self.project}: {self.checked} objects checked, "
                     f"{len(self.problems)} problems{tail}")
        return "\n".join(lines)


class _Run(BaseModel):
    run_id: str
    storyboard_key: str
    profile: str


def list_projects(store: ArtifactStore) -> list[str]:
    """Every project in the bucket (the folders under `projects/`)."""
    return [p.removeprefix("projects/").strip("/") for p in store.list("projects/", False)
            if p.endswith("/")]


def _stem(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    return key.rsplit(".", 1)[0] if "." in name else key


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _runs_by_stem(store: ArtifactStore, names: list[str]) -> dict[str, _Run]:
    """Object stem -> the latest run whose manifest names it (manifests list every key)."""
    found: dict[str, _Run] = {}
    for key in sorted(n for n in names if _RECORDS in n and n.endswith("/manifest.json")):
        try:
            data = json.loads(store.get_bytes(key, verify=False))
            run = _Run.model_validate(data)
        except (ValueError, ValidationError, ObjectNotFound):
            continue  # a damaged manifest is reported as such; it names nothing here
        for value in _strings(data):
            found[_stem(value)] = run
    return found


def _remade_by(store: ArtifactStore, project: str, key: str, runs: dict[str, _Run]) -> str:
    if _RECORDS in key and not key.endswith(JSON_SIDECAR_SUFFIX):
        return "a run's record: no run makes it again; restore it from a backup"
    run = runs.get(_stem(key.removesuffix(JSON_SIDECAR_SUFFIX)))
    if run is None:
        return f"remade by the next render of project {project} that uses it"
    return (f"remade by re-running run {run.run_id}: reelflow render "
            f"s3://{store.bucket}/{run.storyboard_key} --profile {run.profile}")


def _sidecar_or_object(store: ArtifactStore, key: str) -> Problem:
    """A listed `x.json` with no sidecar and no sibling: an orphaned sidecar or a JSON object
    whose sidecar is gone (a sidecar reads as a lineage record with a sha256)."""
    try:
        raw = json.loads(store.get_bytes(key, verify=False))
        orphan = isinstance(raw, dict) and bool(raw.get("sha256"))
        if orphan:
            Lineage.model_validate(raw)
    except (ValueError, ValidationError):
        orphan = False
    if orphan:
        return Problem(key=key, issue="no-object",
                       detail=f"lineage sidecar of a missing {raw.get('kind', 'object')}")
    return Problem(key=key, issue="no-sidecar", detail="object has no lineage sidecar")


def _check_object(store: ArtifactStore, key: str, size: int,
                  parent_exists: dict[str, bool]) -> list[Problem]:
    try:
        lin = store.lineage(key)
    except (IntegrityError, ObjectNotFound) as err:
        return [Problem(key=key, issue="bad-sidecar", detail=str(err))]
    if lin.size != size:
        return [Problem(key=key, issue="size",
                        detail=f"sidecar says {lin.size} bytes, bucket has {size}")]
    sha, _ = store.digest(key)
    if sha != lin.sha256:
        return [Problem(key=key, issue="sha256",
                        detail=f"sidecar {lin.sha256[:12]}, stored bytes {sha[:12]}")]
    problems = []
    for parent in lin.parents:
        if parent not in parent_exists:
            parent_exists[parent] = store.exists(parent)
        if not parent_exists[parent]:
            problems.append(Problem(key=key, issue="missing-parent",
                                    detail=f"lineage parent {parent} is gone"))
    return problems


def verify_project(store: ArtifactStore, project: str, repair: bool = False,
                   workers: int = 4) -> VerifyReport:
    """Check every object under `projects/{project}/` against its sidecar: present both, size,
    sha256 (the bytes are streamed and hashed), lineage parents present.

    With `repair`, remove what is damaged (an object without a sidecar or with the wrong bytes,
    an orphaned sidecar) so that the next run makes it again; a run's manifest is kept (no run
    remakes it) and a missing parent is remade by the run that made it, so neither is removed.
    """
    try:
        prefix = project_prefix(slug(project, "project"))
    except ValueError as err:
        raise InputError(str(err)) from None
    sizes = store.sizes(prefix)
    names = set(sizes)
    paired = {sidecar_key(n) for n in names if sidecar_key(n) in names}
    objects = sorted(names - paired)
    problems: list[Problem] = []
    sound: list[str] = []
    for key in objects:
        if sidecar_key(key) in names:
            sound.append(key)
        elif key.endswith(JSON_SIDECAR_SUFFIX):
            problems.append(Problem(key=key, issue="no-object",
                                    detail="lineage sidecar of a missing JSON object"))
        elif key.endswith(".json") and not any(
            n != key and _stem(n) == _stem(key) for n in names
        ):
            problems.append(_sidecar_or_object(store, key))
        else:
            problems.append(Problem(key=key, issue="no-sidecar",
                                    detail="object has no lineage sidecar"))
    parent_exists: dict[str, bool] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reelflow-verify") as pool:
        for found in pool.map(lambda k: _check_object(store, k, sizes[k], parent_exists), sound):
            problems.extend(found)
    runs = _runs_by_stem(store, list(names))
    for problem in problems:
        problem.remade_by = _remade_by(store, project, problem.key, runs)
        if repair and _removable(problem):
            store.delete(problem.key)
            problem.removed = True
    return VerifyReport(project=project, checked=len(objects), problems=problems,
                        repaired=repair)


def _removable(problem: Problem) -> bool:
    if problem.issue == "missing-parent":
        return False  # the child is sound; the run that made the parent makes it again
    return problem.issue == "no-object" or _RECORDS not in problem.key

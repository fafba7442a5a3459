"""Content identity of model weights: what a picture was made with, whatever the path.

A model, LoRA, ControlNet or video model is identified by the sha256 of the files that define
it: a single file (`.safetensors`, a LoRA) by its bytes; a diffusers folder by its weight and
config files (relative path + file hash, sorted); a hub id in the local cache by its snapshot
folder. Hashing a 20 GB checkpoint takes minutes, so each file's hash is remembered by
(path, size, mtime, ctime, inode) in `REELFLOW_HOME/weight-hashes.json`: a second run only stats.

Jobs carry these hashes and their spec hash leaves the path out (see `identity_view`), so
overwriting a LoRA re-renders exactly the shots that use it and the same checkpoint at another
path (another worker, a copied folder) finds the objects already made.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

from reelflow.errors import ConfigError

_CHUNK = 4 * 1024 * 1024
_SKIP_NAMES = {"README.md", ".gitattributes"}
_SKIP_SUFFIXES = {".md", ".lock", ".incomplete", ".lnk"}
_lock = threading.Lock()
_memo: dict[str, dict[str, Any]] | None = None


class WeightsNotFound(ConfigError):
    """A model or LoRA path that is neither a file, a folder, nor a hub id in the local cache."""


def cache_file() -> Path:
    home = Path(os.environ.get("REELFLOW_HOME", ".reelflow"))
    return Path(os.environ.get("REELFLOW_WEIGHT_HASHES", home / "weight-hashes.json"))


def _load_memo() -> dict[str, dict[str, Any]]:
    global _memo
    if _memo is None:
        try:
            _memo = json.loads(cache_file().read_text())
        except (OSError, ValueError):
            _memo = {}
    return _memo


def _save_memo(memo: dict[str, dict[str, Any]]) -> None:
    """Atomic replace: two workers writing at once lose an entry at worst, never the file."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".weight-hashes.", dir=path.parent)
        with os.fdopen(fd, "w") as out:
            json.dump(memo, out, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except OSError:  # a read-only home costs a re-hash next run, not a failed render
        pass


def file_sha256(path: Path | str) -> str:
    """sha256 of one file, remembered by its stat signature (re-hashed when it changes).
    Hub snapshots are symlinks to blobs: stat follows them, so a new blob is a new signature."""
    name = os.path.abspath(path)
    st = os.stat(name)
    signature = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    with _lock:
        entry = _load_memo().get(name)
        if entry and entry.get("stat") == signature:
            return entry["sha256"]
    sha = hashlib.sha256()
    with open(name, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    digest = sha.hexdigest()
    with _lock:
        memo = _load_memo()
        memo[name] = {"stat": signature, "sha256": digest}
        _save_memo(memo)
    return digest


def folder_files(folder: Path) -> list[tuple[str, str]]:
    """(relative posix path, full path) of the files that define a diffusers folder, sorted:
    weights, configs, tokenizer files; hidden files, READMEs and lock files left out."""
    out = []
    root = os.fspath(folder)
    for current, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or name in _SKIP_NAMES or Path(name).suffix in _SKIP_SUFFIXES:
                continue
            full = os.path.join(current, name)
            out.append((os.path.relpath(full, root).replace(os.sep, "/"), full))
    return sorted(out)


def locate(source: str) -> Path:
    """A path on disk for a weight source: a file, a folder, or a cached hub id's snapshot."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if "/" in source and not source.startswith((".", "/", "~")) and source.count("/") == 1:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(source, local_files_only=True))
        except Exception:  # not in the local cache (never downloaded: workers run offline)
            pass
    raise WeightsNotFound(f"weights not found: {source} (not a file, folder or cached hub id)")


def content_hash(source: str) -> str:
    """The sha256 identity of a weight source (see the module docstring)."""
    path = locate(source)
    if path.is_file():
        return file_sha256(path)
    files = folder_files(path)
    if not files:
        raise WeightsNotFound(f"weights not found: {source} (an empty folder)")
    whole = hashlib.sha256()
    for relative, full in files:
        whole.update(f"{relative}\0{file_sha256(full)}\n".encode())
    return whole.hexdigest()


def try_content_hash(source: str | None) -> str | None:
    """The hash, or None when the weights are not on this machine (yet): such a job is keyed
    by its path, as before, and its render step will hash what it finds."""
    if not source:
        return None
    try:
        return content_hash(source)
    except (WeightsNotFound, OSError):
        return None


# -- jobs ------------------------------------------------------------------------------------

# Field that holds a content hash -> the path fields it replaces in the spec hash.
_REPLACES = {"sha256": ("source", "path"), "controlnet_sha256": ("controlnet",)}


def identity_view(data: Any) -> Any:
    """A job dump with every path whose content hash is known left out: the spec hash then
    names the weights' content, not where they happen to lie on this machine."""
    if isinstance(data, list):
        return [identity_view(item) for item in data]
    if not isinstance(data, dict):
        return data
    out = {key: identity_view(value) for key, value in data.items()}
    for field, paths in _REPLACES.items():
        if out.get(field):
            for path in paths:
                out.pop(path, None)
    if isinstance(out.get("memory"), dict):  # a model's pinned memory choices
        from reelflow.gpu.pins import pixel_view

        out["memory"] = pixel_view(out["memory"])  # offloading moves weights: same pixels
        if not out["memory"]:
            out.pop("memory")
    if isinstance(out.get("speed"), dict):  # speed options (an image job's, a clip backend's)
        from reelflow.gpu.speed import pixel_view as speed_view

        out["speed"] = speed_view(out["speed"])  # the cache once kept; not the guard's figures
        if not out["speed"]:
            out.pop("speed")
    for field, option in (("model_sha256", "model"), ("upsampler_sha256", "upsampler")):
        if out.get(field) and isinstance(out.get("backend_options"), dict):
            out["backend_options"] = {k: v for k, v in out["backend_options"].items()
                                      if k != option}  # fmt: skip
    return out


def used_weights(job: Any) -> list[dict[str, Any]]:
    """(role, name, source, sha256, weight) of every weight a job names, nested jobs included."""
    out: list[dict[str, Any]] = []
    inner = getattr(job, "image", None)
    if inner is not None and hasattr(inner, "model"):
        return used_weights(inner)
    model = getattr(job, "model", None)
    if model is not None and hasattr(model, "source"):
        out.append({"role": "model", "name": model.source, "source": model.source,
                    "sha256": model.sha256})
    for lora in getattr(job, "loras", None) or []:
        out.append({"role": "lora", "name": lora.name, "source": lora.path,
                    "sha256": lora.sha256, "weight": lora.weight})
    adapter = getattr(job, "ip_adapter", None)
    if adapter is not None and getattr(adapter, "path", None):
        out.append({"role": "ip-adapter", "name": adapter.path, "source": adapter.path,
                    "sha256": adapter.sha256, "weight": adapter.scale})
    if getattr(job, "controlnet", None):
        out.append({"role": "controlnet", "name": job.controlnet, "source": job.controlnet,
                    "sha256": job.controlnet_sha256})
    upscaler = getattr(job, "upscaler", None)  # a delivered version's learned upscaler
    if upscaler is not None and getattr(upscaler, "path", None):
        out.append({"role": "upscaler", "name": upscaler.path, "source": upscaler.path,
                    "sha256": upscaler.sha256})
    options = getattr(job, "backend_options", None) or {}
    if options.get("model"):
        out.append({"role": "video-model", "name": options["model"], "source": options["model"],
                    "sha256": getattr(job, "model_sha256", None)})
    return out


def check_weights(job: Any, resolve: Any) -> list[str]:
    """What differs between the weights a job was keyed with and those on this machine: one
    line per weight (missing, or another hash). `resolve` maps `@models/...` to a path."""
    problems = []
    for weight in used_weights(job):
        if not weight["sha256"]:
            continue
        here = try_content_hash(resolve(weight["source"]))
        if here is None:
            problems.append(f"{weight['role']} {weight['name']}: missing on this machine")
        elif here != weight["sha256"]:
            problems.append(
                f"{weight['role']} {weight['name']}: sha256 {here[:12]} here, "
                f"{weight['sha256'][:12]} in the job"
            )
    return problems


# -- lineage ---------------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _auto_device() -> str:
    """What "auto" picks (reelflow/imaging/pipelines.py): CUDA when torch sees one, else CPU."""
    try:
        import torch
    except ImportError:  # a worker without torch renders panels and edits on the CPU
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def environment(device: str = "auto", dtype: str | None = None) -> dict[str, Any]:
    """Library versions and the device that made an object: what `regenerate` compares."""
    if device == "auto":  # resolved every time: one film's objects name one device
        device = _auto_device()
    env: dict[str, Any] = {
        "device": device,
        "dtype": dtype,
        "python": ".".join(map(str, sys.version_info[:3])),
    }
    for package in ("torch", "diffusers", "transformers", "peft", "numpy", "pillow"):
        env[package] = _version(package)
    if device.startswith("cuda") and "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    return env


def render_lineage(job: Any) -> dict[str, Any]:
    """The `extra` entries every rendered object carries: weights (path + hash) and runtime."""
    model = getattr(getattr(job, "image", job), "model", None)
    options = getattr(job, "backend_options", None) or {}
    device = model.device if model is not None else str(options.get("device", "auto"))
    dtype = model.dtype if model is not None else options.get("dtype")
    out = {"weights": used_weights(job), "environment": environment(device, dtype)}
    if model is not None and getattr(model, "memory", None):
        from reelflow.gpu.pins import runtime_lineage

        out["memory"] = runtime_lineage(model.memory, device)
    return out

"""The models a machine already has: reelflow's models folder and the folders other tools use.

Creators keep their checkpoints, LoRAs, VAEs, ControlNets and IP-Adapters where ComfyUI or
AUTOMATIC1111/Forge put them, often hundreds of GB; reelflow finds them there by name instead
of asking for copies. Roots come from `REELFLOW_COMFYUI` (a ComfyUI folder: its `models/` and its
`extra_model_paths.yaml`) and `REELFLOW_A1111` (a stable-diffusion-webui or Forge folder:
`models/Stable-diffusion`, `models/Lora`, `models/VAE`, `models/ControlNet`, ...), each an
`os.pathsep` list.

A file's family is read from its keys and shapes in the safetensors header (the first bytes of
the file; no tensor is read) or from a GGUF file's metadata; its hash is the same sha256 the jobs
carry (`render/weights.py`, remembered by path, size and mtime).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

Kind = Literal["checkpoint", "diffusion_model", "lora", "vae", "controlnet", "ip-adapter",
               "text_encoder", "pipeline", "other"]
COMFYUI_ENV = "REELFLOW_COMFYUI"
A1111_ENV = "REELFLOW_A1111"

#: a folder name (lower case) in ComfyUI's models/, A1111/Forge's models/ or extra_model_paths
#: keys -> what its files are
FOLDER_KINDS: dict[str, Kind] = {
    "checkpoints": "checkpoint", "stable-diffusion": "checkpoint",
    "diffusion_models": "diffusion_model", "unet": "diffusion_model",
    "loras": "lora", "lora": "lora", "lycoris": "lora",
    "vae": "vae",
    "controlnet": "controlnet", "t2i_adapter": "controlnet",
    "ipadapter": "ip-adapter", "ip-adapter": "ip-adapter", "ip_adapter": "ip-adapter",
    "clip": "text_encoder", "text_encoders": "text_encoder",
}
WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".ckpt", ".pt", ".pth", ".bin", ".sft")
#: when one name is found in several kinds, the first kind here wins
KIND_ORDER: tuple[Kind, ...] = ("checkpoint", "pipeline", "diffusion_model", "lora", "vae",
                                "controlnet", "ip-adapter", "text_encoder", "other")


class LibraryRoot(BaseModel):
    """One folder of weights and what its files are (None: decided per file)."""

    path: Path
    kind: Kind | None
    tool: str  # reelflow, comfyui, a1111, extra_model_paths


class ModelFile(BaseModel):
    """One model a machine has: a weights file, or a diffusers pipeline folder."""

    name: str  # the file's stem (what a storyboard may name it by)
    relative: str  # its path under its root's models folder, e.g. loras/ink.safetensors
    path: Path
    kind: Kind
    family: str
    size: int
    tool: str
    sha256: str | None = None


# --- roots ---------------------------------------------------------------------------------


def _env_paths(name: str) -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(name, "").split(os.pathsep) if p.strip()]


def _kind_of(folder: str) -> Kind | None:
    return FOLDER_KINDS.get(folder.lower())


def extra_model_paths(file: Path) -> list[LibraryRoot]:
    """The folders a ComfyUI `extra_model_paths.yaml` adds: per section a `base_path` (relative
    to the file's folder when not absolute) and per kind one or more folders (a block string
    holds one per line)."""
    import yaml

    data = yaml.safe_load(file.read_text()) or {}
    roots: list[LibraryRoot] = []
    for section in data.values():
        if not isinstance(section, dict):
            continue
        base = Path(str(section.get("base_path", "."))).expanduser()
        if not base.is_absolute():
            base = file.parent / base
        for key, value in section.items():
            kind = _kind_of(str(key))
            if kind is None or not isinstance(value, str):
                continue
            for line in value.splitlines():
                if line.strip():
                    folder = Path(os.path.normpath(base / line.strip()))
                    roots.append(LibraryRoot(path=folder, kind=kind,
                                             tool="extra_model_paths"))
    return roots


def models_dir() -> Path:
    """reelflow's own models folder (tiny demo models are built here): REELFLOW_MODELS, else
    `models/` in REELFLOW_HOME (`.reelflow`)."""
    home = Path(os.environ.get("REELFLOW_HOME", ".reelflow"))
    return Path(os.environ.get("REELFLOW_MODELS", home / "models")).resolve()


def library_roots() -> list[LibraryRoot]:
    """Every folder this machine keeps models in: reelflow's first, then ComfyUI's (with its
    extra paths), then A1111/Forge's."""
    roots = [LibraryRoot(path=models_dir(), kind=None, tool="reelflow")]
    for comfy in _env_paths(COMFYUI_ENV):
        roots += _subfolders(comfy / "models", "comfyui")
        extra = comfy / "extra_model_paths.yaml"
        if extra.is_file():
            roots += extra_model_paths(extra)
    for webui in _env_paths(A1111_ENV):
        roots += _subfolders(webui / "models", "a1111")
    return roots


def _subfolders(models: Path, tool: str) -> list[LibraryRoot]:
    if not models.is_dir():
        return []
    return [LibraryRoot(path=sub, kind=_kind_of(sub.name), tool=tool)
            for sub in sorted(models.iterdir()) if sub.is_dir() and _kind_of(sub.name)]


# --- what a file is ------------------------------------------------------------------------


def safetensors_header(path: Path) -> dict[str, dict]:
    """The tensor names, dtypes and shapes of a safetensors file: its JSON header only."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > 100_000_000:
            raise ValueError(f"{path}: not a safetensors file (header of {length} bytes)")
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return header


def _shape(header: dict[str, dict], key: str) -> list[int]:
    return list(header.get(key, {}).get("shape", []))


def _first(header: dict[str, dict], needle: str) -> str | None:
    return next((k for k in header if needle in k), None)


def classify(header: dict[str, dict]) -> tuple[Kind, str]:
    """(kind, family) from a safetensors header's keys and shapes."""
    names = list(header)
    has = lambda needle: any(needle in k for k in names)  # noqa: E731
    if has("lora_") or has(".lora_A.") or has(".lora_down.") or has(".lora.down"):
        if has("double_blocks") or has("single_transformer_blocks") or has("single_blocks"):
            return "lora", "flux"
        if (has("lora_te2_") or has("text_encoder_2")
                or has("input_blocks_4_1_transformer_blocks_1")):  # SDXL: 2 blocks deep
            return "lora", "sdxl"
        return "lora", "sd15" if has("down_blocks") or has("lora_unet") else "unknown"
    if has("ip_adapter") or has("to_k_ip"):
        key = _first(header, "to_k_ip.weight")
        width = _shape(header, key)[1] if key else 0
        return "ip-adapter", {768: "sd15", 2048: "sdxl", 4096: "flux"}.get(width, "unknown")
    if has("control_model.") or has("controlnet_cond_embedding") or has("input_hint_block"):
        key = _first(header, "attn2.to_k.weight")
        width = _shape(header, key)[1] if key else 0
        if has("controlnet_x_embedder") or has("double_blocks"):
            return "controlnet", "flux"
        return "controlnet", {768: "sd15", 2048: "sdxl"}.get(width, "unknown")
    if has("double_blocks.") or (has("transformer_blocks.") and has("x_embedder")
                                 and has("context_embedder")):
        kind: Kind = "checkpoint" if has("first_stage_model") or has("vae.") else "diffusion_model"
        return kind, "flux"
    if has("patch_embedding") and has("blocks.0.self_attn"):
        return "diffusion_model", "wan"
    if has("caption_projection") and has("scale_shift_table") and has("transformer_blocks."):
        return "diffusion_model", "ltx"
    if has("model.diffusion_model.input_blocks"):
        sdxl = has("conditioner.embedders.1") or has("model.diffusion_model.label_emb")
        return "checkpoint", "sdxl" if sdxl else "sd15"
    if has("encoder.conv_in.weight") and has("decoder.conv_out.weight"):
        key = _first(header, "decoder.conv_in.weight")
        channels = _shape(header, key)[1] if key else 0
        return "vae", {4: "sd15/sdxl", 16: "flux"}.get(channels, "unknown")
    if has("text_model.encoder.layers") or has("encoder.block.0.layer"):
        return "text_encoder", "clip" if has("text_model") else "t5"
    return "other", "unknown"


def gguf_family(path: Path) -> str:
    """A GGUF file's `general.architecture` (flux, wan, ltxv, sd1, sdxl...): its metadata only."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    field = reader.fields.get("general.architecture")
    if field is None:
        return "unknown"
    return bytes(field.parts[field.data[0]]).decode(errors="replace")


def _pipeline_family(folder: Path) -> str:
    class_name = json.loads((folder / "model_index.json").read_text()).get("_class_name", "")
    for prefix, family in (("StableDiffusionXL", "sdxl"), ("StableDiffusion", "sd15"),
                           ("Flux", "flux"), ("Wan", "wan"), ("LTX2", "ltx-2"), ("LTX", "ltx")):
        if class_name.startswith(prefix):
            return family
    return class_name or "unknown"


def describe(path: Path, kind: Kind | None, relative: str, tool: str) -> ModelFile | None:
    """One library entry, or None for a file that is not weights."""
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            return None
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return ModelFile(name=path.name, relative=relative, path=path, kind="pipeline",
                         family=_pipeline_family(path), size=size, tool=tool)
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        return None
    found_kind: Kind = kind or "other"
    family = "unknown"
    try:
        if suffix in (".safetensors", ".sft"):
            read_kind, family = classify(safetensors_header(path))
            found_kind = kind or read_kind
            if kind == "checkpoint" and read_kind == "diffusion_model":
                found_kind = "diffusion_model"  # a bare transformer kept among checkpoints
        elif suffix == ".gguf":
            family = gguf_family(path)
            found_kind = kind or "diffusion_model"
    except (ValueError, OSError, KeyError, IndexError, json.JSONDecodeError):
        family = "unreadable"
    return ModelFile(name=path.stem, relative=relative, path=path, kind=found_kind,
                     family=family, size=path.stat().st_size, tool=tool)


def _walk(root: LibraryRoot) -> Iterator[ModelFile]:
    if not root.path.is_dir():
        return
    prefix = "" if root.kind is None else f"{root.path.name}/"
    stack = [root.path]
    while stack:
        folder = stack.pop()
        for child in sorted(folder.iterdir()):
            if child.name.startswith((".", "__")):  # .git, .venv, __pycache__, .cache
                continue
            relative = prefix + str(child.relative_to(root.path))
            kind = root.kind
            if kind is None and child.parent == root.path and child.is_dir():
                kind = _kind_of(child.name)
            entry = describe(child, kind if child.is_file() else None, relative, root.tool)
            if entry is not None:
                yield entry
            elif child.is_dir() and not child.is_symlink():
                stack.append(child)


def scan(*, hashes: bool = False) -> list[ModelFile]:
    """Every model of every library root, in root order (with sha256 when `hashes`)."""
    from reelflow.render import weights

    out: list[ModelFile] = []
    seen: set[Path] = set()
    for root in library_roots():
        for entry in _walk(root):
            real = entry.path.resolve()
            if real in seen:
                continue
            seen.add(real)
            if hashes:
                entry.sha256 = weights.try_content_hash(str(entry.path))
            out.append(entry)
    return out


# --- finding a model by name ---------------------------------------------------------------


def _canonical(relative: str) -> str:
    """`Lora/ink.safetensors` (A1111) and `loras/ink.safetensors` (ComfyUI) are one name."""
    head, _, rest = relative.replace("\\", "/").partition("/")
    kind = _kind_of(head)
    return f"{kind}/{rest}" if kind and rest else relative


def find_model(name: str, entries: list[ModelFile] | None = None) -> ModelFile | None:
    """The library entry `name` means: a path under a models folder (`loras/ink.safetensors`,
    `Lora/ink.safetensors`), a file name (`ink.safetensors`) or a stem (`ink`). Exact paths
    first, then names in `KIND_ORDER`, then root order."""
    entries = scan() if entries is None else entries
    wanted = name.replace("\\", "/").strip("/")
    by_path = [e for e in entries if e.relative == wanted
               or _canonical(e.relative) == _canonical(wanted)]
    if by_path:
        return by_path[0]
    base = wanted.rsplit("/", 1)[-1]
    by_name = [e for e in entries if e.path.name == base or e.name == base
               or e.name.lower() == base.lower()]
    by_name.sort(key=lambda e: KIND_ORDER.index(e.kind))
    return by_name[0] if by_name else None


def library_path(name: str) -> str | None:
    """The path of the model `name` means in the other tools' folders (ComfyUI, A1111/Forge),
    None when none has it or no root is configured. (reelflow's own folder is looked up first
    by its caller.)"""
    if not (os.environ.get(COMFYUI_ENV) or os.environ.get(A1111_ENV)):
        return None
    found = find_model(name, _other_tools())
    return str(found.path) if found else None


_MEMO: dict[tuple, list[ModelFile]] = {}


def _other_tools() -> list[ModelFile]:
    """The other tools' entries, scanned again only when a root folder changed (its mtime):
    renders resolve names per job, and a ComfyUI folder may hold thousands of files."""
    roots = [r for r in library_roots() if r.tool != "reelflow"]
    stamp = tuple((str(r.path), r.path.stat().st_mtime_ns if r.path.is_dir() else 0)
                  for r in roots)
    if stamp not in _MEMO:
        _MEMO.clear()
        entries: list[ModelFile] = []
        for root in roots:
            entries += list(_walk(root))
        _MEMO[stamp] = entries
    return _MEMO[stamp]


# --- the listing ---------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def listing(entries: list[ModelFile], names: dict[str, str] | None = None) -> str:
    """The table `reelflow models` prints: per model its kind, family, size, hash, tool and
    path, and the storyboard names that resolve to it; then the names that resolve to none."""
    names = names or {}
    by_path: dict[Path, list[str]] = {}
    for label, target in names.items():
        by_path.setdefault(Path(target).resolve(), []).append(label)
    lines = [f"{'kind':<16} {'family':<10} {'size':>9}  {'sha256':<12}  {'tool':<17} path"]
    for e in entries:
        lines.append(f"{e.kind:<16} {e.family:<10} {_size(e.size):>9}  "
                     f"{(e.sha256 or '-')[:12]:<12}  {e.tool:<17} {e.path}")
        for label in by_path.pop(e.path.resolve(), []):
            lines.append(f"{'':<16} <- {label}")
    for target, labels in by_path.items():
        for label in labels:
            where = "found" if target.exists() else "NOT FOUND"
            lines.append(f"{label} -> {target} ({where}, outside the model folders)"
                         if target.exists() else f"{label}: {where} in any model folder")
    if not entries:
        lines.append(f"(no models: set {COMFYUI_ENV} or {A1111_ENV} to a ComfyUI or "
                     "A1111/Forge folder)")
    return "\n".join(lines)

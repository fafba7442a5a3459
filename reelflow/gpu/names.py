"""Which file each weights name of a storyboard resolves to on this machine (`reelflow models
FILE`): the renderer's own resolution, applied to every name the storyboard uses."""

from __future__ import annotations

from pathlib import Path

from reelflow.render.jobs.resolve import model_source, resolve_model_path
from reelflow.storyboard import Storyboard
from reelflow.storyboard.files import resolve_local


def storyboard_names(storyboard: Storyboard, base_dir: Path | None) -> dict[str, str]:
    """Each weights name a storyboard uses (`style.model: X`, `lora ink: PATH`) -> the path it
    resolves to on this machine (as the renderer resolves it)."""
    out = {f"style.model: {storyboard.style.model}":
           resolve_model_path(model_source(storyboard.style.model, base_dir))}
    refs = list(storyboard.style.loras)
    for shot in storyboard.shots:
        refs += list(getattr(shot, "loras", None) or [])
    for ref in refs:
        value = ref.path
        if not value.startswith("@") and base_dir is not None:
            try:
                value = str(resolve_local(value, base_dir, must_exist=False))
            except ValueError:
                pass
        out[f"lora {ref.name}: {ref.path}"] = resolve_model_path(value)
    return out

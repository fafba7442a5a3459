"""`reelflow models`: what models this machine has, where other tools keep them too."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(short_help="list this machine's models (reelflow, ComfyUI, A1111/Forge folders)",
               help="per model file: kind, family (read from its header), size, sha256 and "
               "folder, from reelflow's models folder and the folders of ComfyUI "
               "(REELFLOW_COMFYUI, with its extra_model_paths.yaml) and A1111/Forge "
               "(REELFLOW_A1111). With a storyboard FILE: which of its names resolve to which "
               "file, and which resolve to none.")
@click.argument("file", required=False)
@click.option("--no-hash", is_flag=True, help="skip the sha256 (fast on a large library)")
def models(file: str | None, no_hash: bool) -> int:
    from reelflow.gpu.library import listing, scan

    names = None
    if file is not None:
        from reelflow.gpu.names import storyboard_names
        from reelflow.storyboard import load_storyboard

        board = load_storyboard(file, check_files=False)  # the names may be elsewhere
        names = storyboard_names(board, Path(file).resolve().parent)
    print(listing(scan(hashes=not no_hash), names))
    return 0

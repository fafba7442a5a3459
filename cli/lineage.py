"""Lineage: what made an object (the chain back to its storyboard), and `regenerate`, which
re-runs the step that made an image or clip and says whether the result is bit-identical."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import artifact_store

TARGET = "TARGET: an object key, an s3://bucket/key URI, or a downloaded file (by its sha256)"


@click.command(short_help="what made an object: the chain back to its storyboard",
               help="what made an object: the chain back to its storyboard. " + TARGET)
@click.argument("target")
@click.option("--project", help="search a file only in this project")
@click.option("--json", "as_json", is_flag=True, help="the tree as JSON")
def lineage(target: str, project: str | None, as_json: bool) -> int:
    from reelflow.render.lineage import lineage_tree, render_text, resolve_target

    store = artifact_store()
    key = resolve_target(store, target, f"projects/{project}/" if project else "projects/")
    tree = lineage_tree(store, key)  # a ReelflowError: main() prints its one line
    print(tree.model_dump_json(indent=2) if as_json else render_text(tree))
    return 0


@click.command(short_help="re-run the step that made an image or clip",
               help="re-run the step that made an image or clip; exit 0 when the result is "
               "bit-identical. " + TARGET)
@click.argument("target")
@click.option("--save", metavar="PATH", help="write the regenerated image (or clip) here")
@click.option("--json", "as_json", is_flag=True, help="the result as JSON")
def regenerate(target: str, save: str | None, as_json: bool) -> int:
    from reelflow.render.lineage import resolve_target
    from reelflow.render.regenerate import regenerate as regenerate_step

    store = artifact_store()
    key = resolve_target(store, target)
    result = regenerate_step(store, key, Path(save) if save else None)
    print(result.model_dump_json(indent=2) if as_json else result.summary())
    return 0 if result.identical else 1


def register(group: click.Group) -> None:
    group.add_command(lineage)
    group.add_command(regenerate)

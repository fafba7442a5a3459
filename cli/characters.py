"""`reelflow characters add/list/show`: the character library shared across projects (S3)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from cli.common import DECIMAL, EXIT_INVALID, artifact_store, fail


def _lora_name(path: str, fallback: str) -> str:
    """A slug for a LoRA named after its file (`SU7 Body.safetensors` -> `su7-body`)."""
    name = re.sub(r"[^a-z0-9]+", "-", Path(path).stem.lower()).strip("-")[:64]
    return name or fallback


def _one_line_validation(exc: Exception, what: str) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        value = error.get("input")
        shown = f" {value!r}" if isinstance(value, (str, int, float)) else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "string_pattern_mismatch":
            message = "use lowercase letters, digits and dashes"
        return f"invalid {what} {field}{shown}: {message}"
    return str(exc).splitlines()[0]


@click.group(help="the character library shared across projects (S3)")
def characters() -> None:
    pass


@characters.command(short_help="add or update a character, uploading reference images",
                    help="add or update a character, uploading reference images (PNG/JPEG/"
                    "WebP). NAME: a slug (lowercase letters, digits and dashes).")
@click.argument("name")
@click.argument("images", nargs=-1, metavar="[IMAGE]...")
@click.option("--description", required=True)
@click.option("--trigger", multiple=True, metavar="WORD", help="trigger word (repeatable)")
@click.option("--lora", metavar="PATH", help="the character's LoRA file")
@click.option("--lora-weight", type=DECIMAL, metavar="W", help="LoRA weight, -4..4 (default 1)")
@click.option("--ip-adapter-scale", type=DECIMAL, metavar="S",
              help="how strongly its first reference conditions its shots, 0..2 "
              "(IP-Adapter; default 0.6)")
def add(name: str, images: tuple[str, ...], description: str, trigger: tuple[str, ...],
        lora: str | None, lora_weight: float | None, ip_adapter_scale: float | None) -> int:
    from pydantic import ValidationError

    from reelflow.storyboard import Character, LoraRef
    from reelflow.storyboard.characters import add_character

    if lora_weight is not None and not lora:
        return fail("--lora-weight needs --lora", EXIT_INVALID)
    lora_ref = None
    try:
        if lora:
            lora_ref = LoraRef(name=_lora_name(lora, name), path=lora,
                               weight=1.0 if lora_weight is None else lora_weight, role="subject")
    except ValidationError as exc:
        return fail(_one_line_validation(exc, "lora"), EXIT_INVALID)
    given = {} if ip_adapter_scale is None else {"ip_adapter_scale": ip_adapter_scale}
    try:  # options not given keep the model's defaults
        character = Character(name=name, description=description,
                              trigger_words=list(dict.fromkeys(trigger)), lora=lora_ref, **given)
    except ValidationError as exc:
        return fail(_one_line_validation(exc, "character"), EXIT_INVALID)
    if not character.description.strip():
        return fail("--description must not be empty", EXIT_INVALID)
    missing = [path for path in images if not Path(path).is_file()]
    if missing:
        return fail(f"no such image file: {missing[0]}", EXIT_INVALID)
    try:
        record = add_character(artifact_store(), character, [Path(p) for p in images])
    except ValueError as exc:  # not an image, a reserved or invalid file name
        return fail(_one_line_validation(exc, "character"), EXIT_INVALID)
    count = len(record.reference_images)
    print(f"saved {record.name}: {count} reference image{'s' if count != 1 else ''}"
          + (f", lora {record.lora.name} ({record.lora.weight:g})" if record.lora else ""))
    return 0


@characters.command(name="list", help="every character in the library")
def list_() -> int:
    from reelflow.storyboard.characters import list_characters

    found = list_characters(artifact_store())
    if not found:
        print("no characters in the library")
    for character in found:
        extras = [f"{len(character.reference_images)} images"]
        if character.trigger_words:
            extras.append("triggers " + ", ".join(character.trigger_words))
        if character.lora:
            extras.append(f"lora {character.lora.name}")
        print(f"{character.name:20} {character.description}  ({'; '.join(extras)})")
    return 0


@characters.command(help="one character's record and reference image URIs")
@click.argument("name")
@click.option("--sheet", is_flag=False, flag_value="", default=None, metavar="PNG",
              help="also render its references and the chosen frames of its shots with "
              "identity scores (default file: NAME-sheet.png)")
def show(name: str, sheet: str | None) -> int:
    import yaml

    from reelflow.store.keys import slug
    from reelflow.storyboard.characters import CharacterNotFound, character_version, get_character

    try:
        slug(name, "character name")
    except ValueError as exc:
        return fail(str(exc), EXIT_INVALID)
    store = artifact_store()
    try:
        character = get_character(store, name)
    except CharacterNotFound as exc:
        return fail(str(exc))
    print(yaml.safe_dump(character.model_dump(mode="json"), allow_unicode=True,
                         sort_keys=False).rstrip())
    print(f"# current version (what renders record): {character_version(store, character)}")
    for key in character.reference_images:
        print(f"# {store.uri(key)}")
    if sheet is not None:
        from reelflow.render.sheet import character_sheet

        image, entries = character_sheet(store, name)
        out = Path(sheet or f"{name}-sheet.png")
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(out)
        for entry in entries:
            score = "" if entry.score is None else f"  {entry.score:.2f}"
            print(f"# sheet: {entry.label.splitlines()[0]}{score}")
        print(f"sheet: {out} ({len(entries)} images)")
    return 0


def register(group: click.Group) -> None:
    group.add_command(characters)

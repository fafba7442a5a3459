"""Style board: one shot rendered under 2-4 candidate looks, side by side, before the style lock.

Locking the style changes every image's spec hash, so it is the decision to take *before* the
expensive renders. The board answers it cheaply: the chosen shot at preview size, one image per
candidate, the same seed for all (only the style differs), each labelled with how well it stays
inside that candidate's palette.

The board's prompts put the candidate's style words first. The film's own prompts rank them last
(subject and camera matter more), so over the token budget the style would be cut and every tile
would look the same. When the film's prompt for the shot would drop a candidate's style,
a warning says so: the board then shows a look the film's renders of that shot would not carry.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Annotated, Any, NamedTuple, overload

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from reelflow.errors import InputError
from reelflow.render.jobs import ImageJob, image_job
from reelflow.render.profiles import RenderProfile
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore, Lineage, ObjectNotFound
from reelflow.storyboard import HexColor, Storyboard, StyleLock
from reelflow.storyboard.prompts import TOKEN_BUDGETS, compose_prompt, count_tokens, prompt_parts

log = logging.getLogger("reelflow.styleboard")

MIN_CANDIDATES, MAX_CANDIDATES = 2, 4
STYLE_ROLES = ("style", "lighting", "quality")
_STYLE_FIELDS = ("visual_style", "lighting", "palette", "quality_tags")


class StyleCandidate(BaseModel):
    """One look to compare. Fields left out keep the storyboard's value, so a candidate can be
    a single change ("same, but at golden hour")."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
    visual_style: str = ""
    lighting: str = ""
    palette: list[HexColor] = []
    quality_tags: list[str] = []

    def style_lock(self, base: StyleLock) -> StyleLock:
        """The storyboard's style with this candidate's fields (only those it sets) swapped in."""
        update = {f: getattr(self, f) for f in _STYLE_FIELDS if f in self.model_fields_set}
        return base.model_copy(update=update, deep=True)


class StyleTile(BaseModel):
    """One candidate's render and what it was made from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    candidate: StyleCandidate
    style: StyleLock
    job: ImageJob
    image: Image.Image = Field(exclude=True)
    palette_score: float
    style_in_film_prompt: bool  # False: the film's own prompt for this shot drops this style


class StyleBoard(NamedTuple):
    image: Image.Image
    scores: list[float]
    key: str


class StyleBoardError(InputError, ValueError):
    """Bad candidates or a bad styles file; one line, ready for the CLI."""


# -- candidates ------------------------------------------------------------------------------

_VARIATIONS: list[dict[str, Any]] = [
    {
        "name": "warm-film",
        "visual_style": "35mm film still, warm analog grain",
        "lighting": "golden hour, long soft shadows",
        "palette": ["#f2a541", "#c8553d", "#8c2f39", "#f6e7cb"],
    },
    {
        "name": "cool-noir",
        "visual_style": "moody cinematic noir, high contrast",
        "lighting": "blue hour, cold rim light",
        "palette": ["#0d1b2a", "#1b263b", "#415a77", "#778da9"],
    },
    {
        "name": "pastel-illustration",
        "visual_style": "soft pastel watercolor illustration",
        "lighting": "flat diffuse daylight",
        "palette": ["#ffd6e0", "#c1fba4", "#90f1ef", "#fff1a8"],
    },
]


def derive_candidates(storyboard: Storyboard, count: int = 3) -> list[StyleCandidate]:
    """The storyboard's own style first, then fixed variations (warm film, cool noir, pastel):
    a board to start from when nobody has written candidates yet."""
    _check_count(count)
    style = storyboard.style
    own = StyleCandidate(
        name="storyboard",
        visual_style=style.visual_style,
        lighting=style.lighting,
        palette=list(style.palette),
        quality_tags=list(style.quality_tags),
    )
    return [own] + [StyleCandidate(**v) for v in _VARIATIONS[: count - 1]]


def _check_count(count: int) -> None:
    if not MIN_CANDIDATES <= count <= MAX_CANDIDATES:
        raise StyleBoardError(
            f"a style board compares {MIN_CANDIDATES}-{MAX_CANDIDATES} styles, got {count}"
        )


def check_candidates(candidates: list[StyleCandidate]) -> None:
    _check_count(len(candidates))
    names = [c.name for c in candidates]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise StyleBoardError(f"duplicate style names: {', '.join(duplicates)}")


def parse_candidates(text: str, source: str = "<styles>") -> list[StyleCandidate]:
    """A YAML/JSON list of candidates; errors as one `source: path: message` line."""
    from reelflow.storyboard import yamlsafe

    try:  # bounded: size, alias expansion, depth, duplicate keys
        data, _ = yamlsafe.load(text, source)
    except yamlsafe.YamlLimitError as exc:
        raise StyleBoardError(str(exc)) from None
    if not isinstance(data, list):
        raise StyleBoardError(f"{source}: must be a list of styles (name, visual_style, ...)")
    try:
        candidates = TypeAdapter(list[StyleCandidate]).validate_python(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        raise StyleBoardError(f"{source}: {path}: {error['msg']}") from None
    try:
        check_candidates(candidates)
    except StyleBoardError as exc:
        raise StyleBoardError(f"{source}: {exc}") from None
    return candidates


def load_candidates(path: str | Path) -> list[StyleCandidate]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StyleBoardError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_candidates(text, source=path.name)


# -- rendering -------------------------------------------------------------------------------


def board_prompt(storyboard: Storyboard, shot_id: str, family: str) -> str:
    """The shot's prompt with trigger words and then the style parts first, cut to the family's
    token budget (a part that does not fit is left out, as in `compose_prompt`)."""
    shot = storyboard.shot(shot_id)
    parts = prompt_parts(storyboard, shot)
    first = ("triggers", *STYLE_ROLES)  # trigger words stay first: they activate the LoRAs
    ordered = sorted(parts, key=lambda p: (first.index(p.role) if p.role in first else 99,
                                           p.priority))
    budget = TOKEN_BUDGETS.get(family, 75)
    kept: list[str] = []
    used = 0
    for part in ordered:
        cost = count_tokens(part.text, family) + (1 if kept else 0)
        if used + cost <= budget:
            kept.append(part.text)
            used += cost
    return ", ".join(kept)


def _style_survives(storyboard: Storyboard, shot_id: str, family: str) -> bool:
    composed = compose_prompt(storyboard, storyboard.shot(shot_id), family=family)
    kept = {p.role for p in composed.parts}
    wanted = {p.role for p in prompt_parts(storyboard, storyboard.shot(shot_id))}
    return wanted & set(STYLE_ROLES) <= kept


def render_style_tiles(
    storyboard: Storyboard,
    shot_id: str,
    candidates: list[StyleCandidate],
    profile: RenderProfile,
    *,
    base_dir: Path = Path("."),
) -> list[StyleTile]:
    """Render the shot once per candidate: same seed, model, size and steps; one variant each."""
    from reelflow.imaging.checks import palette_score
    from reelflow.imaging.generate import generate_variants
    from reelflow.render.models import image_spec

    check_candidates(candidates)
    shot = storyboard.shot(shot_id)
    tiles = []
    for candidate in candidates:
        style = candidate.style_lock(storyboard.style)
        styled = storyboard.model_copy(update={"style": style})
        job = image_job(styled, shot, profile, base_dir=base_dir)
        prompt = board_prompt(styled, shot_id, job.model.family)
        job = job.model_copy(update={"prompt": prompt, "variants": 1})
        survives = _style_survives(styled, shot_id, job.model.family)
        if not survives:
            log.warning("style %r: the film's prompt for shot %s is over budget and drops this "
                        "style's words; the board shows it anyway", candidate.name, shot_id)
        spec = image_spec(job, prompt=prompt, width=job.width, height=job.height, seed=job.seed)
        [(_, image)] = generate_variants(spec, 1)
        tiles.append(
            StyleTile(
                candidate=candidate,
                style=style,
                job=job,
                image=image,
                palette_score=palette_score(image, style.palette),
                style_in_film_prompt=survives,
            )
        )
    return tiles


def compose_board(tiles: list[StyleTile], thumb: int = 256) -> Image.Image:
    """One image, one tile per candidate in candidate order, labelled with name and score."""
    from reelflow.imaging.checks import contact_sheet

    labels = [f"{t.candidate.name}\npalette {t.palette_score:.2f}" for t in tiles]
    return contact_sheet([t.image for t in tiles], labels, thumb=thumb)


def board_hash(
    storyboard: Storyboard, shot_id: str, candidates: list[StyleCandidate],
    profile: RenderProfile, *, base_dir: Path = Path("."),
) -> str:
    """Hash of what makes the board: every tile's image job and every candidate (palettes
    change the scores on it), so the same request maps to the same key."""
    shot = storyboard.shot(shot_id)
    jobs = []
    for candidate in candidates:
        styled = storyboard.model_copy(update={"style": candidate.style_lock(storyboard.style)})
        job = image_job(styled, shot, profile, base_dir=base_dir)
        prompt = board_prompt(styled, shot_id, job.model.family)
        jobs.append(job.model_copy(update={"prompt": prompt, "variants": 1}).model_dump(
            mode="json"))
    return keys.spec_hash({
        "kind": "styleboard",
        "shot": shot_id,
        "candidates": [c.model_dump(mode="json") for c in candidates],
        "jobs": jobs,
    })


@overload
def render_style_board(
    storyboard: Storyboard, shot_id: str, candidates: list[StyleCandidate],
    profile: RenderProfile, store: None = None, *, base_dir: Path = ...,
) -> tuple[Image.Image, list[float]]: ...


@overload
def render_style_board(
    storyboard: Storyboard, shot_id: str, candidates: list[StyleCandidate],
    profile: RenderProfile, store: ArtifactStore, *, base_dir: Path = ...,
) -> StyleBoard: ...


def render_style_board(
    storyboard: Storyboard,
    shot_id: str,
    candidates: list[StyleCandidate],
    profile: RenderProfile,
    store: ArtifactStore | None = None,
    *,
    base_dir: Path = Path("."),
) -> tuple[Image.Image, list[float]] | StyleBoard:
    """(board image, palette scores in candidate order); with a store also the board's key.

    With a store the board lands at `projects/{project}/styleboards/{hash}.png` with a lineage
    sidecar (tile jobs, candidates, scores); a board already there is returned without rendering.
    """
    check_candidates(candidates)
    storyboard.shot(shot_id)  # KeyError before any model loads
    key = None
    if store is not None:
        digest = board_hash(storyboard, shot_id, candidates, profile, base_dir=base_dir)
        key = keys.styleboard_key(storyboard.project, digest)
        cached = _cached_board(store, key)
        if cached is not None:
            return cached
    tiles = render_style_tiles(storyboard, shot_id, candidates, profile, base_dir=base_dir)
    board = compose_board(tiles)
    scores = [t.palette_score for t in tiles]
    if store is None or key is None:
        return board, scores
    buffer = io.BytesIO()
    board.save(buffer, format="PNG")
    store.put_bytes(
        key,
        buffer.getvalue(),
        "image/png",
        Lineage(
            kind="styleboard",
            spec={"shot": shot_id, "tiles": [t.model_dump(mode="json") for t in tiles]},
            spec_hash=key.rsplit("/", 1)[-1].split(".", 1)[0],
            extra={
                "shot": shot_id,
                "candidates": [t.candidate.name for t in tiles],
                "scores": scores,
                "style_in_film_prompt": [t.style_in_film_prompt for t in tiles],
            },
        ),
    )
    return StyleBoard(board, scores, key)


def _cached_board(store: ArtifactStore, key: str) -> StyleBoard | None:
    try:
        lineage = store.lineage(key)
        data = store.get_bytes(key)
    except ObjectNotFound:
        return None
    scores = lineage.extra.get("scores")
    if not isinstance(scores, list):
        return None
    return StyleBoard(Image.open(io.BytesIO(data)).convert("RGB"), list(scores), key)

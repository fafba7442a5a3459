"""Review material for the gates: what a person looks at before saying yes.

The core builds the markdown and stores the pictures it shows (contact sheets, frame strips) next
to what they show; tasks/review.py publishes it as Prefect artifacts. How a picture is shown
(inline image, or a link where the reviewer's browser cannot load the bucket) is the caller's
`Picture` function, since only the orchestrator knows where its UI runs.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, ImageDraw, ImageFont, ImageOps

from reelflow.render.common import png_bytes, scratch
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import Storyboard

Picture = Callable[[str, str], str]  # (object key, label) -> markdown
MAX_PRESIGN = timedelta(days=7)  # the S3 limit for a presigned URL


def link_lifetime() -> timedelta:
    """Review links outlive the gate that shows them: the gate's timeout plus an hour (S3 caps
    presigned URLs at 7 days)."""
    gate = timedelta(seconds=int(os.environ.get("REELFLOW_GATE_TIMEOUT", str(24 * 3600))))
    return min(MAX_PRESIGN, gate + timedelta(hours=1))


def link(store: ArtifactStore, key: str, label: str) -> str:
    return f"[{label}]({store.presigned_url(key, expires=link_lifetime())})"


def review_images_inline(s3_endpoint: str, api_url: str | None, mode: str = "auto") -> bool:
    """Whether the UI's viewers can load presigned images from the bucket.

    Image artifacts render only URLs the viewer's browser can reach. `REELFLOW_REVIEW_IMAGES`
    says `inline` or `link`; `auto` inlines when the S3 endpoint is on the Prefect server's host
    (or both are on loopback) and otherwise falls back to link artifacts.
    """
    if mode in ("inline", "link"):
        return mode == "inline"
    s3_host = s3_endpoint.rsplit(":", 1)[0].strip("[]")
    ui_host = urlsplit(api_url or "http://127.0.0.1").hostname or "127.0.0.1"
    loopback = {"127.0.0.1", "localhost", "::1"}
    return s3_host == ui_host or (s3_host in loopback and ui_host in loopback)


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def is_chinese(text: str) -> bool:
    """Mostly CJK: such a prompt needs no Chinese rendering beside it."""
    letters = [c for c in text if not c.isspace() and c.isalnum()]
    return bool(letters) and sum(bool(_CJK.match(c)) for c in letters) >= len(letters) / 3


# -- the storyboard gate ---------------------------------------------------------------------


def _transition(storyboard: Storyboard, index: int) -> str:
    shot = storyboard.shots[index]
    if shot.first_frame or shot.last_frame:
        ends = [
            f"{name} frame from {ref.shot}" + (f" restyled '{ref.restyle}'" if ref.restyle else "")
            for name, ref in (("first", shot.first_frame), ("last", shot.last_frame))
            if ref is not None
        ]
        return "morph: " + "; ".join(ends)
    if index == 0:
        return "opening"
    if shot.transition_in == "cut":
        return "cut"
    return f"{shot.transition_in} {shot.transition_duration:g} s"


def storyboard_markdown(storyboard: Storyboard, storyboard_key: str) -> str:
    rows = [
        "| # | shot | sec | camera | transition in | caption |",
        "|---|---|---|---|---|---|",
    ]
    for index, shot in enumerate(storyboard.shots):
        camera = f"{shot.camera.size}, {shot.camera.angle}, {shot.camera.movement}"
        lines = (shot.caption.zh, shot.caption.en) if shot.caption else ()
        caption = " / ".join(line for line in lines if line)
        rows.append(
            f"| {index} | **{shot.id}**: {shot.description} | {shot.duration:g} | {camera} | "
            f"{_transition(storyboard, index)} | {caption} |"
        )
    music = (
        (f"Music: `{storyboard.music.path}`" if storyboard.music.path is not None else
         f"Music: generated from \"{storyboard.music.prompt}\" (`{storyboard.music.model}`, "
         f"seed {storyboard.music.seed})")
        + (" (cuts snap to its beats)" if storyboard.music.snap_cuts else "")
        if storyboard.music
        else "No music."
    )
    return (
        f"# {storyboard.title}\n\n{storyboard.logline}\n\n"
        f"{len(storyboard.shots)} shots, {storyboard.duration:g} s, "
        f"{storyboard.width}x{storyboard.height} ({storyboard.aspect}) @ {storyboard.fps} fps, "
        f"model `{storyboard.style.model}`. {music} Stored as `{storyboard_key}`.\n\n"
        + "\n".join(rows)
    )


# -- the images gate -------------------------------------------------------------------------


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """The CJK font (shot descriptions and style names may be Chinese: Pillow's default font
    draws tofu); Pillow's default only when no CJK font is installed."""
    from reelflow.editing.fonts import FontNotFoundError, cjk_font_path

    try:
        return ImageFont.truetype(str(cjk_font_path()), size)
    except (FontNotFoundError, OSError):
        return ImageFont.load_default(size=size)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """``text`` cut (with an ellipsis) to ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def variant_sheet(
    images: list[Image.Image],
    labels: list[str],
    title: str,
    replaced: tuple[Image.Image, str] | None = None,
    thumb: int = 256,
    padding: int = 8,
) -> Image.Image:
    """One shot's takes in a row, as a director reads them: the ``title`` (round, shot id and
    description) above, each take's label under it, numbered as the form numbers them, with
    its scores one per line; a rejected shot's ``replaced`` take (image, label) first, framed,
    beside the new takes it is compared with."""
    font = _font(max(12, thumb // 16))
    title_font = _font(max(14, thumb // 12))
    line_h = max(14, thumb // 14)
    cells = [(image, label.replace(" · ", "\n"), False) for image, label in zip(images, labels,
                                                                                  strict=True)]
    if replaced is not None:
        cells.insert(0, (replaced[0], replaced[1].replace(" · ", "\n"), True))
    lines = max(1 + label.count("\n") for _, label, _ in cells)
    title_h = line_h * 2
    cell_w, cell_h = thumb + padding, thumb + lines * line_h + padding
    width = len(cells) * cell_w + padding + (padding * 2 if replaced is not None else 0)
    sheet = Image.new("RGB", (width, title_h + cell_h + padding), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((padding, padding // 2), _fit(draw, title, title_font, width - 2 * padding),
              fill="black", font=title_font)
    x = padding
    for image, label, framed in cells:
        y = title_h
        tile = ImageOps.contain(image.convert("RGB"), (thumb, thumb), Image.LANCZOS)
        sheet.paste(tile, (x + (thumb - tile.width) // 2, y + (thumb - tile.height) // 2))
        if framed:
            draw.rectangle((x - 3, y - 3, x + thumb + 2, y + thumb + 2), outline="#888888",
                           width=3)
        draw.multiline_text((x, y + thumb + 3), label, fill="#555555" if framed else "black",
                            font=font, spacing=2)
        x += cell_w + (padding * 2 if framed else 0)
    return sheet


def contact_sheet_key(
    store: ArtifactStore,
    project: str,
    shot: str,
    variant_keys: list[str],
    labels: list[str],
    title: str,
    replaced: tuple[str, str] | None = None,
) -> str:
    """The shot's sheet (:func:`variant_sheet`) stored next to its variants; ``replaced`` is the
    key and label of the take a rejection replaces."""
    key = keys.image_key(project, shot, keys.spec_hash(
        {"sheet": variant_keys, "labels": labels, "title": title, "replaced": replaced}
    ) + "-sheet")  # fmt: skip
    if store.exists(key):
        return key
    images = [_image(store, k) for k in variant_keys]
    before = (_image(store, replaced[0]), replaced[1]) if replaced else None
    sheet = variant_sheet(images, labels, title, before)
    parents = variant_keys + ([replaced[0]] if replaced else [])
    return store.put_bytes(
        key, png_bytes(sheet), "image/png", {"kind": "contact-sheet", "parents": parents}
    )


def _image(store: ArtifactStore, key: str) -> Image.Image:
    return Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")


def images_markdown(
    store: ArtifactStore,
    project: str,
    variants: dict[str, list[str]],
    prompts: dict[str, str],
    scores: dict[str, list[float]],
    picture: Picture,
    diffs: dict[str, str] | None = None,
    zh: dict[str, str | None] | None = None,
    *,
    round_: int = 1,
    descriptions: dict[str, str] | None = None,
    identity: dict[str, list[float]] | None = None,
    replaced: dict[str, tuple[str, int]] | None = None,
    speed: str | None = None,
) -> str:
    """A contact sheet per shot (round, shot id and description above; variants numbered from
    0 as in the form, identity and quality scores under them; a rejected shot's earlier take
    beside its new ones), the prompt used, its Chinese rendering, and the diff of any LLM
    revision from notes. ``replaced``: shot -> (key, variant number) of the take replaced.
    ``speed``: the speed cache guard's line (its PSNR or identity score, whether kept)."""
    from reelflow.render.decisions import score_label

    rows = ["| shot | variants (#0, #1, ...) | prompt | 中文 |", "|---|---|---|---|"]
    for shot, shot_keys in variants.items():
        labels = [
            score_label(i, (identity or {}).get(shot), scores.get(shot))
            for i in range(len(shot_keys))
        ]
        description = (descriptions or {}).get(shot, "")
        title = f"round {round_} · {shot}" + (f": {description}" if description else "")
        before = (replaced or {}).get(shot)
        earlier = (before[0], f"#{before[1]} replaced (round {round_ - 1})") if before else None
        sheet = contact_sheet_key(store, project, shot, shot_keys, labels, title, earlier)
        links = " ".join(link(store, key, f"#{i}") for i, key in enumerate(shot_keys))
        prompt = prompts.get(shot, "")
        if is_chinese(prompt):
            chinese = "_(the prompt is Chinese)_"
        else:
            chinese = (zh or {}).get(shot) or "_no Chinese rendering (no LLM endpoint)_"
        rows.append(f"| **{shot}** {links} | {picture(sheet, shot)} | {prompt} | {chinese} |")
    markdown = (
        f"# Images, round {round_}\n\nPick a variant per shot from its dropdown (numbered as on "
        "the contact sheets), or write notes for a shot to reject it: only rejected shots are "
        "regenerated.\n\n" + (f"**Speed:** {speed}\n\n" if speed else "") + "\n".join(rows)
    )
    for shot, diff in (diffs or {}).items():
        markdown += f"\n\n**{shot}**: prompt revised from the notes\n\n```diff\n{diff}\n```"
    return markdown


# -- the clips gate --------------------------------------------------------------------------


def frame_strip(video: Path, count: int = 5, height: int = 90) -> Image.Image:
    """Evenly spaced frames side by side: a clip's motion at a glance, streamed, never whole."""
    from reelflow.media.frames import read_frames
    from reelflow.media.probe import probe

    info = probe(video)
    width = max(2, round(info.width * height / info.height / 2) * 2)
    wanted = {round(i * (info.frame_count - 1) / max(1, count - 1)) for i in range(count)}
    strip = Image.new("RGB", (width * len(wanted), height))
    slot = 0
    for index, frame in enumerate(read_frames(video, size=(width, height))):
        if index in wanted:
            strip.paste(Image.fromarray(frame), (slot * width, 0))
            slot += 1
    return strip


def frame_strip_key(store: ArtifactStore, project: str, shot: str, clip_key: str) -> str:
    key = keys.image_key(project, shot, keys.spec_hash({"strip": clip_key}) + "-strip")
    if store.exists(key):
        return key
    with scratch() as tmp:
        strip = frame_strip(store.get_file(clip_key, tmp / "clip.mp4"))
    return store.put_bytes(
        key, png_bytes(strip), "image/png", {"kind": "frame-strip", "parents": [clip_key]}
    )


def clips_markdown(
    store: ArtifactStore,
    project: str,
    clips: dict[str, str],
    prompts: dict[str, str],
    seeds: dict[str, int],
    backend: str | dict[str, str],
    picture: Picture,
    *,
    round_: int = 1,
    replaced: dict[str, str] | None = None,
    speed: str | None = None,
) -> str:
    """Per clip: a strip of frames, a link to play it, its motion prompt, seed and backend
    (`backend`: the run's, or per shot where the storyboard chose one per shot) with what its
    lineage says made it (model hash, window plan, decode settings); a clip made
    again shows the take it replaces (``replaced``: shot -> earlier clip) above. ``speed``:
    the speed cache guard's line (its PSNR, and whether the cache was kept)."""
    rows = ["| shot | frames | motion prompt | seed | backend |", "|---|---|---|---|---|"]
    for shot, key in clips.items():
        strip = frame_strip_key(store, project, shot, key)
        frames = picture(strip, shot)
        earlier = (replaced or {}).get(shot)
        if earlier:
            before = frame_strip_key(store, project, shot, earlier)
            frames = (f"replaced (round {round_ - 1}, {link(store, earlier, 'play')}): "
                      f"{picture(before, f'{shot}-replaced')}<br>new: {frames}")
        made = made_with_line(store.lineage(key).extra) if store.complete(key) else ""
        made = f"<br>{made}" if made else ""  # model hash, window plan, decode settings
        rows.append(
            f"| **{shot}** {link(store, key, 'play')} | {frames} | "
            f"{prompts.get(shot, '')} | {seeds.get(shot, '')} | "
            f"{backend if isinstance(backend, str) else backend.get(shot, '')}{made} |"
        )
    return (
        f"# Clips, round {round_}\n\nApprove all, or per shot switch on `regenerate` for a new "
        "take, write notes for it, or change its seed: only those clips are made again.\n\n"
        + (f"**Speed:** {speed}\n\n" if speed else "")
        + "\n".join(rows)
    )


def lines_markdown(
    store: ArtifactStore,
    lines: list[dict[str, Any]],
    retaken: dict[str, str],
    round_: int,
) -> str:
    """The voice-over lines at the clips gate: per line a link to hear it, its s3:// object,
    text, length, voice and speed; a line re-taken last round shows the take it replaced.
    What to answer to re-take one is said above the table."""
    rows = ["| shot | language | listen | line | length | voice · speed |",
            "|---|---|---|---|---|---|"]
    for line in lines:
        key = str(line["key"])
        listen = f"{link(store, key, 'listen')}<br>`{store.uri(key)}`"
        earlier = retaken.get(f"{line['shot']}/{line['language']}")
        if earlier:
            before = link(store, earlier, "listen")
            listen += f"<br>re-taken in round {round_ - 1}; replaced: {before}"
        text = str(line["text"]).replace("|", "\\|").replace("\n", " ")
        engine = "recorded take" if line["engine"] == "recorded" else (
            f"{line['voice']} · {float(line['speed']):g}x")  # type: ignore[arg-type]
        rows.append(f"| **{line['shot']}** | {line['language']} | {listen} | {text} | "
                    f"{float(line['duration']):.2f} s | {engine} |")  # type: ignore[arg-type]
    return (
        "## Voice-over\n\nHear each line; change its text, voice or speed in the form (or "
        "`reelflow approve RUN --retake SHOT=\"text\" --voice SHOT=VOICE --speed SHOT=1.2 "
        "[--lang zh|en]`) to re-take it: only that line is spoken again and mixed, no picture "
        "is re-made. Recorded takes are kept as they are.\n\n" + "\n".join(rows)
    )


def made_with_line(extra: dict[str, Any]) -> str:
    """A clip's model hash, window plan and decode settings in one review cell (empty for a
    clip no model made)."""
    from reelflow.motion.latents import DecodeSettings
    from reelflow.motion.windows import WindowPlan

    parts = []
    if extra.get("model_sha256"):
        parts.append(f"model {str(extra['model_sha256'])[:12]}")
    if extra.get("window_plan"):
        plan = {k: v for k, v in extra["window_plan"].items() if k != "generated_frames"}
        parts.append(WindowPlan(**plan).describe())
    if extra.get("latent_upsample"):
        parts.append("latents upsampled 2x")
    if extra.get("decode"):
        parts.append(f"decode {DecodeSettings(**extra['decode']).describe()}")
    return "; ".join(parts)


def final_markdown(
    store: ArtifactStore, film_key: str, cover_key: str, manifest_key: str, picture: Picture
) -> str:
    return (
        "# Final\n\n"
        f"- film: {link(store, film_key, store.uri(film_key))}\n"
        f"- cover: {link(store, cover_key, store.uri(cover_key))}\n"
        f"- manifest: {link(store, manifest_key, store.uri(manifest_key))}\n\n"
        f"{picture(cover_key, 'cover')}\n"
    )

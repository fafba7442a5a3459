"""Review material for the gates: what a person looks at before saying yes.

Artifacts show in the Prefect UI on the run. Images are presigned URLs into the bucket, which a
browser on the stack's network can open; the same markdown is the form's description.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from PIL import Image
from prefect import task
from prefect.artifacts import create_markdown_artifact

from reelflow.store import keys
from reelflow.storyboard import Storyboard
from tasks.common import get_store


def _link(key: str, label: str) -> str:
    return f"[{label}]({get_store().presigned_url(key)})"


def review_images_inline(s3_endpoint: str, api_url: str | None, mode: str = "auto") -> bool:
    """Whether the UI's viewers can load presigned images from the bucket.

    Image artifacts render only URLs the viewer's browser can reach. `REELFLOW_REVIEW_IMAGES`
    says `inline` or `link`; `auto` inlines when the S3 endpoint is on the Prefect server's host
    (or both are on loopback) and otherwise falls back to link artifacts.
    """
    if mode in ("inline", "link"):
        return mode == "inline"
    from urllib.parse import urlsplit

    s3_host = s3_endpoint.rsplit(":", 1)[0].strip("[]")
    ui_host = urlsplit(api_url or "http://127.0.0.1").hostname or "127.0.0.1"
    loopback = {"127.0.0.1", "localhost", "::1"}
    return s3_host == ui_host or (s3_host in loopback and ui_host in loopback)


def _inline() -> bool:
    import os

    from prefect.settings import PREFECT_API_URL

    return review_images_inline(
        get_store().settings.endpoint,
        PREFECT_API_URL.value(),
        os.environ.get("REELFLOW_REVIEW_IMAGES", "auto"),
    )


def _thumb(key: str, label: str) -> str:
    """An inline image, or where the browser could not load it, a link artifact and a link."""
    url = get_store().presigned_url(key)
    if _inline():
        return f"![{label}]({url})"
    from prefect.artifacts import create_link_artifact

    create_link_artifact(link=url, link_text=f"{label} (image)", key=f"{label}-image")
    return f"[{label} (image)]({url})"


@task(name="publish-storyboard")
def publish_storyboard(storyboard: Storyboard) -> str:
    """Store the storyboard under its content hash (the same storyboard is stored once)."""
    key = keys.storyboard_key(storyboard.project, storyboard.content_hash())
    return get_store().put_json(key, storyboard, {"kind": "storyboard"}, if_absent=True)


@task(name="storyboard-review")
def storyboard_review(storyboard: Storyboard, storyboard_key: str) -> str:
    rows = [
        "| # | shot | sec | camera | transition | caption |",
        "|---|---|---|---|---|---|",
    ]
    for index, shot in enumerate(storyboard.shots, 1):
        camera = f"{shot.camera.size}, {shot.camera.angle}, {shot.camera.movement}"
        caption = f"{shot.caption.zh} / {shot.caption.en}" if shot.caption else ""
        rows.append(
            f"| {index} | **{shot.id}**: {shot.description} | {shot.duration:g} | {camera} | "
            f"{shot.transition_in} | {caption} |"
        )
    markdown = (
        f"# {storyboard.title}\n\n{storyboard.logline}\n\n"
        f"{len(storyboard.shots)} shots, {storyboard.duration:g} s, "
        f"{storyboard.width}x{storyboard.height} @ {storyboard.fps} fps, "
        f"model `{storyboard.style.model}`. Stored as `{storyboard_key}`.\n\n" + "\n".join(rows)
    )
    create_markdown_artifact(markdown, key="storyboard-review", description="storyboard gate")
    return markdown


@task(name="images-review")
def images_review(
    project: str,
    variants: dict[str, list[str]],
    prompts: dict[str, str],
    scores: dict[str, list[float]],
    diffs: dict[str, str] | None = None,
    zh: dict[str, str | None] | None = None,
) -> str:
    """A contact sheet per shot (variants numbered, scores under them), the prompt used, and
    for shots whose prompt an LLM revised from notes, the diff of that revision."""
    from reelflow.imaging.checks import contact_sheet

    store = get_store()
    rows = ["| shot | variants (0, 1, ...) | prompt | 中文 |", "|---|---|---|---|"]
    for shot, shot_keys in variants.items():
        images = [Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB") for key in shot_keys]
        labels = [f"#{i}  {s:.2f}" for i, s in enumerate(scores.get(shot, [0.0] * len(images)))]
        sheet = contact_sheet(images, labels)
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG")
        sheet_key = keys.image_key(project, shot, keys.spec_hash({"sheet": shot_keys}) + "-sheet")
        store.put_bytes(
            sheet_key,
            buffer.getvalue(),
            "image/png",
            {"kind": "contact-sheet", "parents": shot_keys},
            if_absent=True,
        )
        links = " ".join(_link(key, f"#{i}") for i, key in enumerate(shot_keys))
        chinese = (zh or {}).get(shot) or "_missing (no LLM endpoint)_"
        rows.append(
            f"| **{shot}** {links} | {_thumb(sheet_key, shot)} | {prompts.get(shot, '')} | "
            f"{chinese} |"
        )
    markdown = (
        "# Images\n\nPick a variant per shot (`picks`), or reject a shot with notes (`reject`): "
        "only rejected shots are regenerated.\n\n" + "\n".join(rows)
    )
    for shot, diff in (diffs or {}).items():
        markdown += f"\n\n**{shot}**: prompt revised from the notes\n\n```diff\n{diff}\n```"
    create_markdown_artifact(markdown, key="images-review", description="images gate")
    return markdown


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


@task(name="clips-review")
def clips_review(
    project: str,
    clips: dict[str, str],
    prompts: dict[str, str],
    seeds: dict[str, int],
    backend: str,
) -> str:
    """Per clip: a strip of frames, a link to play it, its motion prompt, seed and backend."""
    store = get_store()
    rows = ["| shot | frames | motion prompt | seed | backend |", "|---|---|---|---|---|"]
    for shot, key in clips.items():
        strip_key = keys.image_key(project, shot, keys.spec_hash({"strip": key}) + "-strip")
        if not store.exists(strip_key):
            with tempfile.TemporaryDirectory() as tmp:
                clip = store.get_file(key, Path(tmp) / "clip.mp4")
                buffer = io.BytesIO()
                frame_strip(clip).save(buffer, format="PNG")
            store.put_bytes(
                strip_key, buffer.getvalue(), "image/png", {"kind": "frame-strip", "parents": [key]}
            )
        rows.append(
            f"| **{shot}** {_link(key, 'play')} | {_thumb(strip_key, shot)} | "
            f"{prompts.get(shot, '')} | {seeds.get(shot, '')} | {backend} |"
        )
    markdown = (
        "# Clips\n\nApprove all, or ask for a regeneration per shot with notes (`regenerate`) "
        "and/or a new seed (`new_seeds`).\n\n" + "\n".join(rows)
    )
    create_markdown_artifact(markdown, key="clips-review", description="clips gate")
    return markdown


@task(name="final-review")
def final_review(film_key: str, cover_key: str, manifest_key: str) -> None:
    store = get_store()
    markdown = (
        "# Final\n\n"
        f"- film: {_link(film_key, store.uri(film_key))}\n"
        f"- cover: {_link(cover_key, store.uri(cover_key))}\n"
        f"- manifest: {_link(manifest_key, store.uri(manifest_key))}\n\n"
        f"{_thumb(cover_key, 'cover')}\n"
    )
    create_markdown_artifact(markdown, key="final", description="the finished film")

"""Cheap, model-free quality checks for generated images, and the contact sheet reviewers see.

They feed the `quality-gate` approval policy and the review table: a variant that is blank,
blurry, off-palette or does not look like its character should not reach a person unflagged.
All run on CPU in milliseconds, except `character_consistency` with a CLIP model.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

log = logging.getLogger(__name__)

ImageLike = Image.Image | np.ndarray

CLIP_MODEL_ENV = "REELFLOW_CLIP_MODEL"
"""Local CLIP model (directory or cached hub id) for `character_consistency`, if any."""


def _as_float(image: ImageLike) -> np.ndarray:
    """Pixels as float in 0..1 (uint8 arrays and PIL images are scaled; floats kept as is)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return array.astype(np.float32)


def _as_uint8_rgb(image: ImageLike) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = _as_float(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return (np.clip(np.nan_to_num(array), 0, 1) * 255).round().astype(np.uint8)


def is_blank(image: ImageLike, tolerance: float = 0.02) -> bool:
    """True for the failure outputs: any NaN/inf pixel, or every pixel black (<= tolerance).

    Pass the pipeline's float output (`output_type="np"`) to see NaNs: converting to PIL turns
    them into black, which this also catches.
    """
    array = _as_float(image)
    if array.size == 0 or not np.isfinite(array).all():
        return True
    return float(array.max()) <= tolerance


def sharpness(image: ImageLike) -> float:
    """Variance of the Laplacian of the grey image: higher is sharper (0 for a flat image).

    Scale-dependent (compare images of the same size); real photos are typically 100-2000 and
    a badly blurred one under ~50 at 1024 px.
    """
    gray = cv2.cvtColor(_as_uint8_rgb(image), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def _hex_to_rgb(value: str) -> tuple[int, int, int]:
    text = value.strip().lstrip("#")
    if len(text) == 3:
        text = "".join(c * 2 for c in text)
    if len(text) != 6:
        raise ValueError(f"not a hex colour: {value!r}")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def _to_lab(rgb_uint8: np.ndarray) -> np.ndarray:
    """CIE Lab with L in 0..100 and a/b in about -128..127 (OpenCV's float convention)."""
    rgb = rgb_uint8.reshape(-1, 1, 3).astype(np.float32) / 255.0
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3)


def dominant_colours(
    image: ImageLike, k: int = 5, iterations: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """(centres in Lab, weights summing to 1) of a deterministic k-means on a 64 px thumbnail.

    Initialised from lightness quantiles rather than at random, so the same image always gives
    the same answer.
    """
    rgb = _as_uint8_rgb(image)
    h, w = rgb.shape[:2]
    scale = min(1.0, 64 / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), cv2.INTER_AREA)
    pixels = _to_lab(rgb).astype(np.float64)
    order = np.argsort(pixels[:, 0], kind="stable")
    k = max(1, min(k, len(pixels)))
    centres = pixels[order[((np.arange(k) + 0.5) * len(pixels) / k).astype(int)]]
    for _ in range(iterations):
        labels = np.argmin(((pixels[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        for j in range(k):
            members = pixels[labels == j]
            if len(members):
                centres[j] = members.mean(axis=0)
    labels = np.argmin(((pixels[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    weights = np.bincount(labels, minlength=k) / len(pixels)
    return centres, weights


def palette_score(image: ImageLike, palette_hex: Sequence[str], k: int = 5) -> float:
    """0..1: how close the image's dominant colours are to the locked palette.

    Each dominant colour (k-means in Lab) scores exp(-dE/20) against its nearest palette colour
    (dE76: ~2 is just noticeable, 20 a clearly different colour), weighted by its share of the
    image. It measures whether the image stays inside the palette, not whether it uses every
    palette colour. An empty palette scores 1 (nothing is locked).
    """
    if not palette_hex:
        return 1.0
    palette = _to_lab(np.array([_hex_to_rgb(c) for c in palette_hex], dtype=np.uint8))
    centres, weights = dominant_colours(image, k)
    distances = np.sqrt(((centres[:, None, :] - palette[None]) ** 2).sum(-1)).min(axis=1)
    return float(np.clip((weights * np.exp(-distances / 20.0)).sum(), 0.0, 1.0))


# --- character consistency ------------------------------------------------------------------


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two grey float images (Gaussian window, sigma 1.5)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = functools.partial(cv2.GaussianBlur, ksize=(7, 7), sigmaX=1.5)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float((num / den).mean())


def _hsv_histogram(rgb: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [30, 16], [0, 180, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def perceptual_similarity(a: ImageLike, b: ImageLike) -> float:
    """0..1 without any model: half colour (HSV histogram correlation), half structure (SSIM).

    Colour carries a character's costume and hair; SSIM on a 128 px grey thumbnail carries pose
    and silhouette. A coarse proxy: it rewards the same look, not the same identity.
    """
    rgb_a, rgb_b = _as_uint8_rgb(a), _as_uint8_rgb(b)
    colour = cv2.compareHist(_hsv_histogram(rgb_a), _hsv_histogram(rgb_b), cv2.HISTCMP_CORREL)
    grey_a, grey_b = (
        cv2.resize(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), (128, 128), cv2.INTER_AREA).astype(
            np.float64
        )
        for x in (rgb_a, rgb_b)
    )
    structure = _ssim(grey_a, grey_b)
    return float(0.5 * np.clip(colour, 0, 1) + 0.5 * np.clip(structure, 0, 1))


@functools.lru_cache(maxsize=2)
def _clip(model: str) -> tuple[Any, Any]:
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    processor = CLIPImageProcessor.from_pretrained(model, local_files_only=True)
    vision = CLIPVisionModelWithProjection.from_pretrained(model, local_files_only=True).eval()
    return processor, vision


def clip_image_embeddings(images: Sequence[ImageLike], model: str | Path) -> np.ndarray:
    """L2-normalised CLIP image embeddings, one row per image (model loaded locally, cached)."""
    import torch

    processor, vision = _clip(str(model))
    pil = [Image.fromarray(_as_uint8_rgb(image)) for image in images]
    with torch.no_grad():
        inputs = processor(images=pil, return_tensors="pt")
        embeds = vision(pixel_values=inputs["pixel_values"]).image_embeds
    embeds = embeds / embeds.norm(dim=-1, keepdim=True)
    return embeds.float().numpy()


def consistency_method(clip_model: str | Path | None = None) -> str:
    """Which metric `character_consistency` uses with these arguments: 'clip' or 'perceptual'."""
    return "clip" if (clip_model or os.environ.get(CLIP_MODEL_ENV)) else "perceptual"


def character_consistency(
    image: ImageLike,
    reference_images: Sequence[ImageLike],
    clip_model: str | Path | None = None,
) -> float:
    """0..1: how much `image` looks like the closest of a character's reference images.

    With a local CLIP model (argument, or `REELFLOW_CLIP_MODEL`) it is the cosine similarity of
    CLIP image embeddings, clipped at 0; without one it is `perceptual_similarity`. The best
    reference counts, because a character sheet holds several views and one of them matches.
    """
    if not reference_images:
        raise ValueError("character_consistency needs at least one reference image")
    model = clip_model or os.environ.get(CLIP_MODEL_ENV)
    if model:
        embeds = clip_image_embeddings([image, *reference_images], model)
        return float(np.clip((embeds[1:] @ embeds[0]).max(), 0.0, 1.0))
    return max(perceptual_similarity(image, ref) for ref in reference_images)


# --- contact sheet --------------------------------------------------------------------------


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """The CJK font labels are set in (style names may be Chinese: Pillow's default draws tofu);
    Pillow's default font only when no CJK font is installed."""
    from reelflow.editing.fonts import FontNotFoundError, cjk_font_path

    try:
        return ImageFont.truetype(str(cjk_font_path()), size)
    except (FontNotFoundError, OSError):
        pass
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def contact_sheet(
    images: Sequence[Image.Image],
    labels: Sequence[str] | None = None,
    columns: int | None = None,
    thumb: int = 256,
    padding: int = 8,
) -> Image.Image:
    """A grid of numbered thumbnails with a caption (e.g. seed and scores) under each.

    Reviewers pick variants by number ("#3"), so the numbers are drawn on the sheet itself.
    """
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    labels = list(labels) if labels is not None else [""] * len(images)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    columns = columns or min(len(images), 4)
    rows = math.ceil(len(images) / columns)
    font = _font(max(10, thumb // 16))
    line_h = max(12, thumb // 14)
    caption_lines = max(1 + label.count("\n") for label in labels) + 1
    cell_w, cell_h = thumb + padding, thumb + caption_lines * line_h + padding
    sheet = Image.new("RGB", (columns * cell_w + padding, rows * cell_h + padding), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        x = padding + (index % columns) * cell_w
        y = padding + (index // columns) * cell_h
        tile = ImageOps.contain(image.convert("RGB"), (thumb, thumb), Image.LANCZOS)
        sheet.paste(tile, (x + (thumb - tile.width) // 2, y + (thumb - tile.height) // 2))
        caption = f"#{index + 1}" + (f"  {label}" if label else "")
        draw.multiline_text((x, y + thumb + 2), caption, fill="black", font=font, spacing=2)
    return sheet

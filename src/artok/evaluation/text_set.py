"""A text-preservation evaluation set, rendered locally with the system's fonts.

Tokenizers trained on natural images tend to blur or hallucinate glyphs; text is where a lossy
token bottleneck shows first (TiTok, FlexTok and TokenBridge all discuss it). This set renders,
at the tokenizer's own resolution, two kinds of images with Pillow:

- ``word``: one short word (or number), centered, at a large size (30-60% of the image side);
- ``lines``: several lines of small running text (12-22% of the side, at least 6 px), wrapped
  to the width.

Fonts are the TrueType/OpenType files found under ``/usr/share/fonts`` (others can be passed);
with none, Pillow's built-in font (``ImageFont.load_default(size=...)``) is used. Images
alternate between light text on a dark background (the polarity of MNIST-style data) and dark
text on a light one (documents). Everything is deterministic in ``seed``; nothing is downloaded.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from artok.data.base import ImageDataset

FONT_ROOTS = ("/usr/share/fonts", "/usr/local/share/fonts")
WORDS = (
    "cat", "AR", "tok", "42", "Hi", "fox", "sun", "map", "QR", "ok", "7up", "zip", "GPU", "ink", "box", "bay",
    "jam", "wax", "no", "yes", "dog", "art", "0.5", "K=8",
)  # fmt: skip
LINES = (
    "the quick brown fox jumps over the lazy dog",
    "Pack my box with five dozen liquor jugs.",
    "0123456789 +-=/ ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "tokens in, tokens out: 32 per image",
    "Sphinx of black quartz, judge my vow!",
    "How vexingly quick daft zebras jump",
)
CLASS_NAMES = ["word", "lines"]
WORD_SIZES = (0.30, 0.45, 0.60)
LINE_SIZES = (0.12, 0.16, 0.22)
MIN_FONT_PIXELS = 6


def find_fonts(roots: tuple[str, ...] = FONT_ROOTS, limit: int | None = 4) -> list[Path]:
    """TrueType/OpenType fonts under ``roots``, regular faces first, one per family before any
    family's second face; at most ``limit`` (None: all)."""
    found: list[Path] = []
    for root in roots:
        base = Path(root)
        if base.is_dir():
            found += [p for p in base.rglob("*") if p.suffix.lower() in (".ttf", ".otf") and p.is_file()]
    # Plain faces read best at tiny sizes; "Math", "Light", "Italic" and the like come last.
    def is_odd(path: Path) -> bool:
        return any(tag in path.stem.lower() for tag in ("math", "light", "oblique", "italic", "condensed"))

    def round_robin(paths: list[Path]) -> list[Path]:
        # One face per family (the name before the first "-") before any family's second face.
        families: dict[str, list[Path]] = {}
        for path in sorted(paths, key=lambda p: p.stem.lower()):
            families.setdefault(path.stem.split("-")[0].lower(), []).append(path)
        depth = max(map(len, families.values()), default=0)
        return [faces[i] for i in range(depth) for faces in families.values() if i < len(faces)]

    unique = set(found)
    spread = round_robin([p for p in unique if not is_odd(p)]) + round_robin([p for p in unique if is_odd(p)])
    return spread if limit is None else spread[:limit]


def _font(path: Path | None, size: int) -> ImageFont.ImageFont:
    if path is not None:
        try:
            return ImageFont.truetype(str(path), size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and draw.textlength(candidate, font=font) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def render_word(word: str, image_size: int, font_path: Path | None, fraction: float, light_on_dark: bool) -> np.ndarray:
    """One centered word as an ``image_size x image_size`` uint8 array."""
    background, ink = (0, 255) if light_on_dark else (255, 0)
    image = Image.new("L", (image_size, image_size), background)
    draw = ImageDraw.Draw(image)
    size = max(MIN_FONT_PIXELS, round(fraction * image_size))
    font = _font(font_path, size)
    # Shrink until the word fits with a one-pixel margin.
    while size > MIN_FONT_PIXELS:
        left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
        if right - left <= image_size - 2 and bottom - top <= image_size - 2:
            break
        size -= 1
        font = _font(font_path, size)
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    position = ((image_size - (right - left)) / 2 - left, (image_size - (bottom - top)) / 2 - top)
    draw.text(position, word, fill=ink, font=font)
    return np.asarray(image)


def render_lines(text: str, image_size: int, font_path: Path | None, fraction: float, light_on_dark: bool) -> np.ndarray:
    """Small text wrapped to the width, as many lines as fit, as an ``image_size x image_size`` uint8 array."""
    background, ink = (0, 255) if light_on_dark else (255, 0)
    image = Image.new("L", (image_size, image_size), background)
    draw = ImageDraw.Draw(image)
    size = max(MIN_FONT_PIXELS, round(fraction * image_size))
    font = _font(font_path, size)
    margin = max(1, image_size // 32)
    line_height = draw.textbbox((0, 0), "Ag", font=font)[3] + max(1, size // 6)
    y = margin
    for line in _wrap(draw, " ".join([text] * 3), font, image_size - 2 * margin):
        if y + line_height > image_size - margin + max(1, size // 6):
            break
        draw.text((margin, y), line, fill=ink, font=font)
        y += line_height
    return np.asarray(image)


def render_text_set(
    image_size: int,
    channels: int = 1,
    num_images: int = 48,
    *,
    fonts: list[Path] | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Render the text set at ``image_size`` (square) with ``channels`` (1 or 3, grey replicated).

    Images alternate ``word`` / ``lines`` (labels 0 / 1) and, every two images, light-on-dark /
    dark-on-light; fonts and sizes cycle. ``fonts`` defaults to `find_fonts` (Pillow's built-in
    font if there is none).
    """
    if image_size < 8:
        raise ValueError(f"text needs images of at least 8 x 8 pixels, got {image_size}")
    if channels not in (1, 3) or num_images < 1:
        raise ValueError(f"need channels in (1, 3) and num_images >= 1, got {channels}, {num_images}")
    font_paths: list[Path | None] = list(fonts if fonts is not None else find_fonts()) or [None]
    rng = random.Random(seed)
    images, labels = [], []
    for i in range(num_images):
        kind = i % 2
        light_on_dark = (i // 2) % 2 == 0
        font = font_paths[(i // 2) % len(font_paths)]
        if kind == 0:
            fraction = WORD_SIZES[(i // 4) % len(WORD_SIZES)]
            array = render_word(rng.choice(WORDS), image_size, font, fraction, light_on_dark)
        else:
            fraction = LINE_SIZES[(i // 4) % len(LINE_SIZES)]
            array = render_lines(rng.choice(LINES), image_size, font, fraction, light_on_dark)
        images.append(torch.from_numpy(array.copy()))
        labels.append(kind)
    stacked = torch.stack(images)[:, None]
    if channels == 3:
        stacked = stacked.expand(-1, 3, -1, -1).contiguous()
    return ImageDataset(stacked, torch.tensor(labels, dtype=torch.int64), list(CLASS_NAMES), "text", "test")

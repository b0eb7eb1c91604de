"""Image grids and PNG files (numpy and Pillow only)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from dcgan_cli.files import write_atomically


def grid(images: np.ndarray, *, cols: int | None = None, min_width: int = 512, padding: int = 1) -> np.ndarray:
    """Tile uint8 images (N, H, W, C) row by row into a grid of `cols` columns (default: near-square) on grey
    separators, enlarged by an integer nearest-neighbour factor so that it is at least `min_width` pixels wide:
    uint8 (rows*(H+p)+p, cols*(W+p)+p, C) times that factor."""
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(f"expected a non-empty uint8 array (N, H, W, C). Received: {images.dtype} {images.shape}")
    n, h, w, c = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), 96, dtype=np.uint8)
    for i, image in enumerate(images):
        top = padding + (i // cols) * (h + padding)
        left = padding + (i % cols) * (w + padding)
        canvas[top:top + h, left:left + w] = image
    factor = max(1, math.ceil(min_width / canvas.shape[1]))
    return canvas.repeat(factor, axis=0).repeat(factor, axis=1)


def label_rows(picture: np.ndarray, names: list[str]) -> np.ndarray:
    """A grid (rows of equal height, as `grid` makes it) with a column on its left that names each row, in
    Pillow's default font on the separators' grey: uint8 (H, label width + W, C)."""
    from PIL import ImageDraw, ImageFont

    height, _, channels = picture.shape
    font = ImageFont.load_default()
    width = 8 + max(int(font.getlength(name)) for name in names)
    column = Image.new("L", (width, height), 96)
    draw = ImageDraw.Draw(column)
    row = height / len(names)
    for i, name in enumerate(names):
        draw.text((width - 4, (i + 0.5) * row), name, fill=255, font=font, anchor="rm")
    strip = np.asarray(column, dtype=np.uint8)[..., None].repeat(channels, axis=-1)  # (H, width, C)
    return np.concatenate([strip, picture], axis=1)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write one uint8 image (H, W, 1 or 3) as a PNG, via a temporary file so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    return write_atomically(path, lambda file: pil.save(file, format="PNG"))


def save_grid(images: np.ndarray, path: str | Path) -> Path:
    """Write uint8 images (N, H, W, C) as one grid PNG."""
    return save_png(grid(images), path)


def save_each(images: np.ndarray, directory: str | Path) -> list[Path]:
    """Write uint8 images (N, H, W, C) as directory/000000.png, 000001.png, ..."""
    width = max(6, len(str(len(images) - 1)))
    return [save_png(image, Path(directory) / f"{i:0{width}d}.png") for i, image in enumerate(images)]


def save_gif(frames: list[np.ndarray], path: str | Path, *, duration_ms: int = 120) -> Path:
    """Write uint8 images (H, W, 1 or 3), one per frame, as an animated GIF that loops forever, atomically."""
    pictures = [Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame) for frame in frames]
    return write_atomically(Path(path), lambda file: pictures[0].save(
        file, format="GIF", save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0))

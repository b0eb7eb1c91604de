"""What every dataset source shares: the Dataset record, DataError, and conversion to square uint8 images."""

from __future__ import annotations

import os
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

RESAMPLE = Image.Resampling.BICUBIC  # antialiased when shrinking, smooth when enlarging


class DataError(ValueError):
    """A dataset that cannot be used as configured; the message names the key, the file or the value."""


@dataclass(frozen=True)
class Dataset:
    """Training images and what is known about where they came from."""

    images: np.ndarray  # uint8 (N, size, size, channels); a read-only memory map for cached folders
    labels: np.ndarray | None  # int64 (N,) class indices, or None when the source has none
    class_names: tuple[str, ...] | None  # the name of each class index, where the source names them
    source: str  # where the images came from, for messages
    cache: Path | None = None  # the decoded-images cache file, when there is one
    held_out: np.ndarray | None = None  # data.holdout: uint8 real images kept out of training (the monitor's)
    held_out_labels: np.ndarray | None = None  # ... and their labels, where the source has them


HOLDOUT_SEED = 20240  # the held-out images are the same for every train.seed, so runs compare alike


def hold_out(dataset: Dataset, count: int) -> Dataset:
    """data.holdout: `dataset` without `count` images chosen at random (a fixed seed), which come back as
    held_out; unchanged for 0. A DataError when too few would be left to train on."""
    if count == 0:
        return dataset
    total = len(dataset.images)
    if count >= total:
        raise DataError(f"data.holdout: holds out every image of the {total:,} there are, leaving none to train on. "
                        f"Received: {count}")
    chosen = np.zeros(total, bool)
    chosen[np.random.default_rng(HOLDOUT_SEED).permutation(total)[:count]] = True
    labels = dataset.labels
    return dataclasses.replace(
        dataset, images=np.asarray(dataset.images)[~chosen], labels=None if labels is None else labels[~chosen],
        held_out=np.asarray(dataset.images)[chosen], held_out_labels=None if labels is None else labels[chosen])


def balanced_indices(labels: np.ndarray, limit: int) -> np.ndarray:
    """data.subset balanced: the sorted indices of `limit` items of a dataset whose classes are `labels` (N,), the
    first of each class in turn, so each of K classes gets limit / K (one more for the first limit mod K classes; a
    class with too few gives all it has)."""
    labels = np.asarray(labels)
    rank = np.empty(len(labels), np.int64)  # each item's place among its class's items
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        rank[where] = np.arange(len(where))
    return np.sort(np.lexsort((labels, rank))[:limit])


def cache_root(cache_dir: str | Path | None) -> Path:
    """Where decoded folders and evaluation caches go: data.cache_dir, else $XDG_CACHE_HOME/dcgan-cli, else
    ~/.cache/dcgan-cli."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dcgan-cli"


def fit_image(image: Image.Image, *, size: int, channels: int) -> np.ndarray:
    """One PIL image as uint8 (size, size, channels): transparency composited on white, converted to grey or RGB,
    the shorter side resized to `size` and the longer one centre-cropped."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), method=RESAMPLE)
    return np.asarray(image, dtype=np.uint8).reshape(size, size, channels)


def fit_array(images: np.ndarray, *, size: int, channels: int) -> np.ndarray:
    """uint8 (N, H, W, C) with C in 1, 3, 4 as uint8 (N, size, size, channels), like fit_image for each."""
    n, h, w, c = images.shape
    if (h, w) == (size, size) and c == channels:
        return images
    if (h, w) == (size, size) and (c, channels) == (1, 3):
        return np.repeat(images, 3, axis=-1)
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    out = np.empty((n, size, size, channels), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[..., 0] if c == 1 else image, mode=modes[c])
        out[i] = fit_image(pil, size=size, channels=channels)
    return out


def to_uint8(array: np.ndarray, *, source: str) -> np.ndarray:
    """An image array (N, H, W) or (N, H, W, C) with C in 1, 3, 4 as uint8 (N, H, W, C).

    uint8 is kept; other integers must lie in [0, 255]; floats in [0, 1] are scaled by 255, in [-1, 1] mapped
    from the tanh range, and in [0, 255] rounded.
    """
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4) or len(array) == 0:
        raise DataError(f"{source}: expected images shaped (N, H, W) or (N, H, W, C) with C 1, 3 or 4. "
                        f"Received: shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{source}: expected integer or float pixels. Received: dtype {array.dtype}")
    low, high = float(array.min()), float(array.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise DataError(f"{source}: the pixels include NaN or infinity. Received: range [{low}, {high}]")
    if np.issubdtype(array.dtype, np.floating) and low >= 0 and high <= 1:
        scaled = array * 255.0
    elif np.issubdtype(array.dtype, np.floating) and low >= -1 and high <= 1:
        scaled = (array + 1.0) * 127.5
    elif low >= 0 and high <= 255:
        scaled = array
    else:
        raise DataError(f"{source}: expected pixels in [0, 1], [-1, 1] or [0, 255]. "
                        f"Received: range [{low:g}, {high:g}]")
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)

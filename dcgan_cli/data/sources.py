"""Datasets as uint8 arrays (N, image_size, image_size, channels), and random batches drawn from them.

Images stay uint8 in memory (or memory-mapped from the folder cache): N x H x W x C bytes. Each batch is converted
to the model range only when it is drawn (hack 7, in the training loop).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from dcgan_cli.config import Config
from dcgan_cli.data import arrays, folder, keras_sets
from dcgan_cli.data.common import DataError, Dataset, balanced_indices, fit_array, hold_out, to_uint8
from dcgan_cli.files import to_stderr

__all__ = ["DataError", "Dataset", "load_dataset", "probe_labels", "batch_indices", "sample_batch", "describe"]

DIGITS = "scikit-learn digits"
ALWAYS_LABELLED = ("digits",)  # sources whose labels are known to exist without reading anything


def probe_labels(cfg: Config) -> bool | None:
    """Whether the configured data has class labels (of at least two classes), told without decoding or loading
    any image: a folder from its file names (every image in a first-level subfolder), the embedded digits always,
    an .npy never; None where only loading the data tells (an .npz, local or downloaded MNIST and CIFAR-10)."""
    d = cfg.data
    if d.name == "folder":
        return len(folder.class_folders(folder.listed(d.path, limit=d.limit, subset=d.subset)[1])) >= 2
    if d.name in ALWAYS_LABELLED:
        return True
    return False if d.name == "npy" else None


def load_dataset(cfg: Config, *, progress: bool = True, log: Callable[[str], None] = to_stderr) -> Dataset:
    """The configured dataset, sized to the model, limited to data.limit images (data.subset: the first, or as
    many of each class), with labels where it has them."""
    d, m = cfg.data, cfg.model
    if d.labels and probe_labels(cfg) is False:
        raise DataError(_no_labels(str(d.path)))
    if d.name == "folder":
        dataset = folder.load(d.path, size=m.image_size, channels=m.channels, limit=d.limit, cache_dir=d.cache_dir,
                              progress=progress, log=log, subset=d.subset)
    elif d.name == "digits":
        images, labels = _fitted_digits(m.image_size, m.channels)
        chosen = _chosen(labels, cfg, source=DIGITS)
        dataset = Dataset(images=images[chosen], labels=labels[chosen], class_names=None, source=DIGITS)
    else:
        raw, labels, source = _arrays(cfg)
        if labels is not None:
            labels = np.asarray(labels).reshape(-1).astype(np.int64)
            if len(labels) != len(raw):
                raise DataError(f"{source}: {len(raw)} images but {len(labels)} labels. Received: {d.path!r}")
        chosen = _chosen(labels, cfg, source=source)
        raw = to_uint8(raw[chosen], source=source)
        labels = None if labels is None else labels[chosen]
        images = fit_array(raw, size=m.image_size, channels=m.channels)
        dataset = Dataset(images=images, labels=labels, class_names=None, source=source)
    if d.labels and dataset.labels is None:
        raise DataError(_no_labels(dataset.source))
    return hold_out(dataset, d.holdout)


def _chosen(labels: np.ndarray | None, cfg: Config, *, source: str):
    """Which images of an array source data.limit and data.subset keep: a slice of the first, or balanced indices."""
    d = cfg.data
    if d.subset == "first" or d.limit is None:
        return slice(d.limit)
    if labels is None:
        raise DataError(f"data.subset: balanced needs class labels to balance, and {source} has none; use first. "
                        "Received: 'balanced'")
    return balanced_indices(labels, d.limit)


def _no_labels(source: str) -> str:
    return (f"data.labels: {source} has no class labels (a folder needs one subfolder per class, at least two; an "
            ".npz needs an array 'y'); to train without classes, set data.labels=false and, where it is on, "
            "hacks.class_conditional=false. Received: True")


@functools.lru_cache(maxsize=4)
def _fitted_digits(size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The embedded digits as read-only uint8 (1797, size, size, channels) and their labels (1797,): a process that
    trains several runs (an ablation worker, the tests) decodes and resizes them once."""
    from sklearn.datasets import load_digits

    bunch = load_digits()  # 1,797 images of 8x8, 17 grey levels 0..16
    raw = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    images = fit_array(raw, size=size, channels=channels)  # (1797, size, size, channels)
    labels = bunch.target.astype(np.int64)  # (1797,)
    for array in (images, labels):
        array.flags.writeable = False
    return images, labels


def _arrays(cfg: Config) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Raw images (any dtype, (N, H, W[, C])), labels or None, and the source's description."""
    d = cfg.data
    if d.name == "npy":
        return arrays.load_npy(_existing(d.path)), None, d.path
    if d.name == "npz":
        return (*arrays.load_npz(_existing(d.path)), d.path)
    return keras_sets.load(d.name, d.path)


def _existing(path: str) -> Path:
    """The file at `path`, or a DataError naming it."""
    found = Path(path).expanduser()
    if not found.is_file():
        raise DataError(f"data.path: no such file. Received: {path!r}")
    return found


def batch_indices(count: int, batch_size: int, rng):
    """The sorted indices of one batch drawn with replacement from `count` images, (batch_size,): a NumPy array
    from a NumPy Generator, an int32 tensor from a step's device draws (draws.StepRandom)."""
    drawn = rng.integers(0, count, batch_size)
    return np.sort(drawn) if isinstance(drawn, np.ndarray) else keras.ops.sort(drawn)


def sample_batch(images: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A batch of uint8 images drawn at random indices (with replacement): (batch_size, H, W, C)."""
    return images[batch_indices(len(images), batch_size, rng)]


def describe(dataset: Dataset) -> list[str]:
    """What a user checks first when samples look wrong: count, shape, dtype, range, memory, cache, labels."""
    images = dataset.images
    low, high = 255, 0
    for start in range(0, len(images), 8192):
        block = np.asarray(images[start:start + 8192])
        low, high = min(low, int(block.min())), max(high, int(block.max()))
    lines = [
        f"source:      {dataset.source}",
        f"images:      {len(images):,}",
        f"shape:       {images.shape} {images.dtype}",
        f"value range: {low} .. {high}",
        f"memory:      {images.nbytes / 2**20:,.1f} MiB (N x H x W x C bytes)"
        + (", memory-mapped" if isinstance(images, np.memmap) else ""),
        f"cache:       {dataset.cache if dataset.cache is not None else 'none (decoded on every run)'}",
    ]
    if dataset.labels is None:
        lines.append("labels:      none")
    else:
        counts = np.bincount(dataset.labels)
        names = dataset.class_names or tuple(str(i) for i in range(len(counts)))
        lines.append(f"labels:      {len(counts)} classes: "
                     + ", ".join(f"{name} {count:,}" for name, count in zip(names, counts)))
    return lines

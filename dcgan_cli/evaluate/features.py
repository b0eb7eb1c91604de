"""What the feature spaces share: their names and primary scores, the error type, the identity of a dataset,
batched feature extraction into a Summary, and the cache of real-data summaries.

An extractor is any callable uint8 images (B, H, W, C) -> (features (B, D), class probabilities (B, K) or None):
the domain classifier (class labels), the rotation network (no labels) and the standard FID network, each
with a `batch_size`, the most images it is given at once (what bounds its memory).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from dcgan_cli.data.common import Dataset
from dcgan_cli.evaluate.stats import FeatureStats, Summary
from dcgan_cli.files import exclusive, write_atomically

KEEP = 10_000  # feature vectors kept per set for KID and precision/recall; the mean and covariance use all
REAL_LIMIT = 50_000  # real images in a reference: all of them up to this many, from a fixed shuffle
PRIMARY = {"domain": "frechet_distance", "rotation": "frechet_distance", "fid": "fid"}  # lower is better:
#                                       what checkpoints/best keeps and what an ablation compares
SCORE_NAMES = {"frechet_distance": ("Frechet distance", "FD"), "kid": ("KID", "KID"), "fid": ("FID", "FID")}  # long,
#                                       short
EVAL_LOGGED = ("frechet_distance", "fid", "kid", "modes_covered", "classes", "class_kl", "mean_confidence", "ndb",
               "bins", "ndb_k", "bins_covered", "precision", "recall")  # what metrics.jsonl keeps of a score


def coverage(scores: dict) -> str:
    """What a score says of the modes covered: '10/10 modes' (a classifier's classes), '18/20 bins covered' (NDB's
    bins), or '' where it says neither."""
    if "modes_covered" in scores:
        return f"{scores['modes_covered']}/{scores['classes']} modes"
    return f"{scores['bins_covered']}/{scores['bins']} bins covered" if "bins_covered" in scores else ""


class EvaluationError(ValueError):
    """A scoring request that cannot be met as asked; the message names the option, file or value."""


def dataset_key(dataset: Dataset) -> str:
    """A hash of the dataset's content (every pixel, the shape and the labels): caches built from the real data
    are valid exactly as long as it is unchanged."""
    digest = hashlib.sha256(json.dumps(list(dataset.images.shape)).encode())
    for start in range(0, len(dataset.images), 8192):
        digest.update(np.ascontiguousarray(dataset.images[start:start + 8192]).tobytes())
    if dataset.labels is not None:
        digest.update(np.ascontiguousarray(dataset.labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:20]


def key_seed(key: str) -> int:
    """A dataset key as a seed: whatever is drawn for a dataset (splits, shuffles, initial weights) is the same on
    every run and machine."""
    return int(key[:16], 16)


def real_order(count: int, key: str) -> np.ndarray:
    """The real images a reference uses: a shuffle fixed by the dataset's key, cut at REAL_LIMIT."""
    return np.random.default_rng(key_seed(key)).permutation(count)[:REAL_LIMIT]


def image_batches(images: np.ndarray, order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """images[order] as uint8 batches, read one batch at a time (the array may be memory-mapped)."""
    for start in range(0, len(order), batch_size):
        yield np.asarray(images[np.sort(order[start:start + batch_size])])


def summarise(extract: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]],
              batches: Iterable[np.ndarray], *, batch_size: int, total: int, progress: bool,
              description: str) -> Summary:
    """Run `extract` over uint8 image batches, at most `batch_size` images at a time (its memory stays bounded,
    whatever size the batches come in), and summarise the features: running mean and covariance, the first KEEP
    vectors, and the top-class histogram and confidence where the extractor gives class probabilities."""
    stats = FeatureStats(keep=KEEP)
    histogram, confidence_sum = None, 0.0
    with tqdm(total=total, desc=description, unit="img", disable=not progress, dynamic_ncols=True,
              leave=False) as bar:
        for batch in batches:
            for start in range(0, len(batch), batch_size):
                features, probabilities = extract(batch[start:start + batch_size])
                stats.add(features)
                if probabilities is not None:
                    top = probabilities.argmax(axis=1)
                    counts = np.bincount(top, minlength=probabilities.shape[1])
                    histogram = counts if histogram is None else histogram + counts
                    confidence_sum += float(probabilities.max(axis=1).sum())
            bar.update(len(batch))
    if stats.count < 2:
        raise EvaluationError(f"scores need at least 2 images. Received: {stats.count}")
    return Summary(count=stats.count, mean=stats.mean, covariance=stats.covariance, kept=stats.kept,
                   histogram=histogram, confidence_sum=confidence_sum)


def save_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write arrays and a JSON record into one .npz, whole or not at all (a cache shared by parallel runs is
    never seen half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda file: np.savez(file, meta=np.array(json.dumps(meta)), **arrays))


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """The arrays and JSON record of a cache file, or None when it is missing or unreadable (then rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in saved.files}
        return arrays, json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def cached_summary(path: Path, make: Callable[[], Summary], meta: dict) -> Summary:
    """The real-data summary cached at `path`, or `make()` it and cache it (once, when runs ask at the same time)."""
    with exclusive(path):
        found = load_arrays(path)
        if found is not None:
            return Summary.from_arrays(found[0])
        summary = make()
        save_arrays(path, summary.to_arrays(), meta)
        return summary

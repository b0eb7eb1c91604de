"""Rotation features: a feature space learned from the real images alone, with no labels (Gidaris et al. 2018).

The network of network.py learns a self-supervised pretext task: which of 0, 90, 180 and 270 degrees an image was
turned by. To tell, it has to learn what the images show and which way up it stands, and its 128-d penultimate
layer becomes the feature space of the Frechet distance, precision and recall and the NDB bins of any dataset,
labelled or not. It trains on the four turns of a fixed 85% of the real images and is tested on the other 15%
(the rotation accuracy comes with every score; chance is 25%), once per dataset, cached like the domain classifier.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from dcgan_cli.data.common import Dataset, cache_root
from dcgan_cli.evaluate import network
from dcgan_cli.evaluate.domain import split
from dcgan_cli.evaluate.features import (EvaluationError, cached_summary, dataset_key, image_batches, key_seed,
                                         real_order, summarise)
from dcgan_cli.evaluate.stats import Summary
from dcgan_cli.files import to_stderr

VERSION = 1  # bump when the architecture or training changes, so old caches are not reused
TURNS = 4  # 0, 90, 180 and 270 degrees
TURNED_SEEN = 80_000  # training length: about this many turned images, as whole epochs ...
MIN_EPOCHS, MAX_EPOCHS = 2, 30  # ... but at least and at most this many
MIN_IMAGES = 20  # fewer real images than this cannot train it


@dataclass(frozen=True)
class RotationFeatures:
    """The trained rotation network as an extractor: uint8 images (B, H, W, C) -> (features (B, 128), None), with
    its held-out rotation accuracy and the real images' summary in its feature space."""

    model: keras.Model
    accuracy: float
    held_out: int
    epochs: int
    seconds: float
    real: Summary
    cache: Path
    batch_size: int = network.PREDICT_BATCH

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, None]:
        return network.predict(self.model, images)[0], None

    def describe(self) -> str:
        return (f"rotation features: the {network.FEATURES}-d penultimate layer of a CNN trained without labels to "
                f"tell how the real images were turned (rotation accuracy {self.accuracy:.1%} on "
                f"{self.held_out:,} held-out images; chance 25%)")


def turned(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each square image (B, H, W, C) turned by 0, 90, 180 and 270 degrees counter-clockwise: (4B, H, W, C), the
    four turns of an image side by side, and the number of quarter turns of each (4B,)."""
    stacked = np.stack([np.rot90(images, k, axes=(1, 2)) for k in range(TURNS)], axis=1)  # (B, 4, H, W, C)
    return stacked.reshape(-1, *images.shape[1:]), np.tile(np.arange(TURNS), len(images))


def load_or_train(dataset: Dataset, *, cache_dir: str | Path | None, progress: bool,
                  log: Callable[[str], None] = to_stderr) -> RotationFeatures:
    """The rotation network of this dataset's images (labels play no part), from the cache or trained now."""
    images = dataset.images
    if len(images) < MIN_IMAGES:
        raise EvaluationError(f"rotation features need at least {MIN_IMAGES} real images to learn from. "
                              f"Received: {len(images)} in {dataset.source}")
    key = dataset_key(dataclasses.replace(dataset, labels=None))
    path = cache_root(cache_dir) / f"rotation-v{VERSION}-{key}.npz"
    rng = np.random.default_rng([key_seed(key), 2])
    trainer, model = network.build(images.shape[1:], TURNS, rng, name="rotation_network")
    record = network.cached(path, trainer,
                            lambda: _train(trainer, dataset, key, rng, path=path, progress=progress, log=log),
                            {"version": VERSION, "source": dataset.source, "shape": list(images.shape)})
    order = real_order(len(images), key)
    real = cached_summary(path.with_name(f"{path.stem}-real.npz"), lambda: summarise(
        lambda batch: (network.predict(model, batch)[0], None), image_batches(images, order, network.PREDICT_BATCH),
        batch_size=network.PREDICT_BATCH, total=len(order), progress=progress, description="real rotation features"),
        {"source": dataset.source, "images": len(order)})
    return RotationFeatures(model=model, accuracy=record["accuracy"], held_out=record["held_out"],
                            epochs=record["epochs"], seconds=record["seconds"], real=real, cache=path)


def _train(trainer: keras.Model, dataset: Dataset, key: str, rng: np.random.Generator, *, path: Path,
           progress: bool, log: Callable[[str], None]) -> dict:
    """Train on the four turns of the split's 85% of the images, each batch holding whole sets of four; return the
    record: the rotation accuracy on the other 15%'s turns, their number, the epochs and the seconds taken."""
    images = dataset.images
    train, test = split(len(images), key)
    per_batch = network.TRAIN_BATCH // TURNS
    epochs = network.epochs_for(TURNED_SEEN, TURNS * len(train), low=MIN_EPOCHS, high=MAX_EPOCHS)
    log(f"training the rotation network on the 4 turns of {len(train):,} of {len(images):,} images of "
        f"{dataset.source} ({epochs} epochs, no labels, once per dataset)")
    started = time.perf_counter()

    def batches():
        for _ in range(epochs):
            shuffled = rng.permutation(train)
            for start in range(0, len(shuffled), per_batch):
                yield turned(np.asarray(images[np.sort(shuffled[start:start + per_batch])]))

    network.fit(trainer, batches(), steps=epochs * math.ceil(len(train) / per_batch), progress=progress,
                description="rotation network")
    held_images, held_turns = turned(np.asarray(images[np.sort(test)]))
    accuracy = network.correct(trainer, held_images, held_turns) / len(held_images)
    seconds = time.perf_counter() - started
    log(f"rotation network: held-out rotation accuracy {accuracy:.1%} on {len(test):,} images' turns (chance 25%), "
        f"trained in {seconds:.1f} s; cached in {path}")
    return {"accuracy": accuracy, "held_out": len(test), "epochs": epochs, "seconds": round(seconds, 1)}

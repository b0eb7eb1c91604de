"""Domain features: the network of network.py trained once as a classifier of the real images' class labels.

Its 128-d penultimate layer is the feature space of the domain Frechet distance and of precision and recall; its
class predictions give the modes covered, the class-histogram KL and the mean confidence. It trains on a fixed 85%
of the real images and is tested on the other 15%, which it never sees. Where that held-out accuracy stays below
HARD_ACCURACY (colour photos: CIFAR-10 reaches about 55% this way), it trains on, longer and on shifted images.
Scores are refused when the classifier is too close to chance (output.eval_min_skill): one that cannot tell the
classes apart cannot say whether a generator covers them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
from scipy import stats

from dcgan_cli.data.common import Dataset, cache_root
from dcgan_cli.evaluate import network
from dcgan_cli.evaluate.features import (EvaluationError, cached_summary, dataset_key, image_batches, key_seed,
                                         real_order, summarise)
from dcgan_cli.evaluate.stats import Summary
from dcgan_cli.files import to_stderr

VERSION = 2  # bump when the architecture or training changes, so old caches are not reused
HELD_OUT_SHARE = 0.15  # share of the real images kept out of training to measure the accuracy
IMAGES_SEEN = 40_000  # training length: about this many images, as whole epochs ...
MIN_EPOCHS, MAX_EPOCHS = 2, 30  # ... but at least and at most this many
HARD_ACCURACY = 0.9  # below this held-out accuracy, train on: ...
HARD_IMAGES_SEEN = 250_000  # ... about this many more images (at most MAX_EPOCHS more epochs) ...
SHIFT = 1 / 8  # ... each moved by up to this share of the side (4 pixels at 32x32)
CONFIDENCE = 0.95  # the skill floor is applied to the lower end of this interval of the held-out accuracy


@dataclass(frozen=True)
class DomainFeatures:
    """The trained classifier as an extractor: uint8 images (B, H, W, C) -> (features (B, 128), probabilities
    (B, K)), with its held-out accuracy, the chance level it is measured against, and the real images' summary."""

    model: keras.Model
    accuracy: float
    held_out: int
    chance: float  # the share of the largest class among the held-out images: what always guessing it scores
    epochs: int
    seconds: float
    class_names: tuple[str, ...]
    real: Summary
    cache: Path
    batch_size: int = network.PREDICT_BATCH

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return network.predict(self.model, images)

    def describe(self) -> str:
        return (f"domain features: the {network.FEATURES}-d penultimate layer of a CNN classifier trained on the "
                f"real images (held-out accuracy {self.accuracy:.1%} on {self.held_out:,} images)")

    def skill(self) -> float:
        """How far the held-out accuracy's lower confidence bound lies from chance toward 100%: 0 at chance, 1 for
        a perfect classifier (Cohen's kappa against always guessing the largest class); a small held-out set
        needs a higher accuracy for the same skill."""
        hits = round(self.accuracy * self.held_out)
        low = stats.binomtest(hits, self.held_out).proportion_ci(CONFIDENCE, method="exact").low
        return (low - self.chance) / max(1.0 - self.chance, 1e-12)

    def check(self, *, min_accuracy: float, min_skill: float) -> None:
        """Refuse to score with a classifier below either floor, naming the key."""
        if self.accuracy < min_accuracy:
            raise EvaluationError(
                f"output.eval_min_accuracy: the domain classifier reaches only {self.accuracy:.1%} held-out "
                f"accuracy on this dataset, below the floor of {min_accuracy:.0%}; lower it with --set "
                f"output.eval_min_accuracy=..., or score in rotation features (--features rotation, no labels "
                f"needed). Received: {min_accuracy}")
        skill = self.skill()
        if skill < min_skill:
            raise EvaluationError(
                f"output.eval_min_skill: the domain classifier's held-out accuracy, {self.accuracy:.1%} on "
                f"{self.held_out:,} images, is too close to chance ({self.chance:.1%}, the largest class): its skill "
                f"(the accuracy's {CONFIDENCE:.0%} lower bound, from chance at 0 to perfect at 1) is {skill:.2f}, "
                f"below the floor of {min_skill:g}, so its classes say little about a generator's; check that the "
                f"subfolders are classes, or score in rotation features (--features rotation, no labels needed). "
                f"Received: {min_skill}")


def split(count: int, key: str) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's fixed (training, held-out) split of `count` images, as index arrays, from the dataset key."""
    order = np.random.default_rng([key_seed(key), 1]).permutation(count)
    held_out = max(1, round(HELD_OUT_SHARE * count))
    return order[held_out:], order[:held_out]


def load_or_train(dataset: Dataset, *, cache_dir: str | Path | None, progress: bool,
                  log: Callable[[str], None] = to_stderr) -> DomainFeatures:
    """The domain classifier of this dataset, from the cache or trained now (and cached)."""
    if dataset.labels is None:
        raise EvaluationError(f"domain features need class labels, and {dataset.source} has none (a folder needs "
                              "one subfolder per class; an .npz an array 'y'); score with --features rotation "
                              "(no labels needed) or fid. Received: features domain")
    key = dataset_key(dataset)
    path = cache_root(cache_dir) / f"domain-v{VERSION}-{key}.npz"
    classes = int(dataset.labels.max()) + 1
    if classes < 2:
        raise EvaluationError(f"domain features need at least 2 classes. Received: {classes} in {dataset.source}")
    rng = np.random.default_rng(key_seed(key))
    trainer, model = network.build(dataset.images.shape[1:], classes, rng, name="domain_classifier")
    names = dataset.class_names or tuple(str(i) for i in range(classes))
    record = network.cached(path, trainer,
                            lambda: _train(trainer, dataset, key, rng, path=path, progress=progress, log=log),
                            {"version": VERSION, "source": dataset.source, "shape": list(dataset.images.shape)})
    order = real_order(len(dataset.images), key)
    real = cached_summary(path.with_name(f"{path.stem}-real.npz"), lambda: summarise(
        lambda images: network.predict(model, images),
        image_batches(dataset.images, order, network.PREDICT_BATCH), batch_size=network.PREDICT_BATCH,
        total=len(order), progress=progress, description="real features"),
        {"source": dataset.source, "images": len(order)})
    return DomainFeatures(model=model, accuracy=record["accuracy"], held_out=record["held_out"],
                          chance=record["chance"], epochs=record["epochs"], seconds=record["seconds"],
                          class_names=names, real=real, cache=path)


def _train(trainer: keras.Model, dataset: Dataset, key: str, rng: np.random.Generator, *, path: Path,
           progress: bool, log: Callable[[str], None]) -> dict:
    """Train on the split's 85% of the images (longer and on shifted images where the data proves hard); return
    the record: accuracy on the other 15%, their number, the chance level, the epochs and the seconds taken."""
    images, labels = dataset.images, dataset.labels
    train, test = split(len(images), key)
    test = np.sort(test)
    held_images, held_labels = np.asarray(images[test]), labels[test]
    epochs = network.epochs_for(IMAGES_SEEN, len(train), low=MIN_EPOCHS, high=MAX_EPOCHS)
    log(f"training the domain classifier on {len(train):,} of {len(images):,} images of {dataset.source} "
        f"({epochs} epochs, once per dataset)")
    started = time.perf_counter()
    train_epochs(trainer, images, labels, train, rng, epochs=epochs, shift=0, progress=progress)
    accuracy = network.correct(trainer, held_images, held_labels) / len(test)
    if accuracy < HARD_ACCURACY:
        more = network.epochs_for(HARD_IMAGES_SEEN, len(train), low=MIN_EPOCHS, high=MAX_EPOCHS)
        log(f"domain classifier: {accuracy:.1%} held-out accuracy after {epochs} epochs, below "
            f"{HARD_ACCURACY:.0%}; training {more} more epochs on shifted images")
        shift = max(1, round(SHIFT * images.shape[1]))
        train_epochs(trainer, images, labels, train, rng, epochs=more, shift=shift, progress=progress)
        accuracy, epochs = network.correct(trainer, held_images, held_labels) / len(test), epochs + more
    seconds = time.perf_counter() - started
    chance = float(np.bincount(held_labels).max() / len(test))
    log(f"domain classifier: held-out accuracy {accuracy:.1%} on {len(test):,} images (chance {chance:.1%}) "
        f"after {epochs} epochs, trained in {seconds:.1f} s; cached in {path}")
    return {"accuracy": accuracy, "held_out": len(test), "chance": chance, "epochs": epochs,
            "seconds": round(seconds, 1)}


def train_epochs(trainer: keras.Model, images: np.ndarray, labels: np.ndarray, train: np.ndarray,
                 rng: np.random.Generator, *, epochs: int, shift: int, progress: bool) -> None:
    """`epochs` passes over the training indices in shuffled batches, each image moved by up to `shift` pixels."""
    def batches():
        for _ in range(epochs):
            shuffled = rng.permutation(train)
            for start in range(0, len(shuffled), network.TRAIN_BATCH):
                index = np.sort(shuffled[start:start + network.TRAIN_BATCH])
                x = np.asarray(images[index])
                yield (network.shifted(x, rng, most=shift) if shift else x), labels[index]

    network.fit(trainer, batches(), steps=epochs * math.ceil(len(train) / network.TRAIN_BATCH), progress=progress,
                description="domain classifier")

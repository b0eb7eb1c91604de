"""Domain features: a small CNN classifier trained once on the real, labelled images, then cached.

Its 128-d penultimate layer is the feature space of the domain Frechet distance and of precision and recall; its
class predictions give the modes covered, the class-histogram KL and the mean confidence. It trains on a fixed 85%
of the real images and is tested on the other 15%, which it never sees; scores are refused below a floor
(output.eval_min_accuracy), since a classifier that cannot tell the classes apart cannot say whether a generator
covers them. The cache (data.cache_dir) holds its weights and the real images' summary, keyed by the dataset's
content, so it is trained once per dataset and image size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
from keras import layers
from tqdm import tqdm

from dcgan_cli.datasets.common import Dataset, cache_root
from dcgan_cli.evaluate.features import (EvaluationError, cached_summary, dataset_key, image_batches, key_seed,
                                         load_arrays, real_order, save_arrays, summarise)
from dcgan_cli.evaluate.stats import Summary
from dcgan_cli.files import exclusive, to_stderr

VERSION = 1  # bump when the architecture or training changes, so old caches are not reused
HELD_OUT_SHARE = 0.15  # share of the real images kept out of training to measure the accuracy
BATCH_SIZE = 128  # training batch
IMAGES_SEEN = 40_000  # training length: about this many images, as whole epochs ...
MIN_EPOCHS, MAX_EPOCHS = 2, 30  # ... but at least and at most this many
LEARNING_RATE = 1e-3  # Adam
FEATURES = 128  # width of the penultimate layer: the feature space
PREDICT_BATCH = 500  # images per inference call
MAX_FILTERS = 128  # cap on the doubled filter counts


@dataclass(frozen=True)
class DomainFeatures:
    """The trained classifier as an extractor: uint8 images (B, H, W, C) -> (features (B, 128), probabilities
    (B, K)), with its held-out accuracy and the real images' summary in its feature space."""

    model: keras.Model
    accuracy: float
    held_out: int
    class_names: tuple[str, ...]
    real: Summary
    cache: Path
    batch_size: int = PREDICT_BATCH

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _predict(self.model, images)

    def describe(self) -> str:
        return (f"domain features: the {FEATURES}-d penultimate layer of a CNN classifier trained on the real "
                f"images (held-out accuracy {self.accuracy:.1%} on {self.held_out:,} images)")

    def check(self, floor: float) -> None:
        """Refuse to score with a classifier below the accuracy floor."""
        if self.accuracy < floor:
            raise EvaluationError(
                f"output.eval_min_accuracy: the domain classifier reaches only {self.accuracy:.1%} held-out "
                f"accuracy on this dataset, below the floor of {floor:.0%}, so its scores would not mean much; "
                f"lower the floor with --set output.eval_min_accuracy=..., or score in Inception features "
                f"(dcgan evaluate --features inception). Received: {floor}")


def build_classifier(shape: tuple[int, int, int], classes: int,
                     rng: np.random.Generator) -> tuple[keras.Model, keras.Model]:
    """The classifier for images of `shape` (H, W, C) with pixels 0..255 as float: one 3x3 convolution and 2x2
    max-pooling per halving while the side exceeds 7, filters 32 doubling to 128, then Dense 128 (the features)
    and a softmax over `classes`. Returns (training model -> probabilities, model -> [features, probabilities])."""
    def seed() -> int:
        return int(rng.integers(2**31 - 1))

    side, filters = shape[0], 32
    image = keras.Input(shape, name="image")  # (N, H, W, C), pixels 0..255
    x = layers.Rescaling(1.0 / 255.0, name="scale")(image)  # (N, H, W, C) in [0, 1]
    block = 0
    while side > 7:
        block += 1
        x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                          kernel_initializer=keras.initializers.HeNormal(seed()),
                          name=f"conv{block}")(x)  # (N, side, side, filters)
        x = layers.MaxPooling2D(2, name=f"pool{block}")(x)  # (N, side/2, side/2, filters)
        side, filters = side // 2, min(filters * 2, MAX_FILTERS)
    x = layers.Flatten(name="flatten")(x)  # (N, side*side*filters)
    features = layers.Dense(FEATURES, activation="relu", kernel_initializer=keras.initializers.HeNormal(seed()),
                            name="features")(x)  # (N, 128)
    dropped = layers.Dropout(0.3, seed=seed(), name="dropout")(features)  # (N, 128), training only
    probabilities = layers.Dense(classes, activation="softmax", name="classes",
                                 kernel_initializer=keras.initializers.GlorotUniform(seed()))(dropped)  # (N, classes)
    trainer = keras.Model(image, probabilities, name="domain_classifier")
    trainer.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="sparse_categorical_crossentropy")
    return trainer, keras.Model(image, [features, probabilities], name="domain_features")


def _predict(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features, probabilities = model.predict_on_batch(np.asarray(images, dtype=np.float32))
    return np.asarray(features), np.asarray(probabilities)


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
                              "one subfolder per class; an .npz an array 'y'); score with --features inception. "
                              "Received: features domain")
    key = dataset_key(dataset)
    path = cache_root(cache_dir) / f"domain-v{VERSION}-{key}.npz"
    classes = int(dataset.labels.max()) + 1
    if classes < 2:
        raise EvaluationError(f"domain features need at least 2 classes. Received: {classes} in {dataset.source}")
    rng = np.random.default_rng(key_seed(key))
    trainer, model = build_classifier(dataset.images.shape[1:], classes, rng)
    names = dataset.class_names or tuple(str(i) for i in range(classes))
    with exclusive(path):  # parallel runs train it once; the others wait for the cached weights
        found = load_arrays(path)
        if found is not None:
            arrays, meta = found
            for i, variable in enumerate(trainer.weights):
                variable.assign(arrays[f"weights/{i:04d}"])
            accuracy, held_out = meta["accuracy"], meta["held_out"]
        else:
            accuracy, held_out = _train(trainer, dataset, key, rng, progress=progress, log=log)
            arrays = {f"weights/{i:04d}": v.numpy() for i, v in enumerate(trainer.weights)}
            save_arrays(path, arrays, {"version": VERSION, "accuracy": accuracy, "held_out": held_out,
                                       "source": dataset.source, "shape": list(dataset.images.shape)})
            log(f"domain classifier: held-out accuracy {accuracy:.1%} on {held_out:,} images; cached in {path}")
    order = real_order(len(dataset.images), key)
    real = cached_summary(path.with_name(f"{path.stem}-real.npz"), lambda: summarise(
        lambda images: _predict(model, images), image_batches(dataset.images, order, PREDICT_BATCH),
        batch_size=PREDICT_BATCH, total=len(order), progress=progress, description="real features"),
        {"source": dataset.source, "images": len(order)})
    return DomainFeatures(model=model, accuracy=accuracy, held_out=held_out, class_names=names, real=real,
                          cache=path)


def _train(trainer: keras.Model, dataset: Dataset, key: str, rng: np.random.Generator, *, progress: bool,
           log: Callable[[str], None]) -> tuple[float, int]:
    """Train on the split's 85% of the images; return the accuracy on the other 15% and their number."""
    images, labels = dataset.images, dataset.labels
    train, test = split(len(images), key)
    held_out = len(test)
    epochs = int(np.clip(math.ceil(IMAGES_SEEN / max(len(train), 1)), MIN_EPOCHS, MAX_EPOCHS))
    log(f"training the domain classifier on {len(train):,} of {len(images):,} images of {dataset.source} "
        f"({epochs} epochs, once per dataset)")
    started = time.perf_counter()
    steps = epochs * math.ceil(len(train) / BATCH_SIZE)
    with tqdm(total=steps, desc="domain classifier", unit="step", disable=not progress, dynamic_ncols=True,
              leave=False) as bar:
        for _ in range(epochs):
            shuffled = rng.permutation(train)
            for start in range(0, len(shuffled), BATCH_SIZE):
                index = np.sort(shuffled[start:start + BATCH_SIZE])
                trainer.train_on_batch(np.asarray(images[index], dtype=np.float32), labels[index])
                bar.update(1)
    correct = 0
    for start in range(0, held_out, PREDICT_BATCH):
        index = np.sort(test[start:start + PREDICT_BATCH])
        predicted = np.asarray(trainer.predict_on_batch(np.asarray(images[index], dtype=np.float32))).argmax(axis=1)
        correct += int((predicted == labels[index]).sum())
    log(f"domain classifier trained in {time.perf_counter() - started:.1f} s")
    return correct / held_out, held_out

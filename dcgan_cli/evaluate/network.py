"""The small CNN of both learned feature spaces, its training on the real images, and its cache.

The domain classifier (domain.py: class labels) and the rotation network (rotation.py: no labels, a self-supervised
pretext task) are this one network with another softmax head and other targets. Its 128-d penultimate layer is the
feature space; it is trained once per dataset and cached in data.cache_dir under a name keyed by the dataset's
content, so a changed dataset gets a new one and parallel runs share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import keras
import numpy as np
from keras import layers
from tqdm import tqdm

from dcgan_cli.evaluate.features import load_arrays, save_arrays
from dcgan_cli.files import exclusive

FEATURES = 128  # width of the penultimate layer: the feature space
MAX_FILTERS = 128  # cap on the doubled filter counts
TRAIN_BATCH = 128  # images per training step
PREDICT_BATCH = 500  # images per inference call
LEARNING_RATE = 1e-3  # Adam
DROPOUT = 0.3  # between the features and the head, in training only


def build(shape: tuple[int, int, int], outputs: int, rng: np.random.Generator, *,
          name: str) -> tuple[keras.Model, keras.Model]:
    """The network for images of `shape` (H, W, C) with pixels 0..255 as float: one 3x3 convolution and 2x2
    max-pooling per halving while the side exceeds 7, filters 32 doubling to 128, then Dense 128 (the features)
    and a softmax over `outputs`. Returns (training model -> probabilities, model -> [features, probabilities])."""
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
    dropped = layers.Dropout(DROPOUT, seed=seed(), name="dropout")(features)  # (N, 128), training only
    probabilities = layers.Dense(outputs, activation="softmax", name="classes",
                                 kernel_initializer=keras.initializers.GlorotUniform(seed()))(dropped)  # (N, outputs)
    trainer = keras.Model(image, probabilities, name=name)
    trainer.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="sparse_categorical_crossentropy")
    return trainer, keras.Model(image, [features, probabilities], name=f"{name}_features")


def predict(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features (B, 128), probabilities (B, outputs)) of uint8 or float images (B, H, W, C)."""
    features, probabilities = model.predict_on_batch(np.asarray(images, dtype=np.float32))
    return np.asarray(features), np.asarray(probabilities)


def epochs_for(images_seen: int, count: int, *, low: int, high: int) -> int:
    """Whole epochs over `count` training examples that show about `images_seen` of them, within [low, high]."""
    return int(np.clip(-(-images_seen // max(count, 1)), low, high))


def shifted(images: np.ndarray, rng: np.random.Generator, *, most: int) -> np.ndarray:
    """Each image (B, H, W, C) moved by its own draw of up to `most` pixels along each axis, zeros coming in: the
    augmentation of a longer training, which makes the network judge content rather than exact positions."""
    count, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (most, most), (most, most), (0, 0)))
    rows, cols = rng.integers(0, 2 * most + 1, (2, count))
    return np.stack([padded[i, r:r + height, c:c + width] for i, r, c in zip(range(count), rows, cols)])


def fit(trainer: keras.Model, batches: Iterable[tuple[np.ndarray, np.ndarray]], *, steps: int, progress: bool,
        description: str) -> None:
    """Train on (images, integer targets) batches, `steps` of them, under a progress bar."""
    with tqdm(total=steps, desc=description, unit="step", disable=not progress, dynamic_ncols=True,
              leave=False) as bar:
        for x, y in batches:
            trainer.train_on_batch(np.asarray(x, dtype=np.float32), y)
            bar.update(1)


def correct(trainer: keras.Model, images: np.ndarray, targets: np.ndarray) -> int:
    """How many of the images (N, H, W, C) the network assigns to their target (N,)."""
    hits = 0
    for start in range(0, len(images), PREDICT_BATCH):
        predicted = np.asarray(trainer.predict_on_batch(
            np.asarray(images[start:start + PREDICT_BATCH], dtype=np.float32))).argmax(axis=1)
        hits += int((predicted == targets[start:start + PREDICT_BATCH]).sum())
    return hits


def cached(path: Path, trainer: keras.Model, train: Callable[[], dict], meta: dict) -> dict:
    """The trained weights at `path` put into `trainer` and their record, or `train()` now (it returns the
    record: accuracy and the like) and cache both with `meta`; parallel runs train once, the others wait."""
    with exclusive(path):
        found = load_arrays(path)
        if found is not None:
            arrays, record = found
            for i, variable in enumerate(trainer.weights):
                variable.assign(arrays[f"weights/{i:04d}"])
            return record
        record = {**meta, **train()}
        save_arrays(path, {f"weights/{i:04d}": v.numpy() for i, v in enumerate(trainer.weights)}, record)
        return record

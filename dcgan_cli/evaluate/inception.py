"""Inception features: the 2048-d average-pooled last layer of keras.applications.InceptionV3 with ImageNet
weights, on images resized to 299x299 (bilinear), grey repeated to RGB, pixels scaled to [-1, 1] as InceptionV3
expects. This is the feature space of FID and KID.

The weights are the file Keras itself downloads (the "notop" .h5, 87 MB): from --inception-weights FILE or
$DCGAN_INCEPTION_WEIGHTS, else Keras' cache (~/.keras/models), else a download by keras.utils.get_file. Offline
without the file, the error says where to get it; nothing else is ever substituted. Keras' InceptionV3 is not the
exact graph of the original TensorFlow FID code (pt_inception-2015-12-05), so its FIDs are comparable with each
other and with other tools that use Keras' weights, not with published numbers.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import keras
import numpy as np
from keras import ops

from dcgan_cli.backend import compile_function
from dcgan_cli.evaluate.features import EvaluationError
from dcgan_cli.files import one_line

SIDE = 299  # InceptionV3's input side
DIMENSIONS = 2048
BATCH_SIZE = 50  # images resized and passed through InceptionV3 at a time: memory stays flat in --n
WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/{WEIGHTS_FILE}"
WEIGHTS_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"  # as keras.applications.InceptionV3 checks it
WEIGHTS_VARIABLE = "DCGAN_INCEPTION_WEIGHTS"


def weights_file(path: str | Path | None) -> Path:
    """The ImageNet weights to use: `path` (from --inception-weights) when given, else $DCGAN_INCEPTION_WEIGHTS,
    else Keras' cached copy, downloaded first when online."""
    path = path if path is not None else os.environ.get(WEIGHTS_VARIABLE) or None
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise EvaluationError(f"--inception-weights: no such file. Received: {str(path)!r}")
        return path
    try:
        return Path(keras.utils.get_file(WEIGHTS_FILE, WEIGHTS_URL, cache_subdir="models", file_hash=WEIGHTS_MD5))
    except Exception as error:  # keras.utils.get_file raises a bare Exception when a download fails
        raise EvaluationError(
            f"InceptionV3's ImageNet weights are not on this machine and could not be downloaded "
            f"({one_line(error, 400).replace(WEIGHTS_URL, 'the URL below')}). "
            f"Download {WEIGHTS_URL} (87 MB) where you are online, copy it here, and pass "
            f"--inception-weights FILE or set {WEIGHTS_VARIABLE}=FILE (or put it in Keras' cache, "
            f"~/.keras/models/). Received: --inception-weights not given") from None


def weights_key(path: Path) -> str:
    """A hash of a weights file's content: real-data summaries are cached per weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class InceptionFeatures:
    """InceptionV3 as an extractor: uint8 images (B, H, W, 1 or 3) -> (features (B, 2048), None).

    `weights` is a weights file, or None for random weights (tests only: their features mean nothing)."""

    batch_size = BATCH_SIZE

    def __init__(self, weights: Path | None):
        self.weights = weights
        try:
            self.model = keras.applications.InceptionV3(include_top=False, pooling="avg",
                                                        input_shape=(SIDE, SIDE, 3),
                                                        weights=None if weights is None else str(weights))
        except (OSError, ValueError, KeyError) as error:
            raise EvaluationError(f"--inception-weights: cannot load InceptionV3 weights from this file "
                                  f"({one_line(error, 120)}); expected Keras' {WEIGHTS_FILE}. "
                                  f"Received: {str(weights)!r}") from None
        self._forward = compile_function(self._pure_forward)

    def _pure_forward(self, trainable, non_trainable, images):
        x = ops.cast(images, "float32")  # (B, H, W, 3), 0..255
        x = ops.image.resize(x, (SIDE, SIDE), interpolation="bilinear")  # (B, 299, 299, 3)
        x = x / 127.5 - 1.0  # InceptionV3's input range, [-1, 1]
        features, _ = self.model.stateless_call(trainable, non_trainable, x, training=False)
        return features  # (B, 2048)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, None]:
        # Grey becomes RGB here, not in the compiled function: grey and colour batches share one trace, and a traced
        # shape relaxed to an unknown channel count cannot skip the repeat.
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)  # (B, H, W, 3)
        trainable = [v.value for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        return ops.convert_to_numpy(self._forward(trainable, non_trainable, images)), None

    def describe(self) -> str:
        source = "random weights (tests only)" if self.weights is None else f"ImageNet weights {self.weights.name}"
        return (f"Inception features: the {DIMENSIONS}-d pooled last layer of Keras' InceptionV3 ({source}), "
                f"images resized to {SIDE}x{SIDE}")

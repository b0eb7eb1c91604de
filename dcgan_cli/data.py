"""Datasets as uint8 arrays (N, H, W, C), and random batches drawn from them."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dcgan_cli.config import Config


def load_images(cfg: Config) -> np.ndarray:
    """The configured dataset as uint8 (N, image_size, image_size, channels)."""
    if cfg.data.name == "digits":
        return digits(image_size=cfg.model.image_size, channels=cfg.model.channels)
    raise ValueError(f"unknown dataset. Received: {cfg.data.name!r}")


def digits(*, image_size: int, channels: int) -> np.ndarray:
    """scikit-learn's bundled 1,797 handwritten digits (8x8, 17 grey levels), resized (bicubic): uint8 (N, s, s, c)."""
    from sklearn.datasets import load_digits

    levels = load_digits().images  # (1797, 8, 8), floats 0..16
    small = np.rint(levels * (255.0 / 16.0)).astype(np.uint8)
    return to_shape(small[..., None], image_size=image_size, channels=channels)


def to_shape(images: np.ndarray, *, image_size: int, channels: int) -> np.ndarray:
    """Resize uint8 (N, H, W, C) square images to (N, image_size, image_size, channels); grey is repeated to RGB."""
    if images.shape[1] != image_size or images.shape[2] != image_size:
        images = np.stack([_resize(image, image_size) for image in images])
    if images.shape[-1] == 1 and channels == 3:
        images = np.repeat(images, 3, axis=-1)
    return images


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """One uint8 (H, W, C) image resized to (size, size, C) with bicubic interpolation."""
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    resized = np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC))
    return resized.reshape(size, size, image.shape[-1])


def sample_batch(images: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A batch of uint8 images drawn at random indices (with replacement): (batch_size, H, W, C)."""
    return images[rng.integers(0, len(images), batch_size)]

"""Hacks 7 and 8: what the networks see and draw from. Pixels in [-1, 1] with G ending in tanh (7, DCGAN), and
a Gaussian latent (8, ganhacks)."""

from __future__ import annotations

import numpy as np
from keras import ops

from dcgan_cli.config import HacksConfig


def as_float32(x):
    """x as float32: a NumPy array stays one (the host's draws and batches), a backend tensor stays one."""
    return x.astype(np.float32) if isinstance(x, np.ndarray) else ops.cast(x, "float32")


def scale_images(images, *, hacks: HacksConfig):
    """Hack 7 (DCGAN): uint8 pixels to the model range, float32, same shape; a NumPy array on the host, a backend
    tensor inside a compiled step (the same float32 arithmetic, so both give the same values).

    on:  (x - 127.5) / 127.5, in [-1, 1]
    off: x / 255, in [0, 1]
    """
    images = as_float32(images)
    if hacks.scale_images:
        return (images - 127.5) / 127.5
    return images / 255.0


def unscale_images(images: np.ndarray, *, hacks: HacksConfig) -> np.ndarray:
    """Hack 7, inverse: model-range floats back to uint8 pixels (clipped, rounded; NaN black), same shape."""
    images = np.asarray(images, dtype=np.float32)
    pixels = images * 127.5 + 127.5 if hacks.scale_images else images * 255.0
    return np.clip(np.rint(np.nan_to_num(pixels, nan=0.0)), 0, 255).astype(np.uint8)


def output_activation(hacks: HacksConfig) -> str:
    """Hack 7, G's last activation, matching the pixel range: on: tanh; off: sigmoid."""
    return "tanh" if hacks.scale_images else "sigmoid"


def sample_latent(rng, n: int, latent_dim: int, *, hacks: HacksConfig):
    """Hack 8 (ganhacks): n latent vectors, float32 (n, latent_dim), from a NumPy Generator (a NumPy array) or a
    step's device draws (draws.StepRandom, a tensor).

    on:  z ~ N(0, 1)
    off: z ~ U(-1, 1)
    """
    if hacks.gaussian_latent:
        return rng.standard_normal((n, latent_dim), dtype=np.float32)
    return as_float32(rng.uniform(-1.0, 1.0, (n, latent_dim)))

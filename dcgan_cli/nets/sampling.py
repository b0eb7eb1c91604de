"""What a trained generator is used for: latent batches (optionally truncated), walks between latents, the grids
and animated GIFs that `dcgan sample` writes, and the standalone Keras model that `dcgan export` writes."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import keras
import numpy as np

from dcgan_cli.nets import hacks
from dcgan_cli import images
from dcgan_cli.config import Config
from dcgan_cli.nets.layers import BatchNorm, SamplingDropout
from dcgan_cli.nets.models import Classes

METHODS = ("slerp", "linear")


def latent_std(cfg: Config) -> float:
    """The standard deviation of one latent component (hack 8): 1 for N(0, 1), 1/sqrt(3) for U(-1, 1)."""
    return 1.0 if cfg.hacks.gaussian_latent else 1.0 / np.sqrt(3.0)


def latents(rng: np.random.Generator, count: int, cfg: Config, *, truncate: float | None = None) -> np.ndarray:
    """`count` latents, float32 (count, latent_dim), from G's own latent distribution; with `truncate` S, every
    component beyond S standard deviations is drawn again until none is (the truncation trick: samples nearer the
    mode, less varied)."""
    z = hacks.sample_latent(rng, count, cfg.model.latent_dim, hacks=cfg.hacks)
    if truncate is None:
        return z
    if truncate <= 0:
        raise ValueError(f"the truncation must be a positive number of standard deviations. Received: {truncate}")
    limit = truncate * latent_std(cfg)
    while (outside := np.abs(z) > limit).any():
        redraw = hacks.sample_latent(rng, count, cfg.model.latent_dim, hacks=cfg.hacks)
        z = np.where(outside, redraw, z)
    return z


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation from a to b (D,) at fractions t (T,): (T, D). It follows the great circle between
    them with the norm interpolated linearly, so a walk between two Gaussian latents keeps a typical norm (near
    sqrt(D)) instead of dipping toward the origin as a straight line does; nearly parallel endpoints fall back to
    a straight line."""
    a64, b64, t = np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(t, np.float64)[:, None]
    norm_a, norm_b = np.linalg.norm(a64), np.linalg.norm(b64)
    cosine = np.clip(a64 @ b64 / max(norm_a * norm_b, 1e-12), -1.0, 1.0)
    omega = np.arccos(cosine)
    if np.sin(omega) < 1e-6:
        return ((1 - t) * a64 + t * b64).astype(np.float32)
    unit_a, unit_b = a64 / norm_a, b64 / norm_b
    direction = (np.sin((1 - t) * omega) * unit_a + np.sin(t * omega) * unit_b) / np.sin(omega)
    return (direction * ((1 - t) * norm_a + t * norm_b)).astype(np.float32)


def walk(a: np.ndarray, b: np.ndarray, *, frames: int, method: str) -> np.ndarray:
    """`frames` latents from a to b, both included, float32 (frames, D): slerp or a straight line."""
    if method not in METHODS:
        raise ValueError(f"the method must be one of {', '.join(METHODS)}. Received: {method!r}")
    if frames < 2:
        raise ValueError(f"a walk needs at least 2 frames, its two ends. Received: {frames}")
    t = np.linspace(0.0, 1.0, frames)
    if method == "slerp":
        return slerp(a, b, t)
    return ((1 - t[:, None]) * a + t[:, None] * b).astype(np.float32)


def interpolation_latents(rng: np.random.Generator, rows: int, cfg: Config, *, frames: int, method: str,
                          truncate: float | None = None) -> np.ndarray:
    """`rows` walks of `frames` latents each between two latents drawn per row: float32 (rows, frames, D)."""
    ends = latents(rng, 2 * rows, cfg, truncate=truncate)
    return np.stack([walk(ends[2 * i], ends[2 * i + 1], frames=frames, method=method) for i in range(rows)])


def save_walks(pictures: np.ndarray, path: str | Path) -> Path:
    """Generated walks, uint8 (rows, frames, H, W, C), as one PNG grid with a walk per row."""
    frames = pictures.shape[1]
    return images.save_png(images.grid(pictures.reshape(-1, *pictures.shape[2:]), cols=frames), path)


def save_walks_gif(pictures: np.ndarray, path: str | Path) -> Path:
    """Generated walks, uint8 (rows, frames, H, W, C), as an animated GIF whose frame f shows every walk's image f
    in one grid."""
    return images.save_gif([images.grid(pictures[:, f]) for f in range(pictures.shape[1])], path)


EXPORT_INFO = "dcgan.json"  # the member of the exported .keras archive that records the latent and the output


def standalone_generator(g: keras.Model, cfg: Config) -> keras.Model:
    """G rebuilt from stock Keras layers only (its BatchNorm layers as keras.layers.BatchNormalization, identical in
    inference), followed by the pixel scaling of hack 7 and a clip: z (N, latent_dim) (and a class-conditional G's
    classes, int (N,)) -> float32 (N, H, W, C) in [0, 255]; rounding and casting to uint8 gives `dcgan sample`'s
    images."""
    def stock(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, BatchNorm):
            config = layer.get_config()
            config.pop("frozen_statistics")
            return keras.layers.BatchNormalization.from_config(config)
        if isinstance(layer, SamplingDropout):  # hack 15: stock Dropout, which is off when sampling
            return keras.layers.Dropout(layer.rate, seed=layer.seed, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    clone = keras.models.clone_model(g, clone_function=stock)
    clone.set_weights(g.get_weights())
    scale = (keras.layers.Rescaling(127.5, offset=127.5, name="to_pixels") if cfg.hacks.scale_images
             else keras.layers.Rescaling(255.0, name="to_pixels"))
    pixels = scale(clone.output)  # (N, H, W, C), [-1, 1] or [0, 1] -> [0, 255]
    pixels = keras.layers.ReLU(max_value=255.0, name="clip")(pixels)  # same shape, clipped to [0, 255]
    return keras.Model(clone.inputs if len(clone.inputs) > 1 else clone.input, pixels, name="dcgan_generator")


def export_info(cfg: Config, classes: Classes | None = None) -> dict:
    """What a user of the exported model needs to know: the latent (and the classes) to feed it and what comes
    out."""
    latent = "normal(0, 1)" if cfg.hacks.gaussian_latent else "uniform(-1, 1)"
    size, channels = cfg.model.image_size, cfg.model.channels
    z = f"float32 (N, {cfg.model.latent_dim}), each component ~ {latent}"
    return {"latent_dim": cfg.model.latent_dim, "latent_distribution": latent,
            "input": z if classes is None else f"[z, class]: z {z}; class int32 (N,), an index into classes",
            **({} if classes is None else {"classes": list(classes.names)}),
            "output": f"float32 (N, {size}, {size}, {channels}) in [0, 255]; np.rint(...).astype('uint8') for images",
            **({"dropout": "G's dropout (hacks.g_dropout) is stock Dropout here: off when sampling"}
               if cfg.hacks.g_dropout else {})}


def export(g: keras.Model, cfg: Config, path: str | Path, classes: Classes | None = None) -> Path:
    """Save the standalone generator as a .keras file, atomically, with export_info as the archive's dcgan.json
    member (Keras ignores it when loading)."""
    path = Path(path)
    model = standalone_generator(g, cfg)
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        model.save(temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(EXPORT_INFO, json.dumps(export_info(cfg, classes), indent=1) + "\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path

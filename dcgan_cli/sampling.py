"""What a trained generator is used for: latent batches (optionally truncated), walks between latents, and the
grids and animated GIFs that `dcgan sample` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dcgan_cli import hacks, images
from dcgan_cli.config import Config
from dcgan_cli.files import write_atomically

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


def save_gif(frames: list[np.ndarray], path: str | Path, *, duration_ms: int = 120) -> Path:
    """Write uint8 images (H, W, 1 or 3), one per frame, as an animated GIF that loops forever, atomically."""
    pictures = [Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame) for frame in frames]
    return write_atomically(Path(path), lambda file: pictures[0].save(
        file, format="GIF", save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0))


def save_walks(pictures: np.ndarray, path: str | Path) -> Path:
    """Generated walks, uint8 (rows, frames, H, W, C), as one PNG grid with a walk per row."""
    frames = pictures.shape[1]
    return images.save_png(images.grid(pictures.reshape(-1, *pictures.shape[2:]), cols=frames), path)


def save_walks_gif(pictures: np.ndarray, path: str | Path) -> Path:
    """Generated walks, uint8 (rows, frames, H, W, C), as an animated GIF whose frame f shows every walk's image f
    in one grid."""
    return save_gif([images.grid(pictures[:, f]) for f in range(pictures.shape[1])], path)

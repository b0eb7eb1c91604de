"""Checkpoints: written whole into a temporary directory, then renamed into place, so a crash never leaves a
half-written one where a loader would find it.

A checkpoint is `run_dir/checkpoints/step_NNNNNN/` holding generator.weights.h5, discriminator.weights.h5 (BatchNorm
statistics included), config.yaml (the resolved config), state.json (the step) and sample_latents.npy (the fixed
latent batch of the sample grids); the file COMPLETE, written last, marks it whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import keras
import numpy as np

from dcgan_cli import config as config_module
from dcgan_cli.config import Config
from dcgan_cli.models import Models, build_generator

CHECKPOINTS = "checkpoints"
MARKER = "COMPLETE"
_NAME = re.compile(r"^step_(\d{6,})$")


class CheckpointError(ValueError):
    """A path that is not a usable checkpoint or run directory."""


def save(run_dir: Path, *, step: int, models: Models, cfg: Config, sample_latents: np.ndarray) -> Path:
    """Write the checkpoint of `step` atomically and return its directory."""
    parent = Path(run_dir) / CHECKPOINTS
    final = parent / f"step_{step:06d}"
    temporary = parent / f".tmp-{final.name}"
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    models.g.save_weights(temporary / "generator.weights.h5")
    models.d.save_weights(temporary / "discriminator.weights.h5")
    (temporary / "config.yaml").write_text(config_module.to_yaml(cfg), encoding="utf-8")
    (temporary / "state.json").write_text(json.dumps({"step": step}) + "\n", encoding="utf-8")
    np.save(temporary / "sample_latents.npy", sample_latents)
    (temporary / MARKER).write_text("", encoding="utf-8")
    for file in temporary.iterdir():
        _fsync(file)
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    _fsync(parent)
    return final


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's contents to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def complete(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    parent = Path(run_dir) / CHECKPOINTS
    if not parent.is_dir():
        return []
    found = [p for p in parent.iterdir() if _NAME.match(p.name) and (p / MARKER).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def prune(run_dir: Path, *, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints."""
    for old in complete(run_dir)[:-keep]:
        shutil.rmtree(old)


def resolve(path: str | Path) -> Path:
    """A checkpoint directory from a run directory (its newest complete checkpoint) or a checkpoint directory."""
    path = Path(path)
    if (path / MARKER).is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"no such checkpoint or run directory. Received: {str(path)!r}")
    found = complete(path)
    if found:
        return found[-1]
    raise CheckpointError("not a complete checkpoint, nor a run directory with one (a checkpoint holds "
                          f"{MARKER} once fully written). Received: {str(path)!r}")


def read_config(checkpoint: Path) -> Config:
    """The resolved config saved in a checkpoint."""
    return config_module.load_config(Path(checkpoint) / "config.yaml")


def load_generator(checkpoint: Path) -> tuple[Config, keras.Model]:
    """Rebuild G from a checkpoint's config and load its weights."""
    cfg = read_config(checkpoint)
    g = build_generator(cfg, np.random.default_rng(0))
    try:
        g.load_weights(Path(checkpoint) / "generator.weights.h5")
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load the generator's weights ({' '.join(str(error).split())[:200]}). "
                              f"Received: {str(checkpoint)!r}") from None
    return cfg, g

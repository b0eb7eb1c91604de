"""Shared fixtures: a tiny config that trains in a second, quiet TensorFlow logs, a per-session cache folder."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Caches the code writes by default (the domain classifier, real-data summaries) go to one folder per test session,
# shared by its tests and the processes they start, never into the user's ~/.cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="dcgan-tests-cache-")

import pytest  # noqa: E402

from dcgan_cli.config import load_config  # noqa: E402

TINY = [
    "model.image_size=16", "model.latent_dim=8", "model.g_filters=8", "model.d_filters=8",
    "train.batch_size=8", "train.steps=4",
    "output.sample_every=2", "output.checkpoint_every=2", "output.log_every=2", "output.n_samples=9",
    "output.progress=false",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    """`--set` overrides for a run of 4 steps on 16x16 digits with small networks."""
    return list(TINY)


@pytest.fixture
def tiny_cfg():
    """The tiny config as a Config."""
    return load_config(None, TINY)

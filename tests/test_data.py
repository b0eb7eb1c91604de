"""The embedded digits and batch sampling."""

from __future__ import annotations

import numpy as np

from dcgan_cli import data
from dcgan_cli.config import load_config


def test_digits_are_resized_uint8_images():
    images = data.load_images(load_config(None, ["model.image_size=16"]))
    assert images.shape == (1797, 16, 16, 1) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    assert images[:, 0].mean() < images[:, 6:10, 6:10].mean(), "ink in the middle, background at the edge"


def test_digits_in_rgb_repeat_the_grey_channel():
    images = data.digits(image_size=8, channels=3)
    assert images.shape == (1797, 8, 8, 3)
    assert (images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all()


def test_sample_batch_is_seeded():
    images = data.digits(image_size=8, channels=1)
    first = data.sample_batch(images, 32, np.random.default_rng(3))
    again = data.sample_batch(images, 32, np.random.default_rng(3))
    other = data.sample_batch(images, 32, np.random.default_rng(4))
    assert first.shape == (32, 8, 8, 1) and np.array_equal(first, again) and not np.array_equal(first, other)

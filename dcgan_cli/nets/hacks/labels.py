"""Hacks 9-11 (ganhacks; Salimans et al. 2016, "Improved Techniques for Training GANs"): D's batches and
labels. Separate all-real and all-fake batches (9), smoothed real labels (10), flipped labels (11)."""

from __future__ import annotations

from keras import ops

from dcgan_cli.config import HacksConfig
from dcgan_cli.nets.hacks.pixels import as_float32


def d_batch_plan(n: int, rng, *, hacks: HacksConfig) -> list:
    """Hack 9 (ganhacks): the D updates of one step, each an int32 index tensor into the pool concat(real, fake)
    of 2n images (index < n is real).

    on:  [0 .. n-1], then [n .. 2n-1]: two updates, one all-real, one all-fake
    off: [a random permutation of 0 .. 2n-1]: one update on a mixed batch of 2n
    """
    if hacks.separate_batches:
        return [ops.arange(n, dtype="int32"), ops.arange(n, 2 * n, dtype="int32")]
    return [ops.cast(ops.argsort(rng.random(2 * n)), "int32")]


def smooth_labels(is_real, rng, *, hacks: HacksConfig):
    """Hack 10 (ganhacks; Salimans et al.): D's targets for bool is_real (n,), float32 (n, 1).

    on:  real ~ U(real_label_range) (0.7, 1.2); fake ~ U(fake_label_range) (0.0, 0.3) if smooth_fake, else 0
    off: real 1, fake 0
    """
    n = is_real.shape[0]
    if not hacks.label_smoothing:
        return ops.expand_dims(ops.cast(is_real, "float32"), 1)
    real = as_float32(rng.uniform(*hacks.real_label_range, size=n))
    fake = as_float32(rng.uniform(*hacks.fake_label_range, size=n)) if hacks.smooth_fake else ops.zeros((n,))
    return ops.expand_dims(ops.where(is_real, real, fake), 1)


def fake_label_mean(hacks: HacksConfig) -> float:
    """Hacks 10 and 11 on G's images: the mean label D is trained toward on them, which is as low as D(G(z)) goes on
    average when D is sure of every fake, since the flipped ones cannot be told from the rest (the cross-entropy's
    optimum is the mean label): flip_probability x the mean real label + the rest x the mean fake label, 0.05 x 0.95
    = 0.0475 by default, 0 with both off."""
    real = sum(hacks.real_label_range) / 2 if hacks.label_smoothing else 1.0
    fake = sum(hacks.fake_label_range) / 2 if hacks.label_smoothing and hacks.smooth_fake else 0.0
    flipped = hacks.flip_probability if hacks.noisy_labels else 0.0
    return flipped * real + (1.0 - flipped) * fake


def flip_labels(is_real, rng, *, hacks: HacksConfig):
    """Hack 11 (ganhacks): noisy D labels, bool (n,) -> bool (n,).

    on:  each label flipped independently with probability flip_probability
    off: labels unchanged
    """
    if not hacks.noisy_labels:
        return is_real
    return ops.logical_xor(is_real, rng.random(is_real.shape[0]) < hacks.flip_probability)

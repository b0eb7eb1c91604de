"""Hacks 14, 20 and 23: what is done to D's inputs, real and fake alike. Instance noise (14), DiffAugment (20),
adaptive augmentation (23, ADA), whose state on the device also carries hack 24's averages."""

from __future__ import annotations

from keras import ops

from dcgan_cli.config import HacksConfig
from dcgan_cli.nets.layers import AUGMENT_DRAWS, AUGMENT_OPS
from dcgan_cli.nets.layers import diff_augment as augment


def instance_noise(images, rng, step, *, hacks: HacksConfig):
    """Hack 14 (Sonderby et al. 2016, "Amortised MAP Inference for Image Super-resolution"; ganhacks 13): noise on
    D's inputs, real and fake alike, in D's and G's updates, fading out as training goes on. images (N, H, W, C) in
    the model range, rng a step's draws, step the training step.

    on:  images + N(0, sigma^2), sigma = instance_noise_std * max(0, 1 - step / instance_noise_steps)   same shape
    off: images unchanged
    """
    if not hacks.instance_noise:
        return images
    return ops.add(images, ops.multiply(noise_std(step, hacks=hacks), rng.standard_normal(tuple(images.shape))))


def noise_std(step, *, hacks: HacksConfig):
    """Hack 14's standard deviation at `step`: instance_noise_std falling linearly to 0 at instance_noise_steps."""
    fraction = ops.cast(step, "float32") / float(hacks.instance_noise_steps)
    return hacks.instance_noise_std * ops.maximum(0.0, 1.0 - fraction)


def diff_augment(images, rng, *, hacks: HacksConfig):
    """Hack 20 (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): the same
    differentiable colour, translation and cutout augmentation (layers.diff_augment) on every D input, real and
    fake, in D's updates and in the G update, each image with its own draws.

    on:  layers.diff_augment(images, rng.uniform(0, 1, (N, 7)), policy=diff_augment_policy)   same shape
    off: images unchanged
    """
    if not hacks.diff_augment:
        return images
    return augment(images, augment_draws(images.shape[0], rng), policy=hacks.diff_augment_policy)


def augment_draws(n: int, rng):
    """The uniform draws of hack 20 for n images, (n, AUGMENT_DRAWS) in [0, 1)."""
    return rng.uniform(0.0, 1.0, (n, AUGMENT_DRAWS))


def adaptive_augment(images, rng, gates, p, *, hacks: HacksConfig):
    """Hack 23 (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data", ADA): hack 20's
    operations on every D input, real and fake, in D's updates and the G update, each operation applied to each
    image with probability p, the strength that adapt() moves with D's overfitting. `rng` draws the operations'
    magnitudes (those of hack 20), `gates` whether each applies; p is a float32 scalar in [0, 1].

    on:  layers.diff_augment(images, hack 20's draws, on = gates.uniform(0, 1, (N, 5)) < p,
                             policy=diff_augment_policy)   same shape
    off: images unchanged
    """
    if not hacks.adaptive_augment:
        return images
    n = images.shape[0]
    return augment(images, augment_draws(n, rng), augment_gates(n, gates, p), policy=hacks.diff_augment_policy)


def augment_gates(n: int, rng, p):
    """Which of hack 23's operations apply to each of n images at strength p: float32 (n, AUGMENT_OPS), 1 or 0."""
    return ops.cast(rng.uniform(0.0, 1.0, (n, AUGMENT_OPS)) < p, "float32")


ADAPTIVE_STATE = ("augment_p", "sign_sum", "real_average", "fake_average")  # models.AdaptiveState's values


def adapt(state, real_sign, real_score, fake_score, step, *, hacks: HacksConfig, batch_size: int):
    """Hacks 23 and 24 after step `step`'s D updates, on the float32 state (4,) (ADAPTIVE_STATE), given D's mean
    sign of its raw score on the step's real batch, and its mean raw scores on the real and the fake batch.

    Hack 23 (ADA): the signs are summed over ada_interval steps; at the interval's end r_t = their mean, and p
    moves by sign(r_t - ada_target) * batch_size * ada_interval / (1000 * ada_kimg), clipped to [0, 1]: from 0 to
    1 in ada_kimg thousand images at the most. Off: p and the sum stay 0.
    Hack 24 (LeCam): the averages move toward the step's scores, a <- lecam_decay a + (1 - lecam_decay) score.
    Off: they stay 0.
    """
    p, sign_sum, real_average, fake_average = (state[k] for k in range(len(ADAPTIVE_STATE)))
    if hacks.adaptive_augment:
        sign_sum = sign_sum + ops.cast(real_sign, "float32")
        due = ops.equal(ops.mod(step, hacks.ada_interval), 0)
        r_t = sign_sum / float(hacks.ada_interval)
        rate = batch_size * hacks.ada_interval / (1000.0 * hacks.ada_kimg)
        moved = ops.clip(p + ops.sign(r_t - hacks.ada_target) * rate, 0.0, 1.0)
        p, sign_sum = ops.where(due, moved, p), ops.where(due, 0.0, sign_sum)
    if hacks.lecam:
        decay = hacks.lecam_decay
        real_average = decay * real_average + (1.0 - decay) * ops.cast(real_score, "float32")
        fake_average = decay * fake_average + (1.0 - decay) * ops.cast(fake_score, "float32")
    return ops.stack([ops.cast(v, "float32") for v in (p, sign_sum, real_average, fake_average)])


def augment_strength(state, *, hacks: HacksConfig):
    """The augmentation strength D's inputs get: hack 23's p from the state (4,), else 1 with hack 20, else 0."""
    if hacks.adaptive_augment:
        return state[0]
    return 1.0 if hacks.diff_augment else 0.0

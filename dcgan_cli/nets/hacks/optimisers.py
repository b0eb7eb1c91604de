"""Hacks 6, 12 and 13: how D and G are optimised. Adam at 2e-4 and beta_1 0.5 (6, DCGAN), each network at its
own rate (12, TTUR), D updated more often than G (13)."""

from __future__ import annotations

import keras

from dcgan_cli.config import HacksConfig


def optimizer(hacks: HacksConfig, *, network: str) -> keras.optimizers.Optimizer:
    """Hack 6 (DCGAN): a new Adam for D or G (`network` "d" or "g"), at the rate learning_rate(...) gives it.

    on:  Adam(learning_rate, beta_1=hacks.beta_1)   (2e-4, 0.5)
    off: Adam(learning_rate) with Keras' beta_1     (1e-3, 0.9)
    """
    rate = learning_rate(hacks, network=network)
    if hacks.adam:
        return keras.optimizers.Adam(learning_rate=rate, beta_1=hacks.beta_1)
    return keras.optimizers.Adam(learning_rate=rate)


def learning_rate(hacks: HacksConfig, *, network: str) -> float:
    """Hack 12 (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule"): D's or G's learning rate.

    on:  d_learning_rate for D, g_learning_rate for G   (4e-4, 1e-4)
    off: the same rate for both: learning_rate with adam on (2e-4), Keras' Adam default 1e-3 with adam off
    """
    if hacks.ttur:
        return hacks.d_learning_rate if network == "d" else hacks.g_learning_rate
    return hacks.learning_rate if hacks.adam else 1e-3


def d_steps(hacks: HacksConfig) -> int:
    """Hack 13 (WGAN, Arjovsky et al. 2017; ganhacks 14, "train D more"): D's updates per G update. Each D
    sub-step has its own real batch, latents and labels; G's update uses the last sub-step's latents.

    on:  d_steps (2) sub-steps of D's updates, then one G update
    off: 1
    """
    return hacks.d_steps if hacks.train_d_more else 1

"""Hacks 1-5, 15, 16 and 19: the networks' layers. D downsamples by strided convolutions (1), G upsamples by
strided transposed ones (2), LeakyReLU (3), batch norm (4), Gaussian init (5) (DCGAN: Radford, Metz & Chintala
2015); dropout in G (15), spectral norm in D (16), minibatch standard deviation in D (19)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from dcgan_cli.config import HacksConfig
from dcgan_cli.nets.layers import (
    BatchNorm,
    MinibatchStdDev,
    SamplingDropout,
    SpectralNorm,
)


def downsample(x, *, filters: int, hacks: HacksConfig, kernel_size: int, use_bias: bool,
               initializer: keras.initializers.Initializer, name: str):
    """Hack 1 (DCGAN): halve the resolution in D with a strided convolution instead of pooling.

    on:  Conv2D(filters, k, strides=2)                   (N, H, W, C) -> (N, H/2, W/2, filters)
    off: Conv2D(filters, k, strides=1) + MaxPooling2D(2) (N, H, W, C) -> (N, H, W, filters) -> (N, H/2, W/2, filters)
    """
    strides = 2 if hacks.strided_conv else 1
    conv = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=use_bias,
                         kernel_initializer=initializer, name=name)
    x = spectral_norm(conv, hacks=hacks)(x)
    if hacks.strided_conv:
        return x
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def upsample(x, *, filters: int, hacks: HacksConfig, kernel_size: int, use_bias: bool,
             initializer: keras.initializers.Initializer, name: str):
    """Hack 2 (DCGAN): double the resolution in G with a strided transposed convolution.

    on:  Conv2DTranspose(filters, k, strides=2)          (N, H, W, C) -> (N, 2H, 2W, filters)
    off: UpSampling2D(2) + Conv2D(filters, k, strides=1) (N, H, W, C) -> (N, 2H, 2W, C) -> (N, 2H, 2W, filters)
    """
    if hacks.transposed_conv:
        return layers.Conv2DTranspose(filters, kernel_size, strides=2, padding="same", use_bias=use_bias,
                                      kernel_initializer=initializer, name=name)(x)
    x = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_upsample")(x)
    return layers.Conv2D(filters, kernel_size, strides=1, padding="same", use_bias=use_bias,
                         kernel_initializer=initializer, name=name)(x)


def activation(x, *, hacks: HacksConfig, leaky: bool, name: str):
    """Hack 3 (DCGAN): LeakyReLU where `leaky` (all of D; G when model.g_activation is leaky_relu).

    on:  LeakyReLU(negative_slope=hacks.leaky_slope) where `leaky`, else ReLU   shape unchanged
    off: ReLU everywhere                                                         shape unchanged
    """
    if hacks.leaky_relu and leaky:
        return layers.LeakyReLU(negative_slope=hacks.leaky_slope, name=name)(x)
    return layers.ReLU(name=name)(x)


def batch_norm(x, *, hacks: HacksConfig, momentum: float, epsilon: float, frozen_statistics: str, name: str,
               affine: bool = True):
    """Hack 4 (DCGAN): BatchNormalization between a convolution and its activation; without its own scale and
    offset where hack 21's class_norm gives them (`affine` False).

    on:  BatchNorm(momentum, epsilon); frozen_statistics picks batch or moving statistics while frozen
    off: identity (no layer)
    """
    if not hacks.batch_norm:
        return x
    return BatchNorm(momentum=momentum, epsilon=epsilon, frozen_statistics=frozen_statistics, center=affine,
                     scale=affine, name=name)(x)


def conv_bias(hacks: HacksConfig) -> bool:
    """Whether a layer that batch norm may follow keeps its bias: BN's offset makes it redundant (hack 4 on)."""
    return not hacks.batch_norm


def kernel_initializer(hacks: HacksConfig, rng: np.random.Generator) -> keras.initializers.Initializer:
    """Hack 5 (DCGAN): Gaussian weight init; each call draws its own seed from `rng`, so layers differ.

    on:  RandomNormal(mean=0, stddev=hacks.init_stddev)
    off: GlorotUniform (the Keras default)
    """
    seed = int(rng.integers(2**31 - 1))
    if hacks.gaussian_init:
        return keras.initializers.RandomNormal(mean=0.0, stddev=hacks.init_stddev, seed=seed)
    return keras.initializers.GlorotUniform(seed=seed)


def g_dropout(x, *, hacks: HacksConfig, rng: np.random.Generator, name: str):
    """Hack 15 (ganhacks 17; pix2pix, Isola et al. 2017): dropout after each of G's hidden blocks, in training and
    in sampling, as a source of noise; its seed is drawn from `rng` (the initial weights' generator).

    on:  SamplingDropout(g_dropout_rate)   same shape
    off: identity (no layer)
    """
    if not hacks.g_dropout:
        return x
    return SamplingDropout(hacks.g_dropout_rate, seed=int(rng.integers(2**31 - 1)), name=name)(x)


def spectral_norm(layer: keras.layers.Layer, *, hacks: HacksConfig) -> keras.layers.Layer:
    """Hack 16 (Miyato et al. 2018, "Spectral Normalization for GANs"): each of D's convolutions and its final
    Dense divided by its largest singular value (one power iteration per training step).

    on:  SpectralNorm(layer), named after it with "_sn"   same shapes
    off: the layer itself
    """
    if not hacks.spectral_norm:
        return layer
    return SpectralNorm(layer, name=f"{layer.name}_sn")


def minibatch_std(x, *, hacks: HacksConfig, name: str):
    """Hack 19 (Karras et al. 2018, "Progressive Growing of GANs"): after D's last block, the batch's mean
    standard deviation as an extra feature map, a cheap guard against mode collapse.

    on:  MinibatchStdDev                 (N, h, w, c) -> (N, h, w, c + 1)
    off: identity (no layer)
    """
    if not hacks.minibatch_std:
        return x
    return MinibatchStdDev(name=name)(x)

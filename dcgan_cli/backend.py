"""The few places where the Keras backend matters; nothing else imports a backend library directly."""

from __future__ import annotations

from typing import Callable

import keras


def compile_function(fn: Callable, *, jit_compile: bool = False) -> Callable:
    """Compile a pure tensor function for the active backend: tf.function (XLA when jit_compile), jax.jit, or
    eager without autograd on torch."""
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True, jit_compile=jit_compile)
    if name == "jax":
        import jax

        return jax.jit(fn)
    if name == "torch":
        import torch

        return torch.no_grad()(fn)
    return fn


def stateless_optimizers() -> bool:
    """Whether optimizers can run statelessly (JAX); TensorFlow's and torch's update their variables in place."""
    return keras.backend.backend() == "jax"


def descend(loss_fn: Callable, variables: list, optimizer: keras.optimizers.Optimizer):
    """One in-place optimizer step on Keras `variables` down the gradient of loss_fn() -> (loss, aux), with the
    optimizer's loss scaling (float16); returns (loss, aux). For TensorFlow (inside tf.function) and torch."""
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, aux = loss_fn()
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, [v.value for v in variables])
    elif name == "torch":
        import torch

        with torch.enable_grad():
            for v in variables:
                v.value.grad = None
            loss, aux = loss_fn()
            optimizer.scale_loss(loss).backward()
        grads = [v.value.grad for v in variables]
        loss = loss.detach()
    else:
        raise NotImplementedError(f"use value_and_grad with stateless_apply on this backend. Received: {name!r}")
    optimizer.apply(grads, variables)
    return loss, aux


def value_and_grad(fn: Callable) -> Callable:
    """fn(params, *args) -> (value, aux) becomes a function returning ((value, aux), d value / d params), params
    being a list of tensors: jax.value_and_grad, a tf.GradientTape, or torch.autograd."""
    name = keras.backend.backend()
    if name == "jax":
        import jax

        return jax.value_and_grad(fn, has_aux=True)
    if name == "tensorflow":
        import tensorflow as tf

        def with_tape(params, *args):
            with tf.GradientTape() as tape:
                tape.watch(params)
                value, aux = fn(params, *args)
            return (value, aux), tape.gradient(value, params)

        return with_tape
    if name == "torch":
        import torch

        def with_autograd(params, *args):
            params = [p.detach().requires_grad_(True) for p in params]
            with torch.enable_grad():
                value, aux = fn(params, *args)
                grads = torch.autograd.grad(value, params)
            detach = lambda t: t.detach() if isinstance(t, torch.Tensor) else t  # noqa: E731
            return (value.detach(), keras.tree.map_structure(detach, aux)), list(grads)

        return with_autograd
    raise NotImplementedError(f"no gradient support for this Keras backend. Received: {name!r}")

"""The few places where the Keras backend matters; nothing else imports a backend library directly."""

from __future__ import annotations

from typing import Callable

import keras


def compile_function(fn: Callable) -> Callable:
    """Compile a pure tensor function for the active backend (tf.function, jax.jit; no-grad eager on torch)."""
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True)
    if name == "jax":
        import jax

        return jax.jit(fn)
    if name == "torch":
        import torch

        return torch.no_grad()(fn)
    return fn

"""G's gradient norm: its global L2 norm, and G's optimizer made to keep it, which the monitor reads to see a G
that stopped learning."""

from __future__ import annotations

import functools

import keras
from keras import ops


def global_norm(grads: list):
    """The global L2 norm of a list of gradient tensors, summed in float32 on the device: a scalar."""
    return ops.sqrt(sum(ops.sum(ops.square(ops.cast(grad, "float32"))) for grad in grads))


@functools.cache
def _norm_keeping(cls: type) -> type:
    """The subclass of optimizer class `cls` that keeps_gradient_norm makes, one per class."""

    class NormKeeping(cls):
        """`cls`, also keeping the global norm of the last gradients it applied in `gradient_norm` (float32)."""

        def build(self, variables):
            super().build(variables)
            # "mean": under tf.distribute each replica assigns its own gradients' norm.
            self.gradient_norm = self.add_variable((), dtype="float32", aggregation="mean", name="gradient_norm")

        def apply(self, grads, trainable_variables=None):
            norm = global_norm([grad for grad in grads if grad is not None])
            super().apply(grads, trainable_variables)
            self.gradient_norm.assign(norm)

    NormKeeping.__name__ = NormKeeping.__qualname__ = f"NormKeeping{cls.__name__}"
    return NormKeeping


def keeping_gradient_norm(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """`optimizer` again (its own class and settings) keeping the global norm of each update's gradients in a
    variable, `gradient_norm`, among its own (so JAX's stateless updates carry it and checkpoints keep it): what
    `train_on_batch` lets the loop see of G's gradient, which the monitor watches for a G that stopped learning."""
    return _norm_keeping(type(optimizer)).from_config(optimizer.get_config())


def gradient_norm(optimizer: keras.optimizers.Optimizer) -> keras.Variable:
    """The variable of keeping_gradient_norm in G's optimizer, also where float16's loss scaling wraps it."""
    return getattr(optimizer, "inner_optimizer", optimizer).gradient_norm

"""Custom Keras layers the models need beyond the stock ones."""

from __future__ import annotations

import zlib

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dcgan_cli")
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization that can keep using batch statistics while frozen.

    Keras 3 switches a frozen BN (`trainable = False`) to its moving statistics even in a training-mode call. The
    DCGAN reference instead normalises D's input in the G update with that batch's own statistics. With
    `frozen_statistics="batch"`, a frozen layer called in training mode uses the batch's mean and variance and
    leaves its weights and moving statistics untouched; `"moving"` keeps Keras' behaviour.
    """

    def __init__(self, *, frozen_statistics: str = "batch", **kwargs):
        super().__init__(**kwargs)
        if frozen_statistics not in ("batch", "moving"):
            raise ValueError(f"frozen_statistics must be 'batch' or 'moving'. Received: {frozen_statistics!r}")
        self.frozen_statistics = frozen_statistics

    def call(self, inputs, training=None, mask=None):
        if not training or self.trainable or self.frozen_statistics == "moving" or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        inputs = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        rank = len(inputs.shape)
        axes = [axis for axis in range(rank) if axis != self.axis % rank]
        mean, variance = ops.moments(inputs, axes=axes)
        outputs = ops.batch_normalization(
            inputs,
            mean,
            variance,
            axis=self.axis,
            offset=ops.cast(self.beta, inputs.dtype) if self.center else None,
            scale=ops.cast(self.gamma, inputs.dtype) if self.scale else None,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "frozen_statistics": self.frozen_statistics}


@keras.saving.register_keras_serializable(package="dcgan_cli")
class MinibatchStdDev(keras.layers.Layer):
    """Karras et al. (2018): how much the batch varies, as one more feature map. Each feature's standard deviation
    over the batch at each position, averaged into one number that fills an extra channel: (N, H, W, C) ->
    (N, H, W, C + 1). A batch of identical fakes gets 0 there, which D learns to tell from real batches."""

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        spread = ops.mean(ops.sqrt(ops.var(x, axis=0) + 1e-8))  # scalar
        feature = ops.ones_like(x[..., :1]) * spread  # (N, H, W, 1)
        return ops.cast(ops.concatenate([x, feature], axis=-1), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)


@keras.saving.register_keras_serializable(package="dcgan_cli")
class SpectralNorm(keras.layers.Wrapper):
    """Miyato et al. (2018): a Conv2D or Dense whose kernel is divided by its largest singular value, estimated by
    one power iteration per training-mode call. The trained variable stays the raw kernel and the division happens
    in the forward pass, so the gradient flows through it, and only the power iteration's vector u moves, only
    while the layer is trainable. keras.layers.SpectralNormalization instead writes the divided kernel back into the
    layer's variable in every training-mode call, frozen or not: D's weights would change in the G update."""

    def build(self, input_shape):
        super().build(input_shape)
        out = self.layer.kernel.shape[-1]
        seed = zlib.crc32(self.name.encode())  # a fixed start per layer, drawing nothing from the run's generators
        self.u = self.add_weight(shape=(1, out), initializer=keras.initializers.RandomNormal(seed=seed),
                                 trainable=False, name="u")

    def call(self, inputs, training=False):
        kernel = self.layer.kernel
        w = ops.reshape(ops.cast(kernel, "float32"), (-1, kernel.shape[-1]))  # (fan_in, out)
        v = _unit(ops.matmul(self.u, ops.transpose(w)))  # (1, fan_in)
        u = ops.stop_gradient(_unit(ops.matmul(v, w)))  # (1, out)
        v = ops.stop_gradient(v)
        sigma = ops.sum(ops.matmul(v, w) * u)  # the largest singular value's estimate, scalar
        if training and self.trainable:
            self.u.assign(u)
        kernel = ops.cast(ops.cast(kernel, "float32") / sigma, self.compute_dtype)
        return _apply(self.layer, ops.cast(inputs, self.compute_dtype), kernel)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


def _unit(x):
    return x / (ops.sqrt(ops.sum(ops.square(x))) + 1e-12)


def _apply(layer: keras.layers.Layer, inputs, kernel):
    """The wrapped Conv2D's or Dense's output with `kernel` in place of its own (it has no activation here)."""
    if isinstance(layer, keras.layers.Conv2D):
        out = ops.conv(inputs, kernel, strides=layer.strides, padding=layer.padding, data_format=layer.data_format,
                       dilation_rate=layer.dilation_rate)
    else:
        out = ops.matmul(inputs, kernel)
    if layer.use_bias:
        out = out + ops.cast(layer.bias, out.dtype)
    return out

"""Custom Keras layers the models need beyond the stock ones."""

from __future__ import annotations

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

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

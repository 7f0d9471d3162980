"""Batch normalization that trains with TensorFlow's fused kernel.

Keras 3's BatchNormalization on the TensorFlow backend computes batch statistics with
separate ops (moments, then normalize) even where TensorFlow has a single fused kernel
(FusedBatchNormV3, oneDNN-accelerated on CPU) for NHWC images. With it, a training step
is 1.15x (detector) and 1.24x (classifier) as fast: `ksuite bench APP train-step`
(common/batchnorm_bench.py), numbers in docs/detection.md and docs/classification.md.

Only the training-mode computation changes. Inference uses the parent's code, so
exported SavedModels and TFLite files are the same graph as with the stock layer, and
the variables are the same, so checkpoints load either way. Cases the fused kernel
does not cover (synchronized statistics across replicas, renorm, masks, inputs that
are not 4-D channels-last) also fall back to the parent.
"""

from __future__ import annotations

from keras_suite import common

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


@keras.saving.register_keras_serializable(package="ksuite")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    def _can_fuse(self, inputs, mask) -> bool:
        return (
            mask is None
            and not self.synchronized
            and not self.renorm
            and self.scale
            and self.center
            and len(inputs.shape) == 4
            and self.axis % 4 == 3
            and self.epsilon >= 1.001e-5
        )  # the kernel's minimum

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or not self._can_fuse(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, tf.float32)  # as the parent: statistics in float32
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x,
            tf.cast(self.gamma, tf.float32),
            tf.cast(self.beta, tf.float32),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel returns the unbiased (n - 1) variance; the parent's moving variance
        # averages the biased one, and so does the normalization above.
        n = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
        variance = variance * (n - 1.0) / n
        keep = self.momentum
        self.moving_mean.assign(self.moving_mean * keep + mean * (1.0 - keep))
        self.moving_variance.assign(self.moving_variance * keep + variance * (1.0 - keep))
        return tf.cast(y, self.compute_dtype)

    def stock_layer(self):
        """keras.layers.BatchNormalization with this layer's config, for a .keras file that
        loads without this package (same variables, same inference; keras_files.py).
        Unsynchronized: a loaded file runs on one device."""
        return keras.layers.BatchNormalization.from_config(
            {**self.get_config(), "synchronized": False}
        )

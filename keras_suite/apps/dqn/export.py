"""Deployment graphs of the Q-network: observations in, Q-values and the greedy action out.

The serving graph takes any batch; the TFLite one batch 1 (TFLite converts fixed shapes).
Atari observations stay uint8 frame stacks on the wire: the scaling to 0..1 is inside the
model, so a client sends exactly what the environment gives it.
"""

from __future__ import annotations

from keras_suite import common

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def input_spec(info: dict, batch) -> tf.TensorSpec:
    """`frames` (uint8 Atari stacks) or `observation` (float vectors such as CartPole)."""
    name = (
        "frames" if info.get("is_atari", True) and info["obs_dtype"] == "uint8" else "observation"
    )
    return tf.TensorSpec([batch, *info["obs_shape"]], tf.as_dtype(info["obs_dtype"]), name=name)


def _policy_archive(model, info: dict, batch) -> keras.export.ExportArchive:
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(x):
        q = model(x, training=False)
        return {"q_values": q, "action": tf.argmax(q, axis=-1, output_type=tf.int32)}

    archive.add_endpoint("serving_default", serve, input_signature=[input_spec(info, batch)])
    return archive


def serving_archive(model, info: dict) -> keras.export.ExportArchive:
    """serving_default: a batch of observations -> {"q_values": float32 [B, A],
    "action": int32 [B] greedy action}."""
    return _policy_archive(model, info, None)


def tflite_archive(model, info: dict) -> keras.export.ExportArchive:
    """The same graph at batch 1."""
    return _policy_archive(model, info, 1)

"""Deployment graphs: the serving signatures and the fixed-shape TFLite one.

All take float32 images in 0..255 (rescaling is inside the model), or encoded image bytes
that the graph decodes and resizes itself, so clients need no preprocessing code.
"""

from __future__ import annotations

import io

import numpy as np

from keras_suite import common
from keras_suite.common.images import decode_resize

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def _outputs(model, images, class_names):
    probabilities = tf.nn.softmax(tf.cast(model(images, training=False), tf.float32))
    class_ids = tf.argmax(probabilities, -1)
    return {
        "probabilities": probabilities,
        "class_ids": class_ids,
        "class_names": tf.gather(tf.constant(class_names), class_ids),
    }


def serving_archive(model, info: dict) -> keras.export.ExportArchive:
    """serving_default: float32 images [N,S,S,3] in 0..255; serve_bytes: encoded images [N].
    Both return probabilities [N,C], class_ids [N] (int64) and class_names [N] (string).
    The batch dimension is free: TF Serving batches rows from many clients."""
    size, names = info["image_size"], list(info["class_names"])
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
    def serving_default(images):
        return _outputs(model, images, names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        images = tf.map_fn(
            lambda b: decode_resize(b, size),
            image_bytes,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )
        return _outputs(model, images, names)

    archive.add_endpoint("serving_default", serving_default)
    archive.add_endpoint("serve_bytes", serve_bytes)
    return archive


def tflite_archive(model, info: dict) -> keras.export.ExportArchive:
    """Batch 1, fixed size (TFLite converts fixed shapes): images -> probabilities."""
    size = info["image_size"]
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="images")])
    def classify(images):
        return {"probabilities": tf.nn.softmax(tf.cast(model(images, training=False), tf.float32))}

    archive.add_endpoint("serving_default", classify)
    return archive


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()

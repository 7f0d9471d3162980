"""Deployment graphs: the serving signatures (image bytes in, masks at each input's own
resolution out) and the fixed-shape TFLite one.

Both wrap the trained Keras model in a keras.export.ExportArchive (docs/design.md §8: the
SavedModel flavour that TFLite converts with its weights) and use only core TF ops.
"""

from __future__ import annotations

import io

import numpy as np

from keras_suite import common
from keras_suite.common.images import decode_upright

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

PAD_CLASS = -1  # class_ids beyond an image's own height/width in a batch of mixed sizes


def _decode(encoded, size: int):
    """Encoded image -> (float32 [size, size, 3] stretched to the model size, [h, w])."""
    image = decode_upright(encoded)  # EXIF orientation applied, as cv2 does when training reads it
    hw = tf.shape(image)[:2]
    resized = tf.image.resize(tf.cast(image, tf.float32), (size, size), antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0), hw


def _model_probabilities(model, images_bytes, size: int):
    pixels, hw = tf.map_fn(
        lambda b: _decode(b, size),
        images_bytes,
        fn_output_signature=(
            tf.TensorSpec([size, size, 3], tf.float32),
            tf.TensorSpec([2], tf.int32),
        ),
    )
    probs = tf.nn.softmax(tf.cast(model(pixels, training=False), tf.float32))
    return probs, hw


def serving_archive(model, info: dict) -> keras.export.ExportArchive:
    """serving_default: images [N] encoded bytes -> class_ids [N, H, W] int32 at the
    inputs' resolution (padded with -1 to the largest image of the batch), mask_png [N]
    (greyscale PNG of class ids, each at its own image's size), height/width [N].
    probabilities: the same input -> per-class probabilities [N, H, W, C] (padded with
    0), height/width [N]."""
    size, names = info["image_size"], list(info["class_names"])
    num_classes = len(names)
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec([None], tf.string, name="images")

    def at_input_size(probs, hw):
        """Resize probabilities back to each image's size, padded to the batch maximum."""
        top = tf.reduce_max(hw, 0)

        def one(args):
            p, shape = args
            full = tf.image.resize(p, shape, method="bilinear")
            pad = [[0, top[0] - shape[0]], [0, top[1] - shape[1]], [0, 0]]
            return tf.pad(full, pad), tf.argmax(full, -1, output_type=tf.int32)

        return tf.map_fn(
            one,
            (probs, hw),
            fn_output_signature=(
                tf.TensorSpec([None, None, num_classes], tf.float32),
                tf.TensorSpec([None, None], tf.int32),
            ),
        )

    @tf.function(input_signature=[spec])
    def serve_mask(images):
        probs, hw = _model_probabilities(model, images, size)
        top = tf.reduce_max(hw, 0)

        def one(args):
            p, shape = args
            ids = tf.argmax(tf.image.resize(p, shape, method="bilinear"), -1, output_type=tf.int32)
            png = tf.io.encode_png(tf.cast(ids, tf.uint8)[..., None])
            padded = tf.pad(
                ids, [[0, top[0] - shape[0]], [0, top[1] - shape[1]]], constant_values=PAD_CLASS
            )
            return padded, png

        ids, pngs = tf.map_fn(
            one,
            (probs, hw),
            fn_output_signature=(
                tf.TensorSpec([None, None], tf.int32),
                tf.TensorSpec([], tf.string),
            ),
        )
        return {"class_ids": ids, "mask_png": pngs, "height": hw[:, 0], "width": hw[:, 1]}

    @tf.function(input_signature=[spec])
    def serve_probabilities(images):
        probs, hw = _model_probabilities(model, images, size)
        full, _ = at_input_size(probs, hw)
        return {"probabilities": full, "height": hw[:, 0], "width": hw[:, 1]}

    archive.add_endpoint("serving_default", serve_mask)
    archive.add_endpoint("probabilities", serve_probabilities)
    return archive


def tflite_archive(model, info: dict) -> keras.export.ExportArchive:
    """Batch 1, fixed-size float32 image (0..255) -> probabilities [1, S, S, C] and
    class_ids [1, S, S] (int32). Decoding and resizing stay with the caller: TFLite has
    no image decoder builtin."""
    size = info["image_size"]
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="images")])
    def segment(images):
        logits = tf.cast(model(images, training=False), tf.float32)
        return {
            "probabilities": tf.nn.softmax(logits),
            "class_ids": tf.argmax(logits, -1, output_type=tf.int32),
        }

    archive.add_endpoint("serving_default", segment)
    return archive


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()

"""Deployment graphs of the EMA generator.

Serving takes integer seeds (the same seed is the same image as in `ksuite sample`): the
latents are drawn in graph from each seed with a stateless RNG. TFLite has no stateless
RNG op, so its graph takes the latent z itself at batch 1 and the caller draws z from the
seed with `sampling.latents_from_seeds` outside the model.
"""

from __future__ import annotations

from keras_suite import common
from keras_suite.apps.gan import sampling

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def serving_archive(generator, info: dict) -> keras.export.ExportArchive:
    """serving_default: seeds int64 [N], truncation float32 [N] (1 = none)
    (+ class_ids int64 [N] for conditional models) -> images uint8 [N,S,S,3] and
    png (encoded PNG bytes) [N]."""
    dim = generator.latent_dim
    archive = keras.export.ExportArchive()
    archive.track(generator)

    def outputs(seeds, truncation, class_ids):
        latents = sampling.latents_from_seeds(seeds, dim)
        images = sampling.to_uint8(generator(latents, class_ids, truncation, training=False))
        png = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.string)
        return {"images": images, "png": png}

    specs = [
        tf.TensorSpec([None], tf.int64, name="seeds"),
        tf.TensorSpec([None], tf.float32, name="truncation"),
    ]
    if info["conditional"]:
        fn = tf.function(
            lambda seeds, truncation, class_ids: outputs(seeds, truncation, class_ids),
            input_signature=specs + [tf.TensorSpec([None], tf.int64, name="class_ids")],
        )
    else:
        fn = tf.function(
            lambda seeds, truncation: outputs(seeds, truncation, None), input_signature=specs
        )
    archive.add_endpoint("serving_default", fn)
    return archive


def tflite_archive(generator, info: dict) -> keras.export.ExportArchive:
    """z [1, latent] (+ truncation [1], class_ids [1]) -> images float32 [1, S, S, 3] in
    0..255 (pixels clipped in the tanh's own range first: see sampling.to_pixels)."""
    dim = generator.latent_dim
    archive = keras.export.ExportArchive()
    archive.track(generator)
    specs = [
        tf.TensorSpec([1, dim], tf.float32, name="z"),
        tf.TensorSpec([1], tf.float32, name="truncation"),
    ]
    if info["conditional"]:
        fn = tf.function(
            lambda z, truncation, class_ids: {
                "images": sampling.to_pixels(generator(z, class_ids, truncation, training=False))
            },
            input_signature=specs + [tf.TensorSpec([1], tf.int64, name="class_ids")],
        )
    else:
        fn = tf.function(
            lambda z, truncation: {
                "images": sampling.to_pixels(generator(z, None, truncation, training=False))
            },
            input_signature=specs,
        )
    archive.add_endpoint("serving_default", fn)
    return archive

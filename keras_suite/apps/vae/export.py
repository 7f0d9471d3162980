"""Deployment graphs: the serving signatures and the fixed-shape TFLite halves.

Serving (one SavedModel, batch dimension free; pixels float32 0..255):
    reconstruct  images [N,S,S,C] -> images        (= serving_default)
    encode       images [N,S,S,C] -> mean, log_variance [N,L]
    decode       latents [N,L]    -> images
    sample       seed int64 [], n int32 [] -> images [n,S,S,C], latents [n,L]
`sample` draws z ~ N(0, I) with a stateless op seeded by `seed`: the same seed gives the
same images on every server. All graphs are core TF ops (stock tensorflow_model_server).

TFLite (batch 1): the encoder and the decoder are converted separately (a phone may
only need one of them); the decoder returns its likelihood parameters besides the image,
so the parity report can score the ELBO with the converted half.
"""

from __future__ import annotations

from keras_suite import common
from keras_suite.apps.vae import losses
from keras_suite.apps.vae.model import decode_params

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def _decoded(decoder, z, likelihood):
    return losses.mean_image(decode_params(decoder, z), likelihood)


def serving_archive(encoder, decoder, info: dict) -> keras.export.ExportArchive:
    size, channels, latent = info["image_size"], info["channels"], info["latent_dim"]
    likelihood = info["likelihood"]
    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.track(decoder)
    image_spec = tf.TensorSpec([None, size, size, channels], tf.float32, name="images")

    def reconstruct(images):
        mean, _ = encoder(images, training=False)
        return {"images": _decoded(decoder, mean, likelihood)}

    @tf.function(input_signature=[image_spec])
    def encode(images):
        mean, logvar = encoder(images, training=False)
        return {"mean": tf.cast(mean, tf.float32), "log_variance": tf.cast(logvar, tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([None, latent], tf.float32, name="latents")])
    def decode(latents):
        return {"images": _decoded(decoder, latents, likelihood)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.int64, name="seed"),
            tf.TensorSpec([], tf.int32, name="n"),
        ]
    )
    def sample(seed, n):
        z = tf.random.stateless_normal(
            tf.stack([n, latent]), seed=tf.stack([seed, tf.constant(0, tf.int64)])
        )
        return {"images": _decoded(decoder, z, likelihood), "latents": z}

    archive.add_endpoint("serving_default", tf.function(reconstruct, input_signature=[image_spec]))
    archive.add_endpoint("reconstruct", tf.function(reconstruct, input_signature=[image_spec]))
    archive.add_endpoint("encode", encode)
    archive.add_endpoint("decode", decode)
    archive.add_endpoint("sample", sample)
    return archive


def encoder_tflite_archive(encoder, info: dict) -> keras.export.ExportArchive:
    size, channels = info["image_size"], info["channels"]
    archive = keras.export.ExportArchive()
    archive.track(encoder)

    @tf.function(
        input_signature=[tf.TensorSpec([1, size, size, channels], tf.float32, name="images")]
    )
    def encode(images):
        mean, logvar = encoder(images, training=False)
        return {"mean": mean, "log_variance": logvar}

    archive.add_endpoint("serving_default", encode)
    return archive


def decoder_tflite_archive(decoder, info: dict) -> keras.export.ExportArchive:
    likelihood = info["likelihood"]
    archive = keras.export.ExportArchive()
    archive.track(decoder)

    @tf.function(
        input_signature=[tf.TensorSpec([1, info["latent_dim"]], tf.float32, name="latents")]
    )
    def decode(latents):
        params = decode_params(decoder, latents)
        names = ["logits"] if likelihood == "bernoulli" else ["loc", "log_scale"]
        return {"images": losses.mean_image(params, likelihood), **dict(zip(names, params))}

    archive.add_endpoint("serving_default", decode)
    return archive


def params_from_outputs(outputs: dict, likelihood: str) -> list:
    """The decoder's parameter list back from a TFLite/SavedModel output dict."""
    names = ["logits"] if likelihood == "bernoulli" else ["loc", "log_scale"]
    return [outputs[n] for n in names]

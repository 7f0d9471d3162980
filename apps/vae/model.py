"""Convolutional encoder q(z|x) and decoder p(x|z).

encoder: pixels [S, S, C] (0..255) -> [mean, log_variance], each [latent_dim]
decoder: z [latent_dim] -> [logits] (Bernoulli) or [loc, log_scale] (discretised
         logistic/Gaussian), each [S, S, C]

The decoder's location and scale are separate output tensors rather than one tensor
split later: int8 TFLite gives one scale per tensor, and these two have different ranges
(DESIGN.md §11). For the deterministic autoencoders (kind ae/dae) the encoder's
log-variance is a constant -30 (a point mass as far as float32 is concerned), so every
later piece (sampling, export, TFLite) treats all kinds alike.
"""
from __future__ import annotations

import common

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

POINT_MASS_LOGVAR = -30.0


def _act(x):
    return keras.layers.Activation("silu")(x)


def conv_trunk(inputs, cfg_model):
    """Pixels 0..255 -> feature map at 1 / 2**num_downsamples of the image size."""
    f = cfg_model.base_filters
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = _act(keras.layers.Conv2D(f, 3, padding="same")(x))
    for i in range(cfg_model.num_downsamples):
        width = f * 2 ** min(i, 3)
        x = _act(keras.layers.Conv2D(width, 4, strides=2, padding="same")(x))
        x = _act(keras.layers.Conv2D(width, 3, padding="same")(x))
    return x


def upsampling_trunk(x, cfg_model):
    """The mirror of conv_trunk: stride-2 transposed convs back to the image size."""
    f = cfg_model.base_filters
    for i in reversed(range(cfg_model.num_downsamples)):
        width = f * 2 ** min(i, 3)
        x = _act(keras.layers.Conv2DTranspose(width, 4, strides=2, padding="same")(x))
        x = _act(keras.layers.Conv2D(width, 3, padding="same")(x))
    return x


def likelihood_heads(x, channels: int, likelihood: str) -> list:
    """[logits] per pixel and channel, or [loc per pixel and channel, log_scale per pixel],
    float32 under any policy.

    The scale is shared by a pixel's channels. With one scale per channel, training on
    colour shapes fell into the learned-variance trap one channel at a time: a channel
    whose scale grew wide early gave its location tiny gradients, the shared features
    stopped carrying it, and it stayed wide (measured after 20 epochs: location vs
    target correlation 0.95 for green, 0.12 red, 0.01 blue; 7.37 bits/dim). A shared
    scale weighs every channel's error alike."""
    if likelihood == "bernoulli":
        return [keras.layers.Conv2D(channels, 3, padding="same", name="logits", dtype="float32")(x)]
    loc = keras.layers.Conv2D(channels, 3, padding="same", name="loc", dtype="float32")(x)
    log_scale = keras.layers.Conv2D(1, 3, padding="same", name="log_scale", dtype="float32",
                                    bias_initializer=keras.initializers.Constant(-2.0))(x)
    return [loc, log_scale]


def build_encoder(cfg_model, image_size: int, channels: int) -> keras.Model:
    inputs = keras.Input((image_size, image_size, channels), name="images")
    x = keras.layers.Flatten()(conv_trunk(inputs, cfg_model))
    x = _act(keras.layers.Dense(max(256, 2 * cfg_model.latent_dim))(x))
    mean = keras.layers.Dense(cfg_model.latent_dim, name="mean", dtype="float32")(x)
    if cfg_model.kind == "vae":
        logvar = keras.layers.Dense(cfg_model.latent_dim, name="log_variance", dtype="float32",
                                    kernel_initializer="zeros", bias_initializer="zeros")(x)
    else:
        logvar = keras.ops.zeros_like(mean) + POINT_MASS_LOGVAR
    return keras.Model(inputs, [mean, logvar], name="encoder")


def build_decoder(cfg_model, image_size: int, channels: int, likelihood: str) -> keras.Model:
    n = cfg_model.num_downsamples
    start = image_size // 2 ** n
    top = cfg_model.base_filters * 2 ** min(n - 1, 3)
    z = keras.Input((cfg_model.latent_dim,), name="latents")
    x = _act(keras.layers.Dense(max(256, 2 * cfg_model.latent_dim))(z))
    x = _act(keras.layers.Dense(start * start * top)(x))
    x = keras.layers.Reshape((start, start, top))(x)
    x = upsampling_trunk(x, cfg_model)
    return keras.Model(z, likelihood_heads(x, channels, likelihood), name="decoder")


def decode_params(decoder, z, training: bool = False) -> list:
    """The decoder's outputs as a list (Keras returns a bare tensor for a one-output model)."""
    out = decoder(z, training=training)
    return list(out) if isinstance(out, (list, tuple)) else [out]

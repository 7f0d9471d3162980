"""Convolutional encoder q(z|x) and decoder p(x|z).

encoder: pixels [S, S, C] (0..255) -> [mean, log_variance], each [latent_dim]
decoder: z [latent_dim] -> [logits] (Bernoulli) or [loc, log_scale] (discretised
         logistic/Gaussian), each [S, S, C]

The decoder's location and scale are separate output tensors rather than one tensor
split later: int8 TFLite gives one scale per tensor, and these two have different ranges
(docs/design.md §8). For the deterministic autoencoders (kind ae/dae) the encoder's
log-variance is a constant -30 (a point mass as far as float32 is concerned), so every
later piece (sampling, export, TFLite) treats all kinds alike.

The VAE's log-variance is squashed into LOGVAR_RANGE. Unbounded, it overflowed: the
default preset (lr 3e-3, KL weight near 0 early in its warm-up) drove it to -700 and
then +84 within 80 steps; exp(84) in the KL and its gradient are inf, and Adam turned
the inf into NaN weights.
"""

from __future__ import annotations

from keras_suite import common

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

POINT_MASS_LOGVAR = -30.0
# Posterior std from e^-8 (3e-4 of the prior's) to e^2: wide enough never to bind a useful
# posterior, narrow enough that exp(logvar), exp(logvar / 2) and exp(-logvar) stay finite.
LOGVAR_RANGE = (-16.0, 4.0)


# He-style initialisation for SiLU: E[silu(x)^2] = 0.356 for x ~ N(0, 1), so weights of
# variance 2.81 / fan_in keep the pre-activations at unit scale through the stack. With
# Keras's default (Glorot) the default preset's activations shrank ~2x per layer: at
# initialisation the encoder's means had std 7e-4 and the decoder's outputs moved by 2e-4
# across z ~ N(0, I), so the latents carried no signal, and the first hundred steps of
# Adam either left the encoder unused (lr 1e-3: KL stayed at its initial 2.6 nats) or
# threw its outputs to |mean| > 100 (lr 3e-3).
SILU_GAIN = 2.81


def _kernel_init(transposed: bool = False):
    if transposed:  # a stride-2 4x4 transposed conv sums 2x2 taps per input channel = fan_out / 4
        return keras.initializers.VarianceScaling(4.0 * SILU_GAIN, "fan_out", "truncated_normal")
    return keras.initializers.VarianceScaling(SILU_GAIN, "fan_in", "truncated_normal")


def _conv(filters, kernel, strides=1):
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", kernel_initializer=_kernel_init()
    )


def _dense(units):
    return keras.layers.Dense(units, kernel_initializer=_kernel_init())


def _act(x):
    return keras.layers.Activation("silu")(x)


def conv_trunk(inputs, cfg_model):
    """Pixels 0..255 -> feature map at 1 / 2**num_downsamples of the image size."""
    f = cfg_model.base_filters
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = _act(_conv(f, 3)(x))
    for i in range(cfg_model.num_downsamples):
        width = f * 2 ** min(i, 3)
        x = _act(_conv(width, 4, strides=2)(x))
        x = _act(_conv(width, 3)(x))
    return x


def upsampling_trunk(x, cfg_model):
    """The mirror of conv_trunk: stride-2 transposed convs back to the image size."""
    f = cfg_model.base_filters
    for i in reversed(range(cfg_model.num_downsamples)):
        width = f * 2 ** min(i, 3)
        x = _act(
            keras.layers.Conv2DTranspose(
                width,
                4,
                strides=2,
                padding="same",
                kernel_initializer=_kernel_init(transposed=True),
            )(x)
        )
        x = _act(_conv(width, 3)(x))
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

    # Small head weights: at initialisation the outputs vary a little with z (std ~0.3 for
    # the location, ~0.2 for the log-scale around -2) instead of by 2 units on [-1, 1].
    def head(filters, name, scale, bias=0.0):
        return keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            name=name,
            dtype="float32",
            kernel_initializer=keras.initializers.VarianceScaling(scale, "fan_in"),
            bias_initializer=keras.initializers.Constant(bias),
        )(x)

    if likelihood == "bernoulli":
        return [head(channels, "logits", 0.1)]
    return [head(channels, "loc", 0.04), head(1, "log_scale", 0.02, -2.0)]


def bounded_log_variance(raw):
    """A smooth squash of the log-variance head into LOGVAR_RANGE (tanh: a builtin TFLite
    op that int8 quantises; a softplus-based clamp failed int8 calibration here)."""
    lo, hi = LOGVAR_RANGE
    centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    return centre + half * keras.ops.tanh((raw - centre) / half)


def build_encoder(cfg_model, image_size: int, channels: int) -> keras.Model:
    inputs = keras.Input((image_size, image_size, channels), name="images")
    x = keras.layers.Flatten()(conv_trunk(inputs, cfg_model))
    x = _act(_dense(max(256, 2 * cfg_model.latent_dim))(x))
    mean = keras.layers.Dense(cfg_model.latent_dim, name="mean", dtype="float32")(x)
    if cfg_model.kind == "vae":
        raw = keras.layers.Dense(
            cfg_model.latent_dim,
            name="log_variance",
            dtype="float32",
            kernel_initializer="zeros",
            bias_initializer="zeros",
        )(x)
        logvar = bounded_log_variance(raw)  # -0.63 at initialisation (std 0.73)
    else:
        logvar = keras.ops.zeros_like(mean) + POINT_MASS_LOGVAR
    return keras.Model(inputs, [mean, logvar], name="encoder")


def build_decoder(cfg_model, image_size: int, channels: int, likelihood: str) -> keras.Model:
    n = cfg_model.num_downsamples
    start = image_size // 2**n
    top = cfg_model.base_filters * 2 ** min(n - 1, 3)
    z = keras.Input((cfg_model.latent_dim,), name="latents")
    x = _act(_dense(max(256, 2 * cfg_model.latent_dim))(z))
    x = _act(_dense(start * start * top)(x))
    x = keras.layers.Reshape((start, start, top))(x)
    x = upsampling_trunk(x, cfg_model)
    return keras.Model(z, likelihood_heads(x, channels, likelihood), name="decoder")


def decode_params(decoder, z, training: bool = False) -> list:
    """The decoder's outputs as a list (Keras returns a bare tensor for a one-output model)."""
    out = decoder(z, training=training)
    return list(out) if isinstance(out, (list, tuple)) else [out]

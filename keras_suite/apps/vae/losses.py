"""The terms of the ELBO, in nats per image: decoder log-likelihoods, the Gaussian KL,
and the importance-weighted bound.

Pixels arrive as float32 whole numbers 0..255. The discretised likelihoods (logistic, as
in PixelCNN++, or Gaussian) put each sub-pixel in one of 256 bins of width 2/255 on the
[-1, 1] scale and integrate the density over the bin, with the edge bins taking the
tails; so the numbers are log-probabilities of the 8-bit image, comparable across
models and convertible to bits/dim. The Bernoulli decoder scores binarised pixels.
"""

from __future__ import annotations

import math

from keras_suite import common

tf = common.quiet_import_tensorflow()

LOG_2PI = math.log(2.0 * math.pi)
MIN_LOG_SCALE = -7.0  # decoder scale floor (as PixelCNN++): keeps densities finite
HALF_BIN = 1.0 / 255.0  # half a bin on the [-1, 1] scale


def to_unit(pixels):
    """0..255 -> [-1, 1]: the decoder's location scale and the encoder's input scale."""
    return tf.cast(pixels, tf.float32) / 127.5 - 1.0


def _log_sigmoid(x):
    return -tf.nn.softplus(-x)


def log_ndtr(a):
    """log Phi(a), the standard normal log-CDF, accurate in both tails (float32)."""
    a = tf.cast(a, tf.float32)
    upper = tf.math.log1p(-0.5 * tf.math.erfc(tf.maximum(a, 0.0) / math.sqrt(2.0)))
    middle = tf.math.log(0.5 * tf.math.erfc(-tf.clip_by_value(a, -10.0, 0.0) / math.sqrt(2.0)))
    t = tf.minimum(a, -10.0)  # asymptotic series (Abramowitz & Stegun 26.2.12), error < 1e-6 here
    inv2 = 1.0 / (t * t)
    tail = (
        -0.5 * t * t
        - tf.math.log(-t)
        - 0.5 * LOG_2PI
        + tf.math.log1p(-inv2 + 3.0 * inv2 * inv2 - 15.0 * inv2 * inv2 * inv2)
    )
    return tf.where(a > 0.0, upper, tf.where(a > -10.0, middle, tail))


def floored_log_scale(raw):
    """The decoder's raw log-scale output, floored smoothly at MIN_LOG_SCALE.

    A hard floor (tf.maximum, as in PixelCNN++) passes no gradient below it: a pixel whose
    raw log-scale fell under -7 while its location was wrong cost hundreds of nats and
    could not widen its scale (seen in the default preset's early steps: raw -11, the
    batch's reconstruction loss doubled). softplus keeps a gradient everywhere and is
    within 0.02 of the raw value above -3."""
    raw = tf.cast(raw, tf.float32)
    return MIN_LOG_SCALE + tf.nn.softplus(raw - MIN_LOG_SCALE)


def discretised_log_prob(pixels, loc, log_scale, family: str = "logistic"):
    """log P(pixel) per sub-pixel for 8-bit pixels under a discretised logistic/Gaussian.

    pixels: 0..255 whole numbers; loc on the [-1, 1] scale; log_scale: the decoder's raw
    output, floored smoothly at -7 (floored_log_scale).
    """
    x = to_unit(pixels)
    loc = tf.cast(loc, tf.float32)
    log_scale = floored_log_scale(log_scale)
    inv = tf.exp(-log_scale)
    centred = x - loc
    plus, minus = inv * (centred + HALF_BIN), inv * (centred - HALF_BIN)
    log_cdf = {"logistic": _log_sigmoid, "gaussian": log_ndtr}[family]
    # log(F(plus) - F(minus)) as log F(plus) + log(1 - F(minus)/F(plus)), on the side of the
    # distribution where F is small (mirrored above the location): exact in the far tails,
    # no 1 - 1 cancellation near the mode.
    above = centred > 0
    hi = tf.where(above, -minus, plus)
    lo = tf.where(above, -plus, minus)
    log_hi = log_cdf(hi)
    log_bin = log_hi + _log1mexp(log_cdf(lo) - log_hi)
    pixels = tf.cast(pixels, tf.float32)
    # bin 0 takes the whole lower tail, bin 255 the whole upper tail
    return tf.where(pixels < 0.5, log_cdf(plus), tf.where(pixels > 254.5, log_cdf(-minus), log_bin))


def _log1mexp(a):
    """log(1 - exp(a)) for a <= 0, accurate for a near 0 and for a very negative."""
    a = tf.minimum(a, -1e-30)
    # each branch gets inputs from its own range, so the unused one has finite gradients
    near = tf.math.log(-tf.math.expm1(tf.maximum(a, -0.6931472)))
    far = tf.math.log1p(-tf.exp(tf.minimum(a, -0.6931472)))
    return tf.where(a > -0.6931472, near, far)


def bernoulli_log_prob(pixels, logits):
    """log P(pixel) per pixel for binarised pixels (0 or 255) under Bernoulli(sigmoid(logits))."""
    target = tf.cast(pixels, tf.float32) / 255.0
    logits = tf.cast(logits, tf.float32)
    return target * logits - tf.nn.softplus(logits)


def log_likelihood(pixels, params, likelihood: str):
    """log p(x | z) in nats per image, summed over every pixel and channel -> [batch].

    params: the decoder's outputs, [logits] (bernoulli) or [loc, log_scale]."""
    if likelihood == "bernoulli":
        per_pixel = bernoulli_log_prob(pixels, params[0])
    else:
        per_pixel = discretised_log_prob(pixels, params[0], params[1], likelihood)
    return tf.reduce_sum(tf.reshape(per_pixel, [tf.shape(per_pixel)[0], -1]), axis=1)


def mean_image(params, likelihood: str):
    """The decoder's image for display and serving: 0..255 float32."""
    if likelihood == "bernoulli":
        return tf.sigmoid(tf.cast(params[0], tf.float32)) * 255.0
    # clip before scaling: the same numbers in float, but in an int8 TFLite graph no tensor
    # holds the location's outliers x 127.5 (one int8 step was 11 pixel levels in a probe
    # decoder). Clipping loc + 1 to [0, 2], not loc to [-1, 1]: the latter becomes
    # RELU_N1_TO_1, which has no int16x8 kernel.
    return tf.clip_by_value(tf.cast(params[0], tf.float32) + 1.0, 0.0, 2.0) * 127.5


def gaussian_kl_per_dim(mean, logvar):
    """KL(N(mean, exp(logvar)) || N(0, 1)) per latent dimension, in nats."""
    mean, logvar = tf.cast(mean, tf.float32), tf.cast(logvar, tf.float32)
    return 0.5 * (tf.square(mean) + tf.exp(logvar) - 1.0 - logvar)


def gaussian_kl(mean, logvar):
    return tf.reduce_sum(gaussian_kl_per_dim(mean, logvar), axis=-1)


def log_normal(z, mean, logvar):
    """log N(z; mean, exp(logvar)) summed over the last axis."""
    return -0.5 * tf.reduce_sum(LOG_2PI + logvar + tf.square(z - mean) * tf.exp(-logvar), axis=-1)


def kl_weight(step, beta: float, warmup_steps: int):
    """beta, ramped linearly from 0 over the first `warmup_steps` steps (KL annealing)."""
    if not warmup_steps:
        return tf.constant(beta, tf.float32)
    ramp = tf.minimum(1.0, (tf.cast(step, tf.float32) + 1.0) / float(warmup_steps))
    return beta * ramp


def bits_per_dim(nats, dims: int):
    return nats / (dims * math.log(2.0))


# ---- the importance-weighted bound (Burda, Grosse & Salakhutdinov 2015) ----------------


def iwae_log_weights(mean, logvar, log_px_given_z, k: int, chunk: int, seed):
    """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x), z_i ~ q, for i < k -> [batch, k].

    log_px_given_z(z [batch, c, L]) -> [batch, c]; samples are drawn `chunk` at a time
    (stateless: `seed` [2] int, so reruns give the same numbers)."""
    mean, logvar = tf.cast(mean, tf.float32), tf.cast(logvar, tf.float32)
    seed = tf.cast(seed, tf.int64)
    pieces = []
    for start in range(0, k, chunk):
        c = min(chunk, k - start)
        eps = tf.random.stateless_normal(
            tf.concat([tf.shape(mean)[:1], [c], tf.shape(mean)[1:]], 0),
            seed=seed + tf.constant([0, 1], tf.int64) * start,
        )
        z = mean[:, None] + tf.exp(0.5 * logvar)[:, None] * eps
        log_q = -0.5 * tf.reduce_sum(LOG_2PI + logvar[:, None] + tf.square(eps), axis=-1)
        log_p = -0.5 * tf.reduce_sum(LOG_2PI + tf.square(z), axis=-1)
        pieces.append(log_px_given_z(z) + log_p - log_q)
    return tf.concat(pieces, axis=1)


def iwae_bound(log_weights):
    """log (1/k) sum_i w_i per example: >= the ELBO in expectation, -> log p(x) as k grows."""
    k = tf.cast(tf.shape(log_weights)[1], tf.float32)
    return tf.reduce_logsumexp(log_weights, axis=1) - tf.math.log(k)

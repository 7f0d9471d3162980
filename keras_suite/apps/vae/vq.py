"""VQ-VAE (van den Oord et al. 2017): a discrete latent grid instead of a Gaussian vector.

encoder:  pixels -> z_e [h, w, D]           (the conv trunk, then a 1x1 conv to D)
codebook: z_e -> codes [h, w] (int), z_q     (nearest of K code vectors, Euclidean)
decoder:  z_q [h, w, D] -> likelihood parameters (the same heads as the VAE's)

Training: reconstruction NLL + ||sg(z_e) - z_q||^2 (moves the codes) + commitment *
||z_e - sg(z_q)||^2 (keeps the encoder near its codes), summed per image; the decoder
sees z_e + sg(z_q - z_e), so gradients pass straight through the quantiser.

With a uniform prior over the K^(h*w) code grids and a one-hot posterior, KL = h*w*log K,
so -ELBO = recon + h*w*log K nats: an honest bound, comparable with the VAE's. The
posterior is deterministic, so the importance-weighted bound equals the ELBO for every k
and is not reported. Samples drawn from that uniform prior (`sample`) look like noise
textures: VQ-VAE gets good samples from a learned prior over codes (a PixelCNN), which
this app does not train.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.vae import losses, render
from keras_suite.apps.vae.model import conv_trunk, decode_params, likelihood_heads, upsampling_trunk

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


@keras.saving.register_keras_serializable(package="keras_suite.vae")
class VectorQuantizer(keras.layers.Layer):
    """z_e [..., D] -> (codes [...] int32, z_q [..., D]): the nearest code vector of K."""

    def __init__(self, num_codes: int, code_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_codes, self.code_dim = num_codes, code_dim

    def build(self, input_shape):
        self.codebook = self.add_weight(
            shape=(self.num_codes, self.code_dim),
            name="codebook",
            initializer=keras.initializers.VarianceScaling(distribution="uniform"),
        )

    def call(self, z_e):
        flat = keras.ops.reshape(z_e, (-1, self.code_dim))
        codebook = keras.ops.cast(self.codebook, flat.dtype)
        distances = (
            keras.ops.sum(flat**2, axis=1, keepdims=True)
            - 2.0 * flat @ keras.ops.transpose(codebook)
            + keras.ops.sum(codebook**2, axis=1)[None]
        )
        # tf.argmin, not keras.ops.argmin: Keras's adds signed-zero handling (BitwiseAnd),
        # which has no TFLite builtin kernel
        codes = tf.argmin(distances, axis=1, output_type=tf.int32)
        z_q = keras.ops.reshape(tf.gather(codebook, codes), keras.ops.shape(z_e))
        return keras.ops.reshape(codes, keras.ops.shape(z_e)[:-1]), z_q

    def compute_output_shape(self, input_shape):
        return input_shape[:-1], input_shape

    def stock_call(self, z_e):
        """The same quantiser from stock layers holding copies of the codebook, for a .keras
        file that loads without this package (common/keras_files.py). The nearest code
        argmin_k |z - c_k|^2 is argmax_k (z . c_k - |c_k|^2 / 2): a Dense layer scores
        every code, and an Embedding looks the winner up."""
        codebook = keras.ops.convert_to_numpy(self.codebook)
        scores = keras.layers.Dense(self.num_codes, name=f"{self.name}_scores", dtype=self.dtype)
        lookup = keras.layers.Embedding(
            self.num_codes, self.code_dim, name=f"{self.name}_lookup", dtype=self.dtype
        )
        codes = keras.ops.cast(keras.ops.argmax(scores(z_e), axis=-1), "int32")
        z_q = lookup(codes)
        scores.set_weights([codebook.T, -0.5 * np.sum(codebook**2, axis=1)])
        lookup.set_weights([codebook])
        return codes, z_q

    def get_config(self):
        return {**super().get_config(), "num_codes": self.num_codes, "code_dim": self.code_dim}


def grid_size(cfg_model, image_size: int) -> int:
    return image_size // 2**cfg_model.num_downsamples


def build_models(cfg_model, image_size: int, channels: int) -> dict:
    g, d = grid_size(cfg_model, image_size), cfg_model.latent_dim
    images = keras.Input((image_size, image_size, channels), name="images")
    z_e = keras.layers.Conv2D(d, 1, name="z_e", dtype="float32")(conv_trunk(images, cfg_model))
    encoder = keras.Model(images, z_e, name="encoder")
    latents = keras.Input((g, g, d), name="latents")
    codes, z_q = VectorQuantizer(cfg_model.codebook_size, d, name="quantizer", dtype="float32")(
        latents
    )
    codebook = keras.Model(latents, [codes, z_q], name="codebook")
    z = keras.Input((g, g, d), name="latents")
    top = cfg_model.base_filters * 2 ** min(cfg_model.num_downsamples - 1, 3)
    x = keras.layers.Activation("silu")(keras.layers.Conv2D(top, 3, padding="same")(z))
    x = upsampling_trunk(x, cfg_model)
    decoder = keras.Model(z, likelihood_heads(x, channels, cfg_model.likelihood), name="decoder")
    return {"encoder": encoder, "codebook": codebook, "decoder": decoder}


def prior_nats(cfg_model, image_size: int) -> float:
    """KL of the one-hot posterior to the uniform prior: h * w * log K."""
    return grid_size(cfg_model, image_size) ** 2 * math.log(cfg_model.codebook_size)


def forward_terms(state, x, cfg_model, training: bool):
    """Per-example recon, codebook and commitment terms, and the codes."""
    z_e = tf.cast(state.models["encoder"](x, training=training), tf.float32)
    codes, z_q = state.models["codebook"](z_e, training=training)
    per_image = lambda t: tf.reduce_sum(tf.reshape(t, [tf.shape(t)[0], -1]), 1)  # noqa: E731
    codebook_loss = per_image(tf.square(tf.stop_gradient(z_e) - z_q))
    commitment = per_image(tf.square(z_e - tf.stop_gradient(z_q)))
    z_st = z_e + tf.stop_gradient(z_q - z_e)  # straight-through estimator
    params = decode_params(state.models["decoder"], z_st, training)
    recon = -losses.log_likelihood(x, params, cfg_model.likelihood)
    return recon, codebook_loss, commitment, codes


class VQModel:
    """Compiled inference calls of a VQ-VAE run (numpy in/out), like evaluate.Model."""

    def __init__(self, models: dict, likelihood: str):
        encoder, codebook, decoder = models["encoder"], models["codebook"], models["decoder"]
        self.likelihood = likelihood
        self.grid, self.code_dim = (
            int(encoder.outputs[0].shape[1]),
            int(encoder.outputs[0].shape[-1]),
        )
        self.num_codes = int(codebook.get_layer("quantizer").num_codes)
        self.quantize = tf.function(lambda x: codebook(encoder(x, training=False), training=False))
        self.decode = tf.function(lambda z: decode_params(decoder, z))
        self.lookup = tf.function(lambda c: tf.gather(codebook.get_layer("quantizer").codebook, c))

    def images(self, z_q) -> np.ndarray:
        return losses.mean_image(self.decode(tf.constant(z_q, tf.float32)), self.likelihood).numpy()

    def images_from_codes(self, codes) -> np.ndarray:
        return self.images(self.lookup(tf.constant(codes, tf.int32)))

    def reconstruct(self, x) -> np.ndarray:
        return self.images(self.quantize(tf.constant(x, tf.float32))[1])

    def random_codes(self, n: int, seed: int) -> np.ndarray:
        return tf.random.stateless_uniform(
            [n, self.grid, self.grid], seed=[seed, 0], maxval=self.num_codes, dtype=tf.int32
        ).numpy()


def metrics(model: VQModel, images: np.ndarray, cfg) -> dict:
    dims = int(np.prod(images.shape[1:]))
    prior = model.grid**2 * math.log(model.num_codes)
    recon, mse, counts = [], [], np.zeros(model.num_codes, np.int64)
    for start in range(0, len(images), 128):
        x = tf.constant(images[start : start + 128])
        codes, z_q = model.quantize(x)
        params = model.decode(z_q)
        recon.append(-losses.log_likelihood(x, params, model.likelihood).numpy())
        err = np.square((losses.mean_image(params, model.likelihood).numpy() - x.numpy()) / 255.0)
        mse.append(err.reshape(len(err), -1).mean(1))
        counts += np.bincount(codes.numpy().reshape(-1), minlength=model.num_codes)
    recon, mse = np.concatenate(recon), np.concatenate(mse)
    p = counts / counts.sum()
    neg_elbo = float(recon.mean() + prior)
    return {
        "neg_elbo": neg_elbo,
        "bits_per_dim": float(losses.bits_per_dim(neg_elbo, dims)),
        "recon": float(recon.mean()),
        "kl": float(prior),  # KL to the uniform prior over codes
        "recon_mse": float(mse.mean()),
        "codebook_perplexity": float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum())),
        "codes_used": int((counts > 0).sum()),
        "codebook_size": model.num_codes,
        "latent_grid": [model.grid, model.grid],
        "num_examples": int(len(images)),
        "dims_per_image": dims,
    }


def plots(model: VQModel, images: np.ndarray, cfg, run_dir) -> list[Path]:
    plots_dir = Path(run_dir) / "plots"
    n = min(32, len(images))
    return [
        render.save_reconstructions(
            images[:n], model.reconstruct(images[:n]), plots_dir / "reconstructions.png"
        ),
        render.save_grid(
            model.images_from_codes(model.random_codes(64, cfg.eval.seed)),
            plots_dir / "samples_uniform_prior.png",
            cols=8,
        ),
    ]


# ---- deployment ----------------------------------------------------------------------------


def serving_archive(models: dict, info: dict) -> keras.export.ExportArchive:
    """reconstruct (= serving_default), encode (images -> codes [N,h,w] int32, latents),
    decode (codes -> images), sample (seed, n -> codes drawn uniformly, images)."""
    size, channels, likelihood = info["image_size"], info["channels"], info["likelihood"]
    encoder, codebook, decoder = models["encoder"], models["codebook"], models["decoder"]
    grid, num_codes = info["latent_grid"], info["codebook_size"]
    archive = keras.export.ExportArchive()
    for m in (encoder, codebook, decoder):
        archive.track(m)
    image_spec = tf.TensorSpec([None, size, size, channels], tf.float32, name="images")
    table = codebook.get_layer("quantizer").codebook

    def decode_codes(codes):
        return losses.mean_image(decode_params(decoder, tf.gather(table, codes)), likelihood)

    def reconstruct(images):
        _, z_q = codebook(encoder(images, training=False), training=False)
        return {"images": losses.mean_image(decode_params(decoder, z_q), likelihood)}

    @tf.function(input_signature=[image_spec])
    def encode(images):
        codes, z_q = codebook(encoder(images, training=False), training=False)
        return {"codes": codes, "latents": z_q}

    @tf.function(input_signature=[tf.TensorSpec([None, grid, grid], tf.int32, name="codes")])
    def decode(codes):
        return {"images": decode_codes(tf.clip_by_value(codes, 0, num_codes - 1))}

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.int64, name="seed"),
            tf.TensorSpec([], tf.int32, name="n"),
        ]
    )
    def sample(seed, n):
        codes = tf.random.stateless_uniform(
            tf.stack([n, grid, grid]),
            seed=tf.stack([seed, tf.constant(0, tf.int64)]),
            maxval=num_codes,
            dtype=tf.int32,
        )
        return {"images": decode_codes(codes), "codes": codes}

    archive.add_endpoint("serving_default", tf.function(reconstruct, input_signature=[image_spec]))
    archive.add_endpoint("reconstruct", tf.function(reconstruct, input_signature=[image_spec]))
    archive.add_endpoint("encode", encode)
    archive.add_endpoint("decode", decode)
    archive.add_endpoint("sample", sample)
    return archive


def tflite_archives(models: dict, info: dict) -> dict:
    """Batch 1: encoder (images -> codes, latents = z_q) and decoder (latents -> images + parameters)."""
    size, channels, likelihood, grid = (
        info["image_size"],
        info["channels"],
        info["likelihood"],
        info["latent_grid"],
    )
    encoder, codebook, decoder = models["encoder"], models["codebook"], models["decoder"]
    enc = keras.export.ExportArchive()
    enc.track(encoder)
    enc.track(codebook)

    @tf.function(
        input_signature=[tf.TensorSpec([1, size, size, channels], tf.float32, name="images")]
    )
    def encode(images):
        codes, z_q = codebook(encoder(images, training=False), training=False)
        return {"codes": codes, "latents": z_q}

    enc.add_endpoint("serving_default", encode)
    dec = keras.export.ExportArchive()
    dec.track(decoder)

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, grid, grid, info["latent_dim"]], tf.float32, name="latents")
        ]
    )
    def decode(latents):
        params = decode_params(decoder, latents)
        names = ["logits"] if likelihood == "bernoulli" else ["loc", "log_scale"]
        return {"images": losses.mean_image(params, likelihood), **dict(zip(names, params))}

    dec.add_endpoint("serving_default", decode)
    return {"encoder": enc, "decoder": dec}


def tflite_evaluate(run_signature, images: np.ndarray, model: VQModel, half: str, cfg) -> dict:
    """-ELBO with one half converted (the other Keras), codes agreement and pixel difference."""
    from keras_suite.apps.vae.export import params_from_outputs

    likelihood = cfg.model.likelihood
    recon, agree, max_diff = [], [], 0.0
    for x in images:
        x = x[None]
        keras_codes, keras_zq = (v.numpy() for v in model.quantize(tf.constant(x)))
        reference = model.images(keras_zq)
        if half == "encoder":
            out = run_signature({"images": x})
            z_q = np.asarray(out["latents"], np.float32)
            agree.append(
                float(np.mean(np.asarray(out["codes"]).reshape(keras_codes.shape) == keras_codes))
            )
            params, shown = model.decode(tf.constant(z_q)), model.images(z_q)
        else:
            out = run_signature({"latents": keras_zq.astype(np.float32)})
            params, shown = (
                params_from_outputs(out, likelihood),
                np.asarray(out["images"], np.float32),
            )
        params = [tf.constant(np.asarray(p, np.float32)) for p in params]
        recon.append(-float(losses.log_likelihood(tf.constant(x), params, likelihood)[0]))
        max_diff = max(max_diff, float(np.abs(shown - reference).max()))
    prior = model.grid**2 * math.log(model.num_codes)
    neg_elbo = float(np.mean(recon)) + prior
    out = {
        "neg_elbo": neg_elbo,
        "bits_per_dim": float(losses.bits_per_dim(neg_elbo, int(np.prod(images.shape[1:])))),
        "recon": float(np.mean(recon)),
        "max_pixel_diff": max_diff,
        "num_examples": len(images),
    }
    if agree:
        out["code_agreement"] = float(np.mean(agree))
    return out

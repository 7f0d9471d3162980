"""Test-set metrics of a trained (V)AE and its PNGs.

- neg_elbo: -ELBO in nats per image = E_q[-log p(x|z)] + KL(q(z|x) || p(z)), with one
  reparameterised sample per image and the KL in closed form; bits/dim divides by
  H*W*C*ln 2.
- neg_iwae: -log (1/k) sum_i p(x, z_i) / q(z_i | x), the importance-weighted bound of
  Burda et al. (2015) with k samples; an upper bound on -log p(x) that tightens with k
  and never exceeds neg_elbo in expectation.
- active_units: latent dims whose posterior mean varies over the data,
  Cov_x(E_q[z_u | x]) > threshold (Burda et al. 2015, 0.01).
- recon_nll_at_mean / recon_mse: reconstruction from the posterior mean (what the plain
  autoencoder optimises), the number to compare a VAE with an autoencoder on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.vae import losses, render
from keras_suite.apps.vae.model import decode_params

tf = common.quiet_import_tensorflow()


class Model:
    """Compiled inference calls of a run's encoder and decoder (float32 numpy in/out).
    Built per use (evaluation, conversion, a command), never kept on the app."""

    def __init__(self, encoder, decoder, likelihood: str):
        self.likelihood = likelihood
        self.encode = tf.function(lambda x: encoder(x, training=False))
        self.decode = tf.function(lambda z: decode_params(decoder, z))
        self.latent_dim = int(encoder.outputs[0].shape[-1])
        self.terms = tf.function(self._terms)
        self._bounds: dict = {}

    def images(self, z) -> np.ndarray:
        return losses.mean_image(self.decode(tf.constant(z, tf.float32)), self.likelihood).numpy()

    def reconstruct(self, x) -> np.ndarray:
        mean, _ = self.encode(tf.constant(x, tf.float32))
        return self.images(mean)

    def _terms(self, x, seed):
        """Per-image recon (1 sample), kl, recon at the posterior mean, squared error, mean."""
        mean, logvar = self.encode(x)
        eps = tf.random.stateless_normal(tf.shape(mean), seed=seed)
        z = mean + tf.exp(0.5 * logvar) * eps
        recon = -losses.log_likelihood(x, self.decode(z), self.likelihood)
        at_mean = self.decode(mean)
        err = tf.square((losses.mean_image(at_mean, self.likelihood) - x) / 255.0)
        return {
            "recon": recon,
            "kl": losses.gaussian_kl(mean, logvar),
            "recon_at_mean": -losses.log_likelihood(x, at_mean, self.likelihood),
            "mse": tf.reduce_mean(tf.reshape(err, [tf.shape(x)[0], -1]), 1),
            "mean": mean,
        }

    def iwae_bound(self, k: int, chunk: int):
        """A compiled (x, seed) -> IWAE bound per image, k samples drawn `chunk` at a time."""
        if (k, chunk) not in self._bounds:

            def bound(x, seed):
                mean, logvar = self.encode(x)
                b = tf.shape(x)[0]

                def log_px(z):  # z [b, c, L] -> [b, c]
                    c = tf.shape(z)[1]
                    params = self.decode(tf.reshape(z, [-1, self.latent_dim]))
                    xs = tf.repeat(x, c, axis=0)  # row b*c + j is image b, as in the reshape
                    return tf.reshape(losses.log_likelihood(xs, params, self.likelihood), [b, c])

                return losses.iwae_bound(
                    losses.iwae_log_weights(mean, logvar, log_px, k, chunk, seed)
                )

            self._bounds[(k, chunk)] = tf.function(bound)
        return self._bounds[(k, chunk)]


def _batches(images: np.ndarray, size: int):
    for start in range(0, len(images), size):
        yield start, images[start : start + size]


def score(model: Model, images: np.ndarray, seed: int, batch: int = 128) -> dict:
    """Model._terms over `images`, concatenated (numpy)."""
    out: dict = {}
    for i, (_, x) in enumerate(_batches(images, batch)):
        for k, v in model.terms(tf.constant(x), tf.constant([seed, i], tf.int64)).items():
            out.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def iwae(
    model: Model, images: np.ndarray, k: int, chunk: int, seed: int, batch: int = 16
) -> np.ndarray:
    """The IWAE bound log (1/k) sum_i w_i per image (nats), k samples per image."""
    bound = model.iwae_bound(k, max(1, min(chunk, k)))
    return np.concatenate(
        [
            bound(tf.constant(x), tf.constant([seed, 10_000 + i], tf.int64)).numpy()
            for i, (_, x) in enumerate(_batches(images, batch))
        ]
    )


def active_units(posterior_means: np.ndarray, threshold: float) -> tuple[int, np.ndarray]:
    variances = np.var(posterior_means.astype(np.float64), axis=0)
    return int((variances > threshold).sum()), variances


def metrics(model: Model, images: np.ndarray, cfg) -> dict:
    ev, kind = cfg.eval, cfg.model.kind
    dims = int(np.prod(images.shape[1:]))
    s = score(model, images, ev.seed)
    n_active, variances = active_units(s["mean"], ev.active_threshold)
    recon_at_mean = float(s["recon_at_mean"].mean())
    common_part = {
        "recon_nll_at_mean": recon_at_mean,
        "recon_bits_per_dim_at_mean": float(losses.bits_per_dim(recon_at_mean, dims)),
        "recon_mse": float(s["mse"].mean()),
        "active_units": n_active,
        "latent_dim": model.latent_dim,
        "num_examples": int(len(images)),
        "dims_per_image": dims,
    }
    if kind != "vae":
        out = {"recon_nll": recon_at_mean, **common_part}
    else:
        neg_elbo = s["recon"] + s["kl"]
        n_iwae = min(len(images), ev.iwae_examples or len(images))
        bound = iwae(model, images[:n_iwae], ev.iwae_samples, ev.iwae_chunk, ev.seed)
        out = {
            "neg_elbo": float(neg_elbo.mean()),
            "neg_iwae": float(-bound.mean()),
            "bits_per_dim": float(losses.bits_per_dim(neg_elbo.mean(), dims)),
            "iwae_bits_per_dim": float(losses.bits_per_dim(-bound.mean(), dims)),
            "recon": float(s["recon"].mean()),
            "kl": float(s["kl"].mean()),
            # the same images for both bounds, so the gap is the bound's gap, not sampling of images
            "neg_elbo_on_iwae_examples": float(neg_elbo[:n_iwae].mean()),
            "iwae_k": int(ev.iwae_samples),
            "iwae_examples": int(n_iwae),
            **common_part,
        }
    out["posterior_mean_variance"] = [float(v) for v in variances]
    return out, s


def plots(
    model: Model, images: np.ndarray, posterior_means: np.ndarray, cfg, run_dir
) -> list[Path]:
    """reconstructions.png, samples.png, traversals.png and (2-D latent) manifold.png."""
    plots_dir = Path(run_dir) / "plots"
    seed = cfg.eval.seed
    n = min(32, len(images))
    written = [
        render.save_reconstructions(
            images[:n], model.reconstruct(images[:n]), plots_dir / "reconstructions.png"
        )
    ]
    z = tf.random.stateless_normal([64, model.latent_dim], seed=[seed, 0]).numpy()
    written.append(render.save_grid(model.images(z), plots_dir / "samples.png", cols=8))
    # Traversals: the most active dims, each swept over [-3, 3] from one test image's code.
    variances = np.var(posterior_means, axis=0)
    dims = [int(d) for d in np.argsort(-variances)[: min(8, model.latent_dim)]]
    values = np.linspace(-3.0, 3.0, 9)
    base = posterior_means[0]
    codes = np.repeat(base[None], len(dims) * len(values), axis=0)
    for row, d in enumerate(dims):
        codes[row * len(values) : (row + 1) * len(values), d] = values
    written.append(
        render.save_traversals(
            model.images(codes),
            dims,
            values,
            plots_dir / "traversals.png",
            "latent traversals (rows: most active dims)",
        )
    )
    if model.latent_dim == 2:
        grid = tf.math.ndtri(
            np.linspace(0.05, 0.95, 15)
        ).numpy()  # equal prior mass between neighbours
        codes = np.array([[a, b] for b in grid[::-1] for a in grid], np.float32)
        written.append(render.save_grid(model.images(codes), plots_dir / "manifold.png", cols=15))
    return written

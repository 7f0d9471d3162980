"""Variational autoencoder (and plain/denoising autoencoders): the app contract."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.vae import config as cfg_lib
from keras_suite.apps.vae import evaluate as eval_lib
from keras_suite.apps.vae import export as export_lib
from keras_suite.apps.vae import losses, render, vq
from keras_suite.apps.vae.data import build_datasets, split_images, to_model_pixels
from keras_suite.apps.vae.model import build_decoder, build_encoder, decode_params
from keras_suite.common.app import App, TFLiteTarget
from keras_suite.common.errors import UserError
from keras_suite.common.images import decode_resize, is_readable_image
from keras_suite.common.runlog import log
from keras_suite.common.training import (
    TrainState,
    apply_gradients,
    global_sum,
    make_optimizer,
    replica_mean,
)

tf = common.quiet_import_tensorflow()


def forward_terms(state, x, step, training: bool):
    """Per-example terms of one pass: recon [b], kl_per_dim [b, L] (zeros for ae/dae)."""
    cfg = step.cfg.model
    x_in = x
    if cfg.kind == "dae" and training:  # corrupt the input, score the clean image
        noise = tf.random.stateless_normal(tf.shape(x), seed=step.seed(1)) * (
            cfg.denoise_std * 255.0
        )
        x_in = tf.clip_by_value(x + noise, 0.0, 255.0)
    mean, logvar = state.models["encoder"](x_in, training=training)
    mean, logvar = tf.cast(mean, tf.float32), tf.cast(logvar, tf.float32)
    if cfg.kind == "vae":  # reparameterisation: z = mean + sigma * eps, eps ~ N(0, I)
        eps = tf.random.stateless_normal(tf.shape(mean), seed=step.seed(0))
        z = mean + tf.exp(0.5 * logvar) * eps
        kl_per_dim = losses.gaussian_kl_per_dim(mean, logvar)
    else:
        z, kl_per_dim = mean, tf.zeros_like(mean)
    params = decode_params(state.models["decoder"], z, training)
    recon = -losses.log_likelihood(x, params, cfg.likelihood)
    return recon, kl_per_dim


class VAEApp(App):
    name = "vae"
    description = (
        "Convolutional VAE (Bernoulli / discretised logistic / Gaussian decoders), "
        "plain and denoising autoencoders, VQ-VAE"
    )
    presets = cfg_lib.PRESETS
    predict_inputs = "image files (JPEG/PNG/BMP/GIF) to reconstruct"
    # neg_elbo (VAE) or recon_nll (autoencoder), nats per image: lower is better
    parity_tolerance = {"metric": "", "max_drop": 0.05, "higher_is_better": False}

    def datasets(self, *, cfg, artifacts):
        return build_datasets(cfg)

    def build_state(self, *, cfg, info):
        size, channels = info["image_size"], info["channels"]
        if cfg.model.kind == "vqvae":
            models = vq.build_models(cfg.model, size, channels)
        else:
            models = {
                "encoder": build_encoder(cfg.model, size, channels),
                "decoder": build_decoder(cfg.model, size, channels, cfg.model.likelihood),
            }
        steps = cfg.train.epochs * (info["num_train"] // cfg.train.batch_size)
        if cfg.train.steps_per_epoch:
            steps = cfg.train.epochs * min(
                cfg.train.steps_per_epoch, info["num_train"] // cfg.train.batch_size
            )
        return TrainState(
            models=models,
            optimizers={"model": make_optimizer(cfg.train, steps)},
            optimizer_models={"model": tuple(models)},
            exported=tuple(models),
        )

    # ---- steps (per replica) --------------------------------------------------------------
    def train_step(self, state, batch, step):
        cfg, gb = step.cfg.model, step.global_batch_size
        dims = float(np.prod(batch.shape[1:]))
        variables = state.trainable_variables("model")
        if cfg.kind == "vqvae":
            return self._vq_train_step(state, batch, step, variables, dims)
        with tf.GradientTape() as tape:
            recon, kl_per_dim = forward_terms(state, batch, step, training=True)
            kl = tf.reduce_sum(kl_per_dim, -1)
            objective = recon
            if cfg.kind == "vae":
                weight = losses.kl_weight(step.step, cfg.beta, cfg.kl_warmup_steps)
                kl_term = kl
                if cfg.free_bits > 0:
                    # Free bits (Kingma et al. 2016): a dim whose KL, averaged over the GLOBAL
                    # batch, is under the allowance costs the allowance and gets no gradient.
                    batch_kl = tf.stop_gradient(global_sum(tf.reduce_sum(kl_per_dim, 0)) / gb)
                    kl_term = tf.reduce_sum(
                        tf.where(batch_kl[None] > cfg.free_bits, kl_per_dim, cfg.free_bits), -1
                    )
                objective = recon + weight * kl_term
            loss = replica_mean(objective, gb)
        apply_gradients(tape, loss, variables, state.optimizers["model"], step.cfg.train.clip_norm)
        out = {"loss": loss, "recon": replica_mean(recon, gb)}
        if cfg.kind == "vae":
            neg_elbo = replica_mean(recon + kl, gb)
            out.update(
                kl=replica_mean(kl, gb),
                neg_elbo=neg_elbo,
                bits_per_dim=losses.bits_per_dim(neg_elbo, dims),
                kl_weight=replica_mean(tf.fill(tf.shape(recon), weight), gb),
            )
        return out

    def _vq_train_step(self, state, batch, step, variables, dims):
        cfg, gb = step.cfg.model, step.global_batch_size
        with tf.GradientTape() as tape:
            recon, codebook_loss, commitment, _ = vq.forward_terms(state, batch, cfg, training=True)
            loss = replica_mean(recon + codebook_loss + cfg.commitment * commitment, gb)
        apply_gradients(tape, loss, variables, state.optimizers["model"], step.cfg.train.clip_norm)
        neg_elbo = replica_mean(recon, gb) + replica_mean(
            tf.fill(tf.shape(recon), vq.prior_nats(cfg, batch.shape[1])), gb
        )
        return {
            "loss": loss,
            "recon": replica_mean(recon, gb),
            "neg_elbo": neg_elbo,
            "bits_per_dim": losses.bits_per_dim(neg_elbo, dims),
            "codebook_loss": replica_mean(codebook_loss, gb),
            "commitment": replica_mean(commitment, gb),
        }

    def test_step(self, state, batch, step):
        if step.cfg.model.kind == "vqvae":
            recon = vq.forward_terms(state, batch, step.cfg.model, training=False)[0]
            prior = vq.prior_nats(step.cfg.model, batch.shape[1])
            return {
                "recon": tf.reduce_sum(recon),
                "neg_elbo": tf.reduce_sum(recon + prior),
                "count": tf.cast(tf.shape(recon)[0], tf.float32),
            }
        recon, kl_per_dim = forward_terms(state, batch, step, training=False)
        kl = tf.reduce_sum(kl_per_dim, -1)
        out = {"recon": tf.reduce_sum(recon), "count": tf.cast(tf.shape(recon)[0], tf.float32)}
        if step.cfg.model.kind == "vae":
            out.update(kl=tf.reduce_sum(kl), neg_elbo=tf.reduce_sum(recon + kl))
        return out

    # ---- evaluation ---------------------------------------------------------------------------
    def evaluate(self, *, state, data, cfg, run_dir):
        if cfg.model.kind == "vqvae":
            model = vq.VQModel(state.models, cfg.model.likelihood)
            images = split_images(data)
            metrics = vq.metrics(model, images, cfg)
            written = vq.plots(model, images, cfg, run_dir)
            log.info(
                "test: %s; plots %s",
                ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)),
                ", ".join(p.name for p in written),
            )
            return metrics
        model = eval_lib.Model(
            state.models["encoder"], state.models["decoder"], cfg.model.likelihood
        )
        images = split_images(data)
        metrics, scores = eval_lib.metrics(model, images, cfg)
        if (
            cfg.model.kind == "dae"
        ):  # the denoising task itself: noisy test image in, clean one scored
            rng = np.random.default_rng(cfg.eval.seed)
            noisy = np.clip(
                images + rng.normal(0, cfg.model.denoise_std * 255, images.shape), 0, 255
            )
            metrics["denoise_mse"] = float(
                np.mean(np.square((model.reconstruct(noisy.astype(np.float32)) - images) / 255.0))
            )
        written = eval_lib.plots(model, images, scores["mean"], cfg, run_dir)
        log.info(
            "test: %s; plots %s",
            ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)),
            ", ".join(p.name for p in written),
        )
        return metrics

    # ---- serving --------------------------------------------------------------------------------
    def export_archive(self, *, state, info, cfg, artifacts):
        if info["kind"] == "vqvae":
            return vq.serving_archive(state.models, info)
        return export_lib.serving_archive(state.models["encoder"], state.models["decoder"], info)

    def sample_requests(self, *, data, info, cfg):
        images = split_images(data, 2)
        return {
            "serving_default": [{"images": images}],
            "reconstruct": [{"images": images}],
            "encode": [{"images": images}],
            "decode": [
                {"latents": np.zeros((2, info["latent_dim"]), np.float32)}
                if info["kind"] != "vqvae"
                else {"codes": np.zeros((2, info["latent_grid"], info["latent_grid"]), np.int32)}
            ],
            "sample": [{"seed": np.array(0, np.int64), "n": np.array(2, np.int32)}],
        }

    def predict_request(self, *, inputs, info, cfg):
        return "reconstruct", {"images": read_images(inputs, info)}

    def render_predictions(self, *, inputs, outputs, info, out_dir):
        """One PNG per input: the input (as the model saw it) beside its reconstruction."""
        images = read_images(inputs, info)
        written = []
        for path, x, y in zip(inputs, images, np.asarray(outputs["images"], np.float32)):
            target = Path(out_dir) / f"{Path(path).stem}_reconstruction.png"
            written.append(
                str(
                    render.save_png(
                        render.tile(np.stack([x, y]), 2), target, max(1, 128 // info["image_size"])
                    )
                )
            )
        return written

    def predict_examples(self, *, data, info, cfg, out_dir):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, image in enumerate(split_images(data, 3)):
            paths.append(out_dir / f"example_{i}.png")
            paths[-1].write_bytes(png_bytes(image))
        return [str(p) for p in paths]

    # ---- TFLite ----------------------------------------------------------------------------------
    def tflite_targets(self, *, state, data, cfg, workdir):
        info = data.info
        encoder, decoder = state.models["encoder"], state.models["decoder"]
        if cfg.model.kind == "vqvae":
            model = vq.VQModel(state.models, cfg.model.likelihood)
            archives = vq.tflite_archives(state.models, info)
        else:
            model = eval_lib.Model(encoder, decoder, cfg.model.likelihood)
            archives = {
                "encoder": export_lib.encoder_tflite_archive(encoder, info),
                "decoder": export_lib.decoder_tflite_archive(decoder, info),
            }
        calibration, _, calibration_size = data.extras["calibration"]
        targets = []
        for half, archive in archives.items():
            path = str(Path(workdir) / f"vae_{half}")
            archive.write_out(path, verbose=False)
            targets.append(
                TFLiteTarget(
                    name=half,
                    saved_model_dir=path,
                    signature="serving_default",
                    representative_data=_calibration(half, model, data, cfg),
                    calibration_split=f"{calibration} ({calibration_size} images)",
                    evaluation_split=f"test ({min(info['num_test'], cfg.eval.tflite_examples)} images)",
                    extras={"half": half, "model": model},
                )
            )
        # tflite_evaluate may be handed the target's name only; the same extras by name:
        return targets

    def tflite_evaluate(self, *, run_signature, data, cfg, info, target):
        """The ELBO (nats/image) with one half converted and the other the Keras model.

        The encoder target feeds its mean/log-variance to the Keras decoder; the decoder
        target decodes the Keras encoder's codes. The noise eps is fixed, so the Keras
        reference run and each TFLite run score exactly the same samples, and a change
        in the ELBO is the converted half's. max_pixel_diff compares the reconstruction
        (from the posterior mean) with the all-Keras one, in 0..255 pixels."""
        extras = target.extras
        half, model = extras["half"], extras["model"]
        likelihood = cfg.model.likelihood
        images = split_images(data, cfg.eval.tflite_examples)
        if cfg.model.kind == "vqvae":
            return vq.tflite_evaluate(run_signature, images, model, half, cfg)
        eps = (
            np.random.default_rng(cfg.eval.seed)
            .standard_normal((len(images), model.latent_dim))
            .astype(np.float32)
        )
        recon, kl, max_diff = [], [], 0.0
        for x, e in zip(images, eps):
            x = x[None]
            keras_mean, keras_logvar = (v.numpy() for v in model.encode(tf.constant(x)))
            reference = model.images(keras_mean)
            if half == "encoder":
                out = run_signature({"images": x})
                mean, logvar = (
                    np.asarray(out["mean"], np.float32),
                    np.asarray(out["log_variance"], np.float32),
                )
                z = mean + np.exp(0.5 * logvar) * e
                params = model.decode(tf.constant(z))
                shown = model.images(mean)
            else:
                mean, logvar = keras_mean, keras_logvar
                z = mean + np.exp(0.5 * logvar) * e
                params = export_lib.params_from_outputs(
                    run_signature({"latents": z.astype(np.float32)}), likelihood
                )
                shown = np.asarray(run_signature({"latents": mean})["images"], np.float32)
            recon.append(
                -float(
                    losses.log_likelihood(
                        tf.constant(x),
                        [tf.constant(np.asarray(p, np.float32)) for p in params],
                        likelihood,
                    )[0]
                )
            )
            kl.append(float(losses.gaussian_kl(mean, logvar)[0]))
            max_diff = max(max_diff, float(np.abs(shown - reference).max()))
        dims = int(np.prod(images.shape[1:]))
        recon_mean = float(np.mean(recon))
        if cfg.model.kind != "vae":  # no ELBO for a deterministic autoencoder
            return {
                "recon_nll": recon_mean,
                "max_pixel_diff": max_diff,
                "num_examples": len(images),
            }
        neg_elbo = recon_mean + float(np.mean(kl))
        return {
            "neg_elbo": neg_elbo,
            "bits_per_dim": float(losses.bits_per_dim(neg_elbo, dims)),
            "recon": recon_mean,
            "kl": float(np.mean(kl)),
            "max_pixel_diff": max_diff,
            "num_examples": len(images),
        }

    # ---- TensorBoard ---------------------------------------------------------------------
    def tensorboard_images(self, *, state, data, cfg):
        """Eight validation images above their reconstructions and, for a VAE, eight
        samples decoded from fixed prior draws."""
        from keras_suite.common import cache
        from keras_suite.common.tensorboard import enlarge, to_rgb

        def build():  # compiled once per run, not once per epoch
            if cfg.model.kind == "vqvae":
                return vq.VQModel(state.models, cfg.model.likelihood)
            return eval_lib.Model(
                state.models["encoder"], state.models["decoder"], cfg.model.likelihood
            )

        model = cache.last_value("vae.tensorboard", state.models["encoder"], build)
        out = {}
        if data.val is not None:
            images = np.stack(list(data.val.unbatch().take(8).as_numpy_iterator()))
            images = images.astype(np.float32)
            pairs = to_rgb(np.concatenate([images, model.reconstruct(images)]))
            out["val/input_reconstruction"] = enlarge(render.tile(pairs, len(images)), 256)[None]
        if cfg.model.kind == "vae":
            z = np.random.default_rng(0).normal(size=(8, model.latent_dim)).astype(np.float32)
            out["samples/prior"] = enlarge(render.tile(to_rgb(model.images(z)), 8), 256)[None]
        return out


def _calibration(half: str, model, data, cfg):
    """int8 calibration inputs from the validation split, or the training images when there
    is none; never the test split, which the parity report scores."""
    source = data.extras["calibration"][1]

    def images():
        for x in source.unbatch().batch(1):
            yield x.numpy().astype(np.float32)

    def representative_data():
        rng = np.random.default_rng(cfg.train.seed)
        for x in images():
            if half == "encoder":
                yield {"images": x}
            elif isinstance(model, vq.VQModel):  # the decoder sees quantised codes of real images
                yield {"latents": model.quantize(tf.constant(x))[1].numpy()}
            else:  # what the decoder sees: posterior samples of real images
                mean, logvar = (v.numpy() for v in model.encode(tf.constant(x)))
                yield {
                    "latents": (
                        mean + np.exp(0.5 * logvar) * rng.standard_normal(mean.shape)
                    ).astype(np.float32)
                }

    return representative_data


def read_images(paths, info) -> np.ndarray:
    """Image files -> float32 [n, S, S, C] pixels exactly as the training pipeline makes them."""
    size = info["image_size"]
    out = []
    for path in paths:
        if not Path(path).is_file():
            what = "is a folder" if Path(path).is_dir() else "does not exist"
            raise UserError(f"{path} {what}; pass paths of JPEG/PNG/BMP/GIF images")
        data = Path(path).read_bytes()
        if not is_readable_image(data):
            raise UserError(
                f"{path} is not a readable image (JPEG/PNG/BMP/GIF); remove it or convert it"
            )
        rgb = decode_resize(tf.constant(data), size)
        out.append(to_model_pixels(rgb, info["channels"], info["binarize"]).numpy())
    return np.stack(out).astype(np.float32)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    pixels = np.clip(image, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buf, format="PNG")
    return buf.getvalue()

"""GANs: the app contract for DCGAN and StyleGAN-lite (docs/gan.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.gan import config as cfg_lib
from keras_suite.apps.gan import export, losses, sampling
from keras_suite.apps.gan.augment import diff_augment
from keras_suite.apps.gan.data import real_splits, train_epoch_fn
from keras_suite.apps.gan.features import META, load_feature_net, train_classifier
from keras_suite.apps.gan.metrics import fid, kid, precision_recall_density_coverage
from keras_suite.apps.gan.model import build_discriminator, build_generator
from keras_suite.common.app import App, Datasets, TFLiteTarget
from keras_suite.common.duplicates import IMAGE_RULE, evaluation_split
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log
from keras_suite.common.training import TrainState, apply_gradients, make_optimizer, replica_mean

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

# Seed ranges: evaluation and parity samples use seeds 0..N-1, int8 calibration others.
CALIBRATION_SEED_BASE = 1_000_000
# salts of the stateless draws inside a step (StepContext.seed); noise layers add 1000*(i+1)
SALT_Z_D, SALT_Z_G, SALT_MIX, SALT_GP, SALT_NOISE_D, SALT_NOISE_G = 10, 30, 40, 50, 100, 200
# DiffAugment draws (augment.py adds 1..7): reals 300 + 20 i, fakes 310 + 20 i, generator step 600
SALT_AUG_D, SALT_AUG_G = 300, 600
SALT_INST_D, SALT_INST_G = 700, 800


def _global_grad_norm(grads):
    """|gradient of the global loss|, returned so that SUMMING over replicas gives it
    (exact under several replicas: the per-replica gradients are summed first)."""
    ctx = tf.distribute.get_replica_context()
    grads = [g for g in grads if g is not None]
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    if replicas > 1:
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    return tf.linalg.global_norm(grads) / replicas


def _ema_update(ema_model, model, decay):
    """ema <- decay * ema + (1 - decay) * weights, for every weight (batch-norm statistics
    and noise buffers too). Done in cross-replica context (merge_call), where a mirrored
    variable may be assigned: every replica holds the same values after the synchronised
    optimizer step, so each device updates its copy from its own."""

    def update(strategy, ema_vars, src_vars, decay):
        # values travel as `args` (unwrapped per device), never in the closure: under
        # several replicas `decay` is a PerReplica value
        for e, s, copy in zip(ema_vars, src_vars, copies):
            if copy:
                strategy.extended.update(e, lambda v, x: v.assign(x), args=(s,))
            else:
                strategy.extended.update(
                    e, lambda v, x, d: v.assign(d * v + (1.0 - d) * x), args=(s, decay)
                )

    ctx = tf.distribute.get_replica_context()
    copies = [v.path.endswith("w_avg") for v in model.weights]  # already an average: copied
    ema_vars = [v.value for v in ema_model.weights]
    src_vars = [v.value for v in model.weights]
    ctx.merge_call(update, args=(ema_vars, src_vars, decay))


def _grid_classes(info, n):
    return np.arange(n) % max(1, info["num_classes"])


def _seed(text: str, source: str = "") -> int:
    """One seed as the serving signature takes it (int64), or one clear error."""
    where = f" in {source}" if source else ""
    try:
        seed = int(text)
    except ValueError:
        raise UserError(
            f"{text!r}{where} is not an integer seed; `ksuite predict RUN_DIR 0 1 2 "
            "[truncation=0.7] [class=NAME]`"
        ) from None
    if not -(2**63) <= seed < 2**63:
        raise UserError(f"seed {seed}{where} does not fit in 64 bits; use a smaller one")
    return seed


def _seed_file_words(path: str) -> list[str]:
    """The words of a text file of seeds; a binary file (an image) is one clear error."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8").split()
    except UnicodeDecodeError:
        raise UserError(
            f"{path} is not a text file of seeds; give integer seeds or a file of them"
        ) from None


class GanApp(App):
    name = "gan"
    description = "Image generation: DCGAN and StyleGAN-lite (EMA, R1, WGAN-GP), FID/KID on an offline feature net"
    presets = cfg_lib.PRESETS
    predict_inputs = (
        "integer seeds (optionally truncation=0.7 and, for conditional models, class=NAME)"
    )
    # FID (lower is better) of a few hundred samples moves by a few percent between runs
    parity_tolerance = {"metric": "", "max_drop": 0.25, "higher_is_better": False}

    # ---- data and model ---------------------------------------------------------------
    def datasets(self, *, cfg, artifacts):
        splits, names, removed = real_splits(cfg)
        (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
        if cfg.model.conditional and len(names) < 2:
            raise UserError(
                "model.conditional=true needs data with classes (a folder with one sub-folder "
                "per class, or the built-in shapes); set model.conditional=false"
            )
        batch = cfg.train.batch_size
        if len(train_x) < batch:
            raise UserError(
                f"only {len(train_x)} training images for a global batch of {batch}; "
                "add images or lower train.batch_size"
            )
        if len(test_x) < 16:
            raise UserError(
                f"only {len(test_x)} held-out images for FID/KID"
                + (
                    f" ({removed['test']} more were copies of training images)"
                    if removed["test"]
                    else ""
                )
                + "; add images or raise data.test_fraction"
            )
        if cfg.metrics.features == "classifier" and not artifacts.exists(META):
            train_classifier(cfg, (train_x, train_y), (test_x, test_y), names, artifacts)
        log.info(
            "%s data: train %d, held-out %d images, %d classes, %dx%d",
            cfg.data.source,
            len(train_x),
            len(test_x),
            len(names),
            cfg.data.image_size,
            cfg.data.image_size,
        )
        info = {
            "image_size": cfg.data.image_size,
            "class_names": names,
            "num_classes": len(names),
            "conditional": bool(cfg.model.conditional),
            "arch": cfg.model.arch,
            "latent_dim": cfg.model.latent_dim,
            "num_train": len(train_x),
            "num_test": len(test_x),
            "source": cfg.data.source,
            "split_sizes": {"train": len(train_x), "test": len(test_x)},
            "evaluation_split": evaluation_split("test", len(test_x), removed, IMAGE_RULE),
        }
        steps = cfg.train.steps_per_epoch or len(train_x) // batch
        return Datasets(
            train_epoch=train_epoch_fn(train_x, train_y, cfg),
            steps_per_epoch=steps,
            info=info,
            extras={
                "train_images": train_x,
                "train_labels": train_y,
                "test_images": test_x,
                "test_labels": test_y,
            },
        )

    def build_state(self, *, cfg, info):
        size, n_cls = info["image_size"], info["num_classes"]
        generator = build_generator(cfg, size, n_cls, "generator")
        generator_ema = build_generator(cfg, size, n_cls, "generator_ema")
        generator_ema.set_weights(generator.get_weights())
        discriminator = build_discriminator(cfg, size, n_cls, "discriminator")
        steps = cfg.train.epochs * (
            cfg.train.steps_per_epoch or info["num_train"] // cfg.train.batch_size
        )
        return TrainState(
            models={
                "generator": generator,
                "generator_ema": generator_ema,
                "discriminator": discriminator,
            },
            optimizers={
                "generator": make_optimizer(cfg.generator, steps),
                "discriminator": make_optimizer(cfg.discriminator, steps),
            },
            optimizer_models={"generator": ["generator"], "discriminator": ["discriminator"]},
            exported=("generator_ema",),
        )

    def on_epoch_end(self, *, state, data, cfg, run_dir, epoch):
        """A sample grid of the EMA generator from fixed seeds (RUN_DIR/samples/epoch_NNN.png;
        `evaluate` turns them into a GIF)."""
        seeds = np.arange(cfg.metrics.grid_seeds)
        classes = _grid_classes(data.info, len(seeds)) if cfg.model.conditional else None
        images = sampling.generate(state.models["generator_ema"], seeds, 1.0, classes)
        sampling.save_png(
            sampling.grid(images), Path(run_dir) / "samples" / f"epoch_{epoch:03d}.png", 2
        )
        return {}

    # ---- the training step (per replica) ----------------------------------------------
    def _fake(self, g, cfg, z, classes, step, salt, noise_salt):
        """Generator forward in training: fresh per-layer noise, style mixing (StyleGAN)."""
        noise_seed = step.seed(noise_salt)
        if cfg.model.arch != "stylegan":
            return g(z, classes, None, noise_seed, training=True), None
        w = g.mapping(z, classes)
        z2 = tf.random.stateless_normal(tf.shape(z), seed=step.seed(salt + 1))
        w2 = g.mapping(z2, classes)
        n = tf.shape(z)[0]
        cutoff = tf.random.stateless_uniform(
            [n], step.seed(salt + 2), minval=1, maxval=g.num_ws, dtype=tf.int32
        )
        mix = tf.random.stateless_uniform([n], step.seed(salt + 3)) < cfg.model.style_mixing
        cutoff = tf.where(mix, cutoff, g.num_ws)
        first = tf.range(g.num_ws)[None, :, None] < cutoff[:, None, None]
        ws = tf.where(first, w[:, None, :], w2[:, None, :])
        return g.synthesis(ws, noise_seed), w

    @staticmethod
    def _instance_noise(x, step, salt):
        """Gaussian noise on a discriminator input (Sonderby et al. 2016; Arjovsky & Bottou
        2017): real and generated images are blurred into each other, so the discriminator
        cannot win on texture the generator cannot yet draw (the built-in images carry
        per-pixel noise, which a DCGAN generator has no noise input to make). Its std falls
        linearly over the epochs, to 1/epochs of the start in the last one."""
        st, epochs = step.cfg.stability, step.cfg.train.epochs
        std = st.instance_noise * (1.0 - tf.cast(step.epoch, tf.float32) / epochs)
        return x + std * tf.random.stateless_normal(
            tf.shape(x), seed=step.seed(salt), dtype=x.dtype
        )

    def train_step(self, state, batch, step):
        cfg = step.cfg
        m, st = cfg.model, cfg.stability
        g, d = state.models["generator"], state.models["discriminator"]
        opt_g, opt_d = state.optimizers["generator"], state.optimizers["discriminator"]
        images, labels = batch
        real_all = images / 127.5 - 1.0
        n_critic = st.critic_steps
        chunk_global = step.global_batch_size // n_critic
        reals, label_chunks = tf.split(real_all, n_critic), tf.split(labels, n_critic)
        out = {"d_loss": 0.0, "d_real": 0.0, "d_fake": 0.0, "d_grad_norm": 0.0}
        if m.loss == "wgan-gp":
            out["gradient_penalty"] = 0.0
        if st.r1_gamma > 0:
            out["r1"] = 0.0
        # -- discriminator / critic: n_critic updates, each on its share of the batch
        for i, (real, cls) in enumerate(zip(reals, label_chunks)):
            cls = cls if m.conditional else None
            z = tf.random.stateless_normal(
                [tf.shape(real)[0], m.latent_dim], seed=step.seed(SALT_Z_D + i)
            )
            fake, _ = self._fake(g, cfg, z, cls, step, SALT_MIX + 5 * i, SALT_NOISE_D + 10 * i)
            fake = tf.stop_gradient(fake)
            if st.augment:  # the same transform family on reals and fakes (DiffAugment)
                real = diff_augment(real, st.augment, step.seed(SALT_AUG_D + 20 * i))
                fake = diff_augment(fake, st.augment, step.seed(SALT_AUG_D + 10 + 20 * i))
            if st.instance_noise > 0:
                real = self._instance_noise(real, step, SALT_INST_D + 20 * i)
                fake = self._instance_noise(fake, step, SALT_INST_D + 10 + 20 * i)
            with tf.GradientTape() as tape:
                real_logits = d(real, cls, training=True)
                fake_logits = d(fake, cls, training=True)
                loss = replica_mean(losses.d_loss(m.loss, real_logits, fake_logits), chunk_global)
                total = loss
                if m.loss == "wgan-gp":
                    gp = replica_mean(
                        losses.gradient_penalty(d, real, fake, cls, step.seed(SALT_GP + i)),
                        chunk_global,
                    )
                    total += st.gp_weight * gp
                    out["gradient_penalty"] += gp / n_critic
                if st.r1_gamma > 0 and i == 0:
                    # lazy R1 (StyleGAN2): every r1_every steps, weighted by r1_every
                    do_r1 = tf.equal(tf.math.floormod(tf.cast(step.step, tf.int64), st.r1_every), 0)
                    r1 = tf.cond(
                        do_r1,
                        lambda: replica_mean(losses.r1_penalty(d, real, cls), chunk_global),
                        lambda: tf.constant(0.0),
                    )
                    total += (st.r1_gamma / 2.0) * st.r1_every * r1
                    out["r1"] += r1
            grads = apply_gradients(
                tape, total, d.trainable_variables, opt_d, cfg.discriminator.clip_norm
            )
            out["d_loss"] += loss / n_critic
            out["d_real"] += replica_mean(real_logits, chunk_global) / n_critic
            out["d_fake"] += replica_mean(fake_logits, chunk_global) / n_critic
            out["d_grad_norm"] += _global_grad_norm(grads) / n_critic
        # -- generator: one update through the fixed discriminator
        n = tf.shape(real_all)[0]
        cls = labels if m.conditional else None
        z = tf.random.stateless_normal([n, m.latent_dim], seed=step.seed(SALT_Z_G))
        with tf.GradientTape() as tape:
            fake, w = self._fake(g, cfg, z, cls, step, SALT_MIX + 50, SALT_NOISE_G)
            if st.augment:  # G is scored through the same augmentation, gradients through it
                fake = diff_augment(fake, st.augment, step.seed(SALT_AUG_G))
            if st.instance_noise > 0:
                fake = self._instance_noise(fake, step, SALT_INST_G)
            fake_logits = d(fake, cls, training=True)
            g_loss = replica_mean(losses.g_loss(m.loss, fake_logits), step.global_batch_size)
        grads = apply_gradients(tape, g_loss, g.trainable_variables, opt_g, cfg.generator.clip_norm)
        out["g_loss"] = g_loss
        out["g_grad_norm"] = _global_grad_norm(grads)
        # -- EMA generator (the exported one); its decay ramps up like TF's
        # ExponentialMovingAverage(num_updates): min(decay, (1 + t) / (10 + t))
        t = tf.cast(opt_g.iterations, tf.float32)
        decay = tf.minimum(st.ema_decay, (1.0 + t) / (10.0 + t))
        decay = tf.where(t <= st.ema_start_step, 0.0, decay)
        ema = state.models["generator_ema"]
        if w is not None:  # StyleGAN: track the mean w (truncation centre) over the global batch
            from keras_suite.common.training import global_sum

            w_mean = global_sum(tf.reduce_sum(w, 0)) / step.global_batch_size
            _update_w_avg(g, w_mean, m.w_avg_decay)
        _ema_update(ema, g, decay)
        return out

    # ---- evaluation -----------------------------------------------------------------
    def evaluate(self, *, state, data, cfg, run_dir):
        run_dir = Path(run_dir)
        fnet = load_feature_net(cfg, data.artifacts)
        tag = fnet.tag
        test_x, test_y = data.extras["test_images"], data.extras["test_labels"]
        n = min(cfg.metrics.num_samples, len(test_x))
        classes = test_y[:n] if cfg.model.conditional else None
        real = fnet(test_x[:n])
        held = fnet(data.extras["train_images"][:n])
        g = state.models["generator_ema"]
        seeds = np.arange(n)
        fake_images = sampling.generate(g, seeds, 1.0, classes)
        fake = fnet(fake_images)
        kid_m, kid_s = kid(real, fake, cfg.metrics.kid_subset_size, 50, cfg.train.seed)
        metrics = {f"fid_{tag}": fid(real, fake), f"kid_{tag}": kid_m, f"kid_{tag}_std": kid_s}
        metrics.update(precision_recall_density_coverage(real, fake, cfg.metrics.knn))
        metrics[f"fid_{tag}_psi0.7"] = fid(real, fnet(sampling.generate(g, seeds, 0.7, classes)))
        metrics[f"fid_{tag}_real_heldout"] = fid(real, held)
        metrics[f"kid_{tag}_real_heldout"] = kid(
            real, held, cfg.metrics.kid_subset_size, 50, cfg.train.seed
        )[0]
        keras.utils.set_random_seed(cfg.train.seed)
        untrained = build_generator(
            cfg, data.info["image_size"], data.info["num_classes"], "untrained"
        )
        untrained_feats = fnet(sampling.generate(untrained, seeds, 1.0, classes))
        metrics[f"fid_{tag}_untrained"] = fid(real, untrained_feats)
        metrics[f"kid_{tag}_untrained"] = kid(
            real, untrained_feats, cfg.metrics.kid_subset_size, 50, cfg.train.seed
        )[0]
        metrics["num_samples"] = int(n)
        metrics["feature_network"] = {
            **{k: v for k, v in fnet.meta.items() if k != "classes"},
            "report_name": f"FID ({fnet.name} features)",
        }
        metrics["generator"] = "generator_ema"
        self._plots(g, fake_images, cfg, data.info, run_dir)
        log.info(
            "FID (%s features) %.3f | held-out real %.3f | untrained %.3f",
            fnet.name,
            metrics[f"fid_{tag}"],
            metrics[f"fid_{tag}_real_heldout"],
            metrics[f"fid_{tag}_untrained"],
        )
        return metrics

    def _plots(self, g, fake_images, cfg, info, run_dir):
        plots = run_dir / "plots"
        sampling.save_png(sampling.grid(fake_images[:64]), plots / "samples.png", 2)
        seeds = np.arange(8)
        classes = _grid_classes(info, 8) if cfg.model.conditional else None
        rows = [sampling.generate(g, seeds, psi, classes) for psi in (1.0, 0.7, 0.4, 0.0)]
        sampling.save_png(
            sampling.grid(np.concatenate(rows), cols=8), plots / "truncation_1.0_0.7_0.4_0.0.png", 2
        )
        lines = [
            sampling.interpolate(g, a, a + 1, 10, 0 if cfg.model.conditional else None)
            for a in (0, 2, 4, 6)
        ]
        sampling.save_png(
            sampling.grid(np.concatenate(lines), cols=10), plots / "interpolation.png", 2
        )
        frames = sorted((run_dir / "samples").glob("epoch_*.png"))
        sampling.save_gif(frames, plots / "training_progress.gif")

    # ---- serving ----------------------------------------------------------------------
    def export_archive(self, *, state, info, cfg, artifacts):
        return export.serving_archive(state.models["generator_ema"], info)

    def sample_requests(self, *, data, info, cfg):
        req = {"seeds": np.array([0, 1], np.int64), "truncation": np.array([1.0, 0.7], np.float32)}
        if info["conditional"]:
            req["class_ids"] = np.array([0, 1 % info["num_classes"]], np.int64)
        return {"serving_default": [req]}

    def predict_request(self, *, inputs, info, cfg):
        seeds, psi, cls = [], 1.0, 0
        names = info.get("class_names") or []
        for item in inputs:
            text = str(item).strip()
            if Path(text).is_file():  # a file of seeds, one per line or separated by spaces
                seeds += [_seed(s, text) for s in _seed_file_words(text)]
            elif Path(text).is_dir():
                raise UserError(f"{text} is a folder; give integer seeds or a text file of them")
            elif text.startswith("truncation="):
                try:
                    psi = float(text.split("=", 1)[1])
                except ValueError:
                    raise UserError(f"{text}: give a number, for example truncation=0.7") from None
            elif text.startswith("class="):
                value = text.split("=", 1)[1]
                if value in names:
                    cls = names.index(value)
                elif value.isdigit() and int(value) < max(1, len(names)):
                    cls = int(value)
                else:
                    raise UserError(
                        f"class={value!r} is not one of {', '.join(names) or '(no classes)'}"
                    )
            else:
                seeds.append(_seed(text))
        if not seeds:
            raise UserError("give at least one integer seed: ksuite predict RUN_DIR 0 1 2")
        req = {
            "seeds": np.asarray(seeds, np.int64),
            "truncation": np.full(len(seeds), psi, np.float32),
        }
        if info["conditional"]:
            req["class_ids"] = np.full(len(seeds), cls, np.int64)
        return "serving_default", req

    def predict_examples(self, *, data, info, cfg, out_dir):
        return ["0", "1", "2", "3"]

    def render_predictions(self, *, inputs, outputs, info, out_dir):
        out_dir = Path(out_dir)
        images = np.asarray(outputs["images"], np.uint8)
        paths = [str(sampling.save_png(sampling.grid(images), out_dir / "samples.png", 4))]
        for i, data in enumerate(outputs.get("png", [])):
            path = out_dir / f"sample_{i}.png"
            path.write_bytes(data if isinstance(data, bytes) else bytes(data))
            paths.append(str(path))
        return paths

    # ---- TFLite ---------------------------------------------------------------------
    def tflite_targets(self, *, state, data, cfg, workdir):
        """The EMA generator at batch 1: z [1, latent] (+ truncation [1], class_ids [1])
        -> images float32 [1, S, S, 3] in 0..255. Latents come from seeds outside the
        model (TFLite has no stateless RNG op); tflite_evaluate uses the same seeds."""
        g = state.models["generator_ema"]
        dim, conditional = g.latent_dim, data.info["conditional"]
        archive = export.tflite_archive(g, data.info)
        path = str(Path(workdir) / "generator_fixed")
        archive.write_out(path, verbose=False)
        n = self._parity_count(cfg, data)
        data.extras["keras_parity_images"] = sampling.generate(
            g, np.arange(n), 1.0, self._parity_classes(data, n)
        )

        def representative_data():
            seeds = np.arange(CALIBRATION_SEED_BASE, CALIBRATION_SEED_BASE + 200)
            zs = sampling.latents_from_seeds(tf.constant(seeds), dim).numpy()
            for i, z in enumerate(zs):
                feed = {"z": z[None], "truncation": np.ones([1], np.float32)}
                if conditional:
                    feed["class_ids"] = np.array([i % data.info["num_classes"]], np.int64)
                yield feed

        return [
            TFLiteTarget(
                name="generator",
                saved_model_dir=path,
                signature="serving_default",
                representative_data=representative_data,
                calibration_split=(
                    f"latents of seeds {CALIBRATION_SEED_BASE}-{CALIBRATION_SEED_BASE + 199}"
                ),
                evaluation_split=f"latents of seeds 0-{n - 1} against the first {n} test images",
            )
        ]

    @staticmethod
    def _parity_count(cfg, data):
        return int(min(cfg.metrics.num_samples, len(data.extras["test_images"]), 500))

    @staticmethod
    def _parity_classes(data, n):
        return data.extras["test_labels"][:n] if data.info["conditional"] else None

    def tflite_evaluate(self, *, run_signature, data, cfg, info, target):
        """FID of the converted generator's samples against the held-out real set, and
        against the Keras generator's samples from the same seeds; the largest pixel
        difference (0..255) from the Keras samples."""
        n = self._parity_count(cfg, data)
        classes = self._parity_classes(data, n)
        zs = sampling.latents_from_seeds(tf.constant(np.arange(n)), info["latent_dim"]).numpy()
        images = []
        for i in range(n):
            feed = {"z": zs[i : i + 1], "truncation": np.ones([1], np.float32)}
            if info["conditional"]:
                feed["class_ids"] = np.asarray(classes[i : i + 1], np.int64)
            size = info["image_size"]
            images.append(
                np.asarray(run_signature(feed)["images"], np.float32).reshape(size, size, 3)
            )
        images = np.clip(np.round(np.stack(images)), 0, 255).astype(np.uint8)
        fnet = load_feature_net(cfg, data.artifacts)
        feats = fnet(images)
        real = fnet(data.extras["test_images"][:n])
        # named by the sample count: a 500-sample FID is biased upwards against the
        # metrics.json FID of cfg.metrics.num_samples, so the two must not share a key
        out = {f"fid_{n}_{fnet.tag}": fid(real, feats)}
        keras_images = data.extras.get("keras_parity_images")
        if keras_images is not None:
            out[f"fid_{n}_vs_keras_{fnet.tag}"] = fid(fnet(keras_images), feats)
            out["max_pixel_diff_vs_keras"] = float(
                np.abs(images.astype(np.int32) - keras_images).max()
            )
        return out

    # ---- TensorBoard ---------------------------------------------------------------------
    def tensorboard_images(self, *, state, data, cfg):
        """The EMA generator's grid from the fixed seeds of RUN_DIR/samples/ (the same
        picture, epoch after epoch, in the Images tab)."""
        from keras_suite.common.tensorboard import enlarge

        seeds = np.arange(cfg.metrics.grid_seeds)
        classes = _grid_classes(data.info, len(seeds)) if cfg.model.conditional else None
        images = sampling.generate(state.models["generator_ema"], seeds, 1.0, classes)
        return {"samples/generator_ema": enlarge(sampling.grid(images), 256)[None]}


def _update_w_avg(g, w_mean, decay):
    """w_avg <- decay * w_avg + (1 - decay) * mean(w) (the truncation centre); the EMA
    generator copies it."""

    def update(strategy, var, value):
        strategy.extended.update(
            var, lambda v, x: v.assign(decay * v + (1.0 - decay) * x), args=(value,)
        )

    tf.distribute.get_replica_context().merge_call(update, args=(g.w_avg.value, w_mean))

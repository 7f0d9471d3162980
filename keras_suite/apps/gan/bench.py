"""`ksuite bench gan`: training images/s of this app's DCGAN step under the shared
`strategy.run` loop vs the keras-io recipe (a `keras.Model` whose `train_step` is
overridden, trained with `model.fit`: keras.io/examples/generative/dcgan_overriding_train_step),
on the same generator, discriminator, optimizers and data, in one process.

The two run in alternating epochs (ours, keras-io, ours, ...) so that load from other
processes on a shared machine falls on both alike; the first epoch of each is warm-up
(tracing) and is left out. Both do one discriminator and one generator update per batch
of 64 real images with the non-saturating loss. The recipe's own choices are kept: it
runs the discriminator once on the concatenated real+fake batch and adds label noise;
ours runs it on real and fake separately (as Radford et al.) and also updates the EMA
generator. Writes JSON (default bench-results/gan.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np

from keras_suite import common

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def _cached_trainer_class():
    from keras_suite.common.training import Trainer

    class BenchTrainer(Trainer):
        """The shared loop, traced once: Trainer.fit builds a new tf.function per call, and
        the benchmark calls it once per round."""

        _fn = None

        def _compiled_train(self):
            if self._fn is None:
                self._fn = super()._compiled_train()
            return self._fn

    return BenchTrainer


class KerasIoGAN(keras.Model):
    """The keras-io DCGAN recipe: train_step override, model.fit."""

    def __init__(self, discriminator, generator, latent_dim):
        super().__init__()
        self.discriminator, self.generator, self.latent_dim = discriminator, generator, latent_dim

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer, self.g_optimizer, self.loss_fn = d_optimizer, g_optimizer, loss_fn

    def train_step(self, data):
        real_images = data[0] / 127.5 - 1.0
        batch_size = tf.shape(real_images)[0]
        z = tf.random.normal((batch_size, self.latent_dim))
        generated = self.generator(z, training=True)
        combined = tf.concat([generated, real_images], axis=0)
        labels = tf.concat([tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))], axis=0)
        labels += 0.05 * tf.random.uniform(tf.shape(labels))
        with tf.GradientTape() as tape:
            predictions = self.discriminator(combined, training=True)[:, None]
            d_loss = self.loss_fn(labels, predictions)
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        z = tf.random.normal((batch_size, self.latent_dim))
        misleading = tf.zeros((batch_size, 1))
        with tf.GradientTape() as tape:
            predictions = self.discriminator(self.generator(z, training=True), training=True)[
                :, None
            ]
            g_loss = self.loss_fn(misleading, predictions)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        return {"d_loss": d_loss, "g_loss": g_loss}


def main(argv=None) -> int:
    from keras_suite.apps.gan.app import GanApp
    from keras_suite.apps.gan.config import default
    from keras_suite.apps.gan.data import SHAPES_SEEDS, train_epoch_fn
    from keras_suite.apps.gan.model import build_discriminator, build_generator
    from keras_suite.common import shapes
    from keras_suite.common.app import Datasets
    from keras_suite.common.precision import cpu_has_fast_bfloat16
    from keras_suite.common.training import EpochTimer, TrainContext, make_optimizer

    p = argparse.ArgumentParser(
        prog="ksuite bench gan",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--images", type=int, default=4000, help="built-in shapes images (32x32)")
    p.add_argument("--rounds", type=int, default=4, help="epochs per side (the first is warm-up)")
    p.add_argument("--steps", type=int, default=30, help="steps per epoch")
    p.add_argument("--out", default="bench-results/gan.json", help="JSON output path")
    args = p.parse_args(argv)

    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    cfg = default()
    cfg = dataclasses.replace(
        cfg,
        train=dataclasses.replace(
            cfg.train,
            steps_per_epoch=args.steps,
            epochs=0,
            checkpoint_every_steps=0,
            log_every_steps=0,
        ),
    )
    size, batch = cfg.data.image_size, cfg.train.batch_size
    images, labels = shapes.classification_images(args.images, size, SHAPES_SEEDS["train"])
    info = {"image_size": size, "num_classes": 8, "conditional": False, "num_train": args.images}
    app = GanApp()

    # ours: the app's train_step in the shared loop (keras_suite.common.training.Trainer)
    state = app.build_state(cfg=cfg, info=info)
    state.build_optimizers()
    data = Datasets(
        train_epoch=train_epoch_fn(images, labels, cfg), steps_per_epoch=args.steps, info=info
    )
    tmp = tempfile.TemporaryDirectory()
    ctx = TrainContext(
        app=app,
        cfg=cfg,
        run_dir=Path(tmp.name),
        strategy=tf.distribute.get_strategy(),
        data=data,
        state=state,
    )
    trainer = _cached_trainer_class()(
        app, ctx
    )  # the shared loop (without the app's per-epoch sample grids)

    # keras-io: the same networks (fresh copies) and optimizer settings under model.fit
    gan = KerasIoGAN(
        build_discriminator(cfg, size, 8, "kio_d"),
        build_generator(cfg, size, 8, "kio_g"),
        cfg.model.latent_dim,
    )
    gan.compile(
        make_optimizer(cfg.discriminator, 0),
        make_optimizer(cfg.generator, 0),
        keras.losses.BinaryCrossentropy(from_logits=True),
    )
    kio_ds = (
        tf.data.Dataset.from_tensor_slices((images.astype(np.float32),))
        .shuffle(len(images), seed=0)
        .batch(batch, drop_remainder=True)
        .repeat()
        .prefetch(tf.data.AUTOTUNE)
    )
    timer = EpochTimer()

    ours_rates, kio_rates = [], []
    for r in range(args.rounds):
        trainer.cfg = dataclasses.replace(trainer.cfg, epochs=r + 1)
        record = trainer.fit()[-1]
        ours_rates.append(record["examples_per_sec"])
        gan.fit(kio_ds, epochs=1, steps_per_epoch=args.steps, callbacks=[timer], verbose=0)
        kio_rates.append(args.steps * batch / timer.seconds[-1])
        print(
            f"round {r + 1}: ours {ours_rates[-1]:.1f} images/s, keras-io {kio_rates[-1]:.1f} images/s"
            + (" (warm-up)" if r == 0 else ""),
            flush=True,
        )
    tmp.cleanup()
    ours, kio = float(np.mean(ours_rates[1:])), float(np.mean(kio_rates[1:]))
    report = {
        "images_per_sec": {"ours_strategy_run_dcgan": ours, "kerasio_fit_train_step_dcgan": kio},
        "ratio_ours_vs_kerasio": ours / kio,
        "per_round": {"ours": ours_rates, "kerasio": kio_rates},
        "config": vars(args),
        "batch_size": batch,
        "image_size": size,
        "cpu_has_fast_bfloat16": cpu_has_fast_bfloat16(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    print(f"ours (strategy.run loop)       {ours:8.1f} images/s")
    print(f"keras-io (train_step + fit)    {kio:8.1f} images/s")
    print(f"ours / keras-io:               {ours / kio:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0

"""`ksuite bench vae`: this app's training step vs the keras-io VAE recipe, side by side.

    ksuite bench vae [--epochs 3 --steps 40 --rounds 2]
        ours      the app's train_step under the shared strategy.run loop (`ksuite train`),
                  default preset (32x32 colour shapes, discretised logistic decoder)
        kerasio   the keras-io "Variational AutoEncoder" recipe: a keras.Model subclass
                  whose `train_step` override computes reconstruction + KL under a
                  GradientTape, trained with `model.fit`; the SAME encoder, decoder,
                  likelihood, optimizer settings and input pipeline, so only the loop differs
        Images/s over the epochs after the first of each round (tracing excluded); the
        variants alternate `--rounds` times so a shared host slows both alike.

    ksuite bench vae quality --vae RUN_DIR --ae RUN_DIR
        The quality table: test -ELBO and -IWAE (nats/image), bits/dim and active units of
        a VAE run next to the reconstruction error of a plain autoencoder run.

    ksuite bench vae lr [--lrs 1e-3,2e-3,3e-3 --epochs 4 --preset default]
        The learning-rate choice, made on the VALIDATION split only: one short training
        per rate (the preset, its cosine schedule over --epochs), one after the other, and
        the validation -ELBO after each epoch. The test split is not read.

Both write JSON (default bench-results/vae*.json) and print the numbers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from keras_suite import common

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def ours(work: Path, overrides: list[str], epochs: int, steps: int, tag: str) -> float:
    from keras_suite.common.run import train_run
    from keras_suite.common.runlog import read_jsonl

    run_dir = work / f"ours-{tag}"
    train_run(
        "vae",
        "default",
        overrides=overrides + [f"train.epochs={epochs}", f"train.steps_per_epoch={steps}"],
        strategy_name="default",
        run_dir=run_dir,
        evaluate=False,
    )
    records = [
        r for r in read_jsonl(run_dir / "logs" / "metrics.jsonl") if r.get("kind") == "epoch"
    ]
    later = records[1:] or records
    return float(np.mean([r["examples_per_sec"] for r in later]))


class KerasIOVAE(keras.Model):
    """The keras-io recipe's shape: train_step override, loss trackers, model.fit."""

    def __init__(self, encoder, decoder, likelihood, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood
        self.seed_generator = keras.random.SeedGenerator(1337)
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        from keras_suite.apps.vae import losses
        from keras_suite.apps.vae.model import decode_params

        with tf.GradientTape() as tape:
            z_mean, z_log_var = self.encoder(data, training=True)
            epsilon = keras.random.normal(keras.ops.shape(z_mean), seed=self.seed_generator)
            z = z_mean + keras.ops.exp(0.5 * z_log_var) * epsilon
            params = decode_params(self.decoder, z, training=True)
            reconstruction_loss = keras.ops.mean(
                -losses.log_likelihood(data, params, self.likelihood)
            )
            kl_loss = -0.5 * (1 + z_log_var - keras.ops.square(z_mean) - keras.ops.exp(z_log_var))
            kl_loss = keras.ops.mean(keras.ops.sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {m.name: m.result() for m in self.metrics}


def kerasio_fit(overrides: list[str], epochs: int, steps: int) -> float:
    from keras_suite.apps.vae import APP
    from keras_suite.apps.vae.model import build_decoder, build_encoder
    from keras_suite.common import config as config_lib
    from keras_suite.common.training import EpochTimer

    keras.mixed_precision.set_global_policy("float32")
    cfg = config_lib.resolve(APP.presets, "default", None, overrides)
    data = APP.datasets(cfg=cfg, artifacts=None)
    size, channels = data.info["image_size"], data.info["channels"]
    vae = KerasIOVAE(
        build_encoder(cfg.model, size, channels),
        build_decoder(cfg.model, size, channels, cfg.model.likelihood),
        cfg.model.likelihood,
    )
    vae.compile(optimizer=keras.optimizers.Adam(cfg.train.learning_rate))
    timer = EpochTimer()

    vae.fit(
        data.train_epoch(0).repeat(),
        epochs=epochs,
        steps_per_epoch=steps,
        callbacks=[timer],
        verbose=0,
    )
    later = timer.seconds[1:] or timer.seconds
    return float(steps * cfg.train.batch_size / np.mean(later))


def speed(argv) -> int:
    p = argparse.ArgumentParser(
        prog="ksuite bench vae",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--epochs", type=int, default=3, help="epochs per variant and round (the first is warm-up)"
    )
    p.add_argument("--steps", type=int, default=40, help="steps per epoch")
    p.add_argument("--rounds", type=int, default=2, help="alternations of the two variants")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for both sides (e.g. model.likelihood=gaussian)",
    )
    p.add_argument("--out", default="bench-results/vae.json", help="JSON output path")
    args = p.parse_args(argv)
    # no KL warm-up or cosine schedule: both sides do exactly the same arithmetic per step
    overrides = [
        "data.num_train=4000",
        "model.kl_warmup_steps=0",
        "train.lr_schedule=constant",
    ] + args.set
    results: dict = {"ours": [], "kerasio_fit": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            results["ours"].append(ours(Path(tmp), overrides, args.epochs, args.steps, str(r)))
            results["kerasio_fit"].append(kerasio_fit(overrides, args.epochs, args.steps))
    med = {k: float(np.median(v)) for k, v in results.items()}
    report = {
        "images_per_sec": med,
        "per_round": results,
        "ratio_ours_vs_kerasio": med["ours"] / med["kerasio_fit"],
        "config": {**vars(args), "overrides": overrides},
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    for name, value in med.items():
        print(
            f"{name:12s} {value:8.1f} images/s   (rounds: {', '.join(f'{v:.1f}' for v in results[name])})"
        )
    print(f"ours / keras-io fit: {report['ratio_ours_vs_kerasio']:.2f}x")
    return _write(report, args.out)


QUALITY_KEYS = (
    "neg_elbo",
    "neg_iwae",
    "bits_per_dim",
    "iwae_bits_per_dim",
    "recon",
    "kl",
    "iwae_k",
    "iwae_examples",
    "active_units",
    "latent_dim",
    "recon_nll",
    "recon_nll_at_mean",
    "recon_bits_per_dim_at_mean",
    "recon_mse",
    "num_examples",
)


def quality(argv) -> int:
    p = argparse.ArgumentParser(prog="ksuite bench vae quality")
    p.add_argument("--vae", required=True, help="run directory of the VAE (`ksuite train vae`)")
    p.add_argument(
        "--ae", required=True, help="run directory of the plain autoencoder (--set model.kind=ae)"
    )
    p.add_argument("--out", default="bench-results/vae_quality.json")
    args = p.parse_args(argv)
    table = {}
    for name, run in (("vae", args.vae), ("ae", args.ae)):
        m = json.loads((Path(run) / "metrics.json").read_text())
        log = [
            json.loads(line)
            for line in (Path(run) / "logs" / "metrics.jsonl").read_text().splitlines()
        ]
        epochs = [r for r in log if r.get("kind") == "epoch"]
        table[name] = {
            **{k: m[k] for k in QUALITY_KEYS if k in m},
            "train_seconds": float(sum(r.get("epoch_seconds", 0.0) for r in epochs)),
            "epochs": len(epochs),
            "run_dir": str(run),
        }
    keys = [
        k for k in QUALITY_KEYS + ("train_seconds", "epochs") if any(k in t for t in table.values())
    ]
    print(f"{'metric':28s} {'vae':>12s} {'ae':>12s}")
    for k in keys:
        cells = [table[n].get(k) for n in ("vae", "ae")]
        print(
            f"{k:28s} "
            + " ".join(
                f"{c:12.4f}" if isinstance(c, float) else f"{'-' if c is None else c:>12}"
                for c in cells
            )
        )
    return _write({"runs": table}, args.out)


def learning_rates(argv) -> int:
    from keras_suite.common.run import train_run
    from keras_suite.common.runlog import read_jsonl

    p = argparse.ArgumentParser(prog="ksuite bench vae lr")
    p.add_argument("--lrs", default="1e-3,2e-3,3e-3", help="comma-separated learning rates")
    p.add_argument("--epochs", type=int, default=4, help="epochs per rate (the cosine's length)")
    p.add_argument("--preset", default="default")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="bench-results/vae_lr.json")
    args = p.parse_args(argv)
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        for lr in args.lrs.split(","):
            run_dir = Path(tmp) / f"lr-{lr}"
            train_run(
                "vae",
                args.preset,
                overrides=args.set + [f"train.learning_rate={lr}", f"train.epochs={args.epochs}"],
                strategy_name="default",
                run_dir=run_dir,
                evaluate=False,  # the test split stays unread
            )
            epochs = [
                r
                for r in read_jsonl(run_dir / "logs" / "metrics.jsonl")
                if r.get("kind") == "epoch"
            ]
            table[lr] = {
                "val_neg_elbo": [r.get("val_neg_elbo") for r in epochs],
                "train_neg_elbo": [r.get("neg_elbo") for r in epochs],
                "epoch_seconds": [r.get("epoch_seconds") for r in epochs],
            }
            print(f"lr {lr}: validation -ELBO by epoch", table[lr]["val_neg_elbo"], flush=True)
    best = min(table, key=lambda lr: table[lr]["val_neg_elbo"][-1])
    print(f"lowest final validation -ELBO: lr {best}")
    return _write({"runs": table, "best": best, "config": vars(args)}, args.out)


def _write(report: dict, out: str) -> int:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    argv = list(argv or [])
    if argv and argv[0] == "quality":
        return quality(argv[1:])
    if argv and argv[0] == "lr":
        return learning_rates(argv[1:])
    return speed(argv)

"""The vae app's verb: `ksuite sample RUN_DIR --n 64` draws z ~ N(0, I) and writes the
decoded images as one PNG grid (see common/commands.py; no TensorFlow at import)."""

from __future__ import annotations

from keras_suite.common.commands import AppCommand


def _sample_arguments(p) -> None:
    p.add_argument("run_dir", help="a finished vae run directory")
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the latent draws (same seed, same images)"
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="scale of the prior's standard deviation (below 1: more typical, less varied)",
    )
    p.add_argument(
        "--out", default="", help="PNG path (default RUN_DIR/samples/samples_seed<SEED>.png)"
    )


def _sample(args) -> int:
    from pathlib import Path

    from keras_suite.common.errors import UserError

    if args.n < 1 or args.n > 4096:
        raise UserError(f"--n {args.n}: draw between 1 and 4096 samples")
    if args.temperature <= 0:
        raise UserError(f"--temperature {args.temperature}: use a positive scale (1 = the prior)")
    from keras_suite.common.commands import check_seed

    check_seed(args.seed)
    from keras_suite import common

    tf = common.quiet_import_tensorflow()
    from keras_suite.apps.vae.evaluate import Model
    from keras_suite.apps.vae.render import save_grid
    from keras_suite.common.run import load_run

    run = load_run(args.run_dir)
    out = (
        Path(args.out)
        if args.out
        else Path(args.run_dir) / "samples" / f"samples_seed{args.seed}.png"
    )
    if run.cfg.model.kind == "vqvae":  # codes drawn from the uniform prior (no learned prior here)
        from keras_suite.apps.vae.vq import VQModel

        model = VQModel(run.state.models, run.cfg.model.likelihood)
        path = save_grid(model.images_from_codes(model.random_codes(args.n, args.seed)), out)
    else:
        model = Model(
            run.state.models["encoder"], run.state.models["decoder"], run.cfg.model.likelihood
        )
        z = (
            tf.random.stateless_normal([args.n, model.latent_dim], seed=[args.seed, 0])
            * args.temperature
        )
        path = save_grid(model.images(z.numpy()), out)
    print(f"wrote {path} ({args.n} samples, seed {args.seed}, temperature {args.temperature})")
    return 0


COMMANDS = [
    AppCommand(
        "sample", "draw images from the prior and write a PNG grid", _sample_arguments, _sample
    )
]

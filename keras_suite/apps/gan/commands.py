"""The gan app's verb (see common/commands.py): `ksuite sample RUN_DIR --n 64 --seed 0
[--truncation 0.7] [--class NAME]` writes a PNG grid drawn by the exported (EMA)
generator; seed s is the same image as seed s sent to the serving signature."""

from __future__ import annotations

from keras_suite.common.commands import AppCommand


def _arguments(p) -> None:
    p.add_argument("run_dir", help="a finished gan run directory")
    p.add_argument("--n", type=int, default=64, help="number of images")
    p.add_argument(
        "--seed", type=int, default=0, help="first seed (images use seeds seed..seed+n-1)"
    )
    p.add_argument(
        "--truncation",
        type=float,
        default=1.0,
        help="truncation psi: 1 = none, smaller trades variety for typical images",
    )
    p.add_argument(
        "--class",
        dest="class_name",
        default=None,
        help="class name or index (conditional models; default: cycle through the classes)",
    )
    p.add_argument(
        "--out", default=None, help="PNG path (default RUN_DIR/samples/sample_seedS_nN_psiP.png)"
    )
    p.add_argument("--scale", type=int, default=2, help="pixel upscaling of the grid")


def _sample(args) -> int:
    from pathlib import Path

    import numpy as np

    from keras_suite.common.commands import check_seed
    from keras_suite.common.errors import UserError

    if not 1 <= args.n <= 4096:
        raise UserError(f"--n {args.n}: draw between 1 and 4096 images")
    check_seed(args.seed, args.n)
    if args.truncation <= 0:
        raise UserError(f"--truncation {args.truncation}: use a positive psi (1 = none)")
    from keras_suite.apps.gan import sampling
    from keras_suite.common.run import load_run

    run = load_run(args.run_dir)
    info = run.info
    classes = None
    if info["conditional"]:
        names = info["class_names"]
        if args.class_name is None:
            classes = np.arange(args.n) % len(names)
        elif args.class_name in names:
            classes = np.full(args.n, names.index(args.class_name))
        elif args.class_name.isdigit() and int(args.class_name) < len(names):
            classes = np.full(args.n, int(args.class_name))
        else:
            raise UserError(f"--class {args.class_name!r} is not one of {', '.join(names)}")
    elif args.class_name is not None:
        raise UserError("this run's generator is not conditional; drop --class")
    images = sampling.generate(
        run.state.models["generator_ema"],
        np.arange(args.seed, args.seed + args.n),
        args.truncation,
        classes,
    )
    out = (
        Path(args.out)
        if args.out
        else (
            Path(args.run_dir)
            / "samples"
            / f"sample_seed{args.seed}_n{args.n}_psi{args.truncation:g}.png"
        )
    )
    sampling.save_png(sampling.grid(images), out, max(1, args.scale))
    print(
        f"wrote {out} ({args.n} images, seeds {args.seed}..{args.seed + args.n - 1}, "
        f"truncation {args.truncation:g})"
    )
    return 0


COMMANDS = [
    AppCommand(
        "sample",
        "draw a PNG grid from the EMA generator (seeds, truncation, class)",
        _arguments,
        _sample,
    )
]

"""Segmentation's own command (see common/commands.py): `ksuite segmentation-check PATH`
reads a user dataset (images/ + masks/ pairs or Pascal VOC) exactly as training would and
lists every pair that would be skipped, with its file name and why, plus pixels per class."""

from __future__ import annotations

from keras_suite.common.commands import AppCommand


def _check(args) -> int:
    import dataclasses
    import logging

    import numpy as np

    from keras_suite.apps.segmentation.config import DataConfig
    from keras_suite.apps.segmentation.data import pairs_dataset, voc_dataset
    from keras_suite.common.runlog import log

    dcfg = DataConfig(
        source=args.source,
        path=args.path,
        image_size=args.image_size,
        ignore_index=args.ignore_index,
        num_classes=args.num_classes,
    )
    dcfg.validate()
    problems: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            problems.append(record.getMessage())

    handler = Collect(logging.WARNING)
    log.addHandler(handler)
    try:
        load = pairs_dataset if args.source == "pairs" else voc_dataset
        splits, names = load(dataclasses.replace(dcfg, val_fraction=0.0, test_fraction=0.0), 0)
    finally:
        log.removeHandler(handler)
    print(f"classes ({len(names)}): {', '.join(names)}")
    seen = []
    for split, data in splits.items():
        if not len(data) or any(data is other for other in seen):
            continue  # an empty split, or the test split standing in for a missing one
        seen.append(data)
        masks = data.masks
        counts = np.bincount(masks[masks != dcfg.ignore_index].ravel(), minlength=len(names))
        share = counts / max(counts.sum(), 1)
        print(
            f"{split}: {len(data)} pairs; labelled pixels per class: "
            + ", ".join(
                f"{names[c] if c < len(names) else c} {share[c]:.1%}" for c in range(len(counts))
            )
        )
    # the warning above names every skipped pair and why
    print(
        "some pairs would be skipped (see the warning above)"
        if problems
        else "every pair is usable"
    )
    return 1 if problems and args.strict else 0


def _arguments(p) -> None:
    p.add_argument(
        "path", help="dataset root: images/ + masks/ (or train/images, ...) or a VOC2012 folder"
    )
    p.add_argument(
        "--source",
        choices=("pairs", "voc"),
        default="pairs",
        help="pairs: images/ + masks/ PNG pairs; voc: a Pascal VOC folder",
    )
    p.add_argument("--image-size", type=int, default=64, help="the size training would resize to")
    p.add_argument(
        "--ignore-index", type=int, default=255, help="mask value excluded from loss and metrics"
    )
    p.add_argument("--num-classes", type=int, default=0, help="without labels.txt: classes 0..N-1")
    p.add_argument(
        "--strict", action="store_true", help="exit with status 1 if any pair is skipped"
    )


COMMANDS = [
    AppCommand(
        "segmentation-check",
        "check an image/mask dataset (pairs or VOC) before training",
        _arguments,
        _check,
        per_app=False,
    )
]

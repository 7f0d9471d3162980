"""Segmentation's own command (see common/commands.py): `ksuite segmentation-check PATH`
reads a user dataset (images/ + masks/ pairs or Pascal VOC) exactly as training would and
lists every pair that would be skipped, with its file name and why, what the mask values
were read as, pixels per class, and copies of training images in the other splits."""

from __future__ import annotations

from keras_suite.common.commands import AppCommand


def _check(args) -> int:
    import logging
    from pathlib import Path

    import numpy as np

    from keras_suite.apps.segmentation.config import DataConfig
    from keras_suite.apps.segmentation.data import (
        class_names,
        find_voc_root,
        mask_lookup,
        read_pair_folders,
        read_voc_folders,
    )
    from keras_suite.common.runlog import log

    source = args.source
    if source is None:  # not given: a VOC folder is read as VOC, anything else as pairs
        root = Path(args.path)
        voc = find_voc_root(root) is not None and not (root / "images").is_dir()
        source = "voc" if voc else "pairs"
        if voc:
            print(
                "this looks like Pascal VOC (JPEGImages/, SegmentationClass/): read as --source voc"
            )
    dcfg = DataConfig(
        source=source,
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
        folders = read_voc_folders(dcfg) if source == "voc" else read_pair_folders(dcfg)
        lut, notes = mask_lookup(folders, dcfg)
        names = class_names(folders, lut, dcfg)
    finally:
        log.removeHandler(handler)
    print(f"classes ({len(names)}): {', '.join(names)}")
    for note in notes:
        print(note)
    for split, data in folders.splits.items():
        masks = lut[data.masks]
        counts = np.bincount(masks[masks != dcfg.ignore_index].ravel(), minlength=len(names))
        share = counts / max(counts.sum(), 1)
        print(
            f"{folders.where[split]}: {len(data)} pairs; labelled pixels per class: "
            + ", ".join(
                f"{names[c] if c < len(names) else c} {share[c]:.1%}" for c in range(len(counts))
            )
        )
    missing = [s for s in ("val", "test") if s not in folders.splits]
    if missing:
        print(
            f"no {' or '.join(missing)} split: training carves "
            + " and ".join(f"{s} (data.{s}_fraction)" for s in missing)
            + " out of the training pairs, seeded"
        )
    train = set(folders.splits.get("train", folders.splits.get("all")).hashes)
    for split in ("val", "test"):
        if split in folders.splits:
            copies = sum(h in train for h in folders.splits[split].hashes)
            if copies:
                print(
                    f"{folders.where[split]}: {copies} images equal a training image "
                    "(exact pixels); training removes them from this split"
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
        default=None,
        help="pairs: images/ + masks/ PNG pairs; voc: a Pascal VOC folder "
        "(default: voc when the folder looks like VOC, else pairs)",
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

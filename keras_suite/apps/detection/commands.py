"""Detection's own command (see common/commands.py): `ksuite detection-check DATA_YAML` validates a user dataset
(YOLO / COCO / VOC) before training and lists every invalid box with file and line."""

from __future__ import annotations

from keras_suite.common.commands import AppCommand


def _check(args) -> int:
    from collections import Counter

    from keras_suite.apps.detection.formats import read_records

    splits, names, report = read_records(args.data_yaml)
    print(f"classes ({len(names)}): {', '.join(names)}")
    for split, records in splits.items():
        counts = Counter(c for r in records for c in r.classes)
        boxes = sum(counts.values())
        print(
            f"{split}: {len(records)} images, {boxes} boxes; per class: "
            + ", ".join(f"{names[c]} {n}" for c, n in sorted(counts.items()))
        )
    if report.problems:
        print(f"{len(report.problems)} invalid boxes/files (skipped when training):")
        for line in report.problems[: args.max_lines]:
            print(f"  {line}")
        if len(report.problems) > args.max_lines:
            print(f"  ... and {len(report.problems) - args.max_lines} more (--max-lines)")
    else:
        print("no invalid boxes")
    return 1 if report.problems and args.strict else 0


def _check_arguments(p) -> None:
    p.add_argument("data_yaml", help="path of the dataset's data.yaml")
    p.add_argument("--max-lines", type=int, default=50, help="invalid boxes to list")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any box is invalid")


COMMANDS = [
    AppCommand(
        "detection-check",
        "validate a detection dataset's data.yaml (YOLO/COCO/VOC)",
        _check_arguments,
        _check,
        per_app=False,
    )
]

"""The `info` keys shared code reads, declared in one place.

`App.datasets` returns `Datasets.info`, a JSON-serialisable dict saved as RUN_DIR/info.json.
Most of it is the app's own business (vocabulary sizes, input shapes). The keys below are
read by code outside the app (`ksuite data check`, the TFLite labels file, the Python API,
metrics.json), so every app must provide the required ones with these types; the shared
code checks them right after `datasets()` returns, and a missing or mistyped key is an
error naming the app and the key, not a silently empty report.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InfoKey:
    name: str
    kind: type | tuple
    required: bool
    doc: str


SHARED_INFO_KEYS = (
    InfoKey("source", str, True, "where the data came from: 'builtin', 'folder', 'voc', ..."),
    InfoKey(
        "split_sizes",
        dict,
        True,
        "examples per split, {'train': n, 'val': n, 'test': n}; {} when the app has no "
        "dataset splits (DQN's data is an environment)",
    ),
    InfoKey(
        "evaluation_split",
        dict,
        True,
        "the split the headline metric is computed on, for metrics.json: {'split': 'test', "
        "'size': n, 'near_duplicates_removed': k, 'duplicate_rule': 'how near-duplicates of "
        "training examples were found'} (docs/design.md §9)",
    ),
    InfoKey("class_names", list, False, "class names in label order (labels.txt, data check)"),
    InfoKey("split_origin", dict, False, "where each split came from (folder, carved, ...)"),
    InfoKey("image_sizes", dict, False, "source image sizes seen by the loader (data check)"),
)


class InfoContractError(TypeError):
    """An app's `datasets()` returned info without a key the shared code reads: a bug in
    the app, so a TypeError with the app and key named, not a UserError."""


def check_info(app_name: str, info: dict) -> dict:
    """Return `info` unchanged after checking the shared keys; raise InfoContractError."""
    if not isinstance(info, dict):
        raise InfoContractError(f"app {app_name!r}: Datasets.info must be a dict, got {type(info)}")
    for key in SHARED_INFO_KEYS:
        if key.name not in info:
            if key.required:
                raise InfoContractError(
                    f"app {app_name!r}: Datasets.info has no {key.name!r} ({key.doc}); "
                    "add it in the app's datasets() (keras_suite/common/info.py lists the keys)"
                )
            continue
        if not isinstance(info[key.name], key.kind):
            raise InfoContractError(
                f"app {app_name!r}: Datasets.info[{key.name!r}] is a "
                f"{type(info[key.name]).__name__}, expected {key.kind.__name__} ({key.doc})"
            )
    sizes = info["split_sizes"]
    bad = {k: v for k, v in sizes.items() if not isinstance(k, str) or not isinstance(v, int)}
    if bad:
        raise InfoContractError(
            f"app {app_name!r}: Datasets.info['split_sizes'] maps split names to int counts; "
            f"got {bad}"
        )
    split = info["evaluation_split"]
    needed = {"split": str, "size": int, "near_duplicates_removed": int, "duplicate_rule": str}
    wrong = [k for k, t in needed.items() if not isinstance(split.get(k), t)]
    if wrong:
        raise InfoContractError(
            f"app {app_name!r}: Datasets.info['evaluation_split'] needs {wrong} "
            f"({', '.join(f'{k}: {t.__name__}' for k, t in needed.items())})"
        )
    return info


def with_evaluation_split(metrics: dict, info: dict) -> dict:
    """metrics.json says which split produced its numbers: `evaluation_split` joins the
    app's metrics (after its scalars, so the headline stays first)."""
    if "evaluation_split" in info and "evaluation_split" not in metrics:
        metrics = {**metrics, "evaluation_split": info["evaluation_split"]}
    return metrics

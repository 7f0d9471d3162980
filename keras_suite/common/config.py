"""Config dataclasses, presets, YAML files and `--set key=value` overrides.

Each app's config is a tree of dataclasses (`data`, `model`, `train`, ...). A run starts
from a preset, applies a YAML file, then `--set` overrides, and saves the result as
`RUN_DIR/config.yaml`. Unknown keys are an error naming the valid ones, so a typo never
silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from keras_suite.common.errors import UserError

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@dataclass
class TrainConfig:
    """What the shared training loop needs; every app's config has one as `train`."""

    epochs: int = 10
    batch_size: int = 64  # global: split across replicas
    steps_per_epoch: int = 0  # 0 = one pass over the training set
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | sgd
    beta_1: float = 0.9  # Adam/AdamW first-moment decay (SGD: momentum)
    beta_2: float = 0.999
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"  # constant | cosine (with linear warm-up)
    warmup_steps: int = 0
    clip_norm: float = 0.0  # 0 = no gradient clipping
    precision: str = (
        "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16 (see keras_suite.common.precision)
    )
    seed: int = 42
    checkpoint_every_steps: int = 0  # 0 = at the end of every epoch only
    keep_checkpoints: int = 3
    log_every_steps: int = 20  # a step record (metrics.jsonl, TensorBoard, callbacks)
    # Without a terminal (CI, a log file) a progress line inside each epoch every this many
    # seconds; 0 = one every log_every_steps steps instead. A terminal gets a progress bar.
    progress_seconds: float = 30.0
    # Early stopping on a validation metric of the epoch record (val_loss, val_accuracy, ...);
    # "" = off. The best epoch's weights are restored when training stops (docs/training.md).
    early_stopping: str = ""
    early_stopping_patience: int = 3  # epochs without improvement before stopping
    early_stopping_mode: str = "auto"  # min | max | auto (max for accuracy-like names)
    early_stopping_min_delta: float = 0.0  # smaller changes do not count as improvement
    tensorboard_images: bool = True  # the app's pictures / text samples in TensorBoard
    profile_steps: tuple[int, ...] = ()  # e.g. 10,20: a TensorBoard profile of those steps

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(
                f"train.precision={self.precision!r} is not one of {', '.join(PRECISIONS)}; "
                "set it with --set train.precision=mixed_bfloat16 for example"
            )
        if self.batch_size < 1 or self.epochs < 0:
            raise UserError("train.batch_size must be >= 1 and train.epochs >= 0")
        validate_optimizer(self, "train")
        if self.early_stopping_mode not in ("min", "max", "auto"):
            raise UserError(
                f"train.early_stopping_mode={self.early_stopping_mode!r}: use min, max or auto"
            )
        if self.early_stopping_patience < 0 or self.early_stopping_min_delta < 0:
            raise UserError("train.early_stopping_patience and _min_delta must be >= 0")
        if self.progress_seconds < 0:
            raise UserError("train.progress_seconds must be >= 0 (0 = every log_every_steps)")
        steps = tuple(self.profile_steps)
        if steps and not (len(steps) == 2 and 0 <= steps[0] < steps[1]):
            raise UserError(
                f"train.profile_steps={','.join(map(str, steps))}: give two global steps "
                "START,STOP with 0 <= START < STOP, for example --set train.profile_steps=10,20"
            )


@dataclass
class OptimizerConfig:
    """Settings of one optimizer, for apps that train several networks with different
    ones (a GAN's generator and discriminator). `keras_suite.common.training.make_optimizer` takes
    this or a TrainConfig."""

    learning_rate: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | sgd
    beta_1: float = 0.9
    beta_2: float = 0.999
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # constant | cosine (with linear warm-up)
    warmup_steps: int = 0
    clip_norm: float = 0.0

    def validate(self) -> None:
        validate_optimizer(self, "optimizer")


def validate_optimizer(cfg, where: str) -> None:
    if cfg.optimizer not in ("adam", "adamw", "sgd"):
        raise UserError(f"{where}.optimizer={cfg.optimizer!r}: use adam, adamw or sgd")
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise UserError(f"{where}.lr_schedule={cfg.lr_schedule!r}: use constant or cosine")
    if not (cfg.learning_rate > 0 and 0 <= cfg.beta_1 < 1 and 0 <= cfg.beta_2 < 1):
        raise UserError(
            f"{where}: learning_rate must be > 0 and beta_1, beta_2 in [0, 1) "
            f"(got {cfg.learning_rate}, {cfg.beta_1}, {cfg.beta_2})"
        )


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (tuples as lists), exactly what a YAML round trip gives back."""

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(cfg))


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown_key(key: str, valid: list[str], where: str) -> UserError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UserError(
        f"unknown config key {where}{key!r}.{hint} Valid keys here: {', '.join(valid)}"
    )


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the field's declared type, or explain why not."""
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key {key!r} expects a list, got {value!r}")
        (inner, *_) = typing.get_args(typ) or (Any,)
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if typ is Any:
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise UserError(f"config key {key!r} expects true/false, got {value!r}")
    if typ in (int, float):
        if isinstance(value, bool):
            raise UserError(f"config key {key!r} expects a number, got {value!r}")
        try:
            number = value
            if typ is float or isinstance(value, float):
                number = float(value)
                if not math.isfinite(number):  # .inf / .nan from YAML
                    raise UserError(f"config key {key!r} expects a finite number, got {value!r}")
                if typ is int and number != int(number):
                    raise UserError(f"config key {key!r} expects an integer, got {value!r}")
            number = typ(number)
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"config key {key!r} expects {typ.__name__}, got {value!r}") from None
        return number
    if typ is str:
        return "" if value is None else str(value)
    return value


def merge(cfg: Any, updates: dict, prefix: str = "") -> Any:
    """Return a copy of `cfg` with the nested `updates` applied (strict about keys)."""
    if not isinstance(updates, dict):
        raise UserError(f"config section {prefix or '(top level)'} must be a mapping")
    types = _field_types(type(cfg))
    changes = {}
    for key, value in updates.items():
        if key not in types:
            raise _unknown_key(key, list(types), f"{prefix}" if prefix else "")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            changes[key] = merge(current, value, f"{prefix}{key}.")
        else:
            changes[key] = _coerce(value, types[key], f"{prefix}{key}")
    return dataclasses.replace(cfg, **changes)


def parse_override(text: str) -> dict:
    """`train.epochs=3` -> {"train": {"epochs": 3}} with YAML typing of the value."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: write key=value, for example --set train.epochs=3")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    nested: dict = {}
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"config file {str(path)!r} does not exist; pass an existing YAML file to --config"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(
            f"config file {str(path)!r} is not valid YAML: {exc}".splitlines()[0]
        ) from None
    if not isinstance(data, dict):
        raise UserError(
            f"config file {str(path)!r} must hold a mapping of sections (data:, model:, train:)"
        )
    return data


def resolve(
    presets: dict[str, Any],
    preset: str,
    config_file: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Any:
    """Preset, then YAML file, then `--set` overrides, in that order."""
    if preset not in presets:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
    cfg = presets[preset]()
    updates = []
    if config_file:
        updates.append(load_yaml(config_file))
        updates[0].pop("preset", None)
    updates += [parse_override(text) for text in overrides]
    for update in updates:
        cfg = merge(cfg, update)
    # did the user name data.source? (data.path alone lets it be inferred)
    source_given = any("source" in u["data"] for u in updates if isinstance(u.get("data"), dict))
    cfg = settle_data_path(cfg, source_given)
    validate(cfg)
    return cfg


def validate(cfg: Any, prefix: str = "") -> None:
    """Call `validate()` on every section that has one, after the checks every app shares."""
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        if dataclasses.is_dataclass(section):
            # nested sections first (e.g. a GAN's per-network optimizers)
            validate(section, f"{prefix}{f.name}.")
    size = getattr(cfg, "image_size", None)
    if isinstance(size, int) and not isinstance(size, bool) and size < 1:
        # before the app's own checks: a size of 0 passes `size % 32 == 0` and then fails
        # deep inside cv2 or numpy
        raise UserError(
            f"{prefix}image_size={size}: an image size is a positive number of pixels, "
            f"for example --set {prefix}image_size=64"
        )
    if hasattr(cfg, "validate"):
        cfg.validate()


# ---- where the user's data is ------------------------------------------------------------
#
# Most apps name their data with data.source (a built-in generator, or a kind of user data)
# and data.path (the folder or file). An app's DataConfig says which sources read data.path
# (`path_sources`), and, when there are several, which one a folder looks like
# (`source_for_path(path)`). Detection names its data.yaml with data.source itself
# (`path_field = "source"`). A run keeps the path absolute in config.yaml, so that evaluate,
# export, convert and predict work from any working directory (docs/run-directory.md).


def _data_section(cfg: Any):
    return getattr(cfg, "data", None) if dataclasses.is_dataclass(cfg) else None


def data_path_key(cfg: Any) -> str | None:
    """`path` or `source`: the data field that names the user's data on disk; None for an
    app without one (dqn plays a game)."""
    data = _data_section(cfg)
    field_name = getattr(data, "path_field", "path")
    return field_name if data is not None and hasattr(data, field_name) else None


def data_location(cfg: Any) -> str:
    """The user's data path of this config, or "" for built-in data."""
    key = data_path_key(cfg)
    if key is None:
        return ""
    data = cfg.data
    value = getattr(data, key)
    if key == "source" and value in getattr(data, "builtin_sources", ()):
        return ""
    return value


def absolute_data_path(value: str) -> str:
    """`~` expanded and made absolute (each item of a comma-separated list of files)."""

    def one(text: str) -> str:
        return os.path.abspath(os.path.expanduser(text.strip()))

    if "," in value and not os.path.exists(os.path.expanduser(value)):
        return ",".join(one(part) for part in value.split(",") if part.strip())
    return one(value)


def _infer_source(data: Any, path: str, source_given: bool) -> str:
    """The data.source a data.path without one means, or one error naming the choices."""
    sources = tuple(getattr(data, "path_sources", ()))
    if not sources or data.source in sources:
        return data.source
    choices = " or ".join(f"--set data.source={s}" for s in sources)
    if source_given:  # named a source that reads no data.path, and gave a path too
        raise UserError(
            f"data.source={data.source} does not read data.path={path}; for your own files "
            f"use {choices}"
        )
    if len(sources) == 1:
        guess = sources[0]
    else:
        if not os.path.exists(path):
            raise UserError(f"data.path={path} does not exist; check the path")
        guess_for = getattr(data, "source_for_path", None)
        guess = guess_for(Path(path)) if guess_for is not None else None
        if guess is None:
            raise UserError(
                f"data.path={path} is set without data.source, and its layout does not say "
                f"which kind of data it is; add {choices}"
            )
    logging.getLogger("ksuite").info(
        "data.path given without data.source: reading %s as data.source=%s", path, guess
    )
    return guess


def settle_data_path(cfg: Any, source_given: bool = False) -> Any:
    """`cfg` with its data path absolute (`~` expanded) and, when data.path came without
    data.source, the source it implies (logged), or one clear error. `source_given`: the
    user set data.source too (a built-in source then refuses the path)."""
    key = data_path_key(cfg)
    if key is None or not data_location(cfg):
        return cfg
    data = cfg.data
    path = absolute_data_path(getattr(data, key))
    changes = {key: path}
    if key == "path":
        changes["source"] = _infer_source(data, path, source_given)
    return dataclasses.replace(cfg, data=dataclasses.replace(data, **changes))


def with_data_path(cfg: Any, path: str) -> Any:
    """An existing run's config pointed at its data's new place (`--data-path`)."""
    key = data_path_key(cfg)
    if key is None:
        raise UserError("this app reads no data from disk; drop --data-path")
    if not data_location(cfg):
        raise UserError(
            f"this run was trained on built-in data (data.source={cfg.data.source}); "
            "--data-path points a run at moved user data, drop it"
        )
    data = dataclasses.replace(cfg.data, **{key: absolute_data_path(path)})
    return dataclasses.replace(cfg, data=data)


def add_data_path_flags(parser) -> None:
    """--data-path and --set data.path=... for verbs that take an existing RUN_DIR."""
    parser.add_argument(
        "--data-path",
        metavar="PATH",
        help="where the run's data is now, if it moved since training (default: the "
        "absolute path kept in RUN_DIR/config.yaml)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="data.path=PATH",
        help="the same as --data-path (data.source=DATA_YAML for detection); an existing "
        "run takes no other key",
    )


def data_path_argument(args) -> str | None:
    """The data path of --data-path or --set data.path=... (data.source= for an app whose
    source is its path), or None."""
    path = getattr(args, "data_path", None)
    for text in getattr(args, "set", None) or []:
        key, _, value = text.partition("=")
        if key.strip() not in ("data.path", "data.source") or not value.strip():
            raise UserError(
                f"--set {text!r}: an existing run takes only --set data.path=PATH (where its "
                "data is now); train a new run to change anything else"
            )
        path = value.strip()
    return path


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """`key: old -> new` for every leaf that differs between two config dicts."""
    lines = []
    for key in list(old) + [k for k in new if k not in old]:
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            lines += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return lines


def save(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_saved(cls_default: Any, path: str | Path) -> Any:
    """Rebuild a config saved by `save` on top of a default instance."""
    return merge(cls_default, load_yaml(path))


__all__ = [
    "TrainConfig",
    "OptimizerConfig",
    "merge",
    "parse_override",
    "load_yaml",
    "resolve",
    "save",
    "load_saved",
    "to_dict",
    "field",
    "dataclass",
    "PRECISIONS",
]

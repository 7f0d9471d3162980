"""TF Serving config files: models.config, batching_parameters.txt, monitoring.config.

All three are protobuf text format. models.config is a `ModelServerConfig` built with the
tensorflow-serving-api protos; the other two use the mirrored messages in keras_suite.serving.protos.
Readers validate what tensorflow_model_server would reject, and say how to fix it, so a
file that passes here also starts the real server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format

from keras_suite import common  # noqa: F401
from keras_suite.common.errors import UserError
from keras_suite.serving.protos import BatchingParameters, MonitoringConfig

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def _write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


# ---- models.config ---------------------------------------------------------------------
@dataclass
class ModelEntry:
    """One model in models.config.

    policy: "latest" (serve the newest `num_versions`), "all", or "specific" (`versions`).
    labels: {label: version}, e.g. {"stable": 1, "canary": 2}.
    """

    name: str
    base_path: str
    policy: str = "latest"
    num_versions: int = 1
    versions: list[int] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)


def model_server_config(models: list[ModelEntry]):
    """A validated `tensorflow.serving.ModelServerConfig` for `models`."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for entry in models:
        model = config.model_config_list.config.add(
            name=entry.name, base_path=entry.base_path, model_platform="tensorflow"
        )
        if entry.policy == "latest":
            model.model_version_policy.latest.num_versions = entry.num_versions
        elif entry.policy == "all":
            model.model_version_policy.all.SetInParent()
        elif entry.policy == "specific":
            model.model_version_policy.specific.versions.extend(entry.versions)
        else:
            raise UserError(
                f"model {entry.name}: version policy {entry.policy!r} is not one of "
                "latest, all, specific"
            )
        for label, version in entry.labels.items():
            model.version_labels[label] = int(version)
    validate_model_server_config(config)
    return config


def validate_model_server_config(config, where: str = "models.config") -> None:
    if config.WhichOneof("config") != "model_config_list":
        raise UserError(
            f"{where}: only model_config_list is supported (custom_model_config is "
            "for other platforms); list models as model_config_list { config { ... } }"
        )
    names = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise UserError(f'{where}: a config entry has no name; add name: "MODEL"')
        if model.name in names:
            raise UserError(f"{where}: model {model.name!r} is listed twice; names must be unique")
        names.add(model.name)
        if not model.base_path:
            raise UserError(
                f"{where}: model {model.name!r} has no base_path; add "
                'base_path: "/models/NAME" (the folder holding the numbered versions)'
            )
        if model.model_platform not in ("", "tensorflow"):
            raise UserError(
                f"{where}: model {model.name!r} has model_platform "
                f'{model.model_platform!r}; only "tensorflow" is served'
            )
        policy = model.model_version_policy
        kind = policy.WhichOneof("policy_choice")
        if kind == "latest" and policy.latest.num_versions < 0:
            raise UserError(f"{where}: model {model.name!r}: latest.num_versions must be >= 1")
        if kind == "specific" and not policy.specific.versions:
            raise UserError(
                f"{where}: model {model.name!r}: specific policy lists no versions; "
                "add versions: N lines"
            )
        for label, version in model.version_labels.items():
            if version <= 0:
                raise UserError(
                    f"{where}: model {model.name!r}: label {label!r} points at "
                    f"version {version}; versions are positive integers"
                )
            if kind == "specific" and version not in policy.specific.versions:
                raise UserError(
                    f"{where}: model {model.name!r}: label {label!r} points at version "
                    f"{version}, which the specific version policy does not load"
                )


def models_config_text(config) -> str:
    return text_format.MessageToString(config)


def write_models_config(path: str | Path, models: list[ModelEntry]) -> Path:
    return _write_text_atomic(path, models_config_text(model_server_config(models)))


def read_models_config(path: str | Path):
    from tensorflow_serving.config import model_server_config_pb2

    path = Path(path)
    if not path.exists():
        raise UserError(
            f"model config file {path} does not exist; write one with `ksuite "
            "serving-config models` or pass --model_base_path instead"
        )
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except text_format.ParseError as exc:
        raise UserError(f"{path}: not a text-format ModelServerConfig: {exc}") from None
    validate_model_server_config(config, str(path))
    return config


def single_model_config(name: str, base_path: str):
    """The config tensorflow_model_server builds from --model_name/--model_base_path."""
    return model_server_config([ModelEntry(name=name, base_path=base_path)])


# ---- batching_parameters.txt ----------------------------------------------------------
@dataclass
class BatchingConfig:
    """Server-side batching, with TF Serving's defaults for omitted fields."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 2
    allowed_batch_sizes: list[int] = field(default_factory=list)
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False

    def to_proto(self):
        proto = BatchingParameters()
        proto.max_batch_size.value = self.max_batch_size
        proto.batch_timeout_micros.value = self.batch_timeout_micros
        proto.max_enqueued_batches.value = self.max_enqueued_batches
        proto.num_batch_threads.value = self.num_batch_threads
        proto.allowed_batch_sizes.extend(self.allowed_batch_sizes)
        if self.pad_variable_length_inputs:
            proto.pad_variable_length_inputs = True
        if self.enable_large_batch_splitting:
            proto.enable_large_batch_splitting.value = True
        return proto


def validate_batching(cfg: BatchingConfig, where: str = "batching parameters") -> BatchingConfig:
    if cfg.max_batch_size < 1:
        raise UserError(f"{where}: max_batch_size must be >= 1 (got {cfg.max_batch_size})")
    if cfg.batch_timeout_micros < 0:
        raise UserError(
            f"{where}: batch_timeout_micros must be >= 0 (got {cfg.batch_timeout_micros})"
        )
    if cfg.num_batch_threads < 1:
        raise UserError(f"{where}: num_batch_threads must be >= 1 (got {cfg.num_batch_threads})")
    if cfg.max_enqueued_batches < 1:
        raise UserError(
            f"{where}: max_enqueued_batches must be >= 1 (got {cfg.max_enqueued_batches})"
        )
    sizes = list(cfg.allowed_batch_sizes)
    if sizes:
        if any(s < 1 for s in sizes) or any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise UserError(
                f"{where}: allowed_batch_sizes {sizes} must be positive and strictly "
                "increasing, e.g. 8, 16, 32"
            )
        if sizes[-1] != cfg.max_batch_size:
            raise UserError(
                f"{where}: the last allowed_batch_sizes entry ({sizes[-1]}) must equal "
                f"max_batch_size ({cfg.max_batch_size})"
            )
    return cfg


def batching_text(cfg: BatchingConfig) -> str:
    return text_format.MessageToString(validate_batching(cfg).to_proto())


def write_batching_parameters(path: str | Path, cfg: BatchingConfig) -> Path:
    return _write_text_atomic(path, batching_text(cfg))


def parse_batching_text(text: str, where: str = "batching parameters") -> BatchingConfig:
    proto = BatchingParameters()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise UserError(f"{where}: not a text-format BatchingParameters: {exc}") from None
    cfg = BatchingConfig()
    for name in (
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
    ):
        if proto.HasField(name):
            setattr(cfg, name, getattr(proto, name).value)
    cfg.allowed_batch_sizes = list(proto.allowed_batch_sizes)
    cfg.pad_variable_length_inputs = proto.pad_variable_length_inputs
    if proto.HasField("enable_large_batch_splitting"):
        cfg.enable_large_batch_splitting = proto.enable_large_batch_splitting.value
    return validate_batching(cfg, where)


def read_batching_parameters(path: str | Path) -> BatchingConfig:
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"batching parameters file {path} does not exist; write one with "
            "`ksuite serving-config batching`"
        )
    return parse_batching_text(path.read_text(), str(path))


# ---- monitoring.config -----------------------------------------------------------------
def monitoring_text(path: str = DEFAULT_PROMETHEUS_PATH) -> str:
    proto = MonitoringConfig()
    proto.prometheus_config.enable = True
    proto.prometheus_config.path = path
    return text_format.MessageToString(proto)


def write_monitoring_config(path: str | Path, metrics_path: str = DEFAULT_PROMETHEUS_PATH) -> Path:
    if not metrics_path.startswith("/"):
        raise UserError(f"the Prometheus path {metrics_path!r} must start with '/'")
    return _write_text_atomic(path, monitoring_text(metrics_path))


def read_monitoring_config(path: str | Path) -> str | None:
    """The Prometheus metrics path if enabled in the file, else None."""
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"monitoring config file {path} does not exist; write one with "
            "`ksuite serving-config monitoring`"
        )
    proto = MonitoringConfig()
    try:
        text_format.Parse(path.read_text(), proto)
    except text_format.ParseError as exc:
        raise UserError(f"{path}: not a text-format MonitoringConfig: {exc}") from None
    prom = proto.prometheus_config
    if not prom.enable:
        return None
    metrics_path = prom.path or DEFAULT_PROMETHEUS_PATH
    if not metrics_path.startswith("/") or metrics_path.startswith("/v1/"):
        raise UserError(
            f"{path}: prometheus_config.path {metrics_path!r} must start with '/' and "
            "not collide with the /v1/ API"
        )
    return metrics_path

"""`ksuite serve`: an embedded, TF-Serving-compatible model server.

It takes tensorflow_model_server's flags with the same meaning, so the two can replace each
other on the command line, in docker-compose and in Kubernetes:

    ksuite serve --port=8500 --rest_api_port=8501 \
        --model_name=classification --model_base_path=/models/classification
    ksuite serve --model_config_file=models.config --enable_batching \
        --batching_parameters_file=batching_parameters.txt --monitoring_config_file=monitoring.config

Differences, all on the safe side: it binds 127.0.0.1 unless --host says otherwise, bounds
request size (--max_request_bytes) for both REST and gRPC, and bounds what REST clients can
hold: connections, bytes in flight, time to send a request, JSON nesting (--rest_* flags).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from keras_suite import common  # noqa: F401
from keras_suite.common.errors import UserError
from keras_suite.serving.jsondepth import DEFAULT_MAX_JSON_DEPTH

log = logging.getLogger("ksuite.serving")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


@dataclass
class ServerOptions:
    port: int = 8500
    rest_api_port: int = 0
    host: str = "127.0.0.1"
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: float = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    enable_model_warmup: bool = True
    allow_version_labels_for_unavailable_models: bool = False
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    grpc_max_threads: int = 32
    rest_api_num_threads: int = 0
    rest_max_connections: int = 1024
    rest_max_inflight_bytes: int = 4 * DEFAULT_MAX_REQUEST_BYTES
    rest_header_timeout_s: float = 10.0
    rest_idle_timeout_s: float = 30.0
    rest_body_timeout_s: float = 60.0
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0


def default_rest_threads(batching=None) -> int:
    """REST workers parse JSON in Python, holding the GIL: without batching, more threads
    than twice the cores gain nothing (16 clients: 4 threads 546 req/s, 16 threads 535). With
    batching a worker waits for its batch, so a batch can only fill from as many requests as
    there are workers: at least max_batch_size of them (4 threads 498 req/s, 16: 646;
    docs/serving.md)."""
    threads = max(2, 2 * (os.cpu_count() or 1))
    if batching is not None:
        threads = max(threads, min(batching.max_batch_size, 64))
    return threads


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """tensorflow_model_server's flags (same names, defaults and meaning) plus --host."""
    d = ServerOptions()
    add = parser.add_argument
    add("--port", type=int, default=d.port, help="gRPC port (default 8500; 0 picks a free port)")
    add(
        "--rest_api_port",
        type=int,
        default=d.rest_api_port,
        help="REST port; 0 disables REST, as in tensorflow_model_server (use 8501)",
    )
    add(
        "--host",
        default=d.host,
        help="address to bind (default 127.0.0.1; 0.0.0.0 for all interfaces)",
    )
    add(
        "--model_name", default=d.model_name, help="name of the model served with --model_base_path"
    )
    add(
        "--model_base_path",
        default=d.model_base_path,
        help="folder holding numbered SavedModel versions of one model",
    )
    add(
        "--model_config_file",
        default=d.model_config_file,
        help="text-format ModelServerConfig (several models, version policies, labels)",
    )
    add(
        "--model_config_file_poll_wait_seconds",
        type=int,
        default=d.model_config_file_poll_wait_seconds,
        help="re-read --model_config_file this often (0: read once)",
    )
    add(
        "--file_system_poll_wait_seconds",
        type=float,
        default=d.file_system_poll_wait_seconds,
        help="poll the base paths for new versions this often (0: once at start)",
    )
    add(
        "--enable_batching",
        type=_bool,
        nargs="?",
        const=True,
        default=d.enable_batching,
        help="batch concurrent requests on the server",
    )
    add(
        "--batching_parameters_file",
        default=d.batching_parameters_file,
        help="text-format BatchingParameters (implies nothing unless --enable_batching)",
    )
    add(
        "--monitoring_config_file",
        default=d.monitoring_config_file,
        help="text-format MonitoringConfig enabling Prometheus metrics on the REST port",
    )
    add(
        "--enable_model_warmup",
        type=_bool,
        nargs="?",
        const=True,
        default=d.enable_model_warmup,
        help="replay assets.extra/tf_serving_warmup_requests when a version loads",
    )
    add(
        "--allow_version_labels_for_unavailable_models",
        type=_bool,
        nargs="?",
        const=True,
        default=d.allow_version_labels_for_unavailable_models,
        help="let version labels name versions that are not loaded (refused by default)",
    )
    add(
        "--max_request_bytes",
        type=int,
        default=d.max_request_bytes,
        help="largest REST body / gRPC message accepted (default 64 MiB)",
    )
    add("--grpc_max_threads", type=int, default=d.grpc_max_threads, help="gRPC worker threads")
    add(
        "--tensorflow_intra_op_parallelism",
        type=int,
        default=0,
        help="threads inside one TensorFlow op (0: TensorFlow's default)",
    )
    add(
        "--tensorflow_inter_op_parallelism",
        type=int,
        default=0,
        help="TensorFlow ops run in parallel (0: TensorFlow's default)",
    )
    add(
        "--rest_api_num_threads",
        type=int,
        default=d.rest_api_num_threads,
        help="threads handling REST requests (JSON, predict); 0: twice the CPU cores (JSON "
        "parsing holds the GIL: more threads only queue on it), and with --enable_batching "
        "at least max_batch_size (up to 64), so batches can fill",
    )
    add(
        "--rest_max_connections",
        type=int,
        default=d.rest_max_connections,
        help="open REST connections at most; at the cap the longest-idle one is closed to make "
        "room, and a request on one over it (all busy) gets 503 (default 1024)",
    )
    add(
        "--rest_max_inflight_bytes",
        type=int,
        default=d.rest_max_inflight_bytes,
        help="REST request bodies held at once, summed; over it: 503 (default 256 MiB)",
    )
    add(
        "--rest_header_timeout_s",
        type=float,
        default=d.rest_header_timeout_s,
        help="a request head must arrive within this long of its first byte (default 10)",
    )
    add(
        "--rest_idle_timeout_s",
        type=float,
        default=d.rest_idle_timeout_s,
        help="close a REST connection idle this long, new or kept alive (default 30)",
    )
    add(
        "--rest_body_timeout_s",
        type=float,
        default=d.rest_body_timeout_s,
        help="a request body must arrive within this long of its head (default 60)",
    )
    add(
        "--max_json_depth",
        type=int,
        default=d.max_json_depth,
        help="deepest JSON nesting a REST body may have; deeper: 400 (default 64; 0: no limit)",
    )
    add("--rest_api_timeout_in_ms", type=int, default=30000, help="accepted for compatibility")


def options_from_args(args) -> ServerOptions:
    return ServerOptions(**{k: getattr(args, k) for k in ServerOptions.__dataclass_fields__})


class ModelServer:
    """REST + gRPC front ends over one ServerCore; start() blocks until models are loaded."""

    def __init__(self, options: ServerOptions):
        self.options = options
        self.core = None
        self.rest = None
        self.grpc = None
        self.grpc_port = None
        self.rest_port = None
        self._config_mtime = None
        self._stop_config_poll = threading.Event()

    # ---- configuration ----------------------------------------------------------------
    def _model_config(self):
        from keras_suite.serving.configs import read_models_config, single_model_config

        o = self.options
        if o.model_config_file and o.model_base_path:
            raise UserError("pass either --model_config_file or --model_base_path, not both")
        if o.model_config_file:
            self._config_mtime = os.stat(o.model_config_file).st_mtime_ns
            return read_models_config(o.model_config_file)
        if not o.model_base_path:
            raise UserError(
                "nothing to serve: pass --model_base_path=BASE/NAME (with --model_name) "
                "or --model_config_file=models.config"
            )
        if not Path(o.model_base_path).is_dir():
            raise UserError(
                f"--model_base_path {o.model_base_path} is not a folder; point it at "
                "BASE/NAME written by `ksuite export`"
            )
        return single_model_config(o.model_name, str(Path(o.model_base_path).absolute()))

    def _check_limits(self) -> None:
        o = self.options
        for flag in (
            "max_request_bytes",
            "rest_max_connections",
            "rest_max_inflight_bytes",
            "rest_header_timeout_s",
            "rest_idle_timeout_s",
            "rest_body_timeout_s",
        ):
            if getattr(o, flag) <= 0:
                raise UserError(f"--{flag}={getattr(o, flag)}: must be positive")
        for flag in ("max_json_depth", "rest_api_num_threads"):
            if getattr(o, flag) < 0:
                raise UserError(f"--{flag}={getattr(o, flag)}: must be 0 (the default) or positive")
        if o.rest_max_inflight_bytes < o.max_request_bytes:
            raise UserError(
                f"--rest_max_inflight_bytes={o.rest_max_inflight_bytes} is below "
                f"--max_request_bytes={o.max_request_bytes}: a request of the largest allowed "
                "size could never be served; raise --rest_max_inflight_bytes"
            )

    def _batching(self):
        from keras_suite.serving.configs import BatchingConfig, read_batching_parameters

        if not self.options.enable_batching:
            if self.options.batching_parameters_file:
                log.warning("--batching_parameters_file is ignored without --enable_batching")
            return None
        if self.options.batching_parameters_file:
            return read_batching_parameters(self.options.batching_parameters_file)
        return BatchingConfig()

    def reload_config(self, config) -> None:
        from keras_suite.serving.configs import validate_model_server_config

        validate_model_server_config(config, "reload request")
        self.core.manager.apply_config(config)

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> "ModelServer":
        tf = common.quiet_import_tensorflow()
        from keras_suite.serving.configs import read_monitoring_config
        from keras_suite.serving.core import ServerCore
        from keras_suite.serving.errors import ServingError
        from keras_suite.serving.grpc_service import make_grpc_server
        from keras_suite.serving.http_server import RestLimits, RestServer

        o = self.options
        self._check_limits()
        if o.tensorflow_intra_op_parallelism:
            tf.config.threading.set_intra_op_parallelism_threads(o.tensorflow_intra_op_parallelism)
        if o.tensorflow_inter_op_parallelism:
            tf.config.threading.set_inter_op_parallelism_threads(o.tensorflow_inter_op_parallelism)
        config = self._model_config()
        metrics_path = (
            read_monitoring_config(o.monitoring_config_file) if o.monitoring_config_file else None
        )
        if metrics_path and not o.rest_api_port:
            log.warning("Prometheus metrics are served on the REST port; pass --rest_api_port")
        batching = self._batching()
        self.core = ServerCore(
            batching=batching,
            warmup=o.enable_model_warmup,
            allow_labels_for_unavailable=o.allow_version_labels_for_unavailable_models,
        )
        # Like tensorflow_model_server: load the initial models before opening the ports.
        try:
            self.core.manager.apply_config(config)
        except ServingError as exc:
            self.core.manager.stop()
            raise UserError(
                f"model config: {exc.message} (pass "
                "--allow_version_labels_for_unavailable_models to allow that)"
            ) from None
        self.core.manager.start_polling(o.file_system_poll_wait_seconds)
        try:
            self.grpc, self.grpc_port = make_grpc_server(
                self.core,
                o.host,
                o.port,
                o.max_request_bytes,
                o.grpc_max_threads,
                self.reload_config,
            )
        except (OSError, RuntimeError) as exc:
            self.core.manager.stop()
            raise UserError(
                f"cannot listen for gRPC on {o.host}:{o.port} ({exc}); pick another --port"
            ) from None
        log.info("gRPC API at %s:%d", o.host, self.grpc_port)
        if o.rest_api_port:
            try:
                limits = RestLimits(
                    max_request_bytes=o.max_request_bytes,
                    max_inflight_bytes=o.rest_max_inflight_bytes,
                    max_connections=o.rest_max_connections,
                    header_timeout_s=o.rest_header_timeout_s,
                    idle_timeout_s=o.rest_idle_timeout_s,
                    body_timeout_s=o.rest_body_timeout_s,
                    max_json_depth=o.max_json_depth,
                    num_threads=o.rest_api_num_threads or default_rest_threads(batching),
                )
                self.rest = RestServer(o.host, o.rest_api_port, self.core, limits, metrics_path)
            except OSError as exc:
                self.stop(grace=0)
                raise UserError(
                    f"cannot listen for REST on {o.host}:{o.rest_api_port} ({exc}); "
                    "pick another --rest_api_port"
                ) from None
            self.rest_port = self.rest.port
            self.rest.start()
            log.info("REST API at http://%s:%d/v1/models/...", o.host, self.rest_port)
        if o.model_config_file and o.model_config_file_poll_wait_seconds > 0:
            threading.Thread(target=self._poll_config, daemon=True, name="config-poller").start()
        return self

    def _poll_config(self) -> None:
        from keras_suite.serving.configs import read_models_config

        path = self.options.model_config_file
        while not self._stop_config_poll.wait(self.options.model_config_file_poll_wait_seconds):
            try:
                mtime = os.stat(path).st_mtime_ns
                if mtime != self._config_mtime:
                    self._config_mtime = mtime
                    self.core.manager.apply_config(read_models_config(path))
                    log.info("reloaded model config %s", path)
            except Exception as exc:  # noqa: BLE001 - keep serving the old config
                log.error("model config %s not reloaded: %s", path, exc)

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting requests, let in-flight ones finish (up to `grace` s), unload."""
        self._stop_config_poll.set()
        done = None
        if self.grpc is not None:
            done = self.grpc.stop(grace)
        if self.rest is not None:
            self.rest.stop(grace)  # stops accepting, waits for requests in flight
        if done is not None:
            done.wait(grace + 1)
        if self.core is not None:
            self.core.manager.stop()


def serve_forever(options: ServerOptions) -> int:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    from keras_suite.common.runlog import setup_logging

    setup_logging("INFO")
    logging.getLogger("ksuite.serving").parent = logging.getLogger("ksuite")
    server = ModelServer(options).start()
    stop = threading.Event()

    def handle(signum, _frame):
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    print(
        f"ksuite serve: gRPC {options.host}:{server.grpc_port}"
        + (f", REST http://{options.host}:{server.rest_port}" if server.rest_port else "")
        + f"; models {server.core.manager.available()}",
        flush=True,
    )
    stop.wait()
    server.stop()
    log.info("stopped")
    return 0

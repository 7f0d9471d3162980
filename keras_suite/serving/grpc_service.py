"""TF Serving's gRPC API (PredictionService, ModelService) on the stock generated stubs."""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from keras_suite.serving.errors import ServingError

log = logging.getLogger("ksuite.serving")


def _call(core, api: str, request, context, fn):
    model = request.model_spec.name if request.HasField("model_spec") else ""
    try:
        with core.observe(model, api, "GRPC"):
            return fn(request)
    except ServingError as exc:
        context.abort(exc.grpc_code(), exc.message)
    except Exception as exc:  # noqa: BLE001
        log.exception("gRPC %s failed", api)
        context.abort(grpc.StatusCode.INTERNAL, str(exc))


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core):
        self.core = core

    def Predict(self, request, context):  # noqa: N802 - gRPC method names
        return _call(self.core, "predict", request, context, self.core.predict)

    def Classify(self, request, context):  # noqa: N802
        return _call(self.core, "classify", request, context, self.core.classify)

    def Regress(self, request, context):  # noqa: N802
        return _call(self.core, "regress", request, context, self.core.regress)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _call(self.core, "metadata", request, context, self.core.metadata)

    def MultiInference(self, request, context):  # noqa: N802
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not supported by ksuite serve"
        )


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core, reload_config):
        self.core = core
        self._reload_config = reload_config

    def GetModelStatus(self, request, context):  # noqa: N802
        return _call(self.core, "status", request, context, self.core.status)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        from tensorflow_serving.apis import model_management_pb2

        try:
            self._reload_config(request.config)
        except ServingError as exc:
            context.abort(exc.grpc_code(), exc.message)
        except Exception as exc:  # noqa: BLE001 - a config the user must fix
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response


def make_grpc_server(
    core, host: str, port: int, max_message_bytes: int, max_threads: int, reload_config
):
    """A started grpc.Server and the port it bound (port 0 picks a free one)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="grpc"),
        options=options,
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(core), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(core, reload_config), server
    )
    bound = server.add_insecure_port(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")
    if bound == 0:
        raise OSError(f"could not bind the gRPC port {host}:{port}")
    server.start()
    return server, bound

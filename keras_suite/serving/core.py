"""The server core that the REST and gRPC front ends share.

It owns the ModelManager, server-side batching and the metrics, and answers the TF
Serving APIs in terms of tensorflow_serving.apis protos (predict, classify, regress,
metadata, status). REST converts JSON to these calls; gRPC passes its protos straight in.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from keras_suite.export.signatures import DEFAULT_SIGNATURE
from keras_suite.serving.configs import BatchingConfig
from keras_suite.serving.errors import ServingError, invalid
from keras_suite.serving.manager import ModelManager
from keras_suite.serving.metrics import Metrics


class ServerCore:
    def __init__(
        self,
        batching: BatchingConfig | None = None,
        warmup: bool = True,
        allow_labels_for_unavailable: bool = False,
    ):
        self.batching = batching
        self.metrics = Metrics()
        self.manager = ModelManager(
            self._load,
            warmup=warmup,
            allow_labels_for_unavailable=allow_labels_for_unavailable,
            on_load=self._loaded,
        )

    def _load(self, name, version, path, warmup):
        from keras_suite.serving.batching import Batcher
        from keras_suite.serving.servable import Servable

        # Load without batching (warm-up runs directly), then attach the batcher.
        servable = Servable.load(name, version, path, warmup=warmup)
        if self.batching is not None:
            servable.batcher = Batcher(
                self.batching,
                servable.run_function,
                name=f"batch-{name}-{version}",
                on_batch=lambda rows, padded: self.metrics.observe_batch(name, rows, padded),
            )
        return servable

    def _loaded(self, name, version, servable, status):
        path = str(servable.path) if servable is not None else f"{name}/{version}"
        self.metrics.observe_load(path, status)

    @contextmanager
    def observe(self, model: str, api: str, entrypoint: str):
        """Count the request and time it, under its final status code."""
        started = time.perf_counter()
        status = "OK"
        try:
            yield
        except ServingError as exc:
            status = exc.code
            raise
        except Exception:
            status = "INTERNAL"
            raise
        finally:
            self.metrics.observe_request(
                model, api, entrypoint, status, (time.perf_counter() - started) * 1e6
            )

    # ---- shared helpers ------------------------------------------------------------------
    @staticmethod
    def spec_parts(model_spec):
        version = model_spec.version.value if model_spec.HasField("version") else None
        label = model_spec.version_label or None
        if not model_spec.name:
            raise invalid("Missing ModelSpec")
        return model_spec.name, version, label

    def servable_for(self, model_spec):
        return self.manager.resolve(*self.spec_parts(model_spec))

    @staticmethod
    def fill_spec(response_spec, servable, signature_name: str) -> None:
        response_spec.name = servable.name
        response_spec.version.value = servable.version
        response_spec.signature_name = signature_name

    # ---- the APIs --------------------------------------------------------------------------
    def predict(self, request):
        """PredictRequest -> PredictResponse."""
        from tensorflow_serving.apis import predict_pb2

        from keras_suite.serving.tensors import array_to_tensor_proto, tensor_proto_to_array

        servable = self.servable_for(request.model_spec)
        inputs = {k: tensor_proto_to_array(v, k) for k, v in request.inputs.items()}
        name, outputs = servable.predict(
            request.model_spec.signature_name, inputs, tuple(request.output_filter)
        )
        response = predict_pb2.PredictResponse()
        self.fill_spec(response.model_spec, servable, name)
        for key, array in outputs.items():
            response.outputs[key].CopyFrom(array_to_tensor_proto(array))
        return response

    def classify(self, request):
        from tensorflow_serving.apis import classification_pb2

        from keras_suite.serving.servable import examples_from_input

        servable = self.servable_for(request.model_spec)
        name, results = servable.classify(
            request.model_spec.signature_name, examples_from_input(request.input)
        )
        response = classification_pb2.ClassificationResponse()
        self.fill_spec(response.model_spec, servable, name)
        for row in results:
            classifications = response.result.classifications.add()
            for label, score in row:
                classifications.classes.add(label=label.decode("utf-8", "replace"), score=score)
        return response

    def regress(self, request):
        from tensorflow_serving.apis import regression_pb2

        from keras_suite.serving.servable import examples_from_input

        servable = self.servable_for(request.model_spec)
        name, values = servable.regress(
            request.model_spec.signature_name, examples_from_input(request.input)
        )
        response = regression_pb2.RegressionResponse()
        self.fill_spec(response.model_spec, servable, name)
        for value in values:
            response.result.regressions.add(value=value)
        return response

    def metadata(self, request):
        """GetModelMetadataRequest -> GetModelMetadataResponse (signature_def only)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        fields = list(request.metadata_field)
        if not fields:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for f in fields:
            if f != "signature_def":
                raise invalid(f"Metadata field {f} is not supported")
        servable = self.servable_for(request.model_spec)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in servable.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(sig)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(sig_map)
        return response

    def status(self, request):
        """GetModelStatusRequest -> GetModelStatusResponse."""
        from tensorflow.core.protobuf import error_codes_pb2
        from tensorflow_serving.apis import get_model_status_pb2

        states = self.manager.status(*self.spec_parts(request.model_spec))
        response = get_model_status_pb2.GetModelStatusResponse()
        for vs in states:
            entry = response.model_version_status.add(version=vs.version)
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(vs.state)
            entry.status.error_code = error_codes_pb2.Code.Value(vs.error_code)
            entry.status.error_message = vs.error_message
        return response

    def default_signature(self) -> str:
        return DEFAULT_SIGNATURE

"""Clients for TF Serving's REST and gRPC APIs (tensorflow_model_server or `ksuite serve`).

    rest = RestClient("http://127.0.0.1:8501")
    rest.predict("classification", {"images": batch})          # -> {output: np.ndarray}
    grpc = GrpcClient("127.0.0.1:8500")
    grpc.predict("classification", {"image_bytes": encoded}, signature_name="serve_bytes")

Both take a model name plus an optional version or label, encode bytes the way each API
wants (`{"b64": ...}` in JSON, DT_STRING TensorProtos in gRPC), time out, and raise
ServingClientError with the server's message and status.
"""

from __future__ import annotations

import base64
import json

import numpy as np

DEFAULT_TIMEOUT_S = 30.0
# tensorflow_model_server accepts large messages; gRPC's own default (4 MiB) is too small
# for a batch of images, so the client raises it on both directions.
GRPC_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class ServingClientError(Exception):
    """The server answered with an error (or could not be reached)."""

    def __init__(self, message: str, status=None):
        super().__init__(message)
        self.status = status  # HTTP status (REST) or grpc.StatusCode name (gRPC)


def _jsonable(array: np.ndarray):
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind in "SU":

        def leaf(v):
            if isinstance(v, str):
                v = v.encode("utf-8")
            return {"b64": base64.b64encode(v).decode("ascii")}

        flat = [leaf(v) for v in array.reshape(-1)]
        return _nest(flat, array.shape)
    return array.tolist()


def _nest(flat, shape):
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = int(np.prod(shape[1:]))
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _from_json(value, dtype_name: str | None):
    """A JSON output as an array; strings and {"b64"} leaves become bytes."""
    if dtype_name == "DT_STRING" or _first_leaf_is_text(value):

        def leaf(v):
            if isinstance(v, dict) and "b64" in v:
                return base64.b64decode(v["b64"])
            return v.encode("utf-8") if isinstance(v, str) else v

        flat, shape = _flatten(value)
        out = np.empty(len(flat), dtype=object)
        out[:] = [leaf(v) for v in flat]
        return out.reshape(shape)
    dtype = _NP_DTYPES.get(dtype_name)
    return np.asarray(value, dtype=dtype)


def _first_leaf_is_text(value) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, (str, dict))


def _flatten(value):
    if not isinstance(value, list):
        return [value], ()
    if not value:
        return [], (0,)
    flat, inner = [], None
    for item in value:
        f, inner = _flatten(item)
        flat.extend(f)
    return flat, (len(value),) + inner


_NP_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_INT8": np.int8,
    "DT_UINT8": np.uint8,
    "DT_INT16": np.int16,
    "DT_BOOL": np.bool_,
    "DT_HALF": np.float16,
    "DT_UINT16": np.uint16,
}


class RestClient:
    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_S):
        import requests

        if "://" not in url:
            url = "http://" + url
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._metadata_cache: dict = {}

    def _path(self, model: str, version=None, label=None) -> str:
        if version is not None and label is not None:
            raise ValueError("pass a version or a label, not both")
        path = f"{self.url}/v1/models/{model}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label is not None:
            path += f"/labels/{label}"
        return path

    def _request(self, method: str, url: str, body=None) -> dict:
        import requests

        try:
            if method == "GET":
                response = self._session.get(url, timeout=self.timeout)
            else:
                data = body if isinstance(body, (bytes, str)) else json.dumps(body)
                response = self._session.post(
                    url,
                    data=data,
                    timeout=self.timeout,
                    headers={"Content-Type": "application/json"},
                )
        except requests.Timeout:
            raise ServingClientError(
                f"{method} {url} timed out after {self.timeout:g} s", "TIMEOUT"
            ) from None
        except requests.ConnectionError as exc:
            raise ServingClientError(
                f"cannot reach {self.url} ({exc.__class__.__name__}); is the server "
                "running and the REST port right?",
                "UNREACHABLE",
            ) from None
        try:
            doc = response.json()
        except ValueError:
            doc = {"error": response.text[:200]}
        if response.status_code != 200:
            message = doc.get("error", response.text[:200]) if isinstance(doc, dict) else str(doc)
            raise ServingClientError(
                f"HTTP {response.status_code}: {message}", response.status_code
            )
        return doc

    # ---- the API ---------------------------------------------------------------------------
    def status(self, model: str, version=None, label=None) -> dict:
        return self._request("GET", self._path(model, version, label))

    def metadata(self, model: str, version=None, label=None) -> dict:
        return self._request("GET", self._path(model, version, label) + "/metadata")

    def signature(self, model: str, signature_name: str = "", version=None, label=None) -> dict:
        key = (model, version, label)
        if key not in self._metadata_cache:
            self._metadata_cache[key] = self.metadata(model, version, label)["metadata"][
                "signature_def"
            ]["signature_def"]
        sigs = self._metadata_cache[key]
        name = signature_name or "serving_default"
        if name not in sigs:
            raise ServingClientError(
                f"model {model} has no signature {name!r} (it has {sorted(sigs)})"
            )
        return sigs[name]

    def predict_raw(self, model: str, body: dict, version=None, label=None) -> dict:
        """POST a ready-made JSON body (row or columnar); returns the JSON response."""
        return self._request("POST", self._path(model, version, label) + ":predict", body)

    def predict(
        self,
        model: str,
        inputs: dict,
        signature_name: str = "",
        version=None,
        label=None,
        row_format: bool = False,
    ) -> dict:
        """{input: array with batch dim} -> {output: array}; bytes are sent as b64."""
        body: dict = {}
        if signature_name:
            body["signature_name"] = signature_name
        if row_format:
            n = len(next(iter(inputs.values())))
            body["instances"] = [
                {k: _jsonable(np.asarray(v)[i]) for k, v in inputs.items()} for i in range(n)
            ]
        else:
            body["inputs"] = {k: _jsonable(v) for k, v in inputs.items()}
        doc = self.predict_raw(model, body, version, label)
        sig = self.signature(model, signature_name, version, label)
        dtypes = {k: v.get("dtype") for k, v in sig.get("outputs", {}).items()}
        if row_format:
            preds = doc["predictions"]
            if len(dtypes) == 1:
                (name,) = dtypes
                return {name: _from_json(preds, dtypes[name])}
            return {k: _from_json([row[k] for row in preds], dtypes.get(k)) for k in preds[0]}
        outputs = doc["outputs"]
        if not isinstance(outputs, dict) or len(dtypes) == 1 and set(outputs) != set(dtypes):
            (name,) = dtypes
            return {name: _from_json(outputs, dtypes[name])}
        return {k: _from_json(v, dtypes.get(k)) for k, v in outputs.items()}

    def classify(
        self,
        model: str,
        examples: list[dict],
        signature_name: str = "",
        context=None,
        version=None,
        label=None,
    ) -> list:
        return self._examples_call(
            "classify", model, examples, signature_name, context, version, label
        )

    def regress(
        self,
        model: str,
        examples: list[dict],
        signature_name: str = "",
        context=None,
        version=None,
        label=None,
    ) -> list:
        return self._examples_call(
            "regress", model, examples, signature_name, context, version, label
        )

    def _examples_call(
        self, method, model, examples, signature_name, context, version, label
    ) -> list:
        """:classify and :regress take the same body and answer with "results"."""
        body = {"examples": examples}
        if signature_name:
            body["signature_name"] = signature_name
        if context:
            body["context"] = context
        return self._request("POST", self._path(model, version, label) + f":{method}", body)[
            "results"
        ]

    def close(self):
        self._session.close()


class GrpcClient:
    def __init__(
        self,
        target: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_message_bytes: int = GRPC_MAX_MESSAGE_BYTES,
    ):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        target = target.split("://", 1)[-1]
        self.target = target
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
        )
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    @staticmethod
    def _spec(spec, model, signature_name="", version=None, label=None):
        if version is not None and label is not None:
            raise ValueError("pass a version or a label, not both")
        spec.name = model
        if signature_name:
            spec.signature_name = signature_name
        if version is not None:
            spec.version.value = int(version)
        elif label is not None:
            spec.version_label = label

    def _call(self, method, request):
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                message = f"cannot reach {self.target}: {exc.details()}"
            elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
                message = f"request timed out after {self.timeout:g} s"
            else:
                message = exc.details()
            raise ServingClientError(f"{code.name}: {message}", code.name) from None

    def status(self, model: str, version=None, label=None):
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, model, "", version, label)
        return self._call(self.models.GetModelStatus, request)

    def metadata(self, model: str, version=None, label=None):
        """{signature key: SignatureDef proto}."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, model, "", version, label)
        response = self._call(self.prediction.GetModelMetadata, request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return dict(sig_map.signature_def)

    def predict_request(
        self, model: str, inputs: dict, signature_name: str = "", version=None, label=None
    ):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, model, signature_name, version, label)
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        return request

    def predict(
        self,
        model: str,
        inputs: dict,
        signature_name: str = "",
        version=None,
        label=None,
        output_filter=(),
    ) -> dict:
        import tensorflow as tf

        request = self.predict_request(model, inputs, signature_name, version, label)
        request.output_filter.extend(output_filter)
        response = self._call(self.prediction.Predict, request)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def predict_proto(self, request):
        return self._call(self.prediction.Predict, request)

    def classify(
        self, model: str, examples: list, signature_name: str = "", version=None, label=None
    ):
        """examples: tf.train.Example protos -> [[(label, score), ...], ...]."""
        from tensorflow_serving.apis import classification_pb2

        request = classification_pb2.ClassificationRequest()
        self._spec(request.model_spec, model, signature_name, version, label)
        request.input.example_list.examples.extend(examples)
        response = self._call(self.prediction.Classify, request)
        return [[(c.label, c.score) for c in cl.classes] for cl in response.result.classifications]

    def regress(
        self, model: str, examples: list, signature_name: str = "", version=None, label=None
    ):
        from tensorflow_serving.apis import regression_pb2

        request = regression_pb2.RegressionRequest()
        self._spec(request.model_spec, model, signature_name, version, label)
        request.input.example_list.examples.extend(examples)
        response = self._call(self.prediction.Regress, request)
        return [r.value for r in response.result.regressions]

    def close(self):
        self._channel.close()

"""TF Serving's REST API on a stdlib threading HTTP server.

    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict    row or columnar
    POST ...:classify | ...:regress                           tf.Example requests
    GET  <prometheus path>                                    metrics, when configured

Errors are `{"error": "..."}` with TF Serving's canonical-code -> HTTP status mapping.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from serving.errors import ServingError, invalid
from serving.tensors import array_to_json, json_to_array, numpy_dtype

log = logging.getLogger("ksuite.serving")

_SPEC = r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
PREDICT_PATH = re.compile(_SPEC + r":(classify|regress|predict)", re.IGNORECASE)
STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
                         re.IGNORECASE)


def _json_options():
    return dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def proto_to_dict(message) -> dict:
    from google.protobuf import json_format

    try:
        return json_format.MessageToDict(message, **_json_options())
    except TypeError:  # protobuf < 5 spells the option differently
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         including_default_value_fields=True)


def _parse_json(body: bytes):
    if not body.strip():
        raise invalid("JSON Parse error: The document is empty.")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"JSON Parse error: {exc}") from None


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _spec(name, version, label):
    from tensorflow_serving.apis import model_pb2

    spec = model_pb2.ModelSpec(name=unquote(name))
    if version is not None and label is not None:
        raise invalid(f"Both model version ({version}) and model version label ({label}) cannot be supplied.")
    if version is not None:
        try:
            spec.version.value = int(version)
        except ValueError:
            raise invalid(f"Failed to convert version: {version} to numeric.") from None
    if label is not None:
        spec.version_label = unquote(label)
    return spec


# ---- predict -------------------------------------------------------------------------------
def predict_json(core, spec, body: bytes) -> dict:
    doc = _parse_json(body)
    if not isinstance(doc, dict):
        raise invalid("Request body must be a JSON object with 'instances' or 'inputs'")
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid("'signature_name' key must be a string value.")
    servable = core.manager.resolve(*core.spec_parts(spec))
    signature_name, sig = servable.signature(signature_name)
    has_rows, has_cols = "instances" in doc, "inputs" in doc
    if has_rows and has_cols:
        raise invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists")
    if not has_rows and not has_cols:
        raise invalid("Missing 'inputs' or 'instances' key")
    arrays = _rows_to_arrays(doc["instances"], sig) if has_rows else _columns_to_arrays(doc["inputs"], sig)
    _, outputs = servable.predict(signature_name, arrays)
    if has_rows:
        return {"predictions": _outputs_to_rows(outputs)}
    if len(outputs) == 1:
        (name, array), = outputs.items()
        return {"outputs": array_to_json(array, name)}
    return {"outputs": {k: array_to_json(v, k) for k, v in outputs.items()}}


def _convert(value, sig, name):
    if name not in sig.inputs:
        raise invalid(f"input tensor alias not found in signature: {name}. Inputs expected to be in "
                      f"the set {{{','.join(sorted(sig.inputs))}}}.")
    return json_to_array(value, numpy_dtype(sig.inputs[name].dtype), name)


def _rows_to_arrays(instances, sig) -> dict:
    if not isinstance(instances, list):
        raise invalid("Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid("No values in 'instances' list")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named:
        if len(sig.inputs) != 1:
            raise invalid(f"Expecting object but got list at item 0 of 'instances': the signature has "
                          f"{len(sig.inputs)} inputs ({','.join(sorted(sig.inputs))}), so each instance "
                          "must be an object keyed by input name")
        (name,) = sig.inputs
        return {name: _convert(instances, sig, name)}
    keys = set(instances[0])
    for i, row in enumerate(instances):
        if not isinstance(row, dict) or _is_b64(row):
            raise invalid(f"Expecting object at item {i} of 'instances' (every instance must have the same form)")
        if set(row) != keys:
            raise invalid(f"Failed to process element: {i} of 'instances' list. JSON object: has keys "
                          f"{sorted(row)} but item 0 has {sorted(keys)}")
    return {name: _convert([row[name] for row in instances], sig, name) for name in keys}


def _columns_to_arrays(inputs, sig) -> dict:
    if isinstance(inputs, dict) and not _is_b64(inputs):
        return {name: _convert(value, sig, name) for name, value in inputs.items()}
    if len(sig.inputs) != 1:
        raise invalid(f"The signature has {len(sig.inputs)} inputs ({','.join(sorted(sig.inputs))}); "
                      "'inputs' must be an object keyed by input name")
    (name,) = sig.inputs
    return {name: _convert(inputs, sig, name)}


def _outputs_to_rows(outputs: dict):
    if len(outputs) == 1:
        (name, array), = outputs.items()
        if array.ndim == 0:
            raise invalid(f"Tensor name: {name} has no shape information")
        return array_to_json(array, name)
    sizes = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise invalid(f"Tensors have inconsistent batch sizes {sizes}; use the columnar 'inputs' "
                      "format for this signature")
    columns = {k: array_to_json(v, k) for k, v in outputs.items()}
    n = next(iter(sizes.values()))
    return [{k: columns[k][i] for k in columns} for i in range(n)]


# ---- classify / regress ----------------------------------------------------------------------
def _feature(values, key):
    import tensorflow as tf

    if not isinstance(values, list):
        values = [values]
    if all(isinstance(v, bool) for v in values) and values:
        raise invalid(f"feature '{key}': booleans are not a tf.Example type; send 0/1")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
    out = []
    for v in values:
        if isinstance(v, str):
            out.append(v.encode("utf-8"))
        elif _is_b64(v):
            out.append(base64.b64decode(v["b64"]))
        else:
            raise invalid(f"feature '{key}': values must all be numbers or all strings/{{\"b64\"}}")
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=out))


def _example(obj, where):
    import tensorflow as tf

    if not isinstance(obj, dict):
        raise invalid(f"{where} must be a JSON object of feature name -> value(s)")
    example = tf.train.Example()
    for key, values in obj.items():
        example.features.feature[key].CopyFrom(_feature(values, key))
    return example


def examples_request_json(core, spec, body: bytes, method: str) -> dict:
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    doc = _parse_json(body)
    if not isinstance(doc, dict):
        raise invalid("Request body must be a JSON object with 'examples'")
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid("'signature_name' key must be a string value.")
    examples = doc.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid("'examples' key must be a non-empty list of objects")
    request = (classification_pb2.ClassificationRequest() if method == "classify"
               else regression_pb2.RegressionRequest())
    request.model_spec.CopyFrom(spec)
    request.model_spec.signature_name = signature_name
    if "context" in doc:
        target = request.input.example_list_with_context
        target.context.CopyFrom(_example(doc["context"], "'context'"))
    else:
        target = request.input.example_list
    for i, obj in enumerate(examples):
        target.examples.add().CopyFrom(_example(obj, f"item {i} of 'examples'"))
    if method == "classify":
        response = core.classify(request)
        return {"results": [[[c.label, c.score] for c in cl.classes]
                            for cl in response.result.classifications]}
    response = core.regress(request)
    return {"results": [r.value for r in response.result.regressions]}


# ---- the HTTP server ---------------------------------------------------------------------------
class RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ksuite-serving"
    server: "RestServer"

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm
        # and the client's delayed ACK add ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # route access logs to our logger at DEBUG
        log.debug("%s %s", self.address_string(), fmt % args)

    def _reply(self, status: int, body: bytes, content_type="application/json", close=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _error(self, exc: ServingError, close=False):
        self._reply(exc.http_status, json.dumps({"error": exc.message}).encode(), close=close)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._reply(411, json.dumps({"error": "chunked requests are not supported; send "
                                                  "Content-Length"}).encode(), close=True)
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._error(invalid("Content-Length is not an integer"), close=True)
            return None
        if length > self.server.max_request_bytes:
            self._reply(413, json.dumps({"error": f"Request body of {length} bytes exceeds the limit "
                                                  f"of {self.server.max_request_bytes} bytes"}).encode(),
                        close=True)
            return None
        return self.rfile.read(length) if length else b""

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def _handle(self, method: str):
        with self.server.tracker:
            body = self._read_body() if method == "POST" else b""
            if body is None:
                return
            path = self.path.split("?", 1)[0]
            if method == "GET" and self.server.metrics_path and path == self.server.metrics_path:
                text = self.server.core.metrics.render().encode()
                self._reply(200, text, content_type="text/plain; version=0.0.4")
                return
            if not path.lower().startswith("/v1/"):
                self._reply(404, json.dumps({"error": f"Not found: {path}"}).encode())
                return
            try:
                status, payload = 200, self._dispatch(method, path, body)
                data = json.dumps(payload).encode()
            except ServingError as exc:
                status, data = exc.http_status, json.dumps({"error": exc.message}).encode()
            except Exception as exc:  # noqa: BLE001 - answered as INTERNAL, logged here
                log.exception("REST request %s %s failed", method, path)
                status, data = 500, json.dumps({"error": f"Internal: {exc}"}).encode()
            self._reply(status, data)

    def _dispatch(self, method: str, path: str, body: bytes):
        core = self.server.core
        if method == "POST":
            match = PREDICT_PATH.fullmatch(path)
            if match:
                name, version, label, verb = match.groups()
                spec = _spec(name, version, label)
                with core.observe(spec.name, verb, "REST"):
                    if verb.lower() == "predict":
                        return predict_json(core, spec, body)
                    return examples_request_json(core, spec, body, verb.lower())
        elif method == "GET":
            match = STATUS_PATH.fullmatch(path)
            if match:
                name, version, label, sub = match.groups()
                if not name:
                    raise invalid("Missing model name in request.")
                spec = _spec(name, version, label)
                if sub:
                    return self._metadata(core, spec)
                return proto_to_dict(core.status(_status_request(spec)))
        raise invalid(f"Malformed request: {method} {path}")

    @staticmethod
    def _metadata(core, spec):
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.CopyFrom(spec)
        response = core.metadata(request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return {"model_spec": proto_to_dict(response.model_spec), "metadata": {"signature_def": proto_to_dict(sig_map)}}


def _status_request(spec):
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.CopyFrom(spec)
    return request


class InFlight:
    """Counts requests being handled, so shutdown can wait for them to finish."""

    def __init__(self):
        self._count = 0
        self._cond = threading.Condition()

    def __enter__(self):
        with self._cond:
            self._count += 1

    def __exit__(self, *exc):
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._count == 0, timeout=timeout)


class RestServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, core, max_request_bytes: int, metrics_path: str | None):
        self.core = core
        self.max_request_bytes = max_request_bytes
        self.metrics_path = metrics_path
        self.tracker = InFlight()
        super().__init__((host, port), RestHandler)

    @property
    def port(self) -> int:
        return self.server_address[1]

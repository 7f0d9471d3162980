"""TF Serving's REST API: routing, JSON <-> tensors and error texts (the HTTP side is
serving/http_server.py, which calls `handle` below on a worker thread).

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
from urllib.parse import unquote

import orjson

from keras_suite.serving.errors import ServingError, invalid
from keras_suite.serving.jsondepth import DEFAULT_MAX_JSON_DEPTH, check_json_depth
from keras_suite.serving.tensors import array_to_json, json_to_array, numpy_dtype

log = logging.getLogger("ksuite.serving")

_SPEC = r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
PREDICT_PATH = re.compile(_SPEC + r":(classify|regress|predict)", re.IGNORECASE)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)


def _json_options():
    return dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def proto_to_dict(message) -> dict:
    from google.protobuf import json_format

    try:
        return json_format.MessageToDict(message, **_json_options())
    except TypeError:  # protobuf < 5 spells the option differently
        return json_format.MessageToDict(
            message, preserving_proto_field_name=True, including_default_value_fields=True
        )


def _parse_json(body: bytes, max_depth: int):
    if not body.strip():
        raise invalid("JSON Parse error: The document is empty.")
    check_json_depth(body, max_depth)
    try:
        return orjson.loads(body)  # ~5x faster than json on tensors, the bulk of REST's cost
    except orjson.JSONDecodeError:
        pass  # json decides: it accepts what orjson refuses (NaN, huge ints) and words the error
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"JSON Parse error: {exc}") from None
    except RecursionError:  # only reachable with --max_json_depth=0 (no limit)
        raise invalid("JSON Parse error: nesting too deep for the parser") from None


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _spec(name, version, label):
    from tensorflow_serving.apis import model_pb2

    spec = model_pb2.ModelSpec(name=unquote(name))
    if version is not None and label is not None:
        raise invalid(
            f"Both model version ({version}) and model version label ({label}) cannot be supplied."
        )
    if version is not None:
        try:
            spec.version.value = int(version)
        except ValueError:
            raise invalid(f"Failed to convert version: {version} to numeric.") from None
    if label is not None:
        spec.version_label = unquote(label)
    return spec


# ---- predict -------------------------------------------------------------------------------
def predict_json(core, spec, body: bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> dict:
    doc = _parse_json(body, max_depth)
    if not isinstance(doc, dict):
        raise invalid("Request body must be a JSON object with 'instances' or 'inputs'")
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid("'signature_name' key must be a string value.")
    servable = core.manager.resolve(*core.spec_parts(spec))
    signature_name, sig = servable.signature(signature_name)
    has_rows, has_cols = "instances" in doc, "inputs" in doc
    if has_rows and has_cols:
        raise invalid(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists"
        )
    if not has_rows and not has_cols:
        raise invalid("Missing 'inputs' or 'instances' key")
    arrays = (
        _rows_to_arrays(doc["instances"], sig)
        if has_rows
        else _columns_to_arrays(doc["inputs"], sig)
    )
    _, outputs = servable.predict(signature_name, arrays)
    if has_rows:
        return {"predictions": _outputs_to_rows(outputs)}
    if len(outputs) == 1:
        ((name, array),) = outputs.items()
        return {"outputs": array_to_json(array, name)}
    return {"outputs": {k: array_to_json(v, k) for k, v in outputs.items()}}


def _convert(value, sig, name):
    if name not in sig.inputs:
        raise invalid(
            f"input tensor alias not found in signature: {name}. Inputs expected to be in "
            f"the set {{{','.join(sorted(sig.inputs))}}}."
        )
    return json_to_array(value, numpy_dtype(sig.inputs[name].dtype), name)


def _rows_to_arrays(instances, sig) -> dict:
    if not isinstance(instances, list):
        raise invalid("Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid("No values in 'instances' list")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named:
        if len(sig.inputs) != 1:
            raise invalid(
                f"Expecting object but got list at item 0 of 'instances': the signature has "
                f"{len(sig.inputs)} inputs ({','.join(sorted(sig.inputs))}), so each instance "
                "must be an object keyed by input name"
            )
        (name,) = sig.inputs
        return {name: _convert(instances, sig, name)}
    keys = set(instances[0])
    for i, row in enumerate(instances):
        if not isinstance(row, dict) or _is_b64(row):
            raise invalid(
                f"Expecting object at item {i} of 'instances' (every instance must have the same form)"
            )
        if set(row) != keys:
            raise invalid(
                f"Failed to process element: {i} of 'instances' list. JSON object: has keys "
                f"{sorted(row)} but item 0 has {sorted(keys)}"
            )
    return {name: _convert([row[name] for row in instances], sig, name) for name in keys}


def _columns_to_arrays(inputs, sig) -> dict:
    if isinstance(inputs, dict) and not _is_b64(inputs):
        return {name: _convert(value, sig, name) for name, value in inputs.items()}
    if len(sig.inputs) != 1:
        raise invalid(
            f"The signature has {len(sig.inputs)} inputs ({','.join(sorted(sig.inputs))}); "
            "'inputs' must be an object keyed by input name"
        )
    (name,) = sig.inputs
    return {name: _convert(inputs, sig, name)}


def _outputs_to_rows(outputs: dict):
    if len(outputs) == 1:
        ((name, array),) = outputs.items()
        if array.ndim == 0:
            raise invalid(f"Tensor name: {name} has no shape information")
        return array_to_json(array, name)
    sizes = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise invalid(
            f"Tensors have inconsistent batch sizes {sizes}; use the columnar 'inputs' "
            "format for this signature"
        )
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


def examples_request_json(
    core, spec, body: bytes, method: str, max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> dict:
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    doc = _parse_json(body, max_depth)
    if not isinstance(doc, dict):
        raise invalid("Request body must be a JSON object with 'examples'")
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid("'signature_name' key must be a string value.")
    examples = doc.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid("'examples' key must be a non-empty list of objects")
    request = (
        classification_pb2.ClassificationRequest()
        if method == "classify"
        else regression_pb2.RegressionRequest()
    )
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
        return {
            "results": [
                [[c.label, c.score] for c in cl.classes] for cl in response.result.classifications
            ]
        }
    response = core.regress(request)
    return {"results": [r.value for r in response.result.regressions]}


# ---- one request, on a worker thread -------------------------------------------------------------
def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def handle(
    core,
    method: str,
    path: str,
    body: bytes,
    metrics_path: str | None = None,
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
) -> tuple[int, str, bytes]:
    """(status, content type, body) for one request; every answer but metrics is JSON."""
    if method == "GET" and metrics_path and path == metrics_path:
        from keras_suite.serving.metrics import CONTENT_TYPE

        return 200, CONTENT_TYPE, core.metrics.render().encode()
    if not path.lower().startswith("/v1/"):
        return 404, "application/json", error_body(f"Not found: {path}")
    try:
        return (
            200,
            "application/json",
            json.dumps(_dispatch(core, method, path, body, max_json_depth)).encode(),
        )
    except ServingError as exc:
        return exc.http_status, "application/json", error_body(exc.message)
    except Exception as exc:  # noqa: BLE001 - answered as INTERNAL, logged here
        log.exception("REST request %s %s failed", method, path)
        return 500, "application/json", error_body(f"Internal: {exc}")


def _dispatch(core, method: str, path: str, body: bytes, max_depth: int):
    # As in TF Serving, any method other than POST to a :verb path or GET to a model path
    # (PUT, DELETE, HEAD, ...) is a malformed request: 400 with a JSON error.
    if method == "POST":
        match = PREDICT_PATH.fullmatch(path)
        if match:
            name, version, label, verb = match.groups()
            spec = _spec(name, version, label)
            with core.observe(spec.name, verb, "REST"):
                if verb.lower() == "predict":
                    return predict_json(core, spec, body, max_depth)
                return examples_request_json(core, spec, body, verb.lower(), max_depth)
    elif method == "GET":
        match = STATUS_PATH.fullmatch(path)
        if match:
            name, version, label, sub = match.groups()
            if not name:
                raise invalid("Missing model name in request.")
            spec = _spec(name, version, label)
            if sub:
                return _metadata(core, spec)
            return proto_to_dict(core.status(_status_request(spec)))
    raise invalid(f"Malformed request: {method} {path}")


def _metadata(core, spec):
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.CopyFrom(spec)
    response = core.metadata(request)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    return {
        "model_spec": proto_to_dict(response.model_spec),
        "metadata": {"signature_def": proto_to_dict(sig_map)},
    }


def _status_request(spec):
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.CopyFrom(spec)
    return request

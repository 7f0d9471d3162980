"""One loaded model version and the three TF Serving inference APIs on it.

Requests are checked against the SignatureDef protos in saved_model.pb (what TF Serving
does), then run through the SavedModel's signature functions loaded with
`tf.saved_model.load`. Inputs and outputs are plain numpy arrays here; the REST and gRPC
front ends convert their wire formats to and from them.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.export.signatures import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    INIT_OP_SIGNATURE,
    PREDICT_METHOD,
    REGRESS_METHOD,
    WARMUP_RELPATH,
    signature_defs,
)
from keras_suite.serving.errors import ServingError, invalid
from keras_suite.serving.tensors import check_shape, dtype_name, numpy_dtype

tf = common.quiet_import_tensorflow()

# Stock tensorflow_model_server links TF Text's ops (docs/design.md §7); registering them here
# lets the embedded server load the same SavedModels (in-graph WordPiece/SentencePiece).
try:
    import tensorflow_text  # noqa: F401
except ImportError:  # a model without TF Text ops still loads
    pass


class Servable:
    def __init__(self, name: str, version: int, path: Path, loaded, sig_defs: dict):
        self.name = name
        self.version = version
        self.path = Path(path)
        self._loaded = loaded
        self.signature_defs = sig_defs
        self.batcher = None  # keras_suite.serving.batching.Batcher when server-side batching is on
        self.warmup_count = 0
        self._lock = threading.Lock()

    # ---- loading --------------------------------------------------------------------
    @classmethod
    def load(cls, name: str, version: int, path: Path, warmup: bool = True) -> "Servable":
        sig_defs = signature_defs(path)
        loaded = tf.saved_model.load(str(path), tags=["serve"])
        servable = cls(name, version, path, loaded, sig_defs)
        if warmup:
            servable.warmup_count = servable.run_warmup()
        return servable

    def run_warmup(self) -> int:
        """Replay assets.extra/tf_serving_warmup_requests; any failure fails the load."""
        path = self.path / WARMUP_RELPATH
        if not path.exists():
            return 0
        from keras_suite.export.warmup import read_warmup_file
        from keras_suite.serving.tensors import tensor_proto_to_array

        logs = read_warmup_file(path)
        for log in logs:
            kind = log.WhichOneof("log_type")
            if kind == "predict_log":
                req = log.predict_log.request
                inputs = {k: tensor_proto_to_array(v, k) for k, v in req.inputs.items()}
                self.predict(req.model_spec.signature_name, inputs)
            elif kind == "classify_log":
                req = log.classify_log.request
                self.classify(req.model_spec.signature_name, examples_from_input(req.input))
            elif kind == "regress_log":
                req = log.regress_log.request
                self.regress(req.model_spec.signature_name, examples_from_input(req.input))
            else:
                raise ValueError(f"unsupported warm-up record type {kind!r}")
        return len(logs)

    # ---- signatures -------------------------------------------------------------------
    def signature(self, name: str):
        name = name or DEFAULT_SIGNATURE
        sig = self.signature_defs.get(name)
        if sig is None or name == INIT_OP_SIGNATURE:
            raise invalid(f'Serving signature name: "{name}" not found in signature def')
        return name, sig

    def _function(self, name: str):
        try:
            return self._loaded.signatures[name]
        except KeyError:
            raise invalid(f'Serving signature name: "{name}" not found in signature def') from None

    def is_batchable(self, sig) -> bool:
        """Every input and output has a leading batch dimension of unknown size."""
        for info in list(sig.inputs.values()) + list(sig.outputs.values()):
            shape = info.tensor_shape
            if shape.unknown_rank or not shape.dim or shape.dim[0].size != -1:
                return False
        return True

    # ---- predict ----------------------------------------------------------------------
    def prepare_inputs(self, sig, inputs: dict) -> dict:
        """Check names, dtypes and shapes against the SignatureDef; returns arrays."""
        missing = sorted(set(sig.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(sig.inputs))
        if extra:
            raise invalid(
                f"input tensor alias not found in signature: {extra[0]}. Inputs expected to "
                f"be in the set {{{','.join(sorted(sig.inputs))}}}."
            )
        if missing:
            raise invalid(
                f"Request inputs do not match required inputs for model `{self.name}`. "
                f"Send extra: {{}}. Missing but required: {{{','.join(missing)}}}."
            )
        prepared = {}
        for key, value in inputs.items():
            info = sig.inputs[key]
            want = numpy_dtype(info.dtype)
            array = np.asarray(value)
            if want == object:
                if array.dtype.kind not in "OS":
                    raise invalid(
                        f"Expects arg[{key}] to be string but {array.dtype.name} is provided"
                    )
            elif array.dtype != want:
                raise invalid(
                    f"Expects arg[{key}] to be {dtype_name(info.dtype)} but "
                    f"{array.dtype.name} is provided"
                )
            check_shape(array, info, key)
            prepared[key] = array
        return prepared

    def predict(self, signature_name: str, inputs: dict, output_filter=()) -> tuple[str, dict]:
        name, sig = self.signature(signature_name)
        if sig.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise invalid(
                f"Expected prediction signature method_name to be one of {{{PREDICT_METHOD}, "
                f"{CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {sig.method_name}"
            )
        arrays = self.prepare_inputs(sig, inputs)
        for key in output_filter:
            if key not in sig.outputs:
                raise invalid(
                    f"output tensor alias not found in signature: {key} Outputs expected to "
                    f"be in the set {{{','.join(sorted(sig.outputs))}}}."
                )
        if self.batcher is not None and self.is_batchable(sig):
            outputs = self.batcher.run(name, arrays)
        else:
            outputs = self.run_function(name, arrays)
        if output_filter:
            outputs = {k: v for k, v in outputs.items() if k in set(output_filter)}
        return name, outputs

    def run_function(self, name: str, arrays: dict) -> dict:
        fn = self._function(name)
        feeds = {k: tf.constant(v) for k, v in arrays.items()}
        try:
            result = fn(**feeds)
        except tf.errors.OpError as exc:
            raise ServingError(
                _CODE_NAMES.get(exc.error_code, "UNKNOWN"), exc.message.strip()
            ) from None
        except (TypeError, ValueError) as exc:
            raise invalid(str(exc).strip().splitlines()[0]) from None
        return {k: v.numpy() for k, v in result.items()}

    # ---- classify / regress --------------------------------------------------------------
    def _examples_signature(self, signature_name: str, method: str, kind: str):
        name, sig = self.signature(signature_name)
        if sig.method_name != method:
            raise invalid(
                f"Expected {kind} signature method_name to be {method}. Was: {sig.method_name}"
            )
        if len(sig.inputs) != 1:
            raise invalid(f"Expected one input Tensor in the {kind} signature.")
        ((input_key, info),) = sig.inputs.items()
        if numpy_dtype(info.dtype) != object:
            raise invalid(
                f"Expected input Tensor of the {kind} signature to be a string of "
                "serialized tf.Examples"
            )
        return name, sig, input_key

    def _run_examples(self, name, input_key, examples: list[bytes]) -> dict:
        if not examples:
            raise invalid("Input is empty.")
        serialized = np.empty(len(examples), dtype=object)
        serialized[:] = examples
        return self.run_function(name, {input_key: serialized})

    def classify(self, signature_name: str, examples: list[bytes]):
        """[[(label, score), ...] per example]; label b'' when the model gives no classes."""
        name, sig, key = self._examples_signature(signature_name, CLASSIFY_METHOD, "classification")
        out = self._run_examples(name, key, examples)
        classes, scores = out.get("classes"), out.get("scores")
        if classes is None and scores is None:
            raise invalid(
                "Expected classification signature outputs to contain classes and/or scores"
            )
        n = len(examples)
        ref = classes if classes is not None else scores
        if ref.ndim != 2 or ref.shape[0] != n:
            raise invalid(
                f"Expected output Tensor shape to be [{n}, num_classes] but got {list(ref.shape)}"
            )
        results = []
        for i in range(n):
            row = []
            for j in range(ref.shape[1]):
                label = classes[i, j] if classes is not None else b""
                score = float(scores[i, j]) if scores is not None else 0.0
                row.append((label if isinstance(label, bytes) else str(label).encode(), score))
            results.append(row)
        return name, results

    def regress(self, signature_name: str, examples: list[bytes]):
        name, sig, key = self._examples_signature(signature_name, REGRESS_METHOD, "regression")
        out = self._run_examples(name, key, examples)
        if "outputs" not in out:
            raise invalid("No output Tensor named 'outputs' in the regression signature")
        values = out["outputs"]
        n = len(examples)
        if values.shape not in ((n,), (n, 1)):
            raise invalid(
                f"Expected output Tensor shape to be [{n}] or [{n}, 1] but got {list(values.shape)}"
            )
        return name, [float(v) for v in values.reshape(-1)]


_CODE_NAMES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


def examples_from_input(input_proto) -> list[bytes]:
    """Serialized tf.Examples from a tensorflow.serving.Input (context merged in)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in input_proto.example_list.examples]
    if kind == "example_list_with_context":
        with_context = input_proto.example_list_with_context
        merged = []
        for example in with_context.examples:
            full = tf.train.Example()
            full.CopyFrom(with_context.context)
            for key, feature in example.features.feature.items():
                full.features.feature[key].CopyFrom(feature)
            merged.append(full.SerializeToString())
        return merged
    raise invalid("Input is empty.")

"""TF Serving warm-up records: assets.extra/tf_serving_warmup_requests, a TFRecord of
PredictionLog protos that the server replays when it loads a version."""

from __future__ import annotations

from pathlib import Path

from keras_suite import common
from keras_suite.common.errors import UserError
from keras_suite.export.signatures import INIT_OP_SIGNATURE, WARMUP_RELPATH, signature_defs

# TF Serving reads at most this many warm-up records per model version.
MAX_WARMUP_RECORDS = 1000


def _predict_request(model_name: str, signature: str, inputs: dict, sig_def):
    """A PredictRequest whose tensors have exactly the signature's dtypes."""
    import numpy as np
    from tensorflow_serving.apis import predict_pb2

    from keras_suite.serving.tensors import array_to_tensor_proto, check_shape, numpy_dtype

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    missing = set(sig_def.inputs) - set(inputs)
    extra = set(inputs) - set(sig_def.inputs)
    if missing or extra:
        raise UserError(
            f"sample request for signature {signature!r} has inputs {sorted(inputs)} but "
            f"the signature takes {sorted(sig_def.inputs)}; fix the app's sample_requests"
        )
    for key, value in inputs.items():
        info = sig_def.inputs[key]
        array = np.asarray(value)
        want = numpy_dtype(info.dtype)
        if want == object:
            if array.dtype.kind not in "OSU":
                raise UserError(
                    f"sample input {signature}/{key} is {array.dtype}, the signature wants strings"
                )
        elif array.dtype != want:
            raise UserError(
                f"sample input {signature}/{key} is {array.dtype}, the signature wants "
                f"{want}; cast it in the app's sample_requests"
            )
        check_shape(array, info, key)
        request.inputs[key].CopyFrom(array_to_tensor_proto(array))
    return request


def write_warmup_file(export_dir: str | Path, model_name: str, samples: dict) -> int:
    """Write assets.extra/tf_serving_warmup_requests from {signature: [inputs, ...]}."""
    tf = common.quiet_import_tensorflow()
    from tensorflow_serving.apis import prediction_log_pb2

    sigs = signature_defs(export_dir)
    logs = []
    for signature, requests in samples.items():
        if signature not in sigs:
            raise UserError(
                f"sample requests name signature {signature!r}, which the export does not "
                f"have (it has {sorted(s for s in sigs if s != INIT_OP_SIGNATURE)})"
            )
        for inputs in requests:
            request = _predict_request(model_name, signature, inputs, sigs[signature])
            logs.append(
                prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                )
            )
    logs = logs[:MAX_WARMUP_RECORDS]
    path = Path(export_dir) / WARMUP_RELPATH
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return len(logs)


def read_warmup_file(path: str | Path) -> list:
    tf = common.quiet_import_tensorflow()
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs

"""Export: versioned layout through temp dir + rename, refusal to overwrite, warm-up
records, and the pre-flight op check against stock tensorflow_model_server."""

from __future__ import annotations

import numpy as np
import pytest

from keras_suite.common.errors import UserError
from keras_suite.export.opcheck import PYTHON_ONLY_OPS, serving_op_names, unsupported_ops
from keras_suite.export.signatures import WARMUP_RELPATH, graph_ops, signature_defs
from keras_suite.export.writer import next_version, publish_version, read_warmup_file
from keras_suite.serving.testmodels import keras_toy_samples, publish_keras_toy, write_keras_toy
from tests.serving.helpers import model_store

pytestmark = pytest.mark.timeout(300)


def test_versions_are_numbered_and_complete(tmp_path):
    first = publish_keras_toy(tmp_path, "toy", seed=1)
    second = publish_keras_toy(tmp_path, "toy", seed=2)
    assert (first.name, second.name) == ("1", "2")
    assert next_version(tmp_path / "toy") == 3
    # Nothing but the two versions is left in the model folder (no temp dirs).
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == ["1", "2"]
    for version_dir in (first, second):
        assert (version_dir / "saved_model.pb").exists()
        assert (version_dir / "variables").is_dir()


def test_refuses_to_overwrite_a_version(tmp_path):
    publish_keras_toy(tmp_path, "toy", version=5)
    with pytest.raises(UserError, match="already exists.*refusing to overwrite"):
        publish_keras_toy(tmp_path, "toy", version=5)
    assert next_version(tmp_path / "toy") == 6


def test_warmup_file_holds_prediction_logs_for_every_sample():
    version_dir = model_store() / "toy" / "1"
    logs = read_warmup_file(version_dir / WARMUP_RELPATH)
    samples = keras_toy_samples()
    assert len(logs) == sum(len(v) for v in samples.values())
    sigs = signature_defs(version_dir)
    import tensorflow as tf

    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == "toy"
        sig = sigs[request.model_spec.signature_name]
        assert set(request.inputs) == set(sig.inputs)
        for key, proto in request.inputs.items():
            assert proto.dtype == sig.inputs[key].dtype
        expected = samples[request.model_spec.signature_name][0]
        for key, proto in request.inputs.items():
            np.testing.assert_array_equal(tf.make_ndarray(proto), expected[key])


def test_signatures_keep_names_and_dtypes():
    sigs = signature_defs(model_store() / "toy" / "1")
    from tensorflow.core.framework import types_pb2 as t

    assert {k: v.dtype for k, v in sigs["serving_default"].inputs.items()} == {
        "features": t.DT_FLOAT
    }
    assert {k: v.dtype for k, v in sigs["serving_default"].outputs.items()} == {
        "probabilities": t.DT_FLOAT,
        "class_ids": t.DT_INT64,
    }
    assert {k: v.dtype for k, v in sigs["multiply"].inputs.items()} == {
        "a": t.DT_FLOAT,
        "b": t.DT_INT32,
    }


def test_op_registry_covers_core_and_tf_text_but_not_python_ops():
    allowed = serving_op_names()
    assert {"MatMul", "StatefulPartitionedCall", "StringSplitV2", "DecodePng"} <= allowed
    assert {"WhitespaceTokenizeWithOffsets", "NormalizeUTF8"} <= allowed  # TF Text kernels
    assert not (set(PYTHON_ONLY_OPS) & allowed)
    assert len(allowed) > 1000  # read from the registry, not a short hand-typed list


def test_export_ops_are_all_servable():
    ops = graph_ops(model_store() / "toy" / "1")
    assert "MatMul" in ops and "StringToNumber" in ops
    assert unsupported_ops(model_store() / "toy" / "1") == {}


def test_py_function_export_fails_naming_the_op(tmp_path):
    import tensorflow as tf

    class WithPyFunction(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            y = tf.py_function(lambda v: v * 2, [x], tf.float32)
            return {"y": tf.reshape(y, [-1])}

    module = WithPyFunction()

    def write(tmp):
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serve})

    with pytest.raises(UserError, match=r"EagerPyFunc \(from tf.py_function\)"):
        publish_version(tmp_path, "bad", write)
    # The failed export left nothing behind that a server could pick up.
    assert list((tmp_path / "bad").iterdir()) == []


def test_export_without_serving_default_is_refused(tmp_path):
    import tensorflow as tf

    class NoDefault(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def other(self, x):
            return {"y": x + 1}

    module = NoDefault()
    with pytest.raises(UserError, match="serving_default"):
        publish_version(
            tmp_path,
            "nodefault",
            lambda tmp: tf.saved_model.save(module, str(tmp), signatures={"other": module.other}),
        )
    assert list((tmp_path / "nodefault").iterdir()) == []


def test_sample_with_wrong_dtype_is_refused(tmp_path):
    samples = {"serving_default": [{"features": np.zeros((1, 4), np.float64)}]}
    with pytest.raises(UserError, match="float64.*float32"):
        publish_version(tmp_path, "toy", lambda tmp: write_keras_toy(tmp), samples=samples)
    assert list((tmp_path / "toy").iterdir()) == []

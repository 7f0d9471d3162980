"""TFLite conversion in every mode, on small models this file builds and exports.

The model is dominated by weights (a Dense layer over a flattened conv map), exported the
way apps do it (keras.export.ExportArchive with a fixed input shape), converted, and run
in the LiteRT interpreter; outputs are compared with the Keras model's.
"""

import numpy as np
import pytest

from keras_suite import common
from keras_suite.common.errors import UserError
from keras_suite.tflite.convert import MODES, convert
from keras_suite.tflite.runtime import LiteRTSignature

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

SHAPE = (16, 16, 3)


def _images(n, seed):
    """Smooth images in 0..255 (gradients plus blobs), like the pixels apps feed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]] / SHAPE[0]
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(-1, 1, 3)
        base = 127 + 100 * np.tanh(a * xx + b * yy + c)
        channels = [base * rng.uniform(0.5, 1.0) + rng.normal(0, 8, base.shape) for _ in range(3)]
        out.append(np.clip(np.stack(channels, -1), 0, 255).astype(np.float32)[None])
    return out


def _export(model, path, input_name="images", output_name="probabilities"):
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec((1,) + tuple(model.input_shape[1:]), tf.float32, name=input_name)
    archive.add_endpoint(
        "serving_default", lambda x: {output_name: model(x, training=False)}, input_signature=[spec]
    )
    archive.write_out(str(path), verbose=False)
    return str(path)


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE, batch_size=1, name="images")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(256, activation="relu")(x)  # 3136 x 256 weights: most of the file
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    path = _export(model, tmp_path_factory.mktemp("dense") / "saved_model")
    return model, path


@pytest.fixture(scope="module")
def converted(dense_model):
    """Every mode converted once (int8 with int8 I/O), shared by the tests below."""
    _, path = dense_model

    def calibration():
        for image in _images(64, seed=1):
            yield {"images": image}

    out = {}
    for mode in MODES:
        io = "int8" if mode == "int8" else "float32"
        out[mode] = convert(path, "serving_default", mode, io, calibration, num_calibration=64)
    return out


def test_float32_matches_keras_within_1e4(dense_model, converted):
    model, _ = dense_model
    run = LiteRTSignature(converted["float32"].model)
    for image in _images(8, seed=2):
        got = run({"images": image})["probabilities"]
        np.testing.assert_allclose(got, model(image).numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_runs_in_litert_close_to_keras(dense_model, converted, mode):
    model, _ = dense_model
    conversion = converted[mode]
    assert conversion.flex_ops == []
    if mode in ("int8", "int16x8"):
        assert conversion.calibration_samples == 64
    run = LiteRTSignature(conversion.model, num_threads=1)
    images = _images(16, seed=3)
    got = np.concatenate([run({"images": im})["probabilities"] for im in images])
    want = np.concatenate([model(im).numpy() for im in images])
    assert got.shape == want.shape == (16, 10)
    assert np.all(np.isfinite(got))
    # Quantized outputs drift, but a converted model that lost its weights would not be close.
    tolerance = {"float32": 1e-4, "float16": 2e-3}.get(mode, 0.03)
    assert np.abs(got - want).max() <= tolerance, f"{mode}: max diff {np.abs(got - want).max()}"
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.85


def test_weight_dominated_model_shrinks(converted):
    size = {mode: len(c.model) for mode, c in converted.items()}
    assert size["dynamic"] <= 0.30 * size["float32"]
    assert size["int8"] <= 0.30 * size["float32"]
    assert 0.45 * size["float32"] <= size["float16"] <= 0.6 * size["float32"]


def test_int8_io_types(dense_model, converted):
    _, path = dense_model
    int8_run = LiteRTSignature(converted["int8"].model)
    assert int8_run.io_types() == {"images": "int8", "probabilities": "int8"}
    calibration = lambda: ({"images": im} for im in _images(16, seed=1))  # noqa: E731
    as_uint8 = convert(path, "serving_default", "int8", "uint8", calibration, num_calibration=16)
    assert LiteRTSignature(as_uint8.model).io_types() == {
        "images": "uint8",
        "probabilities": "uint8",
    }
    # float32 I/O keeps an integer graph inside, with (de)quantize ops at the edges.
    float_io = convert(path, "serving_default", "int8", "float32", calibration, num_calibration=16)
    assert LiteRTSignature(float_io.model).io_types() == {
        "images": "float32",
        "probabilities": "float32",
    }
    assert {"QUANTIZE", "DEQUANTIZE", "FULLY_CONNECTED"} <= set(float_io.ops)
    as_int16 = convert(path, "serving_default", "int16x8", "int16", calibration, num_calibration=16)
    assert LiteRTSignature(as_int16.model).io_types() == {
        "images": "int16",
        "probabilities": "int16",
    }


def test_int8_io_runs_with_quantized_tensors(dense_model, converted):
    """The raw int8 runner takes int8 input; the wrapper's quantize/dequantize is right."""
    model, _ = dense_model
    run = LiteRTSignature(converted["int8"].model)
    image = _images(1, seed=4)[0]
    detail = run.inputs["images"]
    scale, zero = detail["quantization"]
    raw = run.runner(images=np.clip(np.round(image / scale + zero), -128, 127).astype(np.int8))
    assert raw["probabilities"].dtype == np.int8
    np.testing.assert_allclose(
        run({"images": image})["probabilities"], model(image).numpy(), atol=0.03
    )


def _flex_model(tmp_path, fn, name):
    class Op(keras.layers.Layer):
        def call(self, x):
            return fn(x)

    inputs = keras.Input((8,), batch_size=1, name="x")
    model = keras.Model(inputs, Op()(keras.layers.Dense(8)(inputs)))
    return model, _export(model, tmp_path / name, "x", "y")


def test_op_without_builtin_kernel_fails_naming_it_unless_allow_flex(tmp_path):
    model, path = _flex_model(tmp_path, tf.math.sinh, "sinh")
    with pytest.raises(UserError, match=r"no TFLite builtin kernel: Sinh\b.*--allow-flex"):
        convert(path, mode="float32")
    with pytest.raises(UserError, match="Sinh"):
        convert(path, mode="dynamic")
    flex = convert(path, mode="float32", allow_flex=True)
    assert flex.flex_ops == ["Sinh"] and "FlexSinh" in flex.ops
    # This interpreter has no Flex delegate: a clear error, not a crash.
    with pytest.raises(UserError, match="Flex"):
        LiteRTSignature(flex.model)


def test_op_with_no_kernel_anywhere_is_named(tmp_path):
    _, path = _flex_model(tmp_path, lambda x: tf.math.digamma(tf.abs(x) + 1.0), "digamma")
    with pytest.raises(UserError, match=r"neither TFLite builtins nor Flex can run: Digamma"):
        convert(path, mode="float32", allow_flex=True)


def test_op_the_quantizer_refuses_is_one_line_naming_it(tmp_path):
    """TF 2.21's 16x8 quantizer has no SQUARE (StyleGAN's demodulation squares its weights):
    one line naming the op and the way out, not the calibrator's traceback."""
    _, path = _flex_model(tmp_path, tf.math.square, "square")

    def calibration():
        for i in range(8):
            yield {"x": np.full((1, 8), i / 8.0, np.float32)}

    with pytest.raises(
        UserError, match=r"int16x8 quantization .* 'SQUARE'.*another --quantize mode"
    ):
        convert(path, mode="int16x8", representative_data=calibration, num_calibration=8)
    assert convert(path, mode="int8", representative_data=calibration, num_calibration=8).model


def test_bad_arguments_are_user_errors(dense_model):
    _, path = dense_model
    with pytest.raises(UserError, match="not a mode"):
        convert(path, mode="int4")
    with pytest.raises(UserError, match="--io uint8 is not available for float16"):
        convert(path, mode="float16", io_type="uint8")
    with pytest.raises(UserError, match="needs calibration samples"):
        convert(path, mode="int8")
    with pytest.raises(UserError, match="no signature|signature"):
        convert(path, signature="nope")
    with pytest.raises(UserError):
        convert(str(path) + "-missing")

"""The fused-kernel batch norm must be a drop-in for Keras's: same outputs, gradients,
moving statistics and variables, in training and inference."""

from __future__ import annotations

import numpy as np
import pytest

from keras_suite import common
from keras_suite.common.batchnorm import FusedBatchNormalization

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def _pair(shape, **kwargs):
    stock = keras.layers.BatchNormalization(**kwargs)
    fused = FusedBatchNormalization(**kwargs)
    stock.build(shape)
    fused.build(shape)
    rng = np.random.default_rng(0)
    gamma = rng.uniform(0.5, 1.5, shape[-1]).astype("float32")
    beta = rng.normal(size=shape[-1]).astype("float32")
    for layer in (stock, fused):  # non-trivial, identical parameters and statistics
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
        layer.moving_mean.assign(np.full(shape[-1], 0.3, "float32"))
        layer.moving_variance.assign(np.full(shape[-1], 2.0, "float32"))
    return stock, fused


def _run(layer, x, training):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        # a non-linear loss: the gradient of a plain sum through batch norm is zero
        loss = tf.reduce_sum(tf.square(y) * tf.cos(y))
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return y, grads


@pytest.mark.parametrize("training", [True, False])
def test_matches_keras_batch_norm(training):
    shape = (6, 5, 7, 4)
    x = tf.constant(np.random.default_rng(1).normal(3.0, 2.0, shape).astype("float32"))
    stock, fused = _pair(shape, momentum=0.9, epsilon=1e-3)
    y_stock, g_stock = _run(stock, x, training)
    y_fused, g_fused = _run(fused, x, training)
    np.testing.assert_allclose(y_fused, y_stock, atol=2e-5)
    for a, b in zip(g_fused, g_stock):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean, stock.moving_mean, atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance, stock.moving_variance, rtol=1e-6)
    if training:  # the statistics moved towards the batch's (mean 3, variance 4)
        assert float(np.min(fused.moving_mean)) > 0.3
        assert float(np.min(fused.moving_variance)) > 2.0
    graph = tf.function(lambda t: fused(t, training=training)).get_concrete_function(x).graph
    kernels = {op.type for op in graph.get_operations()}
    assert any(k.startswith("FusedBatchNorm") for k in kernels) == training
    assert [w.name for w in fused.weights] == [w.name for w in stock.weights]


def test_falls_back_where_the_kernel_does_not_apply():
    x = tf.constant(np.random.default_rng(2).normal(size=(8, 3)).astype("float32"))
    stock, fused = _pair((8, 3))  # 2-D input: the parent's code path
    np.testing.assert_allclose(fused(x, training=True), stock(x, training=True), atol=1e-6)


def test_inside_a_model_under_mixed_bfloat16_and_in_a_saved_file(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        inputs = keras.Input((8, 8, 3))
        outputs = FusedBatchNormalization()(keras.layers.Conv2D(4, 3)(inputs))
        model = keras.Model(inputs, outputs)
        x = np.random.default_rng(3).normal(size=(2, 8, 8, 3)).astype("float32")
        y = model(x, training=True)
        assert y.dtype == tf.bfloat16
        path = tmp_path / "m.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        assert isinstance(loaded.layers[-1], FusedBatchNormalization)
        np.testing.assert_allclose(loaded(x), model(x), atol=1e-2)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_train_step_benchmark(tmp_path):
    """`ksuite bench APP train-step` times the app's step against a stock-BN copy with the
    same weights; the smoke preset and one step here, the numbers are in the docs."""
    import json

    from keras_suite.apps.detection.model import build_detector
    from keras_suite.common.batchnorm_bench import main, with_keras_batch_norm

    model = build_detector(3, "n", reg_max=8)
    stock = with_keras_batch_norm(model)
    kinds = {type(layer) for layer in stock.layers}
    assert keras.layers.BatchNormalization in kinds and FusedBatchNormalization not in kinds
    x = np.random.default_rng(4).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(stock(x, training=False), model(x, training=False), atol=1e-4)

    out = tmp_path / "bench.json"
    # classification: its smoke step traces in seconds (the detector's loss takes ~a minute)
    assert (
        main(
            "classification",
            ["--preset", "smoke", "--blocks", "1", "--steps", "1", "--out", str(out)],
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert set(result["results"]) == {"keras_batch_norm", "fused_batch_norm"}
    assert result["app"] == "classification" and result["batch_size"] > 0
    assert all(r["images_per_sec"] > 0 for r in result["results"].values())
    assert result["speedup_fused_vs_keras"] > 0

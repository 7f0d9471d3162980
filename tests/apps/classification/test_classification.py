"""Classification: data loaders, metrics, the trained smoke run and its serving signatures."""

import json

import numpy as np
import pytest

from keras_suite import common
from keras_suite.apps.classification import APP
from keras_suite.apps.classification.app import classification_metrics
from keras_suite.apps.classification.export import png_bytes as _png_bytes
from keras_suite.common import config, shapes
from keras_suite.common.errors import UserError
from keras_suite.common.images import write_tfrecord

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def _write_folder(root, per_class=6, corrupt=0, size=20):
    images, labels = shapes.classification_images(
        per_class * 3, size, seed=5, classes=shapes.SHAPES[:3]
    )
    for i, (img, label) in enumerate(zip(images, labels)):
        folder = root / shapes.SHAPES[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.png").write_bytes(_png_bytes(img))
    for i in range(corrupt):
        (root / shapes.SHAPES[0] / f"broken{i}.jpg").write_bytes(
            b"\xff\xd8\xff\xe0 not really a jpeg"
        )
    return len(images)


def test_metrics_match_hand_computation():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = np.array([0, 1, 1, 2])
    m = classification_metrics(probs, labels, ["a", "b", "c"])
    assert m["top1"] == pytest.approx(0.75)
    assert m["top3"] == pytest.approx(1.0)
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert m["per_class"]["a"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["precision"] == pytest.approx(1.0)
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.3, 0.5])))


def test_folder_data_skips_corrupt_images_and_counts_them(tmp_path, caplog):
    n = _write_folder(tmp_path / "imgs", corrupt=2)
    cfg = config.resolve(
        APP.presets,
        "smoke",
        overrides=[
            "data.source=folder",
            f"data.path={tmp_path / 'imgs'}",
            "train.batch_size=4",
            "data.val_fraction=0.2",
            "data.test_fraction=0.2",
        ],
    )
    with caplog.at_level("WARNING", logger="ksuite"):
        data = APP.datasets(cfg=cfg, artifacts=None)
    assert "skipped 2 of 20 images" in caplog.text and "broken0.jpg" in caplog.text
    info = data.info
    assert info["class_names"] == list(shapes.SHAPES[:3])
    assert info["num_train"] + info["num_val"] + info["num_test"] == n
    images, labels = next(iter(data.train_epoch(0)))
    assert images.shape == (4, 32, 32, 3) and images.dtype == tf.float32
    assert float(tf.reduce_max(images)) <= 255.0 and labels.dtype == tf.int64


def test_folder_with_only_corrupt_images_fails_clearly(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(b"garbage")
    cfg = config.resolve(
        APP.presets, "smoke", overrides=["data.source=folder", f"data.path={tmp_path}"]
    )
    with pytest.raises(UserError, match="none of the 1 images .* could be decoded"):
        APP.datasets(cfg=cfg, artifacts=None)


def test_tfrecords_with_labels_txt(tmp_path):
    images, labels = shapes.classification_images(40, 24, seed=9, classes=shapes.SHAPES[:4])
    encoded = [_png_bytes(i) for i in images]
    write_tfrecord(
        tmp_path / "train-00000.tfrecord", encoded[:30] + [b"corrupt"], list(labels[:30]) + [0]
    )
    write_tfrecord(tmp_path / "test.tfrecord", encoded[30:], labels[30:])
    (tmp_path / "labels.txt").write_text("\n".join(shapes.SHAPES[:4]) + "\n")
    cfg = config.resolve(
        APP.presets,
        "smoke",
        overrides=[
            "data.source=tfrecord",
            f"data.path={tmp_path}",
            "train.batch_size=5",
            "data.val_fraction=0.2",
        ],
    )
    data = APP.datasets(cfg=cfg, artifacts=None)
    assert data.info["class_names"] == list(shapes.SHAPES[:4])
    assert (data.info["num_train"], data.info["num_val"], data.info["num_test"]) == (24, 6, 10)
    test_labels = np.concatenate([y.numpy() for _, y in data.test])
    assert sorted(test_labels.tolist()) == sorted(labels[30:].tolist())


def test_epoch_order_is_a_function_of_seed_and_epoch():
    cfg = config.resolve(APP.presets, "smoke")
    data = APP.datasets(cfg=cfg, artifacts=None)
    first = [y.numpy().tolist() for _, y in data.train_epoch(1).take(3)]
    again = [y.numpy().tolist() for _, y in data.train_epoch(1).take(3)]
    other = [y.numpy().tolist() for _, y in data.train_epoch(2).take(3)]
    assert first == again and first != other


def test_smoke_run_learns_and_writes_its_run_dir(smoke_classification_run):
    run = smoke_classification_run
    for name in (
        "config.yaml",
        "run.json",
        "info.json",
        "model.weights.h5",
        "metrics.json",
        "plots/confusion_matrix.png",
        "plots/training_curves.png",
        "logs/metrics.jsonl",
    ):
        assert (run / name).exists(), name
    assert list((run / "logs" / "tensorboard").rglob("events.out.tfevents.*"))
    epochs = [
        json.loads(line)
        for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()
        if '"kind": "epoch"' in line
    ]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["top1"] <= 1.0 and metrics["num_examples"] == 256
    assert len(metrics["confusion_matrix"]) == 8


def test_export_signatures_agree_with_the_model(smoke_classification_run, tmp_path):
    from keras_suite.common.run import load_run

    run = load_run(smoke_classification_run)
    data = run.datasets()
    archive = APP.export_archive(
        state=run.state, info=run.info, cfg=run.cfg, artifacts=run.artifacts
    )
    archive.write_out(str(tmp_path / "sm"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    assert set(loaded.signatures) == {"serving_default", "serve_bytes"}
    images, _ = next(iter(data.test))
    images = images[:4]
    expected = tf.nn.softmax(run.state.model(images, training=False)).numpy()
    out = loaded.signatures["serving_default"](images=images)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    names = [n.decode() for n in out["class_names"].numpy()]
    assert names == [run.info["class_names"][i] for i in expected.argmax(1)]
    # Encoded PNG bytes are decoded and resized in the graph: same pixels, same answer.
    encoded = tf.constant([_png_bytes(img) for img in images.numpy()])
    out_bytes = loaded.signatures["serve_bytes"](image_bytes=encoded)
    np.testing.assert_allclose(out_bytes["probabilities"].numpy(), expected, atol=1e-4)
    # A larger image is resized to the model's input size in graph.
    big = np.kron(images[0].numpy().astype(np.uint8), np.ones((2, 2, 1), np.uint8))
    resized = loaded.signatures["serve_bytes"](image_bytes=tf.constant([_png_bytes(big)]))
    assert resized["probabilities"].shape == (1, 8)


def test_mobilenet_v2_width_multiplier_scales_parameters():
    from keras_suite.apps.classification.model import build_classifier

    cfg = config.resolve(APP.presets, "smoke", overrides=["model.arch=mobilenetv2"])
    narrow = build_classifier(cfg.model, 32, 8)
    wide = build_classifier(config.merge(cfg, {"model": {"width": 1.5}}).model, 32, 8)
    assert any(l.__class__.__name__ == "DepthwiseConv2D" for l in narrow.layers)
    assert wide.count_params() > 1.5 * narrow.count_params()
    assert narrow(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 8)


def test_keras_hub_backbone_from_a_local_preset(tmp_path):
    """The hub path with no network: a preset saved to disk loads, with its weights."""
    import keras_hub

    from keras_suite.apps.classification.model import build_classifier

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )
    backbone.save_to_preset(str(tmp_path / "preset"))
    cfg = config.resolve(
        APP.presets,
        "smoke",
        overrides=[f"model.arch=hub:{tmp_path / 'preset'}", "model.pretrained=true"],
    )
    model = build_classifier(cfg.model, 32, 8)
    assert model(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 8)
    loaded = [l for l in model.layers if isinstance(l, keras_hub.models.Backbone)][0]
    for a, b in zip(loaded.weights, backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    bad = config.merge(cfg, {"model": {"arch": f"hub:{tmp_path / 'missing'}"}})
    with pytest.raises(UserError, match="could not load keras-hub preset"):
        build_classifier(bad.model, 32, 8)


def test_mixed_precision_run_loads_as_float32_for_deployment(smoke_classification_run, tmp_path):
    """A run trained under mixed_bfloat16 (what `auto` picks on CPUs with native bf16)
    exports float32 graphs: TFLite has no bfloat16 kernels. `ksuite evaluate` keeps the
    run's own policy so it reproduces the training-time metrics."""
    import shutil

    from keras_suite.common.run import load_run
    from keras_suite.tflite.convert import convert

    run_dir = tmp_path / "bf16-run"
    shutil.copytree(smoke_classification_run, run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "precision": "mixed_bfloat16"}))
    try:
        trained = load_run(run_dir, precision="trained")
        assert trained.state.model.dtype_policy.name == "mixed_bfloat16"
        deployed = load_run(run_dir)
        assert deployed.state.model.dtype_policy.name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for a, b in zip(trained.state.model.weights, deployed.state.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    (target,) = deployed.app.tflite_targets(
        state=deployed.state, data=deployed.datasets(), cfg=deployed.cfg, workdir=tmp_path
    )
    conversion = convert(target.saved_model_dir, target.signature, "float32")
    assert conversion.flex_ops == [] and "CONV_2D" in conversion.ops

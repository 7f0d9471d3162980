"""The segmentation app end to end on `smoke`: train -> evaluate (metrics, plots) ->
serving signatures (masks at each input's resolution, PNG bytes, probabilities) ->
TFLite parity -> predict renderings. The contract test runs the CLI; these tests check
what is specific to segmentation."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_suite.apps.segmentation import APP
from keras_suite.apps.segmentation.app import predict_ids
from keras_suite.apps.segmentation.export import png_bytes, serving_archive, tflite_archive
from keras_suite.common.errors import UserError


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from keras_suite.common.run import load_run, train_run

    run_dir = tmp_path_factory.mktemp("runs") / "segmentation-smoke"
    train_run("segmentation", "smoke", run_dir=run_dir, strategy_name="default")
    run = load_run(run_dir)
    return run, run.datasets()


@pytest.fixture(scope="module")
def served(smoke_run, tmp_path_factory):
    """The serving SavedModel as TF Serving would load it: {signature: callable}."""
    run, _ = smoke_run
    path = str(tmp_path_factory.mktemp("export") / "1")
    serving_archive(run.state.model, run.info).write_out(path, verbose=False)
    loaded = tf.saved_model.load(path)
    return {name: loaded.signatures[name] for name in ("serving_default", "probabilities")}


def test_training_writes_metrics_and_plots(smoke_run):
    run, data = smoke_run
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert list(metrics)[:3] == ["miou", "pixel_accuracy", "mean_dice"]
    assert set(metrics["per_class"]) == set(run.info["class_names"])
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["num_pixels"] == 16 * 32 * 32
    for name in ("examples.png", "per_class_iou.png", "training_curves.png"):
        assert (run.run_dir / "plots" / name).stat().st_size > 1000
    records = [
        json.loads(line)
        for line in (run.run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    ]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert len(epochs) == 2 and "val_pixel_accuracy" in epochs[-1]
    assert epochs[-1]["loss"] < epochs[0]["loss"]  # it learns something even in seconds


def test_serving_masks_come_back_at_each_inputs_resolution(smoke_run, served):
    run, data = smoke_run
    test = data.extras["splits"]["test"]
    size = run.info["image_size"]
    wide = np.asarray(Image.fromarray(test.images[1]).resize((size * 2, size + 8), Image.NEAREST))
    images = tf.constant([png_bytes(test.images[0]), png_bytes(wide)])
    out = served["serving_default"](images=images)
    assert out["height"].numpy().tolist() == [size, size + 8]
    assert out["width"].numpy().tolist() == [size, size * 2]
    ids = out["class_ids"].numpy()
    assert ids.shape == (2, size + 8, size * 2)
    # the model-size image: exactly the model's own prediction
    np.testing.assert_array_equal(
        ids[0, :size, :size], predict_ids(run.state.model, test.images[:1])[0]
    )
    assert (ids[0, size:, :] == -1).all() and (ids[0, :, size:] == -1).all()  # batch padding
    for i, (h, w) in enumerate([(size, size), (size + 8, size * 2)]):
        decoded = np.asarray(Image.open(io.BytesIO(out["mask_png"].numpy()[i])))
        assert decoded.shape == (h, w)
        np.testing.assert_array_equal(decoded, ids[i, :h, :w])
    probs = served["probabilities"](images=images[1:])["probabilities"].numpy()
    assert probs.shape == (1, size + 8, size * 2, run.info["num_classes"])
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(probs[0].argmax(-1), ids[1])


def test_tflite_float32_matches_keras(smoke_run, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from keras_suite.tflite.convert import convert

    run, data = smoke_run
    path = str(tmp_path / "fixed")
    tflite_archive(run.state.model, run.info).write_out(path, verbose=False)
    model = convert(path, "serving_default", "float32").model
    runner = Interpreter(model_content=model).get_signature_runner("serving_default")
    test = data.extras["splits"]["test"]
    want = predict_ids(run.state.model, test.images[:4])
    for i in range(4):
        out = runner(images=test.images[i][None].astype(np.float32))
        np.testing.assert_array_equal(out["class_ids"][0], want[i])
        assert out["probabilities"].shape == (1, *test.images.shape[1:3], run.info["num_classes"])


def test_predict_renders_overlays_and_masks(smoke_run, served, tmp_path):
    run, data = smoke_run
    paths = APP.predict_examples(data=data, info=run.info, cfg=run.cfg, out_dir=tmp_path / "in")
    signature, inputs = APP.predict_request(inputs=paths, info=run.info, cfg=run.cfg)
    outputs = {
        k: v.numpy() for k, v in served[signature](images=tf.constant(inputs["images"])).items()
    }
    written = APP.render_predictions(
        inputs=paths, outputs=outputs, info=run.info, out_dir=tmp_path / "out"
    )
    assert len(written) == 2 * len(paths)
    last = Image.open(paths[-1])
    mask = Image.open([w for w in written if w.endswith("example_2_mask.png")][0])
    assert mask.size == last.size != (run.info["image_size"],) * 2  # the input's own size
    # the probabilities signature: the same mask (argmax there), plus the probabilities
    probs = {
        k: v.numpy()
        for k, v in served["probabilities"](images=tf.constant(inputs["images"][-1:])).items()
    }
    again = APP.render_predictions(
        inputs=paths[-1:], outputs=probs, info=run.info, out_dir=tmp_path / "probs"
    )
    assert any(w.endswith("example_2_probabilities.npy") for w in again)
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "probs" / "example_2_mask.png")), np.asarray(mask)
    )
    with pytest.raises(UserError, match="not a readable"):
        (tmp_path / "junk.png").write_bytes(b"not an image")
        APP.predict_request(inputs=[str(tmp_path / "junk.png")], info=run.info, cfg=run.cfg)


def test_config_errors_are_one_line():
    from keras_suite.common.config import resolve

    with pytest.raises(UserError, match="model.arch"):
        resolve(APP.presets, "smoke", overrides=["model.arch=segnet"])
    with pytest.raises(UserError, match="multiple of 16"):
        resolve(APP.presets, "smoke", overrides=["data.image_size=50"])
    with pytest.raises(UserError, match="needs data.path"):
        resolve(APP.presets, "smoke", overrides=["data.source=pairs"])


@pytest.mark.slow
def test_mirrored_two_replicas_train_like_one_device(smoke_run, tmp_path):
    """Two logical CPUs (a fresh process): synchronized batch norm, per-replica augmentation
    seeds and the all-reduced pixel denominator; the logged losses match one device's."""
    from tests.helpers import run_ksuite

    run, _ = smoke_run
    proc = run_ksuite(
        "train",
        "segmentation",
        "--preset",
        "smoke",
        "--strategy",
        "mirrored",
        "--cpu-devices",
        "2",
        "--run-dir",
        str(tmp_path / "mirrored"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    def epochs(run_dir):
        lines = (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if '"kind": "epoch"' in line]

    mirrored, single = epochs(tmp_path / "mirrored"), epochs(run.run_dir)
    assert json.loads((tmp_path / "mirrored" / "run.json").read_text())["replicas"] == 2
    # the same global batches; only the augmentation draws differ (seeded per replica)
    np.testing.assert_allclose(
        [r["loss"] for r in mirrored], [r["loss"] for r in single], rtol=0.03
    )
    assert "miou" in json.loads((tmp_path / "mirrored" / "metrics.json").read_text())


def test_trains_on_user_pairs_with_ignore_pixels(tmp_path):
    """images/ + masks/ with 255 borders and a broken pair: trains, ignores 255 in the
    metrics, and names the classes from labels.txt."""
    from keras_suite.common.run import train_run
    from tests.apps.segmentation.test_segmentation_data import _pair_dataset, _png

    data = tmp_path / "data"
    _pair_dataset(data, n=24)
    _png(data / "images" / "broken.png", np.zeros((40, 48, 3)))
    _png(data / "masks" / "broken.png", np.full((40, 48), 9))
    metrics = train_run(
        "segmentation",
        "smoke",
        run_dir=tmp_path / "run",
        strategy_name="default",
        overrides=[
            "data.source=pairs",
            f"data.path={data}",
            "train.batch_size=8",
            "data.val_fraction=0.1",
            "data.test_fraction=0.2",
        ],
    )
    assert list(metrics["per_class"]) == ["background", "square", "bar"]
    test_images = json.loads((tmp_path / "run" / "info.json").read_text())["num_test"]
    assert test_images == 5
    # scored at the images' own 48x40 size; the 255 row of each mask is in no cell
    assert metrics["num_pixels"] == test_images * 48 * 39


def test_miou_is_scored_at_each_test_images_own_resolution(tmp_path):
    """Test images of three sizes: metrics.json's mIoU equals keras.metrics.MeanIoU over
    the untouched mask files and the model's probabilities resized back to each size."""
    import cv2
    import keras

    from keras_suite.common.run import load_run, train_run
    from tests.apps.segmentation.test_segmentation_data import _png
    from tests.apps.segmentation.test_segmentation_user_data import _write_pairs

    data = tmp_path / "data"
    _write_pairs(data / "train", 24, foreground=1)
    sizes = [(48, 40), (60, 30), (33, 50)]
    for i, size in enumerate(sizes):
        _write_pairs(data / "test", 1, foreground=1, size=size, seed=10 + i, prefix=f"t{i}_")
        mask = np.asarray(Image.open(data / "test" / "masks" / f"t{i}_0.png")).copy()
        mask[0, :] = 255  # an unlabelled row
        _png(data / "test" / "masks" / f"t{i}_0.png", mask)
    metrics = train_run(
        "segmentation",
        "smoke",
        run_dir=tmp_path / "run",
        strategy_name="default",
        overrides=["data.source=pairs", f"data.path={data}", "train.batch_size=8"],
    )
    model = load_run(tmp_path / "run").state.model
    reference = keras.metrics.MeanIoU(num_classes=2, ignore_class=255)
    labelled = 0
    for i, (w, h) in enumerate(sizes):
        image = cv2.cvtColor(
            cv2.imread(str(data / "test" / "images" / f"t{i}_0.png")), cv2.COLOR_BGR2RGB
        )
        small = cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
        probs = tf.nn.softmax(model(small[None], training=False))[0]
        pred = tf.argmax(tf.image.resize(probs, (h, w), method="bilinear"), -1)
        truth = np.asarray(Image.open(data / "test" / "masks" / f"t{i}_0.png"))
        assert truth.shape == (h, w)
        reference.update_state(truth, pred)
        labelled += int((truth != 255).sum())
    assert metrics["num_images"] == 3 and metrics["num_pixels"] == labelled
    assert metrics["miou"] == pytest.approx(float(reference.result()), abs=1e-6)
    assert 0 <= metrics["miou_fixed_size"] <= 1
    split = json.loads((tmp_path / "run" / "metrics.json").read_text())["evaluation_split"]
    assert split["origin"] == "test/images/" and split["size"] == 3


def test_predict_on_a_large_photo_keeps_predictions_json_small(smoke_run, tmp_path):
    """A 1200x900 photo: the mask is a PNG file at the photo's size, and predictions.json
    holds shapes, not a million class ids."""
    import cv2

    from keras_suite.cli import main

    run, _ = smoke_run
    y, x = np.mgrid[0:900, 0:1200]
    photo = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "photo.jpg"), photo)
    out = tmp_path / "out"
    assert main(["predict", str(run.run_dir), str(tmp_path / "photo.jpg"), "--out", str(out)]) == 0
    assert (out / "predictions.json").stat().st_size < 10_000
    saved = json.loads((out / "predictions.json").read_text())["outputs"]
    assert saved["class_ids"]["shape"] == [1, 900, 1200]
    assert saved["height"] == [900] and saved["width"] == [1200]
    mask = np.asarray(Image.open(out / "photo_mask.png"))
    assert mask.shape == (900, 1200) and mask.max() < run.info["num_classes"]

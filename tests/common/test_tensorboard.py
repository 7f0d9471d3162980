"""TensorBoard beyond scalars, read back from the event files of tiny smoke runs: each app's
pictures or text after an epoch, the config as hparams, and a profile of chosen steps."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_suite import common
from keras_suite.common.config import TrainConfig
from keras_suite.common.errors import UserError

tf = common.quiet_import_tensorflow()

pytestmark = pytest.mark.slow

RUNS = {
    "gan": ["data.num_train=256", "metrics.classifier_images=256"],
    "segmentation": ["train.profile_steps=1,3"],
    "textgen": [],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from keras_suite.common.run import train_run

    out = {}
    for app, extra in RUNS.items():
        run_dir = tmp_path_factory.mktemp("tb") / app
        train_run(
            app,
            "smoke",
            overrides=["train.epochs=1", *extra],
            run_dir=run_dir,
            strategy_name="default",
            evaluate=False,
        )
        out[app] = run_dir
    return out


def summaries(folder: Path) -> dict:
    """{tag: (plugin name, step, tensor as numpy)} of every event file in `folder`."""
    found = {}
    for path in glob.glob(str(folder / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found[value.tag] = (
                    value.metadata.plugin_data.plugin_name,
                    event.step,
                    tf.make_ndarray(value.tensor) if value.HasField("tensor") else None,
                    value,
                )
    return found


def decoded_images(tensor) -> list[np.ndarray]:
    """An image summary's tensor is [width, height, png, png, ...]."""
    return [tf.io.decode_png(png).numpy() for png in tensor[2:]]


def test_gan_grid_is_the_epoch_sample_png(runs):
    found = summaries(runs["gan"] / "logs" / "tensorboard" / "train")
    plugin, step, tensor, _ = found["samples/generator_ema"]
    assert (plugin, step) == ("images", 1)
    [grid] = decoded_images(tensor)
    # the same fixed seeds as RUN_DIR/samples/epoch_001.png (written 2x enlarged), so the
    # TensorBoard picture, shrunk back, is that PNG's grid pixel for pixel
    png = np.asarray(Image.open(runs["gan"] / "samples" / "epoch_001.png").convert("RGB"))
    base = png[::2, ::2]
    factor = grid.shape[0] // base.shape[0]
    assert factor >= 2 and grid.shape == (base.shape[0] * factor, base.shape[1] * factor, 3)
    np.testing.assert_array_equal(grid[::factor, ::factor], base)


def test_segmentation_overlays_of_four_validation_images(runs):
    found = summaries(runs["segmentation"] / "logs" / "tensorboard" / "train")
    plugin, step, tensor, _ = found["val/image_truth_prediction"]
    assert (plugin, step) == ("images", 1)
    images = decoded_images(tensor)
    assert len(images) == 4
    h, w, c = images[0].shape
    assert c == 3 and w == 3 * h and h >= 128  # image | truth | prediction, enlarged
    # the middle panel (ground-truth overlay) differs from the plain image where a shape is
    first = images[0]
    assert (first[:, :h] != first[:, h : 2 * h]).any()


def test_textgen_samples_as_text(runs):
    found = summaries(runs["textgen"] / "logs" / "tensorboard" / "train")
    plugin, step, tensor, _ = found["samples/generated"]
    assert (plugin, step) == ("text", 1)
    text = tensor.item().decode()
    for prompt in ("def ", "import ", "class "):
        assert f"prompt `{prompt}`" in text and f"```\n{prompt}" in text


def test_config_is_written_as_hparams_once(runs):
    from tensorboard.plugins.hparams import plugin_data_pb2

    found = summaries(runs["segmentation"] / "logs" / "tensorboard")
    plugin, _, _, value = found["_hparams_/session_start_info"]
    assert plugin == "hparams"
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    hparams = data.session_start_info.hparams
    assert hparams["train.epochs"].number_value == 1
    assert hparams["train.profile_steps"].string_value == "[1, 3]"
    assert hparams["model.width"].number_value == 0.5
    assert data.session_start_info.group_name == "segmentation"


def test_profile_steps_write_a_profile(runs):
    profiles = glob.glob(
        str(runs["segmentation"] / "logs" / "tensorboard" / "plugins" / "profile" / "*" / "*")
    )
    assert [p for p in profiles if p.endswith(".xplane.pb")], profiles
    # and a run without train.profile_steps writes none
    assert not (runs["textgen"] / "logs" / "tensorboard" / "plugins").exists()


def test_profile_steps_are_checked():
    for bad in ((3, 1), (5,), (1, 2, 3)):
        with pytest.raises(UserError, match="train.profile_steps"):
            TrainConfig(profile_steps=bad).validate()

"""The GAN's evaluation protocol: held-out images that copy a training image are removed
before FID/KID (counted in info and metrics.json)."""

from keras_suite.apps.gan import APP
from keras_suite.apps.gan.sampling import png_bytes
from keras_suite.common import config, shapes


def test_held_out_copies_of_training_images_are_removed_and_counted(tmp_path):
    """Every image is stored twice under two names; the seeded carve puts some twins on
    both sides, and those held-out twins must go (found by brute-force comparison)."""
    images, _ = shapes.classification_images(100, 16, seed=11)
    (tmp_path / "flat").mkdir()
    for i, image in enumerate(images):
        for copy in ("a", "b"):
            (tmp_path / "flat" / f"{i:02d}{copy}.png").write_bytes(png_bytes(image))
    cfg = config.resolve(
        APP.presets,
        "smoke",
        overrides=[
            "data.source=folder",
            f"data.path={tmp_path / 'flat'}",
            "data.test_fraction=0.5",
            "train.batch_size=16",
            "metrics.features=classifier",
        ],
    )
    data = APP.datasets(cfg=cfg, artifacts=_Artifacts())
    train, test = data.extras["train_images"], data.extras["test_images"]
    carved = 100
    split = data.info["evaluation_split"]
    assert len(train) == 200 - carved and len(test) + split["near_duplicates_removed"] == carved
    assert split["near_duplicates_removed"] > 0 and split["size"] == len(test)
    flat_train = train.reshape(len(train), -1)
    assert not any((flat_train == t.reshape(-1)).all(1).any() for t in test)
    # what stays are the pairs held out together (copies inside one split are no leak)
    flat_test = test.reshape(len(test), -1)
    assert all((flat_test == t).all(1).sum() == 2 for t in flat_test)


class _Artifacts:
    """Stands in for the run's artifacts: the feature classifier counts as already trained."""

    def exists(self, name):
        return True

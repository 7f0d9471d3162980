"""Which TFDS datasets fit which app, without importing TensorFlow (the app configs check
`data.source=tfds` when they are validated; keras_suite/common/tfds.py reads the data)."""

from __future__ import annotations

from keras_suite.common.errors import UserError

INSTALL_HINT = 'install the tfds extra: pip install -e ".[tfds]" (tensorflow-datasets 4.9)'

# What each field takes, and TFDS datasets known to fit it (shown when a name does not fit).
FIELDS = {
    "classification": (
        "an image feature and a class label",
        (
            "cifar10",
            "cifar100",
            "mnist",
            "fashion_mnist",
            "svhn_cropped",
            "tf_flowers",
            "oxford_flowers102",
            "oxford_iiit_pet",
            "food101",
            "beans",
            "eurosat/rgb",
        ),
    ),
    "segmentation": ("an image and a one-channel segmentation mask image", ("oxford_iiit_pet",)),
    "detection": (
        "an image and a sequence of objects with `bbox` and `label`",
        ("voc", "voc/2012", "coco/2017"),
    ),
    "translation": (
        "two text features (a source/target sentence pair)",
        ("ted_hrlr_translate/pt_to_en", "ted_hrlr_translate/ru_to_en", "wmt14_translate/de-en"),
    ),
    "textgen": ("a text feature", ("tiny_shakespeare", "imdb_reviews", "ag_news_subset")),
    "gan": (
        "an image feature (its class label too, when it has one)",
        ("mnist", "fashion_mnist", "cifar10", "celeb_a"),
    ),
    "vae": ("an image feature", ("mnist", "fashion_mnist", "cifar10", "celeb_a")),
}


def fitting(field_name: str) -> str:
    needs, known = FIELDS[field_name]
    return f"the {field_name} app needs {needs}; TFDS datasets that fit: {', '.join(known)}"


def check_tfds_config(field_name: str, dcfg) -> None:
    """data.source=tfds needs data.name (checked when the config is validated)."""
    if dcfg.source == "tfds" and not getattr(dcfg, "name", ""):
        raise UserError(
            f"data.source=tfds needs data.name (--set data.name={FIELDS[field_name][1][0]}); "
            + fitting(field_name)
        )

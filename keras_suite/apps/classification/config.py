"""Classification config and presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from keras_suite.common.errors import UserError
from keras_suite.common.finetune_config import FinetuneTrainConfig as TrainConfig
from keras_suite.common.tfds_names import check_tfds_config


@dataclass
class DataConfig:
    source: str = "shapes"  # shapes (built-in) | folder (class-per-folder tree) | tfrecord | tfds
    path: str = ""  # folder root, or a directory holding train*/val*/test* TFRecords
    name: str = ""  # data.source=tfds: a TFDS dataset name (cifar10, oxford_flowers102, ...)
    tfds_dir: str = ""  # data.source=tfds: where TFDS keeps its data ("" = ~/tensorflow_datasets)
    image_size: int = 48  # images are resized to image_size x image_size
    num_train: int = 8000  # built-in data only
    num_val: int = 1000
    num_test: int = 2000
    val_fraction: float = 0.1  # carved out of train when the data has no val split
    test_fraction: float = 0.1  # carved out of train when the data has no test split
    augment: bool = True  # master switch; shift 0.08 and zoom 0.1 always, when on
    hflip: bool = True  # random horizontal flips (off for digits, text: orientation matters)
    vflip: bool = (
        False  # random vertical flips (only for data with no "up": cells, satellite tiles)
    )
    rotation: float = 0.0  # max random rotation as a fraction of a full turn (0.05 = 18 degrees)
    color_jitter: float = 0.0  # random brightness and contrast strength (0..1)
    shuffle_buffer: int = 8192
    cache: bool = True  # cache decoded user images in memory after the first epoch

    # data.path without data.source: the source its layout shows (common/config.py)
    path_sources = ("folder", "tfrecord")

    def source_for_path(self, path) -> str | None:
        if any(path.glob("*.tfrecord*")) or any(path.glob("*/*.tfrecord*")):
            return "tfrecord"
        if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
            return "folder"  # class folders (or train/ val/ test/ of them)
        return None

    def validate(self) -> None:
        if self.source not in ("shapes", "folder", "tfrecord", "tfds"):
            raise UserError(f"data.source={self.source!r}: use shapes, folder, tfrecord or tfds")
        check_tfds_config("classification", self)
        if self.source in ("folder", "tfrecord") and not self.path:
            raise UserError(
                f"data.source={self.source} needs data.path (--set data.path=/my/images)"
            )
        if self.image_size < 16:
            raise UserError("data.image_size must be at least 16")
        if not (
            0 <= self.val_fraction < 1
            and 0 <= self.test_fraction < 1
            and self.val_fraction + self.test_fraction < 1
        ):
            raise UserError(
                "data.val_fraction and data.test_fraction must be in [0, 1) and sum below 1"
            )
        if not (0 <= self.rotation <= 0.5 and 0 <= self.color_jitter <= 1):
            raise UserError(
                "data.rotation must be in [0, 0.5] (a fraction of a turn) and data.color_jitter in [0, 1]"
            )


@dataclass
class ModelConfig:
    arch: str = "resnet"  # resnet | mobilenetv2 | hub:<keras-hub preset>
    width: float = 1.0  # width multiplier (channels x width)
    base_filters: int = 16  # resnet: channels of the first stage
    blocks: tuple[int, ...] = (2, 2, 2)  # resnet: residual blocks per stage
    dropout: float = 0.1
    pretrained: bool = False  # hub backbones: load the preset's weights (downloaded once)

    def validate(self) -> None:
        if not (self.arch in ("resnet", "mobilenetv2") or self.arch.startswith("hub:")):
            raise UserError(
                f"model.arch={self.arch!r}: use resnet, mobilenetv2 or hub:<preset name>"
            )
        if self.width <= 0:
            raise UserError("model.width must be > 0")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=10,
            batch_size=64,
            learning_rate=3e-3,
            optimizer="adamw",
            weight_decay=1e-4,
            warmup_steps=100,
        )
    )


def smoke() -> Config:
    """Seconds: a tiny network on tiny images, for tests."""
    return Config(
        data=DataConfig(image_size=32, num_train=768, num_val=128, num_test=256, augment=False),
        model=ModelConfig(base_filters=8, blocks=(1, 1), dropout=0.0),
        train=TrainConfig(
            epochs=3,
            batch_size=32,
            learning_rate=5e-3,
            warmup_steps=0,
            precision="float32",
            log_every_steps=4,
            checkpoint_every_steps=0,
        ),
    )


def default() -> Config:
    """Minutes on 2 CPU cores; the demo. Reaches >= 95% test accuracy on built-in data."""
    return Config()


def full() -> Config:
    """A longer recipe for accelerators: bigger images, deeper net, more data and epochs."""
    cfg = Config()
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data, image_size=96, num_train=50000, num_val=5000, num_test=10000
        ),
        model=dataclasses.replace(cfg.model, base_filters=48, blocks=(2, 3, 4, 2), dropout=0.2),
        train=dataclasses.replace(
            cfg.train, epochs=40, batch_size=256, learning_rate=4e-3, warmup_steps=1000
        ),
    )


PRESETS = {"smoke": smoke, "default": default, "full": full}

"""Segmentation config: dataclass sections and the smoke/default/full presets."""

from __future__ import annotations

from dataclasses import dataclass, field

from keras_suite.common.errors import UserError
from keras_suite.common.finetune_config import FinetuneTrainConfig as TrainConfig
from keras_suite.common.tfds_names import check_tfds_config

ARCHS = ("unet", "deeplabv3plus")
UPSAMPLING = ("transpose", "resize")


@dataclass
class DataConfig:
    source: str = "shapes"  # shapes (built-in) | pairs (images/ + masks/) | voc (VOC layout) | tfds
    path: str = ""  # root folder of a user dataset
    name: str = ""  # data.source=tfds: a TFDS dataset name (oxford_iiit_pet)
    tfds_dir: str = ""  # data.source=tfds: where TFDS keeps its data ("" = ~/tensorflow_datasets)
    image_size: int = 64  # square model input; user images and masks are resized to it
    ignore_index: int = 255  # mask value excluded from loss and metrics (-1: none)
    num_classes: int = 0  # user data without labels.txt: 0 = largest id found + 1
    binary: bool = False  # every non-background class becomes class 1 ("foreground")
    # built-in generator (common/shapes.py scenes plus thin lines)
    num_train: int = 6000
    num_val: int = 200
    num_test: int = 500
    max_objects: int = 6
    min_radius: float = (
        0.08  # fraction of the image: the smallest shapes are ~10 px across at 64 px
    )
    max_radius: float = 0.25
    max_overlap: float = 0.4  # box IoU allowed between shapes (the top one wins in the mask)
    max_lines: int = 2  # thin strokes (class "line") drawn over each scene
    line_width: tuple[int, int] = (2, 3)  # stroke width range in pixels
    # user data
    val_fraction: float = 0.1  # when the dataset has no val split
    test_fraction: float = 0.1  # when it has no test split (carved, seeded; never val/train)
    # augmentation (image and mask moved together; the mask with nearest neighbour)
    augment: bool = True
    flip: bool = True  # horizontal and vertical
    scale: tuple[float, float] = (0.8, 1.25)  # zoom range (crop when > 1)
    rotation: float = 15.0  # degrees, either way

    # data.path without data.source: the source its layout shows (common/config.py)
    path_sources = ("pairs", "voc")

    def source_for_path(self, path) -> str | None:
        for root in (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"):
            if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
                return "voc"
        if (path / "images").is_dir() or (path / "train" / "images").is_dir():
            return "pairs"
        return None

    def validate(self) -> None:
        if self.source not in ("shapes", "pairs", "voc", "tfds"):
            raise UserError(
                f"data.source={self.source!r}: use shapes, pairs (images/ + masks/), voc or tfds"
            )
        check_tfds_config("segmentation", self)
        if self.source in ("pairs", "voc") and not self.path:
            raise UserError(
                f"data.source={self.source} needs data.path (--set data.path=/my/dataset)"
            )
        if self.image_size < 16 or self.image_size % 16:
            raise UserError(
                f"data.image_size={self.image_size} must be a positive multiple of 16 "
                "(the networks downsample by 16); try 64, 96 or 128"
            )
        if not 0 <= self.val_fraction < 1 or not 0 <= self.test_fraction < 1:
            raise UserError("data.val_fraction and data.test_fraction are fractions in [0, 1)")
        if not -1 <= self.ignore_index <= 255:
            raise UserError("data.ignore_index must be a mask value 0..255, or -1 for none")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise UserError("data.scale is a range [low, high] with 0 < low <= high, e.g. 0.8,1.25")
        if len(self.line_width) != 2 or not 1 <= self.line_width[0] <= self.line_width[1]:
            raise UserError("data.line_width is a range [low, high] of pixels, e.g. 2,4")


@dataclass
class ModelConfig:
    arch: str = "unet"  # unet | deeplabv3plus
    width: float = 1.0  # width multiplier (channels x width)
    base_filters: int = 16  # U-Net: channels of the first level (doubled per level)
    depth: int = 4  # U-Net: number of downsamplings
    upsampling: str = "transpose"  # U-Net: transpose (Conv2DTranspose) | resize (bilinear + conv)
    output_stride: int = 8  # DeepLabV3+: backbone stride (8 or 16; atrous convs beyond it)
    atrous_rates: tuple[int, ...] = (2, 4, 6)  # DeepLabV3+ ASPP rates (scaled for small inputs)
    dropout: float = 0.0
    # DeepLabV3+ on a keras-hub backbone instead of the built-in encoder: hub:<preset> (a
    # ResNet-family or DeepLabV3 preset, or a local preset folder; docs/ecosystem.md)
    backbone: str = ""
    pretrained: bool = False  # model.backbone: load the preset's weights (downloaded once)

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise UserError(f"model.arch={self.arch!r}: use {' or '.join(ARCHS)}")
        if self.backbone and (not self.backbone.startswith("hub:") or self.arch == "unet"):
            raise UserError(
                f"model.backbone={self.backbone!r}: use hub:<keras-hub preset> with "
                "model.arch=deeplabv3plus (the U-Net has its own encoder)"
            )
        if self.upsampling not in UPSAMPLING:
            raise UserError(f"model.upsampling={self.upsampling!r}: use transpose or resize")
        if self.output_stride not in (8, 16):
            raise UserError("model.output_stride must be 8 or 16")
        if self.width <= 0 or self.depth < 1 or self.depth > 4:
            raise UserError("model.width must be > 0 and model.depth between 1 and 4")


@dataclass
class LossConfig:
    kind: str = "ce"  # ce | dice | ce+dice
    class_weights: tuple[float, ...] = ()  # per class, cross-entropy only; () = all 1
    dice_weight: float = 1.0  # weight of the Dice term in ce+dice

    def validate(self) -> None:
        if self.kind not in ("ce", "dice", "ce+dice"):
            raise UserError(f"loss.kind={self.kind!r}: use ce, dice or ce+dice")
        if any(w < 0 for w in self.class_weights):
            raise UserError("loss.class_weights must be >= 0")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=12,
            batch_size=32,
            learning_rate=3e-3,
            optimizer="adamw",
            weight_decay=1e-4,
            warmup_steps=100,
            precision="float32",
            log_every_steps=20,
        )
    )


def smoke() -> Config:
    """Seconds: a tiny U-Net on 32 px images, for tests and the contract test."""
    return Config(
        data=DataConfig(
            image_size=32,
            num_train=96,
            num_val=16,
            num_test=16,
            max_objects=3,
            min_radius=0.15,
            max_radius=0.3,
            max_lines=1,
            line_width=(2, 2),
        ),
        model=ModelConfig(width=0.5, depth=2),
        train=TrainConfig(
            epochs=2,
            batch_size=16,
            learning_rate=5e-3,
            optimizer="adam",
            warmup_steps=0,
            precision="float32",
            log_every_steps=2,
        ),
    )


def default() -> Config:
    """12 minutes on 2 shared CPU cores: test mIoU 0.860 (docs/segmentation.md has the run).

    16,000 generated scenes seen 5 times, batch 16. Augmentation is off: the generator
    already draws every position, size, rotation and colour, so fresh scenes teach more
    than warped copies (augmentation is for user datasets). Cross-entropy + Dice: the
    Dice term weighs the small shape classes as much as the background, which makes up
    ~78% of the pixels."""
    return Config(
        data=DataConfig(num_train=16000, augment=False),
        loss=LossConfig(kind="ce+dice"),
        train=TrainConfig(
            epochs=5,
            batch_size=16,
            learning_rate=2e-3,
            optimizer="adamw",
            weight_decay=1e-4,
            warmup_steps=200,
            precision="float32",
            log_every_steps=50,
        ),
    )


def full() -> Config:
    """A longer recipe for accelerators: bigger images, wider net, more data and epochs."""
    return Config(
        data=DataConfig(
            image_size=256,
            num_train=50000,
            num_val=1000,
            num_test=2000,
            max_objects=10,
            min_radius=0.03,
            max_lines=4,
        ),
        model=ModelConfig(width=2.0),
        loss=LossConfig(kind="ce+dice"),
        train=TrainConfig(
            epochs=40,
            batch_size=64,
            learning_rate=3e-3,
            optimizer="adamw",
            weight_decay=1e-4,
            warmup_steps=1000,
            precision="auto",
        ),
    )


PRESETS = {"smoke": smoke, "default": default, "full": full}

"""Configuration of the detection app: dataclass sections and the three presets."""

from __future__ import annotations

from dataclasses import dataclass, field

from keras_suite import common  # noqa: F401
from keras_suite.common.errors import UserError
from keras_suite.common.finetune_config import FinetuneTrainConfig as TrainConfig
from keras_suite.common.tfds_names import check_tfds_config

VARIANTS = ("n", "s", "m")


@dataclass
class DataConfig:
    source: str = "shapes"  # shapes | path to a data.yaml (YOLO / COCO / VOC splits) | tfds
    name: str = ""  # data.source=tfds: a TFDS dataset name (voc, coco/2017)
    tfds_dir: str = ""  # data.source=tfds: where TFDS keeps its data ("" = ~/tensorflow_datasets)
    image_size: int = 128  # square model input; user images are resized to it
    max_boxes: int = 16  # per image after augmentation (extra boxes are dropped, and logged)
    # user data whose data.yaml has no val: / test: entry: carved out of train (seeded)
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    # Pascal VOC <difficult> objects: always ignored by mAP (VOC protocol); trained on only if true
    train_difficult: bool = False
    # built-in generator
    train_images: int = 4000
    val_images: int = 200
    test_images: int = 500
    max_objects: int = 6
    min_radius: float = 0.04  # fraction of the image: small objects down to ~10 px
    max_radius: float = 0.2
    max_overlap: float = 0.3
    # augmentation
    mosaic: float = 0.5  # probability that a training image is a mosaic of 4
    close_mosaic_epochs: int = 2  # no mosaic in the last N epochs (YOLOv8 practice)
    # progressive resizing: the first early_epochs epochs train on images downscaled to
    # early_image_size (cheaper steps); 0 = off
    early_image_size: int = 0
    early_epochs: int = 0
    flip: bool = True  # random horizontal flips, boxes mirrored (off for text, digits, signs)
    translate: float = 0.1
    zoom: float = 0.2

    # data.source is the path of the user's data.yaml (common/config.py keeps it absolute)
    path_field = "source"
    builtin_sources = ("shapes", "tfds")

    def validate(self) -> None:
        check_tfds_config("detection", self)
        if self.image_size % 32:
            raise UserError(
                f"data.image_size={self.image_size} must be a multiple of 32 "
                "(the detector downsamples by 32); try 128, 160 or 320"
            )
        if self.early_image_size and (
            self.early_image_size % 32 or not 0 < self.early_image_size < self.image_size
        ):
            raise UserError(
                f"data.early_image_size={self.early_image_size} must be a multiple "
                f"of 32 below data.image_size={self.image_size} (or 0 for off)"
            )
        if self.early_epochs < 0:
            raise UserError("data.early_epochs must be >= 0")
        if not 0.0 <= self.mosaic <= 1.0:
            raise UserError("data.mosaic is a probability: set it between 0 and 1")
        if not (
            0 <= self.val_fraction < 1
            and 0 <= self.test_fraction < 1
            and self.val_fraction + self.test_fraction < 1
        ):
            raise UserError(
                "data.val_fraction and data.test_fraction must be in [0, 1) and sum below 1"
            )


@dataclass
class ModelConfig:
    variant: str = "n"  # n | s | m: YOLOv8 depth/width multipliers
    reg_max: int = 16  # bins of the distribution focal loss (distances in stride units)
    # a keras-hub backbone's P3-P5 instead of the CSP-Darknet: hub:<preset> (docs/ecosystem.md)
    backbone: str = ""
    pretrained: bool = False  # model.backbone: load the preset's weights (downloaded once)

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise UserError(f"model.variant={self.variant!r}: use one of {', '.join(VARIANTS)}")
        if self.backbone and not self.backbone.startswith("hub:"):
            raise UserError(f"model.backbone={self.backbone!r}: use hub:<keras-hub preset>")


@dataclass
class LossConfig:
    box: float = 7.5  # CIoU gain
    cls: float = 0.5  # BCE gain
    dfl: float = 1.5  # distribution focal loss gain
    topk: int = 10  # task-aligned assigner: candidates per ground-truth box
    alpha: float = 0.5  # alignment = score**alpha * iou**beta
    beta: float = 6.0
    assigner_overlap: str = (
        "iou"  # iou | ciou (YOLOv8's); equal on default, docs/results/detection.md
    )

    def validate(self) -> None:
        if self.assigner_overlap not in ("iou", "ciou"):
            raise UserError(f"loss.assigner_overlap={self.assigner_overlap!r}: use iou or ciou")


@dataclass
class PostprocessConfig:
    score_threshold: float = 0.25  # for serving / drawing
    eval_score_threshold: float = 0.001  # for mAP (the COCO protocol wants the full curve)
    iou_threshold: float = 0.6
    max_detections: int = 100
    pre_nms_topk: int = 200  # candidates per image before NMS

    def validate(self) -> None:
        if self.max_detections < 1 or self.pre_nms_topk < 1:
            raise UserError("post.max_detections and post.pre_nms_topk must be at least 1")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise UserError(f"post.iou_threshold={self.iou_threshold} must be in (0, 1]")
        if not (0.0 <= self.eval_score_threshold < 1.0 and 0.0 <= self.score_threshold < 1.0):
            raise UserError("post.score_threshold and post.eval_score_threshold must be in [0, 1)")


@dataclass
class DetectionConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    post: PostprocessConfig = field(default_factory=PostprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def smoke() -> DetectionConfig:
    """Seconds: a tiny model on 64 small images, enough to see the loss fall."""
    return DetectionConfig(
        data=DataConfig(
            image_size=64,
            train_images=64,
            val_images=0,
            test_images=16,
            max_objects=3,
            min_radius=0.12,
            max_radius=0.3,
            mosaic=0.5,
            close_mosaic_epochs=1,
            max_boxes=8,
        ),
        model=ModelConfig(variant="n", reg_max=8),
        post=PostprocessConfig(max_detections=20, pre_nms_topk=50),
        train=TrainConfig(
            epochs=4,
            batch_size=16,
            learning_rate=2e-3,
            optimizer="adamw",
            weight_decay=5e-4,
            warmup_steps=2,
            log_every_steps=1,
            clip_norm=10.0,
        ),
    )


def default() -> DetectionConfig:
    """About 26 minutes of training on 2 CPU cores with AVX-512 (mAP@.5 0.91 on the built-in
    test set; docs/results/detection.md has the runs).

    8,000 generated scenes seen 18 times rather than 4,000 seen 36 times: the same steps,
    and the 4,000-image run scored 2.8 points mAP@.5 higher on its training images than
    on the test set. The first 9 epochs train at 96 px, where a step costs 0.67x."""
    return DetectionConfig(
        data=DataConfig(
            image_size=128,
            train_images=8000,
            val_images=0,
            test_images=500,
            zoom=0.0,
            close_mosaic_epochs=2,
            early_image_size=96,
            early_epochs=9,
        ),
        model=ModelConfig(variant="n"),
        train=TrainConfig(
            epochs=18,
            batch_size=32,
            learning_rate=2e-3,
            optimizer="adamw",
            weight_decay=5e-4,
            warmup_steps=100,
            clip_norm=10.0,
            precision="float32",
        ),
    )


def full() -> DetectionConfig:
    """The paper-scale recipe (YOLOv8s at 640 px, 300 epochs) for GPUs/TPUs."""
    return DetectionConfig(
        data=DataConfig(
            image_size=640,
            train_images=100000,
            val_images=2000,
            test_images=5000,
            max_objects=20,
            max_boxes=64,
            mosaic=1.0,
            close_mosaic_epochs=10,
        ),
        model=ModelConfig(variant="s"),
        train=TrainConfig(
            epochs=300,
            batch_size=64,
            learning_rate=2e-3,
            optimizer="adamw",
            weight_decay=5e-4,
            warmup_steps=3000,
            clip_norm=10.0,
            precision="mixed_bfloat16",
        ),
    )


PRESETS = {"smoke": smoke, "default": default, "full": full}

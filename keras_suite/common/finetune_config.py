"""The `train` section of the apps that take a keras-hub backbone (no TensorFlow import:
configs are read by `ksuite --help` too). keras_suite/common/finetune.py does the work."""

from __future__ import annotations

from dataclasses import dataclass

from keras_suite.common.config import TrainConfig
from keras_suite.common.errors import UserError


@dataclass
class FinetuneTrainConfig(TrainConfig):
    """`train` of the apps that take a keras-hub backbone (classification, segmentation,
    detection)."""

    freeze_backbone_epochs: int = 0  # hub backbones: epochs that train the head only
    finetune_lr_scale: float = 0.1  # then everything learns at this x train.learning_rate

    def validate(self) -> None:
        super().validate()
        if self.freeze_backbone_epochs < 0:
            raise UserError("train.freeze_backbone_epochs must be >= 0 (0 = never frozen)")
        if self.freeze_backbone_epochs and self.freeze_backbone_epochs >= self.epochs:
            raise UserError(
                f"train.freeze_backbone_epochs={self.freeze_backbone_epochs} leaves no epoch "
                f"to fine-tune the backbone in (train.epochs={self.epochs}); set it lower"
            )
        if not 0 < self.finetune_lr_scale <= 1:
            raise UserError("train.finetune_lr_scale must be in (0, 1], e.g. 0.1")

"""GAN config and presets.

Sections: data, model (architecture and loss), one OptimizerConfig per network
(`generator`, `discriminator`: separate learning rates and betas), `stability` (EMA, R1,
critic steps), `metrics` (FID/KID feature network, sample counts) and `train` (the shared
loop's TrainConfig; its optimizer fields are unused here, the per-network sections win).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from keras_suite.common.config import OptimizerConfig, TrainConfig
from keras_suite.common.errors import UserError
from keras_suite.common.tfds_names import check_tfds_config

ARCHS = ("dcgan", "stylegan")
LOSSES = ("nonsaturating", "hinge", "wgan-gp")
NORMS = ("batch", "layer", "none")
AUGMENT_POLICIES = ("color", "translation", "cutout")


def augment_policies(policy: str) -> list:
    return [p.strip() for p in policy.split(",") if p.strip()]


@dataclass
class DataConfig:
    source: str = "shapes"  # shapes (built-in, 8 classes) | folder (images, with or without class sub-folders) | tfds
    path: str = ""
    name: str = ""  # data.source=tfds: a TFDS dataset name (mnist, celeb_a)
    tfds_dir: str = ""  # data.source=tfds: where TFDS keeps its data ("" = ~/tensorflow_datasets)
    image_size: int = 32  # images are resized (short side) and centre-cropped to this square
    num_train: int = 8000  # built-in data only
    num_test: int = 2000  # built-in: held-out real images, the FID/KID reference set
    test_fraction: float = 0.2  # user folders: share kept out of training as the reference set

    # data.path without data.source means this source (common/config.py settle_data_path)
    path_sources = ("folder",)

    def validate(self) -> None:
        if self.source not in ("shapes", "folder", "tfds"):
            raise UserError(f"data.source={self.source!r}: use shapes, folder or tfds")
        check_tfds_config("gan", self)
        if self.source == "folder" and not self.path:
            raise UserError("data.source=folder needs data.path (--set data.path=/my/images)")
        if self.image_size < 16 or self.image_size & (self.image_size - 1):
            raise UserError(
                f"data.image_size={self.image_size}: use a power of two >= 16 (16, 32, 64, 128)"
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise UserError("data.test_fraction must be between 0 and 1")


@dataclass
class ModelConfig:
    arch: str = "dcgan"  # dcgan | stylegan (StyleGAN-lite)
    loss: str = "nonsaturating"  # nonsaturating | hinge | wgan-gp
    conditional: bool = False  # class label in (needs data with classes)
    latent_dim: int = 128
    g_channels: int = 256  # channels at 4x4; halved at every doubling (min 32)
    d_channels: int = 64  # channels at full resolution; doubled at every halving (max 512)
    d_norm: str = "batch"  # discriminator normalisation: batch (Radford) | layer | none
    g_upsample: str = (
        "resize"  # DCGAN generator: resize (nearest + 3x3 conv) | transposed (4x4, stride 2)
    )
    d_arch: str = "auto"  # auto (dcgan: strided DCGAN, stylegan: residual) | dcgan | residual
    # Minibatch standard deviation in the discriminator (ProGAN/StyleGAN), group size; 0 = off
    minibatch_stddev: int = 0
    # StyleGAN-lite only
    w_dim: int = 128
    mapping_layers: int = 4
    style_mixing: float = 0.9  # probability of mixing two latents in a training batch
    w_avg_decay: float = 0.995  # tracking of the mean w for the truncation trick

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise UserError(f"model.arch={self.arch!r}: use {' or '.join(ARCHS)}")
        if self.loss not in LOSSES:
            raise UserError(f"model.loss={self.loss!r}: use {', '.join(LOSSES)}")
        if self.d_arch not in ("auto", "dcgan", "residual"):
            raise UserError(f"model.d_arch={self.d_arch!r}: use auto, dcgan or residual")
        if self.minibatch_stddev < 0 or self.minibatch_stddev == 1:
            raise UserError("model.minibatch_stddev is a group size: 0 (off) or >= 2 (4 is usual)")
        if self.g_upsample not in ("resize", "transposed"):
            raise UserError(f"model.g_upsample={self.g_upsample!r}: use resize or transposed")
        if self.d_norm not in NORMS:
            raise UserError(f"model.d_norm={self.d_norm!r}: use {', '.join(NORMS)}")
        if self.loss == "wgan-gp" and self.d_norm == "batch":
            raise UserError(
                "model.loss=wgan-gp needs a critic without batch norm (its gradient penalty is "
                "per example); set model.d_norm=layer or none"
            )


@dataclass
class StabilityConfig:
    ema_decay: float = 0.999  # EMA of the generator weights (the exported generator); 0 = copy
    ema_start_step: int = 0  # copy the weights (no averaging) before this generator step
    critic_steps: int = (
        1  # discriminator updates per generator update (the batch is split between them)
    )
    r1_gamma: float = 0.0  # R1 penalty weight (gamma/2 * |grad D(x_real)|^2); 0 = off
    r1_every: int = 16  # lazy R1: every N steps, weighted by N
    gp_weight: float = 10.0  # WGAN-GP gradient penalty weight
    # DiffAugment (Zhao et al. 2020) on every discriminator input, real and fake:
    # comma-separated color, translation, cutout; "" = off (apps/gan/augment.py)
    augment: str = ""
    # Instance noise: std (pixels in [-1, 1]) of Gaussian noise added to every discriminator
    # input, real and fake, falling linearly over the epochs; 0 = off
    instance_noise: float = 0.0

    def validate(self) -> None:
        unknown = [p for p in augment_policies(self.augment) if p not in AUGMENT_POLICIES]
        if unknown:
            raise UserError(
                f"stability.augment: {', '.join(unknown)} unknown; use a comma-separated "
                f"subset of {', '.join(AUGMENT_POLICIES)} (or '' for none)"
            )
        if self.instance_noise < 0:
            raise UserError(
                "stability.instance_noise is a standard deviation: >= 0 (0.1 is a start)"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError("stability.ema_decay must be in [0, 1)")
        if self.critic_steps < 1 or self.r1_every < 1:
            raise UserError("stability.critic_steps and stability.r1_every must be >= 1")


@dataclass
class MetricsConfig:
    # Feature network for FID/KID/precision/recall: "classifier" (a small CNN this app trains
    # on the run's own domain, offline) or "inception_v3" (needs the ImageNet weights download).
    features: str = "classifier"
    classifier_epochs: int = 8
    classifier_images: int = (
        8000  # at most this many training images (built-in shapes when the data has no classes)
    )
    num_samples: int = 2000  # generated and real images per FID/KID estimate
    kid_subset_size: int = 500
    knn: int = 3  # k of the k-NN manifolds (precision/recall, density/coverage)
    grid_seeds: int = 64  # fixed seeds of the per-epoch sample grids

    def validate(self) -> None:
        if self.features not in ("classifier", "inception_v3"):
            raise UserError(f"metrics.features={self.features!r}: use classifier or inception_v3")
        if self.num_samples < 16:
            raise UserError("metrics.num_samples must be >= 16")


def _opt(lr, b1, b2) -> OptimizerConfig:
    return OptimizerConfig(
        learning_rate=lr, optimizer="adam", beta_1=b1, beta_2=b2, lr_schedule="constant"
    )


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # Radford et al.: Adam, lr 2e-4, beta_1 0.5 for both networks
    generator: OptimizerConfig = field(default_factory=lambda: _opt(2e-4, 0.5, 0.999))
    discriminator: OptimizerConfig = field(default_factory=lambda: _opt(2e-4, 0.5, 0.999))
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=20,
            batch_size=64,
            precision="float32",
            log_every_steps=50,
            checkpoint_every_steps=500,
        )
    )

    def validate(self) -> None:
        if self.train.batch_size % self.stability.critic_steps:
            raise UserError(
                f"train.batch_size={self.train.batch_size} must be divisible by "
                f"stability.critic_steps={self.stability.critic_steps} (each critic step "
                "takes its share of the batch)"
            )
        if self.stability.r1_gamma > 0 and self.model.d_norm == "batch":
            raise UserError(
                "stability.r1_gamma > 0 needs a discriminator without batch norm (R1 is a "
                "per-example penalty); set model.d_norm=none or layer"
            )


def smoke() -> Config:
    """Seconds: a tiny DCGAN on 16x16 shapes, for tests and the contract."""
    return Config(
        data=DataConfig(image_size=16, num_train=512, num_test=128),
        model=ModelConfig(latent_dim=32, g_channels=64, d_channels=16),
        metrics=MetricsConfig(
            classifier_epochs=1,
            classifier_images=512,
            num_samples=128,
            kid_subset_size=64,
            grid_seeds=16,
        ),
        train=TrainConfig(
            epochs=2,
            batch_size=32,
            precision="float32",
            log_every_steps=4,
            checkpoint_every_steps=8,
        ),
    )


def default() -> Config:
    """DCGAN on 32x32 built-in shapes, 10-15 minutes on 2 CPU cores (docs/results/gan.md). Minibatch
    stddev and instance noise 0.2: FID 26.1 -> 14.1, recall 0.15 -> 0.21 (noise alone: 19.2;
    minibatch stddev alone did not stop the discriminator from winning by epoch 5)."""
    return Config(
        model=ModelConfig(minibatch_stddev=4),
        stability=StabilityConfig(ema_decay=0.999, instance_noise=0.2),
    )


def stylegan() -> Config:
    """StyleGAN-lite on 32x32 built-in shapes: non-saturating loss + lazy R1, EMA generator,
    StyleGAN2's optimizer settings (Adam beta_1 0, beta_2 0.99)."""
    cfg = Config()
    return dataclasses.replace(
        cfg,
        # d_channels 16: the residual discriminator dominates the step on CPU (32 channels: 2.3 s
        # per step of 64 here, 16: 1.0 s); batch 32 gives twice the steps in the same time. 22 epochs
        # of 250 steps (~1,730 CPU-s, 15-19 min on 2 cores): FID 16.7, where 14 epochs gave 28.0
        model=ModelConfig(arch="stylegan", d_norm="none", g_channels=128, d_channels=16),
        generator=_opt(2e-3, 0.0, 0.99),
        discriminator=_opt(2e-3, 0.0, 0.99),
        stability=StabilityConfig(ema_decay=0.995, r1_gamma=0.05, r1_every=16),
        train=dataclasses.replace(cfg.train, epochs=22, batch_size=32),
    )


def stylegan_smoke() -> Config:
    cfg = smoke()
    return dataclasses.replace(
        cfg,
        model=ModelConfig(
            arch="stylegan",
            d_norm="none",
            latent_dim=32,
            w_dim=32,
            mapping_layers=2,
            g_channels=32,
            d_channels=16,
        ),
        generator=_opt(2e-3, 0.0, 0.99),
        discriminator=_opt(2e-3, 0.0, 0.99),
        stability=StabilityConfig(ema_decay=0.9, r1_gamma=0.05, r1_every=2),
    )


def full() -> Config:
    """A longer recipe for accelerators: 64x64, StyleGAN-lite, more data and epochs."""
    cfg = stylegan()
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, image_size=64, num_train=50000, num_test=10000),
        model=dataclasses.replace(
            cfg.model, g_channels=256, d_channels=32, w_dim=256, latent_dim=256
        ),
        metrics=dataclasses.replace(
            cfg.metrics, num_samples=10000, kid_subset_size=1000, classifier_images=20000
        ),
        train=dataclasses.replace(cfg.train, epochs=60, batch_size=64, checkpoint_every_steps=2000),
    )


PRESETS = {
    "smoke": smoke,
    "default": default,
    "full": full,
    "stylegan": stylegan,
    "stylegan-smoke": stylegan_smoke,
}

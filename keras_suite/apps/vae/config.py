"""VAE config and presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from keras_suite.common.config import TrainConfig
from keras_suite.common.errors import UserError
from keras_suite.common.tfds_names import check_tfds_config

KINDS = ("vae", "ae", "dae", "vqvae")  # variational, plain, denoising autoencoder; VQ-VAE
LIKELIHOODS = ("bernoulli", "logistic", "gaussian")


@dataclass
class DataConfig:
    source: str = "shapes"  # shapes (built-in) | folder (any tree of images; labels ignored) | tfds
    name: str = ""  # data.source=tfds: a TFDS dataset name (mnist, celeb_a)
    tfds_dir: str = ""  # data.source=tfds: where TFDS keeps its data ("" = ~/tensorflow_datasets)
    path: str = ""  # folder root; root/train, root/val, root/test are used when present
    image_size: int = 32  # images are resized to image_size x image_size
    channels: int = 3  # 3 = colour, 1 = greyscale (converted from colour if needed)
    binarize: bool = (
        False  # threshold at 128 (pixels 0 or 255): the data a Bernoulli decoder models
    )
    num_train: int = 8000  # built-in data only
    num_val: int = 500
    num_test: int = 1000
    val_fraction: float = 0.05  # user folders without train/val/test sub-folders
    test_fraction: float = 0.1
    shuffle_buffer: int = 8192
    cache: bool = True  # keep decoded user images in memory after the first pass

    # data.path without data.source means this source (common/config.py settle_data_path)
    path_sources = ("folder",)

    def validate(self) -> None:
        if self.source not in ("shapes", "folder", "tfds"):
            raise UserError(f"data.source={self.source!r}: use shapes (built-in), folder or tfds")
        check_tfds_config("vae", self)
        if self.source == "folder" and not self.path:
            raise UserError("data.source=folder needs data.path (--set data.path=/my/images)")
        if self.channels not in (1, 3):
            raise UserError(f"data.channels={self.channels}: use 1 (greyscale) or 3 (colour)")


@dataclass
class ModelConfig:
    kind: str = "vae"  # vae | ae (plain autoencoder) | dae (denoising autoencoder) | vqvae
    likelihood: str = (
        "logistic"  # bernoulli (binarised data) | logistic | gaussian (discretised, learned scale)
    )
    latent_dim: int = 32  # vqvae: the dimension of each code vector
    base_filters: int = 32  # channels of the first conv; doubled at each down-sampling
    num_downsamples: int = 3  # stride-2 convs; image_size must be divisible by 2**num_downsamples
    beta: float = 1.0  # beta-VAE weight on the KL term (1 = the ELBO)
    kl_warmup_steps: int = 0  # KL weight ramps linearly from 0 to beta over these steps
    free_bits: float = 0.0  # nats per latent dim (batch-averaged KL below it gets no gradient)
    denoise_std: float = 0.2  # dae: std of the Gaussian noise added to inputs, as a fraction of 255
    codebook_size: int = 256  # vqvae: K code vectors
    commitment: float = 0.25  # vqvae: weight of ||z_e - sg(z_q)||^2

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"model.kind={self.kind!r}: use one of {', '.join(KINDS)}")
        if self.likelihood not in LIKELIHOODS:
            raise UserError(
                f"model.likelihood={self.likelihood!r}: use one of {', '.join(LIKELIHOODS)}"
            )
        if self.latent_dim < 1 or self.base_filters < 1 or self.num_downsamples < 1:
            raise UserError(
                "model.latent_dim, model.base_filters and model.num_downsamples must be >= 1"
            )
        if self.kind == "vqvae" and self.codebook_size < 2:
            raise UserError("model.codebook_size must be >= 2")
        if self.beta < 0 or self.free_bits < 0 or self.kl_warmup_steps < 0 or self.denoise_std < 0:
            raise UserError(
                "model.beta, model.free_bits, model.kl_warmup_steps and model.denoise_std must be >= 0"
            )


@dataclass
class EvalConfig:
    iwae_samples: int = 100  # k of the importance-weighted bound (Burda et al. 2015 use 5000)
    iwae_chunk: int = 50  # samples decoded at once per image (memory vs speed)
    iwae_examples: int = 500  # test images scored with IWAE (0 = the whole test split)
    active_threshold: float = 0.01  # a unit is active if Var_x(E_q[z_u | x]) exceeds this
    tflite_examples: int = 256  # test images for the TFLite parity report (batch 1)
    seed: int = 1234  # reparameterisation noise of the evaluation (same for every model)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            # Chosen on the VALIDATION split (`ksuite bench vae lr`, docs/results/vae.md): after
            # 4-epoch runs of this preset, validation -ELBO 14,248 nats at 2e-3, 14,348 at 1e-3,
            # 14,678 at 3e-3. Gradient norms (nats per image) were 4,000-20,000 with a 128,000
            # spike at step 0: clipping at 10,000 cuts the spikes only.
            epochs=20,
            batch_size=64,
            learning_rate=2e-3,
            optimizer="adam",
            lr_schedule="cosine",
            warmup_steps=0,
            clip_norm=10000.0,
            precision="float32",
            log_every_steps=50,
        )
    )

    def validate(self) -> None:
        factor = 2**self.model.num_downsamples
        if self.data.image_size % factor or self.data.image_size < factor:
            raise UserError(
                f"data.image_size={self.data.image_size} must be a multiple of "
                f"2**model.num_downsamples = {factor}; change one of them"
            )
        if self.model.likelihood == "bernoulli" and not self.data.binarize:
            raise UserError(
                "model.likelihood=bernoulli models binary pixels; set data.binarize=true, "
                "or use model.likelihood=logistic for 8-bit images"
            )


def smoke() -> Config:
    """Seconds: greyscale binarised 16x16 images and a tiny Bernoulli VAE, for tests."""
    return Config(
        data=DataConfig(
            image_size=16, channels=1, binarize=True, num_train=512, num_val=64, num_test=64
        ),
        model=ModelConfig(
            likelihood="bernoulli",
            latent_dim=4,
            base_filters=8,
            num_downsamples=2,
            kl_warmup_steps=10,
        ),
        eval=EvalConfig(iwae_samples=100, iwae_chunk=100, tflite_examples=16),
        train=TrainConfig(
            epochs=2,
            batch_size=32,
            learning_rate=2e-3,
            precision="float32",
            log_every_steps=4,
            checkpoint_every_steps=0,
        ),
    )


def default() -> Config:
    """Minutes on 2 CPU cores: colour 32x32 shapes, discretised logistic decoder (the demo)."""
    return Config(model=ModelConfig(kl_warmup_steps=1000))


def full() -> Config:
    """A longer recipe for accelerators: 64x64 images, a wider net, more data and epochs."""
    cfg = default()
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data, image_size=64, num_train=50000, num_val=2000, num_test=5000
        ),
        model=dataclasses.replace(cfg.model, latent_dim=64, base_filters=64, num_downsamples=4),
        eval=dataclasses.replace(cfg.eval, iwae_samples=1000),
        train=dataclasses.replace(cfg.train, epochs=100, batch_size=128, precision="auto"),
    )


PRESETS = {"smoke": smoke, "default": default, "full": full}

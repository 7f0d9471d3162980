"""Translation config and presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from keras_suite.common.config import TrainConfig
from keras_suite.common.errors import UserError
from keras_suite.common.tfds_names import check_tfds_config


@dataclass
class DataConfig:
    source: str = "numbers"  # numbers (built-in English -> French numbers) | tsv | tfds
    name: str = ""  # data.source=tfds: a TFDS dataset name (ted_hrlr_translate/pt_to_en)
    tfds_dir: str = ""  # data.source=tfds: where TFDS keeps its data ("" = ~/tensorflow_datasets)
    path: str = ""  # tsv: a file, a comma-separated list of files, or a folder of *.tsv/*.txt
    # Built-in data only. 12,500 pairs x 16 epochs: the same pair-visits as 40,000 x 5 (the
    # built-in task reaches 100 % either way), while a ~25k-pair real corpus gets the 16 epochs it
    # needs in ~20 minutes on 2 cores (docs/results/translation.md, gettext).
    num_train: int = 12500
    num_val: int = 1000
    num_test: int = 1000
    val_fraction: float = 0.05  # tsv: seeded split of all the pairs
    test_fraction: float = 0.05
    max_pairs: int = 0  # tsv: keep the first N usable pairs (0 = all)
    max_source_words: int = 40  # longer pairs are skipped (counted, with the reason)
    max_target_words: int = 40
    max_source_tokens: int = (
        32  # subword pieces; the models' fixed lengths (+2 on the target for START/END)
    )
    max_target_tokens: int = 32
    source_vocab_size: int = 4000
    target_vocab_size: int = 4000
    # One vocabulary learned from both sides (its size: source_vocab_size), written as both
    # vocab files: pairs that share a script (names, numbers, cognates) then share pieces.
    shared_vocabulary: bool = False
    lowercase: bool = False
    bucket_boundaries: tuple[int, ...] = (
        8,
        16,
        24,
    )  # source lengths (pieces) that start a new bucket
    shuffle_buffer: int = 50000

    # data.path without data.source means this source (common/config.py settle_data_path)
    path_sources = ("tsv",)

    def validate(self) -> None:
        if self.source not in ("numbers", "tsv", "tfds"):
            raise UserError(f"data.source={self.source!r}: use numbers (built-in), tsv or tfds")
        check_tfds_config("translation", self)
        if self.source == "tsv" and not self.path:
            raise UserError(
                "data.source=tsv needs data.path (--set data.path=fra.txt); lines are "
                "source<TAB>target[<TAB>anything], UTF-8"
            )
        if min(self.max_source_tokens, self.max_target_tokens) < 2:
            raise UserError("data.max_source_tokens and data.max_target_tokens must be >= 2")
        if min(self.source_vocab_size, self.target_vocab_size) < 16:
            raise UserError("data.source_vocab_size and data.target_vocab_size must be >= 16")


@dataclass
class ModelConfig:
    arch: str = "transformer"  # transformer | rnn
    # transformer
    embed_dim: int = 128
    num_heads: int = 4
    ff_dim: int = 256
    encoder_layers: int = 2
    decoder_layers: int = 2
    positions: str = "learned"  # learned | sinusoidal
    normalize_first: bool = False  # pre-norm (True) or post-norm (False, the original)
    tie_embeddings: bool = False  # decoder output projection = target embedding matrix
    dropout: float = 0.1
    label_smoothing: float = 0.1
    # rnn
    cell: str = "gru"  # gru | lstm
    rnn_units: int = 128  # per direction in the bidirectional encoder; the decoder has 2x
    attention: str = "bahdanau"  # bahdanau (additive) | luong_dot | luong_general

    def validate(self) -> None:
        if self.arch not in ("transformer", "rnn"):
            raise UserError(f"model.arch={self.arch!r}: use transformer or rnn")
        if self.positions not in ("learned", "sinusoidal"):
            raise UserError(f"model.positions={self.positions!r}: use learned or sinusoidal")
        if self.cell not in ("gru", "lstm"):
            raise UserError(f"model.cell={self.cell!r}: use gru or lstm")
        if self.attention not in ("bahdanau", "luong_dot", "luong_general"):
            raise UserError(
                f"model.attention={self.attention!r}: use bahdanau, luong_dot or luong_general"
            )
        if self.embed_dim % self.num_heads:
            raise UserError(
                f"model.embed_dim={self.embed_dim} must be a multiple of model.num_heads={self.num_heads}"
            )
        if not 0 <= self.label_smoothing < 1:
            raise UserError("model.label_smoothing must be in [0, 1)")


@dataclass
class DecodeConfig:
    beam_width: int = 4  # the translate_beam signature's default and `evaluate`'s beam row
    length_penalty: float = 0.6  # GNMT: score / ((5 + length) / 6) ** alpha
    evaluate_beam: bool = True  # also score beam search in `evaluate`
    heatmap_sentences: int = 3
    tflite_sentences: int = (
        200  # test sentences the TFLite parity report translates (per model file)
    )


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=16,
            batch_size=64,
            learning_rate=1e-3,
            optimizer="adamw",
            weight_decay=1e-4,
            warmup_steps=300,
            clip_norm=1.0,
            precision="float32",
            log_every_steps=50,
        )
    )


def smoke() -> Config:
    """Seconds: a tiny Transformer on 768 pairs, for tests."""
    return Config(
        data=DataConfig(
            num_train=768,
            num_val=64,
            num_test=64,
            max_source_tokens=20,
            max_target_tokens=22,
            source_vocab_size=200,
            target_vocab_size=200,
            bucket_boundaries=(8,),
        ),
        model=ModelConfig(
            embed_dim=32,
            num_heads=2,
            ff_dim=64,
            encoder_layers=1,
            decoder_layers=1,
            rnn_units=32,
            dropout=0.0,
        ),
        decode=DecodeConfig(beam_width=2, heatmap_sentences=2, tflite_sentences=16),
        train=TrainConfig(
            epochs=2,
            batch_size=32,
            learning_rate=2e-3,
            warmup_steps=0,
            precision="float32",
            log_every_steps=5,
        ),
    )


def default() -> Config:
    """Minutes on 2 CPU cores: the built-in task to >= 95% exact match; also the recipe for
    ~25k short pairs of a real corpus (--set data.source=tsv ...). docs/results/translation.md."""
    return Config()


def full() -> Config:
    """A longer recipe for accelerators and real corpora: a bigger Transformer, more data."""
    cfg = Config()
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data,
            num_train=200000,
            source_vocab_size=8000,
            target_vocab_size=8000,
            max_source_tokens=48,
            max_target_tokens=48,
        ),
        model=dataclasses.replace(
            cfg.model, embed_dim=256, num_heads=8, ff_dim=1024, encoder_layers=4, decoder_layers=4
        ),
        train=dataclasses.replace(
            cfg.train, epochs=30, batch_size=128, learning_rate=7e-4, warmup_steps=2000
        ),
    )


PRESETS = {"smoke": smoke, "default": default, "full": full}

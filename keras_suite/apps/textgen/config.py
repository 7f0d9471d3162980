"""Text generation config and presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from keras_suite.common.config import TrainConfig
from keras_suite.common.errors import UserError
from keras_suite.common.tfds_names import check_tfds_config

TOKENIZERS = ("char", "byte", "bpe")


@dataclass
class DataConfig:
    source: str = "stdlib"  # stdlib (the Python standard library's .py files) | files | tfds
    path: str = ""  # a UTF-8 text file or a folder of them (data.source=files)
    name: str = ""  # data.source=tfds: a TFDS dataset name (tiny_shakespeare)
    tfds_dir: str = ""  # data.source=tfds: where TFDS keeps its data ("" = ~/tensorflow_datasets)
    extensions: tuple[str, ...] = (
        ".txt",
        ".md",
        ".rst",
        ".py",
    )  # files picked from a folder ("*": all)
    # corpus size cap, in characters (stdlib: files are added in a fixed order; the whole
    # built-in corpus is 9.3M on Python 3.11). What it cuts is logged with the numbers.
    max_chars: int = 12_000_000
    split: str = "auto"  # document | block | auto (see corpus.split_corpus)
    val_fraction: float = 0.05  # of the characters, by whole documents or whole blocks
    test_fraction: float = 0.10  # the split metrics.json's numbers come from
    block_chars: int = 20_000  # block split: the largest size of a contiguous block
    tokenizer: str = "char"  # char | byte | bpe (SentencePiece BPE learned on the training split)
    bpe_vocab_size: int = 1024
    seq_len: int = 128  # tokens per training window (and the GPT's context length)
    # stateless: random windows per epoch; 0 = train.steps_per_epoch x batch (a fixed
    # budget, whatever the corpus size), or train tokens / seq_len without steps_per_epoch
    windows_per_epoch: int = 0
    doc_chunks: int = 64  # stateful: documents are cut into pieces of at most this many windows

    # data.path without data.source means this source (common/config.py settle_data_path)
    path_sources = ("files",)

    def validate(self) -> None:
        if self.source not in ("stdlib", "files", "tfds"):
            raise UserError(f"data.source={self.source!r}: use stdlib, files or tfds")
        check_tfds_config("textgen", self)
        if self.source == "files" and not self.path:
            raise UserError(
                "data.source=files needs data.path (--set data.path=/my/text_or_folder)"
            )
        if self.split not in ("auto", "document", "block"):
            raise UserError(f"data.split={self.split!r}: use auto, document or block")
        if self.tokenizer not in TOKENIZERS:
            raise UserError(
                f"data.tokenizer={self.tokenizer!r}: use one of {', '.join(TOKENIZERS)}"
            )
        if not 0 < self.val_fraction < 0.5 or not 0 < self.test_fraction < 0.5:
            raise UserError("data.val_fraction and data.test_fraction must be in (0, 0.5)")
        if self.seq_len < 4:
            raise UserError("data.seq_len must be at least 4")
        if self.tokenizer == "bpe" and self.bpe_vocab_size < 300:
            raise UserError("data.bpe_vocab_size must be >= 300 (bytes fallback needs 256 ids)")


@dataclass
class ModelConfig:
    arch: str = "gpt"  # gpt | rnn
    # char-RNN
    cell: str = "gru"  # gru | lstm
    stateful: bool = False  # carry the hidden state across consecutive batches of contiguous text
    rnn_units: int = 256
    rnn_layers: int = 2
    embed_dim: int = 64  # rnn: token embedding size
    # GPT
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0

    def validate(self) -> None:
        if self.arch not in ("gpt", "rnn"):
            raise UserError(f"model.arch={self.arch!r}: use gpt or rnn")
        if self.cell not in ("gru", "lstm"):
            raise UserError(f"model.cell={self.cell!r}: use gru or lstm")
        if self.arch == "gpt" and self.d_model % self.num_heads:
            raise UserError(
                f"model.d_model ({self.d_model}) must be a multiple of model.num_heads ({self.num_heads})"
            )
        if self.stateful and self.arch != "rnn":
            raise UserError("model.stateful applies to model.arch=rnn only")


@dataclass
class GenerateConfig:
    max_new_tokens: int = 200  # default for `ksuite generate` / predict
    max_new_tokens_limit: int = 256  # the fixed maximum of the in-graph loop (serving)
    max_prompt_tokens: int = 256  # serving: prompts are cut to their last N tokens
    temperature: float = 0.8
    top_k: int = 0  # 0 = off
    top_p: float = 0.95  # 1.0 = off


@dataclass
class EvalConfig:
    ngram_order: int = 5  # the interpolated Kneser-Ney character baseline
    tflite_tokens: int = 1500  # validation tokens scored step by step for the TFLite parity report
    calibration_tokens: int = 300  # decoding steps drawn from the training split for int8


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=3,
            steps_per_epoch=450,
            batch_size=32,
            learning_rate=2e-3,
            optimizer="adamw",
            weight_decay=0.05,
            beta_2=0.99,
            warmup_steps=100,
            clip_norm=1.0,
            precision="float32",
            log_every_steps=50,
            checkpoint_every_steps=200,
        )
    )


def smoke() -> Config:
    """Seconds: a tiny GPT on 60k characters, for tests."""
    return Config(
        data=DataConfig(
            max_chars=60_000,
            seq_len=32,
            windows_per_epoch=512,
            bpe_vocab_size=512,
            block_chars=10_000,
        ),
        model=ModelConfig(
            arch="gpt",
            d_model=32,
            num_layers=1,
            num_heads=2,
            rnn_units=32,
            rnn_layers=1,
            embed_dim=16,
            dropout=0.0,
        ),
        generate=GenerateConfig(max_new_tokens=16, max_new_tokens_limit=24, max_prompt_tokens=8),
        eval=EvalConfig(tflite_tokens=120, calibration_tokens=40),
        train=TrainConfig(
            epochs=2,
            batch_size=16,
            learning_rate=3e-3,
            warmup_steps=0,
            clip_norm=1.0,
            precision="float32",
            log_every_steps=8,
            checkpoint_every_steps=0,
        ),
    )


def default() -> Config:
    """A fixed budget of 2,000 steps of 32 x 128 tokens (about 20 minutes on 2 busy CPU
    cores), whatever the corpus size: an epoch is 400 batches of random windows, so a
    user's 1M-character text trains as long as the 9M-character built-in corpus. A
    4-layer, 128-wide GPT (0.9M parameters) over a 1,024-piece BPE learned from the
    training split (2.4 characters per token on the built-in corpus: the same compute
    reads 2.4 times more text than over characters)."""
    cfg = Config()
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, tokenizer="bpe", bpe_vocab_size=1024),
        train=dataclasses.replace(cfg.train, epochs=5, steps_per_epoch=400),
    )


def char_rnn() -> Config:
    """The same data and about the same time for a stateful 2-layer GRU char-RNN
    (256 units, 0.7M parameters; truncated backpropagation through 128 characters): a
    fixed 2,200 steps (a step takes ~0.9x the GPT's here). An epoch deals the documents'
    pieces to the 32 streams again as often as 440 steps need."""
    cfg = Config()
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(
            cfg.model, arch="rnn", stateful=True, rnn_units=256, rnn_layers=2
        ),
        train=dataclasses.replace(cfg.train, epochs=5, steps_per_epoch=440, weight_decay=0.01),
    )


def full() -> Config:
    """A longer recipe for accelerators: BPE tokens, a wider and deeper GPT, more text."""
    cfg = Config()
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data, max_chars=40_000_000, tokenizer="bpe", bpe_vocab_size=4096, seq_len=256
        ),
        model=dataclasses.replace(cfg.model, d_model=384, num_layers=6, num_heads=6, dropout=0.1),
        train=dataclasses.replace(
            cfg.train, epochs=10, batch_size=64, learning_rate=1e-3, warmup_steps=1000
        ),
    )


PRESETS = {"smoke": smoke, "default": default, "char-rnn": char_rnn, "full": full}

"""Tokenizers: characters, bytes and a SentencePiece BPE learned on the training split.

Each has a Python side (encode/decode for data, generation and evaluation) and a graph
side (tokenize/detokenize with core TF ops and TF Text's SentencePiece op, which stock
TF Serving links) that goes into the SavedModel. Ids 0-2 are the same for all:
PAD (never predicted), DOC (document separator: begins every document, ends generation)
and UNK (characters the training split never had).
"""

from __future__ import annotations

import io
import json

import numpy as np

from keras_suite.common.errors import UserError

PAD, DOC, UNK, OFFSET = 0, 1, 2, 3


class Tokenizer:
    def __init__(self, kind: str, chars: list | None = None, bpe_model: bytes | None = None):
        self.kind = kind
        self.chars = chars or []
        self.bpe_model = bpe_model
        self._sp = None
        if kind == "char":
            self.vocab_size = OFFSET + len(self.chars)
            self._char_ids = {c: i + OFFSET for i, c in enumerate(self.chars)}
        elif kind == "byte":
            self.vocab_size = OFFSET + 256
        elif kind == "bpe":
            import sentencepiece as spm

            self._sp = spm.SentencePieceProcessor(model_proto=bpe_model)
            self.vocab_size = self._sp.get_piece_size()
        else:
            raise UserError(f"unknown tokenizer {kind!r}")

    # ---- Python side ----------------------------------------------------------------
    def encode(self, text: str) -> np.ndarray:
        if self.kind == "char":
            ids = [self._char_ids.get(c, UNK) for c in text]
        elif self.kind == "byte":
            return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) + OFFSET
        else:
            ids = self._sp.encode(text)
        return np.asarray(ids, np.int32)

    def decode_bytes(self, ids) -> bytes:
        """The UTF-8 bytes of `ids` (specials dropped); may end inside a character."""
        ids = [int(i) for i in ids if int(i) >= UNK]
        if self.kind == "char":
            return "".join("\ufffd" if i == UNK else self.chars[i - OFFSET] for i in ids).encode(
                "utf-8"
            )
        if self.kind == "byte":
            return bytes(i - OFFSET for i in ids if i >= OFFSET)
        return self._sp.decode(ids).encode("utf-8")

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ---- artifacts ------------------------------------------------------------------
    def save(self, artifacts) -> None:
        if self.kind == "bpe":
            artifacts.write_bytes("bpe.model", self.bpe_model)
        artifacts.write_text(
            "tokenizer.json",
            json.dumps(
                {"kind": self.kind, "vocab_size": self.vocab_size, "chars": self.chars},
                ensure_ascii=False,
            ),
        )

    @classmethod
    def load(cls, artifacts) -> "Tokenizer":
        meta = json.loads(artifacts.read_text("tokenizer.json"))
        model = artifacts.read_bytes("bpe.model") if meta["kind"] == "bpe" else None
        return cls(meta["kind"], meta.get("chars"), model)

    @classmethod
    def learn(
        cls, kind: str, texts: list, bpe_vocab_size: int = 1024, seed: int = 0
    ) -> "Tokenizer":
        if kind == "byte":
            return cls("byte")
        if kind == "char":
            counts: dict = {}
            for t in texts:
                for c in set(t):
                    counts[c] = counts.get(c, 0) + 1
            return cls("char", sorted(counts))
        return cls("bpe", bpe_model=_train_bpe(texts, bpe_vocab_size))

    # ---- graph side -----------------------------------------------------------------
    def graph(self) -> "GraphTokenizer":
        return GraphTokenizer(self)


def _train_bpe(texts: list, vocab_size: int) -> bytes:
    """A SentencePiece BPE model that round-trips any text: identity normalisation (no
    NFKC, spaces and newlines kept) and byte fallback for characters it has no piece for."""
    import sentencepiece as spm

    def pieces():  # sentences of at most 4k characters: newlines stay inside them
        for t in texts:
            for i in range(0, len(t), 4000):
                yield t[i : i + 4000]

    chars = set()
    for t in texts:
        chars.update(t)
    # SentencePiece needs an id for every byte (fallback), the specials and every kept character
    needed = OFFSET + 256 + len(chars) + 32
    if vocab_size < needed:
        from keras_suite.common.runlog import log

        log.warning(
            "data.bpe_vocab_size=%d is too small for %d distinct characters + 256 byte pieces; "
            "using %d",
            vocab_size,
            len(chars),
            needed,
        )
        vocab_size = needed
    out = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=pieces(),
            model_writer=out,
            vocab_size=vocab_size,
            model_type="bpe",
            byte_fallback=True,
            normalization_rule_name="identity",
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True,
            split_digits=True,
            pad_id=PAD,
            bos_id=DOC,
            unk_id=UNK,
            eos_id=-1,
            character_coverage=0.9995,
            max_sentence_length=16384,
            input_sentence_size=200_000,
            shuffle_input_sentence=True,
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as error:
        raise UserError(
            f"could not learn a BPE vocabulary of {vocab_size} ({str(error).splitlines()[-1]}); "
            "change data.bpe_vocab_size or add text"
        ) from None
    return out.getvalue()


class GraphTokenizer:
    """tokenize(strings [N]) -> RaggedTensor int32; detokenize(ids [N, T] int32, mask
    [N, T] bool) -> strings [N]. `resources` must be tracked by the export archive."""

    def __init__(self, tok: Tokenizer):
        import tensorflow as tf

        self.kind = tok.kind
        self.resources = []
        if tok.kind == "bpe":
            import tensorflow_text as tf_text

            self._sp = tf_text.SentencepieceTokenizer(model=tok.bpe_model, out_type=tf.int32)
            self.resources.append(self._sp)
            return
        if tok.kind == "char":
            keys = [c.encode("utf-8") for c in tok.chars]
            strings = [b"", b"", "\ufffd".encode()] + keys
        else:
            keys = [bytes([b]) for b in range(256)]
            strings = [b"", b"", b""] + keys
        init = tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys, tf.string),
            tf.constant(np.arange(OFFSET, OFFSET + len(keys)), tf.int64),
        )
        self._table = tf.lookup.StaticHashTable(init, default_value=UNK)
        self.resources.append(self._table)
        self._strings = tf.constant(strings, tf.string)

    def tokenize(self, texts):
        import tensorflow as tf

        if self.kind == "bpe":
            return self._sp.tokenize(texts)
        if self.kind == "char":
            pieces = tf.strings.unicode_split(texts, "UTF-8", errors="replace")
        else:
            pieces = tf.strings.bytes_split(texts)
        return tf.cast(tf.ragged.map_flat_values(self._table.lookup, pieces), tf.int32)

    def detokenize(self, ids, mask):
        """Join the tokens where mask is true (specials dropped)."""
        import tensorflow as tf

        mask = tf.logical_and(mask, ids >= UNK)
        ragged = tf.ragged.boolean_mask(ids, mask)
        if self.kind == "bpe":
            return self._sp.detokenize(ragged)
        return tf.strings.reduce_join(tf.gather(self._strings, ragged), axis=-1)

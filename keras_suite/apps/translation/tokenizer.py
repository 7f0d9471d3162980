"""WordPiece subwords learned from the training corpus, run in graph by TF Text.

Words are split on whitespace only; punctuation stays inside its word and WordPiece cuts
it off as a suffix piece ("world!" -> "world", "##!"). So detokenization is exact: join
the pieces with spaces and glue every "##" piece to the one before it — no guessing
where spaces went around punctuation. The vocabulary is a text file (one piece a line,
line number = id) kept as a run artifact; `SubwordTokenizer` reads it through lookup
tables initialised from that file, so a SavedModel that tracks the tokenizer carries the
file in its assets/ folder and TF Serving (which links TF Text's ops) runs it.
"""

from __future__ import annotations

from keras_suite import common

tf = common.quiet_import_tensorflow()
import tensorflow_text as tf_text  # noqa: E402

PAD, UNK, START, END = "[PAD]", "[UNK]", "[START]", "[END]"
RESERVED = [PAD, UNK, START, END]
PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3


def normalize(sentences, lowercase: bool):
    """Trim and collapse whitespace (and lowercase): the same in training and serving."""
    sentences = tf.strings.strip(tf.strings.regex_replace(sentences, r"\s+", " "))
    return tf.strings.lower(sentences, encoding="utf-8") if lowercase else sentences


def learn_vocabulary(sentences: list[str], size: int, lowercase: bool) -> list[str]:
    """A WordPiece vocabulary of at most `size` pieces (reserved tokens first)."""
    import keras_hub

    words = (
        tf.data.Dataset.from_tensor_slices(sentences)
        .batch(1024)
        .map(lambda s: tf.strings.split(normalize(s, lowercase)))
    )
    return keras_hub.tokenizers.compute_word_piece_vocabulary(
        words, size, lowercase=False, strip_accents=False, split=False, reserved_tokens=RESERVED
    )


class SubwordTokenizer(tf.Module):
    """strings [N] <-> int32 ids [N, T] with one vocabulary file."""

    def __init__(self, vocab_path: str, lowercase: bool = False, name=None):
        super().__init__(name=name)
        self.lowercase = lowercase
        self.vocab_file = tf.saved_model.Asset(str(vocab_path))
        ids = tf.lookup.TextFileInitializer(
            self.vocab_file,
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
        )
        self.piece_to_id = tf.lookup.StaticHashTable(ids, default_value=UNK_ID)
        pieces = tf.lookup.TextFileInitializer(
            self.vocab_file,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
        )
        self.id_to_piece = tf.lookup.StaticHashTable(pieces, default_value=UNK)
        self.wordpiece = tf_text.WordpieceTokenizer(
            self.piece_to_id,
            suffix_indicator="##",
            max_bytes_per_word=100,
            token_out_type=tf.int64,
            unknown_token=UNK,
        )

    def tokenize(self, sentences):
        """Ragged int32 ids [N, (pieces)], no START/END."""
        words = tf.strings.split(normalize(sentences, self.lowercase))
        pieces = self.wordpiece.tokenize(words)  # [N, (words), (pieces)]
        return tf.cast(pieces.merge_dims(-2, -1), tf.int32)

    def detokenize(self, ids):
        """Dense or ragged int ids [N, T] -> strings [N]; stops at the first END and drops
        PAD/START, so a decoder's raw output can be passed as is."""
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        ids = tf.cast(ids, tf.int64)
        before_end = tf.math.cumsum(tf.cast(ids == END_ID, tf.int32), axis=-1) == 0
        keep = before_end & (ids != PAD_ID) & (ids != START_ID)
        pieces = self.id_to_piece.lookup(tf.ragged.boolean_mask(ids, keep))
        text = tf.strings.reduce_join(pieces, axis=-1, separator=" ")
        return tf.strings.regex_replace(tf.strings.regex_replace(text, r" ##", ""), r"^##", "")


def detokenize_python(ids, vocab: list[str]) -> str:
    """The same as SubwordTokenizer.detokenize for one row of ids, in Python (TFLite loop)."""
    pieces = []
    for i in ids:
        i = int(i)
        if i == END_ID:
            break
        if i in (PAD_ID, START_ID):
            continue
        pieces.append(vocab[i] if 0 <= i < len(vocab) else UNK)
    text = " ".join(pieces).replace(" ##", "")
    return text[2:] if text.startswith("##") else text

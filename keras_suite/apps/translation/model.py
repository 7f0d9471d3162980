"""Two encoder-decoder translators with one decoding interface.

Both models are Keras models whose `call({"source", "target_in"})` returns teacher-forced
logits [B, T, V] (training), and which decode one token at a time through:

    memory = model.encode(source)                  # [B, S] ids -> dict of [B, ...] tensors
    cache  = model.initial_cache(memory)            # dict of [B, ...] tensors
    logits, cache = model.decode_step(token, index, cache, memory)   # token [B], index []

`apps/translation/decoding.py` runs greedy and beam search over that interface in graph,
and the TFLite targets are exactly `encode` and `decode_step` at batch 1.

- TransformerTranslator: keras-hub TransformerEncoder/TransformerDecoder (pre- or
  post-norm), learned or sinusoidal positions, optional tied output embedding. Decoding
  keeps a KV cache of the decoder's self-attention (one slot per output position, one
  tensor per layer) and computes the cross-attention keys/values of the source once, in
  `encode`.
- RNNTranslator: bidirectional GRU/LSTM encoder, a GRU/LSTM decoder started from the
  encoder's final states, and attention over the encoder states scored Bahdanau-style
  (additive: v . tanh(W1 h + W2 s)) or Luong-style (dot: h . s, general: h . W s). The
  attention reads the decoder's current state and its context is combined with it
  (Luong et al. 2015's placement; the score function is what the option selects).
"""

from __future__ import annotations

from keras_suite import common
from keras_suite.apps.translation.tokenizer import PAD_ID
from keras_suite.common.keras_files import InputSpec, LayerCopies

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402
import keras_hub  # noqa: E402


def build_translator(mcfg, info: dict, unroll: bool = False):
    """unroll: RNN encoder without a while loop (TFLite: int8 calibration of a converted
    while loop crashes; fixed shapes make unrolling possible). Same weights."""
    common_args = dict(
        source_vocab=info["source_vocab_size"],
        target_vocab=info["target_vocab_size"],
        max_source=info["max_source_tokens"],
        max_target=info["max_target_tokens"] + 1,
    )
    if mcfg.arch == "transformer":
        model = TransformerTranslator(
            **common_args,
            embed_dim=mcfg.embed_dim,
            num_heads=mcfg.num_heads,
            ff_dim=mcfg.ff_dim,
            encoder_layers=mcfg.encoder_layers,
            decoder_layers=mcfg.decoder_layers,
            positions=mcfg.positions,
            normalize_first=mcfg.normalize_first,
            tie_embeddings=mcfg.tie_embeddings,
            dropout=mcfg.dropout,
        )
    else:
        model = RNNTranslator(
            **common_args,
            embed_dim=mcfg.embed_dim,
            units=mcfg.rnn_units,
            cell=mcfg.cell,
            attention=mcfg.attention,
            dropout=mcfg.dropout,
            unroll=unroll,
        )
    # build every weight now (the checkpoint restores into them, export traces them)
    source = tf.zeros([1, info["max_source_tokens"]], tf.int32)
    model({"source": source, "target_in": tf.zeros([1, 2], tf.int32)})
    memory = model.encode(source)
    model.decode_step(tf.zeros([1], tf.int32), tf.constant(0), model.initial_cache(memory), memory)
    return model


class _KerasFile:
    """What common/keras_files.py needs to write RUN_DIR/model.keras: the teacher-forced
    inputs (source and target ids), the call on them, and the weights built on loading."""

    def keras_file_inputs(self) -> dict:
        def ids(name, vocab, length):
            return InputSpec(name, (None,), "int32", 0, vocab, (min(8, length),))

        return {
            "source": ids("source", self.source_vocab, self.max_source),
            "target_in": ids("target_in", self.target_vocab, self.max_target),
        }

    def keras_file_call(self, inputs):
        return self(dict(inputs), training=False)

    def build_from_config(self, config):
        source = tf.zeros([1, self.max_source], tf.int32)
        self({"source": source, "target_in": tf.zeros([1, 2], tf.int32)})


class _Positions(keras.layers.Layer):
    """Learned (keras-hub PositionEmbedding) or sinusoidal positions, from `start`."""

    def __init__(self, kind: str, length: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.kind, self.length, self.dim = kind, length, dim
        if kind == "learned":
            self.table = keras_hub.layers.PositionEmbedding(length)
        else:
            self.table = keras_hub.layers.SinePositionEncoding()

    def call(self, x, start=0):
        return self.table(x, start_index=start)


@keras.saving.register_keras_serializable(package="keras_suite.translation")
class TransformerTranslator(_KerasFile, keras.Model):
    def __init__(
        self,
        source_vocab,
        target_vocab,
        max_source,
        max_target,
        embed_dim=128,
        num_heads=4,
        ff_dim=256,
        encoder_layers=2,
        decoder_layers=2,
        positions="learned",
        normalize_first=False,
        tie_embeddings=False,
        dropout=0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.source_vocab, self.target_vocab = source_vocab, target_vocab
        self.max_source, self.max_target = max_source, max_target
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.embed_dim, self.ff_dim, self.positions = embed_dim, ff_dim, positions
        self.normalize_first, self.dropout_rate = normalize_first, dropout
        self.scale = float(embed_dim) ** 0.5
        self.source_embedding = keras.layers.Embedding(
            source_vocab, embed_dim, name="source_embedding"
        )
        self.target_embedding = keras_hub.layers.ReversibleEmbedding(
            target_vocab, embed_dim, tie_weights=tie_embeddings, name="target_embedding"
        )
        self.source_positions = _Positions(
            positions, max_source, embed_dim, name="source_positions"
        )
        self.target_positions = _Positions(
            positions, max_target, embed_dim, name="target_positions"
        )
        self.embedding_dropout = keras.layers.Dropout(dropout)
        self.encoder_layers = [
            keras_hub.layers.TransformerEncoder(
                ff_dim,
                num_heads,
                dropout=dropout,
                normalize_first=normalize_first,
                name=f"encoder_{i}",
            )
            for i in range(encoder_layers)
        ]
        self.decoder_layers = [
            keras_hub.layers.TransformerDecoder(
                ff_dim,
                num_heads,
                dropout=dropout,
                normalize_first=normalize_first,
                name=f"decoder_{i}",
            )
            for i in range(decoder_layers)
        ]
        # pre-norm stacks end with a norm (the residual stream is otherwise unnormalised)
        self.encoder_norm = (
            keras.layers.LayerNormalization(epsilon=1e-5) if normalize_first else None
        )
        self.decoder_norm = (
            keras.layers.LayerNormalization(epsilon=1e-5) if normalize_first else None
        )
        self.tie_embeddings = tie_embeddings

    def get_config(self):
        return {
            **super().get_config(),
            "source_vocab": self.source_vocab,
            "target_vocab": self.target_vocab,
            "max_source": self.max_source,
            "max_target": self.max_target,
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "encoder_layers": len(self.encoder_layers),
            "decoder_layers": len(self.decoder_layers),
            "positions": self.positions,
            "normalize_first": self.normalize_first,
            "tie_embeddings": self.tie_embeddings,
            "dropout": self.dropout_rate,
        }

    def stock_model(self) -> keras.Model:
        """`call` as a Functional model of Keras and keras-hub layers with these weights
        (a .keras file that loads without this package; it needs keras-hub)."""
        copies = LayerCopies()
        specs = self.keras_file_inputs()
        source, target_in = specs["source"].symbolic(), specs["target_in"].symbolic()
        mask = keras.ops.not_equal(source, PAD_ID)
        dropout = copies(self.embedding_dropout)
        x = copies(self.source_embedding)(source) * self.scale
        x = dropout(x + copies(self.source_positions.table)(x))
        for layer in self.encoder_layers:
            x = copies(layer)(x, padding_mask=mask)
        encoded = copies(self.encoder_norm)(x) if self.encoder_norm is not None else x
        target_embedding = copies(self.target_embedding)
        y = target_embedding(target_in) * self.scale
        y = dropout(y + copies(self.target_positions.table)(y))
        for layer in self.decoder_layers:
            y = copies(layer)(y, encoded, encoder_padding_mask=mask, use_causal_mask=True)
        if self.decoder_norm is not None:
            y = copies(self.decoder_norm)(y)
        logits = keras.ops.cast(target_embedding(y, reverse=True), "float32")
        model = keras.Model({"source": source, "target_in": target_in}, logits, name=self.name)
        copies.copy_weights()
        return model

    # -- pieces ---------------------------------------------------------------------------
    def _embed_target(self, ids, start=0, training=False):
        x = self.target_embedding(ids) * self.scale
        return self.embedding_dropout(x + self.target_positions(x, start=start), training=training)

    def _logits(self, x):
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        return tf.cast(self.target_embedding(x, reverse=True), tf.float32)

    def encode_sequence(self, source, training=False):
        mask = source != PAD_ID
        x = self.source_embedding(source) * self.scale
        x = self.embedding_dropout(x + self.source_positions(x), training=training)
        for layer in self.encoder_layers:
            x = layer(x, padding_mask=mask, training=training)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return x, mask

    def call(self, inputs, training=False):
        encoded, mask = self.encode_sequence(inputs["source"], training)
        x = self._embed_target(inputs["target_in"], training=training)
        for layer in self.decoder_layers:
            x = layer(
                x, encoded, encoder_padding_mask=mask, use_causal_mask=True, training=training
            )
        return self._logits(x)

    def attention_weights(self, source, target_in):
        """Cross-attention of the last decoder layer, averaged over heads: [B, T, S].

        keras-hub's TransformerDecoder does not return attention scores, so this replays
        the last layer's self-attention block with its own sublayers and asks its
        cross-attention layer for the scores (for the heat map only; decoding never
        calls it). tests/test_translation_model.py checks the replay against the layer.
        """
        encoded, mask = self.encode_sequence(source)
        x = self._embed_target(target_in)
        for layer in self.decoder_layers[:-1]:
            x = layer(x, encoded, encoder_padding_mask=mask, use_causal_mask=True)
        last = self.decoder_layers[-1]
        causal = last._compute_self_attention_mask(x, None, None, True, None, None)
        h = last._self_attention_layer_norm(x) if last.normalize_first else x
        h = last._self_attention_layer(query=h, value=h, attention_mask=causal) + x
        if not last.normalize_first:
            h = last._self_attention_layer_norm(h)
        query = last._cross_attention_layer_norm(h) if last.normalize_first else h
        out, scores = last._cross_attention_layer(
            query=query,
            value=encoded,
            attention_mask=mask[:, None, :],
            return_attention_scores=True,
        )
        return tf.reduce_mean(tf.cast(scores, tf.float32), axis=1), (out, h)

    # -- cached decoding ------------------------------------------------------------------
    def _zeros_cache(self, batch, length, dtype):
        return tf.zeros([batch, 2, length, self.num_heads, self.head_dim], dtype)

    # Caches are one tensor per layer, [B, 2 (keys, values), length, heads, head_dim]:
    # TFLite kernels take at most 5-D tensors, so no stacking over layers.
    def encode(self, source):
        """Cross-attention keys/values of every decoder layer, computed once per source."""
        encoded, mask = self.encode_sequence(source)
        batch, length = tf.shape(source)[0], tf.shape(source)[1]
        empty_self = self._zeros_cache(batch, 1, encoded.dtype)
        empty_cross = self._zeros_cache(batch, length, encoded.dtype)
        probe = tf.zeros_like(encoded[:, :1])
        memory = {"source_mask": tf.cast(mask, tf.int32)}
        for i, layer in enumerate(self.decoder_layers):
            # update index 0 makes the layer fill its cross cache from `encoded`; the
            # output for the dummy query is discarded
            _, _, memory[f"cross_cache_{i}"] = layer(
                probe,
                encoded,
                encoder_padding_mask=mask,
                self_attention_cache=empty_self,
                self_attention_cache_update_index=0,
                cross_attention_cache=empty_cross,
                cross_attention_cache_update_index=0,
            )
        return memory

    def initial_cache(self, memory):
        cross = memory["cross_cache_0"]
        return {
            f"self_cache_{i}": self._zeros_cache(tf.shape(cross)[0], self.max_target, cross.dtype)
            for i in range(len(self.decoder_layers))
        }

    def decode_step(self, token, index, cache, memory):
        """Logits of the token after `token`, which sits at position `index`."""
        x = self._embed_target(token[:, None], start=index)
        mask = memory["source_mask"] > 0
        # the layers need an encoder sequence only to build the padding mask; the keys
        # and values come from the cross cache
        stand_in = tf.cast(mask, x.dtype)[..., None]
        updated = {}
        for i, layer in enumerate(self.decoder_layers):
            x, updated[f"self_cache_{i}"], _ = layer(
                x,
                stand_in,
                encoder_padding_mask=mask,
                use_causal_mask=True,
                self_attention_cache=cache[f"self_cache_{i}"],
                self_attention_cache_update_index=index,
                cross_attention_cache=memory[f"cross_cache_{i}"],
                cross_attention_cache_update_index=None,
            )
        return self._logits(x)[:, 0], updated

    def step_memory_keys(self):
        return tuple(f"cross_cache_{i}" for i in range(len(self.decoder_layers))) + ("source_mask",)


class _Attention(keras.layers.Layer):
    """Scores of decoder states [B, T, D] against encoder states [B, S, D]; the keys'
    projection (bahdanau, luong_general) is done once per source in `keys`."""

    def __init__(self, kind: str, units: int, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        if kind == "bahdanau":
            self.query_dense = keras.layers.Dense(units, use_bias=False, name="W1")
            self.key_dense = keras.layers.Dense(units, use_bias=False, name="W2")
            self.v = keras.layers.Dense(1, use_bias=False, name="v")
        elif kind == "luong_general":
            self.key_dense = keras.layers.Dense(units, use_bias=False, name="W")

    def keys(self, encoded):
        return encoded if self.kind == "luong_dot" else self.key_dense(encoded)

    def call(self, queries, keys, values, mask):
        if self.kind == "bahdanau":
            hidden = tf.tanh(self.query_dense(queries)[:, :, None, :] + keys[:, None, :, :])
            scores = self.v(hidden)[..., 0]  # [B, T, S]
        else:
            scores = tf.matmul(queries, keys, transpose_b=True)
        scores = tf.where(mask[:, None, :], scores, tf.cast(-1e9, scores.dtype))
        weights = tf.nn.softmax(scores, axis=-1)
        return tf.matmul(weights, values), weights


@keras.saving.register_keras_serializable(package="keras_suite.translation")
class RNNTranslator(_KerasFile, keras.Model):
    keras_file_note = (
        "the RNN translator reverses each sentence within its own length "
        "(tf.reverse_sequence) and scores attention in a layer of this package; it has no "
        "stock form yet"
    )

    def __init__(
        self,
        source_vocab,
        target_vocab,
        max_source,
        max_target,
        embed_dim=128,
        units=256,
        cell="gru",
        attention="bahdanau",
        dropout=0.1,
        unroll=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.source_vocab, self.target_vocab = source_vocab, target_vocab
        self.max_source, self.max_target = max_source, max_target
        self.cell_type, self.units = cell, units
        self.embed_dim, self.attention_kind = embed_dim, attention
        self.dropout_rate, self.unroll = dropout, unroll
        rnn = keras.layers.GRU if cell == "gru" else keras.layers.LSTM
        self.source_embedding = keras.layers.Embedding(
            source_vocab, embed_dim, name="source_embedding"
        )
        self.target_embedding = keras.layers.Embedding(
            target_vocab, embed_dim, name="target_embedding"
        )
        # bidirectional by hand: the backward RNN reads each sentence reversed within its
        # own length (tf.reverse_sequence), so padding never sits between it and the
        # words. (Keras's Bidirectional with a mask and unroll=True, which the TFLite
        # export needs, gave wrong backward outputs here.)
        self.encoder_forward = rnn(
            units, return_sequences=True, return_state=True, unroll=unroll, name="encoder_forward"
        )
        self.encoder_backward = rnn(
            units, return_sequences=True, return_state=True, unroll=unroll, name="encoder_backward"
        )
        dec_units = 2 * units
        self.bridge = [
            keras.layers.Dense(dec_units, activation="tanh", name=f"bridge_{i}")
            for i in range(1 if cell == "gru" else 2)
        ]
        self.decoder = rnn(dec_units, return_sequences=True, return_state=True, name="decoder")
        self.attention = _Attention(attention, dec_units, name="attention")
        self.combine = keras.layers.Dense(dec_units, activation="tanh", name="combine")
        self.dropout = keras.layers.Dropout(dropout)
        self.output_dense = keras.layers.Dense(target_vocab, name="logits")

    def get_config(self):
        return {
            **super().get_config(),
            "source_vocab": self.source_vocab,
            "target_vocab": self.target_vocab,
            "max_source": self.max_source,
            "max_target": self.max_target,
            "embed_dim": self.embed_dim,
            "units": self.units,
            "cell": self.cell_type,
            "attention": self.attention_kind,
            "dropout": self.dropout_rate,
            "unroll": self.unroll,
        }

    def _encode(self, source, training=False):
        mask = source != PAD_ID
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        x = self.dropout(self.source_embedding(source), training=training)
        forward = self.encoder_forward(x, mask=mask, training=training)
        reversed_x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
        backward = self.encoder_backward(reversed_x, mask=mask, training=training)
        backward_seq = tf.reverse_sequence(backward[0], lengths, seq_axis=1, batch_axis=0)
        encoded = tf.concat([forward[0], backward_seq], -1)
        finals = list(forward[1:]) + list(backward[1:])
        if self.cell_type == "gru":  # [fwd_h, bwd_h]
            states = [self.bridge[0](tf.concat(finals, -1))]
        else:  # [fwd_h, fwd_c, bwd_h, bwd_c]
            states = [
                self.bridge[0](tf.concat([finals[0], finals[2]], -1)),
                self.bridge[1](tf.concat([finals[1], finals[3]], -1)),
            ]
        return encoded, mask, states

    def _output(self, hidden, memory, training=False):
        context, weights = self.attention(
            hidden, memory["keys"], memory["encoded"], memory["source_mask"] > 0
        )
        combined = self.combine(tf.concat([hidden, context], -1))
        return tf.cast(
            self.output_dense(self.dropout(combined, training=training)), tf.float32
        ), weights

    def call(self, inputs, training=False, return_attention=False):
        encoded, mask, states = self._encode(inputs["source"], training)
        memory = {
            "encoded": encoded,
            "keys": self.attention.keys(encoded),
            "source_mask": tf.cast(mask, tf.int32),
        }
        x = self.dropout(self.target_embedding(inputs["target_in"]), training=training)
        hidden = self.decoder(x, initial_state=states, training=training)[0]
        logits, weights = self._output(hidden, memory, training)
        return (logits, weights) if return_attention else logits

    def attention_weights(self, source, target_in):
        """Attention weights [B, T, S] of a teacher-forced pass (for the heat map)."""
        return self({"source": source, "target_in": target_in}, return_attention=True)[1], None

    def encode(self, source):
        encoded, mask, states = self._encode(source)
        memory = {
            "encoded": encoded,
            "keys": self.attention.keys(encoded),
            "source_mask": tf.cast(mask, tf.int32),
        }
        memory.update({f"state_{i}": s for i, s in enumerate(states)})
        return memory

    def initial_cache(self, memory):
        return {k: memory[k] for k in sorted(memory) if k.startswith("state_")}

    def decode_step(self, token, index, cache, memory):
        x = self.target_embedding(token)
        states = [cache[f"state_{i}"] for i in range(len(cache))]
        hidden, new_states = self.decoder.cell(x, states)
        if not isinstance(new_states, (list, tuple)):
            new_states = [new_states]
        logits, _ = self._output(hidden[:, None, :], memory)
        return logits[:, 0], {f"state_{i}": s for i, s in enumerate(new_states)}

    def step_memory_keys(self):
        return ("encoded", "keys", "source_mask")

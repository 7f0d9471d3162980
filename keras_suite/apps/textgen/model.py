"""The two language models, each with a one-token `step` for generation.

CharRNN: embedding -> stacked GRU/LSTM -> softmax. `forward(tokens, states)` takes and
returns the hidden states explicitly, so the same model trains stateless (zero states per
window) or stateful (states carried by the train step across batches, see app.py), and
`step` runs the layers' cells on one token (the TFLite decoding step: no while loop).

GPT: token + learned position embeddings, pre-norm blocks of causal self-attention and an
MLP, a final LayerNorm and logits tied to the token embedding (nanoGPT's layout). `step`
decodes one token against a fixed-size KV cache [B, heads, context, head_dim] per layer,
written at `position` with a one-hot mask (elementwise ops only: TFLite builtins, no
scatter), attending to positions <= `position`.

Both step functions take and return a dict of named state tensors, which is what the
serving loop, the TFLite decoding step and the Python samplers carry between tokens.
"""

from __future__ import annotations

import math

from keras_suite import common
from keras_suite.common.keras_files import InputSpec, LayerCopies

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402
from keras import layers  # noqa: E402


class _KerasFile:
    """What common/keras_files.py needs to write RUN_DIR/model.keras: the inputs (token ids
    [B, T]), the call on them, and the weights built when Keras loads the file."""

    def keras_file_inputs(self) -> dict:
        length = min(8, getattr(self, "context", 8))
        return {"tokens": InputSpec("tokens", (None,), "int32", 0, self.vocab_size, (length,))}

    def keras_file_call(self, inputs):
        return self(inputs["tokens"], training=False)

    def build_from_config(self, config):
        self(tf.zeros([1, min(4, getattr(self, "context", 4))], tf.int32))


@keras.saving.register_keras_serializable(package="keras_suite.textgen")
class CharRNN(_KerasFile, keras.Model):
    def __init__(
        self,
        vocab_size: int,
        cell: str = "gru",
        units: int = 256,
        num_layers: int = 2,
        embed_dim: int = 64,
        dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size, self.cell_type, self.units, self.num_layers = (
            vocab_size,
            cell,
            units,
            num_layers,
        )
        self.embed_dim, self.dropout = embed_dim, dropout
        self.embedding = layers.Embedding(vocab_size, embed_dim, name="embedding")
        rnn = layers.GRU if cell == "gru" else layers.LSTM
        self.rnns = [
            rnn(units, return_sequences=True, return_state=True, name=f"rnn{i}")
            for i in range(num_layers)
        ]
        self.drop = layers.Dropout(dropout)
        self.head = layers.Dense(vocab_size, name="logits")

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "cell": self.cell_type,
            "units": self.units,
            "num_layers": self.num_layers,
            "embed_dim": self.embed_dim,
            "dropout": self.dropout,
        }

    def stock_model(self) -> keras.Model:
        """The same network as a Functional model of stock layers with these weights (a
        portable .keras file): zero initial states, as `call` uses."""
        copies = LayerCopies()
        tokens = self.keras_file_inputs()["tokens"].symbolic()
        x = copies(self.embedding)(tokens)
        for rnn in self.rnns:
            x = copies(self.drop)(copies(rnn, return_state=False)(x))
        model = keras.Model(tokens, copies(self.head)(x), name=self.name)
        copies.copy_weights()
        return model

    def state_names(self) -> list:
        parts = ("h",) if self.cell_type == "gru" else ("h", "c")
        return [f"state{i}_{p}" for i in range(self.num_layers) for p in parts]

    def state_shapes(self, batch: int) -> dict:
        return {n: (batch, self.units) for n in self.state_names()}

    def initial_state(self, batch) -> dict:
        return {n: tf.zeros(tf.stack([batch, self.units])) for n in self.state_names()}

    def _split(self, states: dict) -> list:
        per = 1 if self.cell_type == "gru" else 2
        names = self.state_names()
        return [[states[n] for n in names[i * per : (i + 1) * per]] for i in range(self.num_layers)]

    def forward(self, tokens, states: dict | None = None, training=False):
        """logits [B, T, V] and the states after the last token."""
        if states is None:
            states = self.initial_state(tf.shape(tokens)[0])
        x = self.embedding(tokens)
        out = {}
        names = iter(self.state_names())
        for rnn, initial in zip(self.rnns, self._split(states)):
            x, *final = rnn(x, initial_state=initial, training=training)
            x = self.drop(x, training=training)
            for s in final:
                out[next(names)] = s
        return self.head(x), out

    def call(self, tokens, training=False):
        return self.forward(tokens, None, training)[0]

    def step(self, tokens, position, states: dict):
        """One token per row: tokens [B] int32 -> logits [B, V], new states."""
        del position  # an RNN needs no position
        x = self.embedding(tokens)
        out = {}
        names = iter(self.state_names())
        for rnn, state in zip(self.rnns, self._split(states)):
            x, new = rnn.cell(x, state)
            for s in new if isinstance(new, (list, tuple)) else [new]:
                out[next(names)] = s
        return self.head(x), out


class CausalSelfAttention(layers.Layer):
    def __init__(self, d_model: int, num_heads: int, num_layers: int, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.heads, self.head_dim = d_model, num_heads, d_model // num_heads
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.qkv = layers.Dense(3 * d_model, kernel_initializer=init, name="qkv")
        # GPT-2: residual projections scaled by 1/sqrt(2 * layers)
        self.proj = layers.Dense(
            d_model,
            name="proj",
            kernel_initializer=keras.initializers.RandomNormal(
                stddev=0.02 / math.sqrt(2 * num_layers)
            ),
        )

    def _heads(self, x):  # [B, T, d] -> [B, H, T, hd]
        b, t = tf.shape(x)[0], tf.shape(x)[1]
        return tf.transpose(tf.reshape(x, [b, t, self.heads, self.head_dim]), [0, 2, 1, 3])

    def call(self, x):
        q, k, v = tf.split(self.qkv(x), 3, axis=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        t = tf.shape(x)[1]
        scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(self.head_dim)
        causal = tf.linalg.band_part(tf.ones([t, t]), -1, 0)
        scores = scores + (1.0 - causal) * -1e9
        y = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
        y = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [tf.shape(x)[0], t, self.d_model])
        return self.proj(y)

    def step(self, x, k_cache, v_cache, position):
        """x [B, d]; caches [B, H, L, hd]; position: int32 scalar (the same for every row)."""
        b, length = tf.shape(x)[0], k_cache.shape[2]
        q, k, v = tf.split(self.qkv(x), 3, axis=-1)
        q, k, v = (tf.reshape(z, [b, self.heads, 1, self.head_dim]) for z in (q, k, v))
        slots = tf.range(length, dtype=tf.int32)
        here = tf.reshape(tf.cast(tf.equal(slots, position), x.dtype), [1, 1, length, 1])
        k_cache = k_cache * (1.0 - here) + k * here
        v_cache = v_cache * (1.0 - here) + v * here
        scores = tf.matmul(q, k_cache, transpose_b=True) / math.sqrt(self.head_dim)  # [B, H, 1, L]
        valid = tf.reshape(slots <= position, [1, 1, 1, length])
        # Masked by selection and renormalisation rather than adding -1e9: a huge constant
        # in the tensor would take all of an int8 scale (docs/design.md §8).
        scores = tf.where(valid, scores, tf.reduce_min(scores, axis=-1, keepdims=True))
        p = tf.nn.softmax(scores, axis=-1) * tf.cast(valid, x.dtype)
        p = p / tf.reduce_sum(p, axis=-1, keepdims=True)
        y = tf.reshape(tf.matmul(p, v_cache), [b, self.d_model])
        return self.proj(y), k_cache, v_cache


class Block(layers.Layer):
    def __init__(self, d_model, num_heads, num_layers, mlp_ratio, dropout, **kwargs):
        super().__init__(**kwargs)
        self.ln1 = layers.LayerNormalization(epsilon=1e-5, name="ln1")
        self.attn = CausalSelfAttention(d_model, num_heads, num_layers, name="attn")
        self.ln2 = layers.LayerNormalization(epsilon=1e-5, name="ln2")
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.fc = layers.Dense(
            mlp_ratio * d_model, activation="gelu", kernel_initializer=init, name="fc"
        )
        self.out = layers.Dense(
            d_model,
            name="out",
            kernel_initializer=keras.initializers.RandomNormal(
                stddev=0.02 / math.sqrt(2 * num_layers)
            ),
        )
        self.drop = layers.Dropout(dropout)

    def call(self, x, training=False):
        x = x + self.drop(self.attn(self.ln1(x)), training=training)
        return x + self.drop(self.out(self.fc(self.ln2(x))), training=training)

    def step(self, x, k_cache, v_cache, position):
        a, k_cache, v_cache = self.attn.step(self.ln1(x), k_cache, v_cache, position)
        x = x + a
        return x + self.out(self.fc(self.ln2(x))), k_cache, v_cache


@keras.saving.register_keras_serializable(package="keras_suite.textgen")
class GPT(_KerasFile, keras.Model):
    def __init__(
        self,
        vocab_size: int,
        context: int,
        d_model: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size, self.context, self.d_model = vocab_size, context, d_model
        self.num_layers, self.num_heads, self.head_dim = num_layers, num_heads, d_model // num_heads
        self.mlp_ratio, self.dropout = mlp_ratio, dropout
        self.tok_emb = layers.Embedding(
            vocab_size,
            d_model,
            name="tok_emb",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02),
        )
        self.pos_emb = layers.Embedding(
            context,
            d_model,
            name="pos_emb",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.01),
        )
        self.drop = layers.Dropout(dropout)
        self.blocks = [
            Block(d_model, num_heads, num_layers, mlp_ratio, dropout, name=f"block{i}")
            for i in range(num_layers)
        ]
        self.ln_f = layers.LayerNormalization(epsilon=1e-5, name="ln_f")

    def _logits(self, h):  # weight tying: the output layer is the token embedding
        return tf.matmul(h, self.tok_emb.embeddings, transpose_b=True)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "context": self.context,
            "d_model": self.d_model,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "dropout": self.dropout,
        }

    def stock_model(self) -> keras.Model:
        """`call` as a Functional model of stock layers with these weights (a portable
        .keras file). Positions are cumsum(ones) - 1 (any length up to `context`); the
        causal attention is keras.layers.MultiHeadAttention holding the fused qkv and
        projection kernels split per head; the tied output layer is a Dense layer holding
        the transposed token embedding (a copy: the file's model no longer ties them)."""
        copies = LayerCopies()
        tokens = self.keras_file_inputs()["tokens"].symbolic()
        positions = keras.ops.cumsum(keras.ops.ones_like(tokens), axis=1) - 1
        x = copies(self.drop)(copies(self.tok_emb)(tokens) + copies(self.pos_emb)(positions))
        attention = []
        for block in self.blocks:
            mha = layers.MultiHeadAttention(
                self.num_heads, self.head_dim, name=f"{block.name}_attn", dtype=self.dtype_policy
            )
            h = copies(block.ln1)(x)
            x = x + copies(block.drop)(mha(h, h, use_causal_mask=True))
            h = copies(block.fc)(copies(block.ln2)(x))
            x = x + copies(block.drop)(copies(block.out)(h))
            attention.append((mha, block.attn))
        logits = layers.Dense(
            self.vocab_size, use_bias=False, name="logits", dtype=self.dtype_policy
        )
        model = keras.Model(tokens, logits(copies(self.ln_f)(x)), name=self.name)
        copies.copy_weights()
        logits.set_weights([keras.ops.convert_to_numpy(self.tok_emb.embeddings).T])
        d, heads, hd = self.d_model, self.num_heads, self.head_dim
        for mha, attn in attention:
            qkv_kernel, qkv_bias = attn.qkv.get_weights()
            proj_kernel, proj_bias = attn.proj.get_weights()
            weights = []
            for part in range(3):  # query, key, value: columns head * hd + j of each third
                columns = slice(part * d, (part + 1) * d)
                weights += [
                    qkv_kernel[:, columns].reshape(d, heads, hd),
                    qkv_bias[columns].reshape(heads, hd),
                ]
            mha.set_weights(weights + [proj_kernel.reshape(heads, hd, d), proj_bias])
        return model

    def call(self, tokens, training=False):
        t = tf.shape(tokens)[1]
        x = self.tok_emb(tokens) + self.pos_emb(tf.range(t))[None]
        x = self.drop(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self._logits(self.ln_f(x))

    def forward(self, tokens, states=None, training=False):
        return self(tokens, training=training), {}

    def state_names(self) -> list:
        return [f"cache_{kv}{i}" for i in range(self.num_layers) for kv in ("k", "v")]

    def state_shapes(self, batch: int) -> dict:
        return {n: (batch, self.num_heads, self.context, self.head_dim) for n in self.state_names()}

    def initial_state(self, batch) -> dict:
        return {
            n: tf.zeros(tf.stack([batch, self.num_heads, self.context, self.head_dim]))
            for n in self.state_names()
        }

    def step(self, tokens, position, states: dict):
        """tokens [B] int32 at `position` (int32 scalar < context) -> logits [B, V], new caches."""
        position = tf.cast(tf.reshape(position, []), tf.int32)
        x = self.tok_emb(tokens) + self.pos_emb(position)[None]
        out = {}
        for i, block in enumerate(self.blocks):
            x, k, v = block.step(x, states[f"cache_k{i}"], states[f"cache_v{i}"], position)
            out[f"cache_k{i}"], out[f"cache_v{i}"] = k, v
        return self._logits(self.ln_f(x)), out


def build_model(mcfg, vocab_size: int, context: int):
    """A built model (weights exist, so a checkpoint or .weights.h5 loads into it)."""
    if mcfg.arch == "rnn":
        model = CharRNN(
            vocab_size,
            mcfg.cell,
            mcfg.rnn_units,
            mcfg.rnn_layers,
            mcfg.embed_dim,
            mcfg.dropout,
            name="char_rnn",
        )
    else:
        model = GPT(
            vocab_size,
            context,
            mcfg.d_model,
            mcfg.num_layers,
            mcfg.num_heads,
            mcfg.mlp_ratio,
            mcfg.dropout,
            name="gpt",
        )
    model(tf.zeros([1, min(4, context)], tf.int32))
    return model

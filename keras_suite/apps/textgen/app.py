"""Text generation: the app contract for the char-RNN and the GPT."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.textgen import config as cfg_lib
from keras_suite.apps.textgen import data as data_lib
from keras_suite.apps.textgen.corpus import load_corpus, split_documents
from keras_suite.apps.textgen.evaluate import language_metrics, score_stream, stepwise_bits_per_char
from keras_suite.apps.textgen.export import serving_archive, tflite_archive
from keras_suite.apps.textgen.model import build_model
from keras_suite.apps.textgen.ngram import KneserNey
from keras_suite.apps.textgen.sampling import KerasDecoder, generate
from keras_suite.apps.textgen.tokenizers import Tokenizer
from keras_suite.common.app import App, Datasets, TFLiteTarget
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log, read_jsonl
from keras_suite.common.training import (
    TrainState,
    apply_gradients,
    make_optimizer,
    replica_weighted_mean,
)

tf = common.quiet_import_tensorflow()

SAMPLE_PROMPTS = ("def ", "import ", "class ")


def load_tokenizer(artifacts) -> Tokenizer:
    return Tokenizer.load(artifacts)


class TextGenApp(App):
    name = "textgen"
    description = "Language models (char-RNN GRU/LSTM, small GPT with KV cache) on any UTF-8 text"
    presets = cfg_lib.PRESETS
    predict_inputs = "prompts (strings to continue)"

    # ---- data ---------------------------------------------------------------------------
    def datasets(self, *, cfg, artifacts):
        d, seed = cfg.data, cfg.train.seed
        corpus = load_corpus(d)
        train_docs, val_docs = split_documents(
            corpus.documents, d.val_fraction, seed, d.split, d.block_chars
        )
        train_texts = [t for _, t in train_docs]
        val_texts = [t for _, t in val_docs]
        if artifacts is not None and artifacts.exists("tokenizer.json"):
            tokenizer = Tokenizer.load(artifacts)
            if tokenizer.kind != d.tokenizer:
                raise UserError(
                    f"{artifacts.folder} holds a {tokenizer.kind} tokenizer but the config asks for "
                    f"{d.tokenizer}; use a new --run-dir (or delete that artifacts folder)"
                )
        else:
            tokenizer = Tokenizer.learn(d.tokenizer, train_texts, d.bpe_vocab_size, seed)
            if artifacts is not None:
                tokenizer.save(artifacts)
        train_stream = data_lib.token_stream(tokenizer, train_texts)
        val_stream = data_lib.token_stream(tokenizer, val_texts)
        batch, T = cfg.train.batch_size, d.seq_len
        if len(train_stream) < T + 2 or len(val_stream) < 2:
            raise UserError(
                f"the corpus is too small for data.seq_len={T}: {len(train_stream)} training tokens"
            )
        if cfg.model.stateful:
            pieces = data_lib.document_pieces(tokenizer, train_texts, T, d.doc_chunks)
            steps = data_lib.stateful_steps(pieces, batch, T)

            def train_epoch(epoch):
                arrays = data_lib.stateful_epoch_arrays(pieces, batch, T, steps, seed, epoch)
                keys = ("tokens", "targets", "weights", "reset")
                return tf.data.Dataset.from_tensor_slices(dict(zip(keys, arrays))).prefetch(2)
        else:
            windows = d.windows_per_epoch or max(len(train_stream) // T, batch)
            steps = windows // batch

            def train_epoch(epoch):
                return data_lib.stateless_epoch(train_stream, batch, T, windows, seed, epoch)

        if cfg.train.steps_per_epoch:
            steps = min(steps, cfg.train.steps_per_epoch)
        val = data_lib.eval_dataset(val_stream, T, batch)
        info = {
            "vocab_size": tokenizer.vocab_size,
            "tokenizer": tokenizer.kind,
            "context": T,
            "arch": cfg.model.arch,
            "stateful": bool(cfg.model.stateful),
            "train_documents": len(train_docs),
            "val_documents": len(val_docs),
            "train_chars": sum(map(len, train_texts)),
            "val_chars": sum(map(len, val_texts)),
            "train_tokens": int(len(train_stream)),
            "val_tokens": int(len(val_stream)),
            "skipped_files": len(corpus.skipped),
            "skipped_examples": [n for n, _ in corpus.skipped[:20]],
            "duplicate_files": corpus.duplicates,
            "source": cfg.data.source,
            "split_sizes": {"train": len(train_docs), "val": len(val_docs)},  # documents
            "evaluation_split": {
                "split": "val",
                "size": len(val_docs),
                "near_duplicates_removed": 0,
                "duplicate_rule": "not checked",
            },
        }
        log.info(
            "corpus: %d train / %d val documents, %d / %d characters, %d / %d %s tokens (vocab %d)%s",
            len(train_docs),
            len(val_docs),
            info["train_chars"],
            info["val_chars"],
            len(train_stream),
            len(val_stream),
            tokenizer.kind,
            tokenizer.vocab_size,
            f", {len(corpus.skipped)} file(s) skipped" if corpus.skipped else "",
        )
        extras = {
            "tokenizer": tokenizer,
            "train_texts": train_texts,
            "val_texts": val_texts,
            "train_stream": train_stream,
            "val_stream": val_stream,
        }
        return Datasets(
            train_epoch=train_epoch,
            steps_per_epoch=steps,
            val=val,
            test=val,
            info=info,
            extras=extras,
        )

    # ---- model --------------------------------------------------------------------------
    def build_state(self, *, cfg, info):
        model = build_model(cfg.model, info["vocab_size"], info["context"])
        per_epoch = max(1, info["train_tokens"] // info["context"] // cfg.train.batch_size)
        if cfg.train.steps_per_epoch:
            per_epoch = min(per_epoch, cfg.train.steps_per_epoch)
        steps = cfg.train.epochs * per_epoch  # the cosine schedule's length
        variables = {}
        if cfg.model.stateful:
            variables = self._carry_variables(model, cfg.train.batch_size)
        return TrainState(
            models={"model": model},
            optimizers={"model": make_optimizer(cfg.train, steps)},
            variables=variables,
        )

    @staticmethod
    def _carry_variables(model, global_batch: int) -> dict:
        """The carried hidden state of a stateful RNN: one row per stream of THIS replica.

        Keras 3 stateful layers need the batch size in keras.Input and keep their state in
        one variable for the whole model, which under a strategy is mirrored across
        replicas, while each replica carries different streams. So the model takes its
        states explicitly and each replica keeps its rows in a SyncOnRead variable of
        global_batch / replicas rows (the rows the distributed dataset hands it)."""
        strategy = tf.distribute.get_strategy()
        replicas = strategy.num_replicas_in_sync
        if global_batch % replicas:
            raise UserError(
                f"stateful training needs train.batch_size ({global_batch}) divisible by the "
                f"number of replicas ({replicas})"
            )
        if (
            isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._num_workers > 1
        ):  # noqa: SLF001 - no public accessor
            raise UserError(
                "stateful training keeps streams contiguous on one worker; with several "
                "workers use model.stateful=false"
            )
        per_replica = global_batch // replicas
        return {
            f"carry_{n}": tf.Variable(
                tf.zeros([per_replica, model.units]),
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                name=f"carry_{n}",
            )
            for n in model.state_names()
        }

    # ---- steps (per replica) ------------------------------------------------------------
    def train_step(self, state, batch, step):
        model, optimizer = state.model, state.optimizers["model"]
        stateful = step.cfg.model.stateful
        initial = None
        if stateful:
            keep = (1.0 - batch["reset"])[:, None]  # a new document piece starts from zeros
            initial = {n: state.variables[f"carry_{n}"] * keep for n in model.state_names()}
        with tf.GradientTape() as tape:
            logits, final = model.forward(batch["tokens"], initial, training=True)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                batch["targets"], tf.cast(logits, tf.float32)
            )
            loss = replica_weighted_mean(ce, batch["weights"])
        apply_gradients(tape, loss, model.trainable_variables, optimizer, step.cfg.train.clip_norm)
        if stateful:  # truncated backpropagation through time: carry values, not gradients
            for n in model.state_names():
                state.variables[f"carry_{n}"].assign(tf.stop_gradient(final[n]))
        return {"loss": loss}

    def test_step(self, state, batch, step):
        logits = state.model(batch["tokens"], training=False)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
            batch["targets"], tf.cast(logits, tf.float32)
        )
        return {
            "loss": tf.reduce_sum(ce * batch["weights"]),
            "count": tf.reduce_sum(batch["weights"]),
        }

    # ---- evaluation ---------------------------------------------------------------------
    def evaluate(self, *, state, data, cfg, run_dir):
        run_dir = Path(run_dir)
        tokenizer = data.extras["tokenizer"]
        t0 = time.perf_counter()
        scored = score_stream(state.model, data.extras["val_stream"], cfg.data.seq_len, batch=32)
        metrics = language_metrics(scored["nats"], scored["tokens"], data.info["val_chars"])
        metrics["eval_seconds"] = time.perf_counter() - t0
        metrics["ngram_bits_per_char"] = self._baseline(data, cfg)
        metrics["ngram_order"] = cfg.eval.ngram_order
        metrics.update(_training_speed(run_dir, cfg))
        samples, speed = self._samples(state.model, tokenizer, cfg)
        metrics["generation_tokens_per_sec"] = speed
        metrics["tokenizer"] = tokenizer.kind
        metrics["arch"] = cfg.model.arch + (
            f"-{cfg.model.cell}{'-stateful' if cfg.model.stateful else ''}"
            if cfg.model.arch == "rnn"
            else ""
        )
        metrics["parameters"] = int(state.model.count_params())
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "samples.txt").write_text(
            "".join(f"--- prompt {p!r}\n{p}{s}\n\n" for p, s in samples)
        )
        _plot_bits(metrics, run_dir / "plots" / "bits_per_char.png")
        log.info(
            "bits/char %.3f (n-gram baseline %.3f), perplexity %.2f per %s token",
            metrics["bits_per_char"],
            metrics["ngram_bits_per_char"],
            metrics["perplexity"],
            tokenizer.kind,
        )
        return metrics

    def _baseline(self, data, cfg) -> float:
        """Kneser-Ney bits/char on the same split, cached with the run (it depends on the
        data only)."""
        name = f"ngram{cfg.eval.ngram_order}.json"
        arts = data.artifacts
        if arts is not None and arts.exists(name):
            return float(json.loads(arts.read_text(name))["bits_per_char"])
        t0 = time.perf_counter()
        lm = KneserNey(cfg.eval.ngram_order).fit(data.extras["train_texts"])
        bits = lm.bits_per_char(data.extras["val_texts"])
        log.info(
            "Kneser-Ney %d-gram baseline: %.3f bits/char (%.0fs)",
            cfg.eval.ngram_order,
            bits,
            time.perf_counter() - t0,
        )
        if arts is not None:
            arts.write_text(
                name, json.dumps({"bits_per_char": bits, "order": cfg.eval.ngram_order})
            )
        return bits

    def _samples(self, model, tokenizer, cfg):
        decoder = KerasDecoder(model)
        g = cfg.generate
        out, tokens, seconds = [], 0, 0.0
        for i, prompt in enumerate(SAMPLE_PROMPTS):
            t0 = time.perf_counter()
            r = generate(
                decoder,
                tokenizer,
                prompt,
                g.max_new_tokens,
                g.temperature,
                g.top_k,
                g.top_p,
                seed=i,
            )
            if i:  # the first call compiles the step
                seconds += time.perf_counter() - t0
                tokens += r["tokens"] + len(tokenizer.encode(prompt)) + 1
            out.append((prompt, r["text"]))
        return out, tokens / max(seconds, 1e-9)

    # ---- serving ------------------------------------------------------------------------
    def export_archive(self, *, state, info, cfg, artifacts):
        return serving_archive(state.model, Tokenizer.load(artifacts), cfg.generate)

    def _generate_inputs(self, prompts, cfg, info, max_new=None):
        n = len(prompts)
        g = cfg.generate
        return {
            "prompts": np.array([p.encode("utf-8") for p in prompts], dtype=object),
            "max_new_tokens": np.full([n], max_new or g.max_new_tokens, np.int32),
            "temperature": np.full([n], g.temperature, np.float32),
            "top_k": np.full([n], g.top_k, np.int32),
            "top_p": np.full([n], g.top_p, np.float32),
            "seed": np.arange(n, dtype=np.int64),
        }

    def sample_requests(self, *, data, info, cfg):
        prompts = ["def main(", "import "]
        gen = self._generate_inputs(prompts, cfg, info, max_new=8)
        gen["temperature"][1] = 0.0  # one greedy row
        return {
            "serving_default": [{"text": np.array([p.encode() for p in prompts], dtype=object)}],
            "generate": [gen],
        }

    def predict_request(self, *, inputs, info, cfg):
        if not inputs:
            raise UserError('give one or more prompts: ksuite predict RUN_DIR "def main("')
        return "generate", self._generate_inputs(list(inputs), cfg, info)

    def render_predictions(self, *, inputs, outputs, info, out_dir):
        path = Path(out_dir) / "generations.txt"
        texts = [
            t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t)
            for t in outputs["text"]
        ]
        path.write_text("".join(f"--- prompt {p!r}\n{p}{t}\n\n" for p, t in zip(inputs, texts)))
        return [str(path)]

    def predict_examples(self, *, data, info, cfg, out_dir):
        return [t[:12] for t in data.extras["val_texts"][:2]]

    # ---- TFLite -------------------------------------------------------------------------
    def tflite_targets(self, *, state, data, cfg, workdir):
        model = state.model
        path = str(Path(workdir) / "decode_step")
        tflite_archive(model).write_out(path, verbose=False)
        context = getattr(model, "context", None) if hasattr(model, "num_heads") else None
        shapes = model.state_shapes(1)
        train_stream = data.extras["train_stream"]
        n_cal = cfg.eval.calibration_tokens

        def representative_data():
            """Decoding steps over the TRAINING stream with the Keras model's own states."""
            decoder = KerasDecoder(model)
            state_ = decoder.initial_state(1)
            for i in range(min(n_cal, len(train_stream))):
                position = i % context if context else 0
                if context and position == 0:
                    state_ = decoder.initial_state(1)
                feeds = {
                    "token": np.asarray([train_stream[i]], np.int32),
                    "position": np.asarray([position], np.int32),
                    **{k: np.asarray(v, np.float32) for k, v in state_.items()},
                }
                yield feeds
                _, state_ = decoder.step(feeds["token"], position, state_)

        return [
            TFLiteTarget(
                name="decode_step",
                saved_model_dir=path,
                signature="decode_step",
                representative_data=representative_data,
                extras={
                    "state_shapes": {n: list(s) for n, s in shapes.items()},
                    "context": context,
                },
            )
        ]

    def tflite_evaluate(self, *, run_signature, data, cfg, info, target):
        return stepwise_bits_per_char(
            run_signature,
            data.extras["val_stream"],
            data.extras["tokenizer"],
            target.extras["state_shapes"],
            target.extras["context"],
            cfg.eval.tflite_tokens,
        )


def _training_speed(run_dir: Path, cfg) -> dict:
    """Training tokens/s and wall time from the run's own epoch records."""
    path = run_dir / "logs" / "metrics.jsonl"
    if not path.exists():
        return {}
    epochs = [r for r in read_jsonl(path) if r.get("kind") == "epoch"]
    if not epochs:
    # ---- TensorBoard ---------------------------------------------------------------------
    def tensorboard_text(self, *, state, data, cfg):
        """A continuation of each sample prompt (fixed seeds, at most 64 new tokens), as
        markdown: the same prompts every epoch, so the Text tab shows the model learning."""
        from keras_suite.common import cache

        g = cfg.generate
        model = state.model  # its step compiled once per run, not once per epoch
        decoder = cache.last_value("textgen.tensorboard", model, lambda: KerasDecoder(model))
        parts = []
        for i, prompt in enumerate(SAMPLE_PROMPTS):
            r = generate(
                decoder,
                data.extras["tokenizer"],
                prompt,
                min(g.max_new_tokens, 64),
                g.temperature,
                g.top_k,
                g.top_p,
                seed=i,
            )
            parts.append(f"prompt `{prompt}`\n\n```\n{prompt}{r['text']}\n```")
        return {"samples/generated": "\n\n".join(parts)}

        return {}
    seconds = sum(r.get("epoch_seconds", 0.0) for r in epochs)
    rate = epochs[-1].get("examples_per_sec", 0.0) * cfg.data.seq_len
    return {"train_tokens_per_sec": rate, "train_seconds": seconds}


def _plot_bits(metrics: dict, path: Path) -> None:
    from keras_suite.common.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    names = [
        f"{metrics['arch']}\n({metrics['tokenizer']})",
        f"Kneser-Ney\n{metrics['ngram_order']}-gram",
    ]
    values = [metrics["bits_per_char"], metrics["ngram_bits_per_char"]]
    bars = ax.bar(names, values, color=["tab:blue", "tab:gray"])
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v, f"{v:.3f}", ha="center", va="bottom")
    ax.set_ylabel("bits per character (validation)")
    ax.set_ylim(0, max(values) * 1.2)
    save_figure(fig, path, dpi=90)

"""Text generation: the app contract for the char-RNN and the GPT."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.textgen import config as cfg_lib
from keras_suite.apps.textgen import data as data_lib
from keras_suite.apps.textgen.corpus import (
    DUPLICATE_LINE_CHARS,
    Corpus,
    load_corpus,
    make_split,
)
from keras_suite.apps.textgen.evaluate import (
    bootstrap_bits,
    language_metrics,
    score_stream,
    stepwise_bits_per_char,
)
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

DUPLICATE_RULE = (
    f"a validation/test line of >= {DUPLICATE_LINE_CHARS} characters (whitespace normalised) "
    "that is also a line of a training document is cut out of that document before scoring "
    "(near_duplicates_removed counts lines); generated tables are left out of the built-in "
    "corpus"
)


def load_tokenizer(artifacts) -> Tokenizer:
    return Tokenizer.load(artifacts)


class TextGenApp(App):
    name = "textgen"
    description = "Language models (char-RNN GRU/LSTM, small GPT with KV cache) on any UTF-8 text"
    presets = cfg_lib.PRESETS
    predict_inputs = "prompts (strings to continue)"
    parity_tolerance = {"metric": "bits_per_char", "max_drop": 0.05, "higher_is_better": False}

    # ---- data ---------------------------------------------------------------------------
    def datasets(self, *, cfg, artifacts):
        d, seed = cfg.data, cfg.train.seed
        fractions = {"test": d.test_fraction, "val": d.val_fraction}
        if d.source == "tfds":  # TFDS's own train / validation splits: common/tfds.py
            from keras_suite.common.tfds import text_documents

            held, _ = text_documents(d, seed, d.val_fraction)
            corpus = Corpus(held["train"] + held["val"])
            # the test split is carved from TFDS's training split
            split = make_split(
                held["train"], {"test": d.test_fraction}, seed, d.split, d.block_chars,
                given={"val": held["val"]},
            )  # fmt: skip
        else:
            corpus = load_corpus(d)
            split = make_split(corpus.documents, fractions, seed, d.split, d.block_chars)
        texts = {name: [t for _, t in getattr(split, name)] for name in ("train", "val", "test")}
        if artifacts is not None and artifacts.exists("tokenizer.json"):
            tokenizer = Tokenizer.load(artifacts)
            if tokenizer.kind != d.tokenizer:
                raise UserError(
                    f"{artifacts.folder} holds a {tokenizer.kind} tokenizer but the config asks for "
                    f"{d.tokenizer}; use a new --run-dir (or delete that artifacts folder)"
                )
        else:
            tokenizer = Tokenizer.learn(d.tokenizer, texts["train"], d.bpe_vocab_size, seed)
            if artifacts is not None:
                tokenizer.save(artifacts)
        streams = {name: data_lib.token_stream(tokenizer, t) for name, t in texts.items()}
        train_stream = streams["train"]
        batch, T = cfg.train.batch_size, d.seq_len
        if len(train_stream) < T + 2:
            raise UserError(
                f"the corpus is too small for data.seq_len={T}: {len(train_stream)} training "
                "tokens; add text or lower data.seq_len"
            )
        # A fixed budget: train.steps_per_epoch steps per epoch whatever the corpus size
        # (random windows are drawn, or the stateful pieces dealt again, as often as needed)
        budget = cfg.train.steps_per_epoch
        if cfg.model.stateful:
            pieces = data_lib.document_pieces(tokenizer, texts["train"], T, d.doc_chunks)
            steps = budget or data_lib.stateful_steps(pieces, batch, T)

            def train_epoch(epoch):
                arrays = data_lib.stateful_epoch_arrays(pieces, batch, T, steps, seed, epoch)
                keys = ("tokens", "targets", "weights", "reset")
                return tf.data.Dataset.from_tensor_slices(dict(zip(keys, arrays))).prefetch(2)
        else:
            windows = d.windows_per_epoch or budget * batch or max(len(train_stream) // T, batch)
            steps = windows // batch
            if budget:
                steps = min(steps, budget)

            def train_epoch(epoch):
                return data_lib.stateless_epoch(train_stream, batch, T, windows, seed, epoch)

        removed = split.removed["test"]
        info = {
            "vocab_size": tokenizer.vocab_size,
            "tokenizer": tokenizer.kind,
            "context": T,
            "arch": cfg.model.arch,
            "stateful": bool(cfg.model.stateful),
            "train_steps_per_epoch": int(steps),
            "split_mode": split.mode,
            "block_chars": split.block_chars,
            **{f"{n}_documents": len(texts[n]) for n in texts},
            **{f"{n}_chars": sum(map(len, texts[n])) for n in texts},
            **{f"{n}_tokens": int(len(streams[n])) for n in texts},
            "skipped_files": len(corpus.skipped),
            "skipped_examples": [n for n, _ in corpus.skipped[:20]],
            "duplicate_files": corpus.duplicates,
            "generated_files_left_out": list(corpus.generated),
            "truncation": dict(corpus.truncation),
            "lines_removed": split.removed,
            "source": d.source,
            "data_description": _describe_source(d, corpus),
            "split_sizes": {n: len(texts[n]) for n in texts},  # documents (or blocks)
            "evaluation_split": {
                "split": "test",
                "size": len(texts["test"]),
                "size_chars": sum(map(len, texts["test"])),
                "near_duplicates_removed": removed["lines"],
                "near_duplicate_chars_removed": removed["chars"],
                "documents_dropped": removed["documents"],
                "duplicate_rule": DUPLICATE_RULE,
            },
        }
        log.info(
            "corpus: %d train / %d val / %d test %ss, %s / %s / %s characters, "
            "%s / %s / %s %s tokens (vocab %d)%s",
            *(len(texts[n]) for n in texts),
            split.mode,
            *(f"{info[f'{n}_chars']:,}" for n in texts),
            *(f"{len(streams[n]):,}" for n in texts),
            tokenizer.kind,
            tokenizer.vocab_size,
            f", {len(corpus.skipped)} file(s) skipped" if corpus.skipped else "",
        )
        extras = {"tokenizer": tokenizer}
        for name in texts:
            extras[f"{name}_texts"], extras[f"{name}_stream"] = texts[name], streams[name]
        return Datasets(
            train_epoch=train_epoch,
            steps_per_epoch=steps,
            val=data_lib.eval_dataset(streams["val"], T, batch),
            test=data_lib.eval_dataset(streams["test"], T, batch),
            info=info,
            extras=extras,
        )

    def data_report(self, *, data, cfg):
        """`ksuite data check textgen`: where the text comes from (the file or folder), and
        the sizes of the three splits in documents and characters."""
        info = data.info
        report = {"source": info.get("data_description") or info["source"]}
        report["split_sizes"] = {
            n: f"{info[f'{n}_documents']} {info.get('split_mode', 'document')}(s), "
            f"{info[f'{n}_chars']:,} characters"
            for n in ("train", "val", "test")
        }
        split = info["evaluation_split"]
        report["test lines removed (in training verbatim)"] = (
            f"{split['near_duplicates_removed']} ({split['near_duplicate_chars_removed']:,} "
            "characters)"
        )
        if info.get("generated_files_left_out"):
            report["generated tables left out"] = len(info["generated_files_left_out"])
        if info.get("truncation"):
            cut = info["truncation"]
            report["cut by data.max_chars"] = (
                f"{cut['cut_file']} at {cut['cut_file_kept']:,} of {cut['cut_file_chars']:,} "
                f"characters, {cut['files_left_out']} more file(s) not read"
            )
        report["steps_per_epoch"] = data.steps_per_epoch
        return report

    # ---- model --------------------------------------------------------------------------
    def build_state(self, *, cfg, info):
        model = build_model(cfg.model, info["vocab_size"], info["context"])
        per_epoch = info.get("train_steps_per_epoch") or max(
            1, info["train_tokens"] // info["context"] // cfg.train.batch_size
        )  # (runs from before the fixed budget did not record it)
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
        """Bits/char on the TEST split (validation only watched training), the n-gram on
        the same documents, and a bootstrap over those documents for the spread."""
        run_dir = Path(run_dir)
        tokenizer = data.extras["tokenizer"]
        t0 = time.perf_counter()
        texts = data.extras["test_texts"]
        scored = score_stream(state.model, data.extras["test_stream"], cfg.data.seq_len, batch=32)
        metrics = language_metrics(scored["nats"], scored["tokens"], sum(map(len, texts)))
        metrics["eval_seconds"] = time.perf_counter() - t0
        baseline = self._baseline(data, cfg)
        metrics["ngram_bits_per_char"] = baseline["bits_per_char"]
        metrics["ngram_order"] = cfg.eval.ngram_order
        metrics["test_documents"] = len(texts)
        metrics.update(
            bootstrap_bits(scored["doc_nats"], [len(t) for t in texts], baseline["doc_nats"])
        )
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
        low, high = metrics["bits_per_char_ci95"]
        log.info(
            "test bits/char %.3f (95%% bootstrap over %d documents: %.3f-%.3f; n-gram baseline "
            "%.3f), perplexity %.2f per %s token",
            metrics["bits_per_char"],
            len(texts),
            low,
            high,
            metrics["ngram_bits_per_char"],
            metrics["perplexity"],
            tokenizer.kind,
        )
        return metrics

    def _baseline(self, data, cfg) -> dict:
        """Kneser-Ney on the test split, with each document's nats for the bootstrap;
        cached with the run (it depends on the data only)."""
        name = f"ngram{cfg.eval.ngram_order}-test.json"
        arts = data.artifacts
        if arts is not None and arts.exists(name):
            return json.loads(arts.read_text(name))
        t0 = time.perf_counter()
        lm = KneserNey(cfg.eval.ngram_order).fit(data.extras["train_texts"])
        texts = data.extras["test_texts"]
        doc_nats = [lm.nats(t) for t in texts]
        bits = sum(doc_nats) / max(sum(map(len, texts)), 1) / math.log(2)
        log.info(
            "Kneser-Ney %d-gram baseline: %.3f bits/char on the test split (%.0fs)",
            cfg.eval.ngram_order,
            bits,
            time.perf_counter() - t0,
        )
        result = {"bits_per_char": bits, "order": cfg.eval.ngram_order, "doc_nats": doc_nats}
        if arts is not None:
            arts.write_text(name, json.dumps(result))
        return result

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
        shown = "".join(f"--- prompt {p!r}\n{p}{t}\n\n" for p, t in zip(inputs, texts))
        path.write_text(shown)
        # `ksuite predict` is the one caller: the generated text is what the user asked
        # for, so it goes to the terminal too (the CLI then prints the file's path)
        sys.stdout.write(shown)
        sys.stdout.flush()
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
            data.extras["test_stream"],
            data.extras["tokenizer"],
            target.extras["state_shapes"],
            target.extras["context"],
            cfg.eval.tflite_tokens,
        )

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


def _describe_source(d, corpus) -> str:
    """Where the text comes from, in words, for `ksuite data check` and info.json."""
    files = len(corpus.documents)
    if d.source == "stdlib":
        import sys

        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return f"built-in: the Python {version} standard library's .py files ({files} files)"
    if d.source == "files":
        path = Path(d.path).expanduser().resolve()
        if path.is_file():
            return f"file {path}"
        return f"folder {path} ({files} file(s) read)"
    return f"{d.source} {getattr(d, 'name', '')}".strip()


def _training_speed(run_dir: Path, cfg) -> dict:
    """Training tokens/s and wall time from the run's own epoch records."""
    path = run_dir / "logs" / "metrics.jsonl"
    if not path.exists():
        return {}
    epochs = [r for r in read_jsonl(path) if r.get("kind") == "epoch"]
    if not epochs:
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
    ax.set_ylabel("bits per character (test split)")
    ax.set_ylim(0, max(values) * 1.2)
    save_figure(fig, path, dpi=90)

"""Translation: the app contract implemented for the seq2seq models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.translation import config as cfg_lib
from keras_suite.apps.translation import export
from keras_suite.apps.translation.data import TARGET_VOCAB, build_datasets, tokenizers
from keras_suite.apps.translation.decoding import beam_search, greedy_decode
from keras_suite.apps.translation.metrics import sacrebleu_signatures, translation_metrics
from keras_suite.apps.translation.model import build_translator
from keras_suite.apps.translation.tokenizer import END_ID, PAD_ID
from keras_suite.common.app import App
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log
from keras_suite.common.training import (
    TrainState,
    apply_gradients,
    make_optimizer,
    replica_weighted_mean,
)

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402

MAX_BEAM = 16


class Translator(tf.Module):
    """strings -> strings in graph: tokenize, decode (greedy or beam), detokenize. What the
    SavedModel serves, and what `evaluate` scores (so both see exactly the same path)."""

    def __init__(
        self, model, source_tokenizer, target_tokenizer, info: dict, length_penalty: float
    ):
        super().__init__(name="translator")
        self.model = model
        self.source_tokenizer, self.target_tokenizer = source_tokenizer, target_tokenizer
        self.max_source = int(info["max_source_tokens"])
        self.max_steps = int(info["max_target_tokens"]) + 1  # the pieces, then END
        self.length_penalty = float(length_penalty)

    def source_ids(self, sentences):
        ragged = self.source_tokenizer.tokenize(sentences)
        return ragged[:, : self.max_source].to_tensor(
            default_value=PAD_ID, shape=[None, self.max_source]
        )

    def greedy(self, sentences):
        ids = greedy_decode(self.model, self.source_ids(sentences), self.max_steps)
        return {"translations": self.target_tokenizer.detokenize(ids)}

    def beam(self, sentences, beam_width):
        """beam_width: int32 [N] (one per sentence, as TF Serving batches inputs); the
        batch uses the largest, clipped to 1..16."""
        width = tf.clip_by_value(
            tf.reduce_max(tf.concat([tf.reshape(beam_width, [-1]), [1]], 0)), 1, MAX_BEAM
        )
        ids, scores = beam_search(
            self.model, self.source_ids(sentences), self.max_steps, width, self.length_penalty
        )
        return {"translations": self.target_tokenizer.detokenize(ids), "scores": scores}


def make_translator(model, cfg, info, artifacts) -> Translator:
    source_tokenizer, target_tokenizer = tokenizers(cfg, artifacts)
    return Translator(model, source_tokenizer, target_tokenizer, info, cfg.decode.length_penalty)


def translate_all(fn, sentences: list[str], batch: int = 64) -> list[str]:
    out = []
    for i in range(0, len(sentences), batch):
        result = fn(tf.constant(sentences[i : i + batch]))
        out += [t.decode("utf-8") for t in result["translations"].numpy()]
    return out


# An argument without spaces that has a path separator or one of these endings is a file
# name: read when it exists, an error when it does not (never translated as a sentence).
TEXT_FILE_ENDINGS = (".txt", ".text", ".tsv", ".csv", ".md")


def looks_like_path(item: str) -> bool:
    return not any(c.isspace() for c in item) and (
        "/" in item or os.sep in item or item.lower().endswith(TEXT_FILE_ENDINGS)
    )


def read_sentences(inputs: list[str]) -> list[str]:
    """Sentences typed on the command line; an input that names a text file gives its
    lines (see TEXT_FILE_ENDINGS), and one that names a missing file or a folder is an
    error rather than a sentence."""
    sentences = []
    for item in inputs:
        path = Path(item)
        if not (looks_like_path(item) or (item.lower().endswith(".txt") and path.is_file())):
            sentences.append(item)
            continue
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise UserError(
                f"{item} {what}; give a UTF-8 text file (one sentence a line) or type the "
                "sentence itself, with its spaces, in quotes"
            )
        data = path.read_bytes()
        try:
            if b"\0" in data:  # UTF-16 text, or not text at all
                raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
            lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise UserError(
                f"{item} is not UTF-8 text; save it as UTF-8, one sentence a line"
            ) from None
        sentences += [line.strip() for line in lines if line.strip()]
    if not sentences:
        raise UserError(
            "no sentence to translate: give sentences, or a .txt file with one sentence a line"
        )
    return sentences


class TranslationApp(App):
    name = "translation"
    description = (
        "Translation: Transformer or RNN+attention seq2seq, WordPiece, beam search, BLEU/chrF"
    )
    presets = cfg_lib.PRESETS
    predict_inputs = "sentences (or a .txt file, one a line)"
    # BLEU points (0-100): an int8 decoder step that falls from 100 to 6 is flagged
    parity_tolerance = {"metric": "bleu", "max_drop": 5.0, "relative": False}

    def datasets(self, *, cfg, artifacts):
        return build_datasets(cfg, artifacts)

    def build_state(self, *, cfg, info):
        model = build_translator(cfg.model, info)
        steps = cfg.train.epochs * info.get(
            "steps_per_epoch", info["num_train"] // cfg.train.batch_size
        )
        return TrainState(
            models={"model": model}, optimizers={"model": make_optimizer(cfg.train, steps)}
        )

    # ---- steps (per replica) ------------------------------------------------------------
    @staticmethod
    def _token_losses(model, batch, training, label_smoothing):
        source, target = batch
        target_in, target_out = target[:, :-1], target[:, 1:]
        logits = model({"source": source, "target_in": target_in}, training=training)
        labels = tf.one_hot(target_out, tf.shape(logits)[-1], dtype=logits.dtype)
        per_token = keras.losses.categorical_crossentropy(
            labels, logits, from_logits=True, label_smoothing=label_smoothing
        )
        weights = tf.cast(target_out != PAD_ID, tf.float32)
        correct = tf.cast(
            tf.equal(tf.argmax(logits, -1, output_type=tf.int32), target_out), tf.float32
        )
        return per_token, correct, weights

    def train_step(self, state, batch, step):
        model, optimizer = state.model, state.optimizers["model"]
        with tf.GradientTape() as tape:
            per_token, correct, weights = self._token_losses(
                model, batch, True, step.cfg.model.label_smoothing
            )
            loss = replica_weighted_mean(
                per_token, weights
            )  # over real target tokens of all replicas
        apply_gradients(tape, loss, model.trainable_variables, optimizer, step.cfg.train.clip_norm)
        return {"loss": loss, "token_accuracy": replica_weighted_mean(correct, weights)}

    def test_step(self, state, batch, step):
        per_token, correct, weights = self._token_losses(state.model, batch, False, 0.0)
        return {
            "loss": tf.reduce_sum(per_token * weights),
            "token_accuracy": tf.reduce_sum(correct * weights),
            "count": tf.reduce_sum(weights),
        }

    # ---- evaluation ---------------------------------------------------------------------
    def evaluate(self, *, state, data, cfg, run_dir):
        run_dir = Path(run_dir)
        translator = make_translator(state.model, cfg, data.info, data.artifacts)
        sources = [p[0] for p in data.extras["test"]]
        references = [p[1] for p in data.extras["test"]]
        greedy = tf.function(translator.greedy)
        hypotheses = translate_all(greedy, sources)
        # every test pair is scored (data.py: long sources cut, no reference dropped), and
        # sacrebleu's signature stands next to the scores it reproduces
        scored = translation_metrics(hypotheses, references)
        signatures = sacrebleu_signatures(hypotheses, references, scored["bleu"], scored["chrf"])
        metrics = {
            "bleu": scored["bleu"],
            "bleu_signature": signatures["bleu_signature"],
            "chrf": scored["chrf"],
            "chrf_signature": signatures["chrf_signature"],
            **scored,
        }
        rows = {"greedy": hypotheses}
        if cfg.decode.evaluate_beam and cfg.decode.beam_width > 1:
            width = tf.constant([cfg.decode.beam_width], tf.int32)
            beam = tf.function(lambda s: translator.beam(s, width))
            rows["beam"] = translate_all(beam, sources)
            scored = translation_metrics(rows["beam"], references)
            metrics.update(
                {
                    f"beam{cfg.decode.beam_width}_{k}": scored[k]
                    for k in ("bleu", "chrf", "exact_match")
                }
            )
        if data.val is not None and data.extras.get("val"):
            val = data.extras["val"][:500]
            metrics["val_bleu"] = translation_metrics(
                translate_all(greedy, [p[0] for p in val]), [p[1] for p in val]
            )["bleu"]
        metrics["skipped_lines"] = int(
            sum(r["count"] for r in data.info.get("skipped", {}).values())
        )
        with open(run_dir / "test_translations.tsv", "w", encoding="utf-8") as f:
            f.write("source\treference\t" + "\t".join(rows) + "\n")
            for i, (s, r) in enumerate(zip(sources, references)):
                f.write("\t".join([s, r] + [rows[k][i] for k in rows]) + "\n")
        # the longest of the first test sentences: a one-word source makes an empty picture
        count = max(cfg.decode.heatmap_sentences, 0)
        shown = sorted(sources[:40], key=lambda s: len(s.split()))[len(sources[:40]) - count :]
        plot_attention(
            state.model, translator, shown, data.artifacts, run_dir / "plots" / "attention.png"
        )
        log.info(
            "test: BLEU %.2f, chrF %.2f, exact match %.2f%% (greedy, %d sentences)",
            metrics["bleu"],
            metrics["chrf"],
            100 * metrics["exact_match"],
            len(references),
        )
        return metrics

    # ---- serving ------------------------------------------------------------------------
    def export_archive(self, *, state, info, cfg, artifacts):
        """serving_default: sentences [N] string -> translations [N] string (greedy).
        translate_beam: sentences [N] string, beam_width [N] int32 -> translations, scores."""
        translator = make_translator(state.model, cfg, info, artifacts)
        return export.serving_archive(state.model, translator)

    def sample_requests(self, *, data, info, cfg):
        sentences = np.array([p[0] for p in data.extras["test"][:2]], dtype=object)
        width = np.full([len(sentences)], max(cfg.decode.beam_width, 1), np.int32)
        return {
            "serving_default": [{"sentences": sentences}],
            "translate_beam": [{"sentences": sentences, "beam_width": width}],
        }

    def predict_request(self, *, inputs, info, cfg):
        return "serving_default", {"sentences": np.array(read_sentences(inputs), dtype=object)}

    def render_predictions(self, *, inputs, outputs, info, out_dir):
        sentences = read_sentences(inputs)
        translations = [
            t.decode("utf-8") if isinstance(t, bytes) else str(t)
            for t in np.asarray(outputs["translations"]).reshape(-1)
        ]
        path = Path(out_dir) / "translations.tsv"
        path.write_text(
            "".join(f"{s}\t{t}\n" for s, t in zip(sentences, translations)), encoding="utf-8"
        )
        for s, t in zip(sentences, translations):
            print(f"{s}\n  -> {t}")
        return [str(path)]

    def predict_examples(self, *, data, info, cfg, out_dir):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        test = [p[0] for p in data.extras["test"]]
        path = out_dir / "sentences.txt"
        path.write_text("".join(f"{s}\n" for s in test[2:4]), encoding="utf-8")
        return test[:2] + [str(path)]

    # ---- TFLite -------------------------------------------------------------------------
    def tflite_targets(self, *, state, data, cfg, workdir):
        from keras_suite.apps.translation.export import write_tflite_targets

        targets = write_tflite_targets(state.model, data, cfg, workdir)
        data.extras["tflite_targets"] = {
            t.name: t for t in targets
        }  # the step target runs with the encoder
        return targets

    def tflite_evaluate(self, *, run_signature, data, cfg, info, target):
        from keras_suite.apps.translation.export import tflite_translate

        name = target.name
        targets = data.extras.get("tflite_targets", {})
        if name not in targets:
            raise UserError(f"unknown TFLite target {name!r}; convert the run again")
        sentences = data.extras["test"][: cfg.decode.tflite_sentences]
        ids = data.extras["arrays"]["test"][0][: len(sentences)]
        vocab = data.artifacts.read_text(TARGET_VOCAB).splitlines()
        hypotheses = tflite_translate(run_signature, targets[name], targets, ids, vocab)
        m = translation_metrics(hypotheses, [p[1] for p in sentences])
        return {"bleu": m["bleu"], "chrf": m["chrf"], "exact_match": m["exact_match"]}

    # ---- TensorBoard ---------------------------------------------------------------------
    def _tensorboard_translate(self, state, data, cfg):
        """(three validation pairs, a compiled sentences -> (source ids, output ids,
        attention, translations)): built once per run, so one trace serves every epoch."""
        from keras_suite.apps.translation.tokenizer import START_ID
        from keras_suite.common import cache

        model = state.model

        def build():
            translator = make_translator(model, cfg, data.info, data.artifacts)

            @tf.function
            def translate(sentences):
                source = translator.source_ids(sentences)
                output = greedy_decode(model, source, translator.max_steps)
                start = tf.fill([tf.shape(output)[0], 1], START_ID)
                weights, _ = model.attention_weights(source, tf.concat([start, output], 1)[:, :-1])
                return source, output, weights, translator.target_tokenizer.detokenize(output)

            # the longest of the first validation sentences: one word makes an empty picture
            pairs = sorted(data.extras.get("val", [])[:20], key=lambda p: len(p[0].split()))
            return pairs[-3:], translate

        return cache.last_value("translation.tensorboard", model, build)

    def tensorboard_images(self, *, state, data, cfg):
        """Attention of three validation sentences (last decoder layer, mean over heads):
        one row per output piece, one column per source piece, brighter = more weight."""
        from keras_suite.common.tensorboard import heatmap, same_size

        pairs, translate = self._tensorboard_translate(state, data, cfg)
        if not pairs:
            return {}
        source, output, weights, _ = translate(tf.constant([p[0] for p in pairs]))
        pictures = []
        for src, out, w in zip(source.numpy(), output.numpy(), weights.numpy()):
            n_src = max(int((src != PAD_ID).sum()), 1)
            stop = list(out).index(END_ID) + 1 if END_ID in out else len(out)
            pictures.append(heatmap(w[:stop, :n_src]))
        return {"val/attention": same_size(pictures)}

    def tensorboard_text(self, *, state, data, cfg):
        """The same three validation sentences: source, reference, greedy translation."""
        pairs, translate = self._tensorboard_translate(state, data, cfg)
        if not pairs:
            return {}
        texts = translate(tf.constant([p[0] for p in pairs]))[3].numpy()
        cell = lambda text: text.replace("|", "\\|")  # noqa: E731  (a table cell)
        rows = ["| source | reference | translation |", "|---|---|---|"]
        for (source, reference), text in zip(pairs, texts):
            rows.append(f"| {cell(source)} | {cell(reference)} | {cell(text.decode())} |")
        return {"val/translations": "\n".join(rows)}


def plot_attention(model, translator, sentences, artifacts, path):
    """Heat map of attention (source pieces x output pieces) for a few test sentences."""
    if not sentences:
        return None
    from keras_suite.apps.translation.data import SOURCE_VOCAB
    from keras_suite.common.plots import _pyplot, save_figure

    source_vocab = artifacts.read_text(SOURCE_VOCAB).splitlines()
    target_vocab = artifacts.read_text(TARGET_VOCAB).splitlines()
    source = translator.source_ids(tf.constant(sentences))
    output = greedy_decode(model, source, translator.max_steps).numpy()
    start = np.full([len(sentences), 1], 2, np.int32)  # START, then the decoded pieces
    weights, _ = model.attention_weights(
        source, tf.constant(np.concatenate([start, output], 1)[:, :-1])
    )
    weights = weights.numpy()
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(sentences), figsize=(5.5 * len(sentences), 5), squeeze=False)
    for ax, src, out, w in zip(axes[0], source.numpy(), output, weights):
        n_src = max(int((src != PAD_ID).sum()), 1)
        stop = list(out).index(END_ID) + 1 if END_ID in out else len(out)
        ax.imshow(w[:stop, :n_src], cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(n_src), [source_vocab[i] for i in src[:n_src]], rotation=70, fontsize=8)
        ax.set_yticks(range(stop), [target_vocab[i] for i in out[:stop]], fontsize=8)
        ax.set_xlabel("source pieces")
        ax.set_ylabel("output pieces")
    fig.suptitle(
        "Cross-attention (last decoder layer, mean over heads)"
        if hasattr(model, "decoder_layers")
        else "Attention weights"
    )
    return save_figure(fig, path, dpi=90)

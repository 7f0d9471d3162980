"""TFLite targets: the encoder and ONE decoder step, at batch 1 and fixed shapes, with the
cache as explicit inputs and outputs (docs/design.md §8: a decoding loop does not convert;
the loop runs outside, here in Python, on a phone in the app's own code).

    encoder       source_ids [1, S] int32 -> the memory: Transformer: cross_cache
                  [1, L, 2, S, H, D] (keys/values of the source for every decoder layer)
                  and source_mask [1, S]; RNN: encoded, keys, source_mask, state_i
    decoder_step  token [1] int32, index [1] int32, the cache (Transformer: self_cache
                  [1, L, 2, T, H, D]; RNN: state_i) and the memory the step reads
                  -> logits [1, V] and the updated cache

The parity report scores each target with BLEU by translating test sentences with a
greedy loop in Python (`tflite_translate`): the target being measured runs through the
converter's `run_signature` (the SavedModel reference, then each .tflite file), and the
other half runs from its float SavedModel. So the encoder row shows what quantizing the
encoder costs, and the decoder_step row what quantizing the step costs, each alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.apps.translation.tokenizer import END_ID, PAD_ID, START_ID, detokenize_python
from keras_suite.common.app import TFLiteTarget

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def serving_archive(model, translator) -> keras.export.ExportArchive:
    """serving_default: sentences [N] string -> translations [N] string (greedy).
    translate_beam: sentences [N] string, beam_width [N] int32 -> translations, scores.
    Tokenization is in graph (the tokenizers' lookup tables and vocabularies are tracked,
    so TF Serving copies them as assets)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(translator.source_tokenizer)
    archive.track(translator.target_tokenizer)
    archive.add_endpoint(
        "serving_default",
        tf.function(translator.greedy),
        input_signature=[tf.TensorSpec([None], tf.string, name="sentences")],
    )
    archive.add_endpoint(
        "translate_beam",
        tf.function(translator.beam),
        input_signature=[
            tf.TensorSpec([None], tf.string, name="sentences"),
            tf.TensorSpec([None], tf.int32, name="beam_width"),
        ],
    )
    return archive


def _spec(value, name):
    return tf.TensorSpec(value.shape, value.dtype, name=name)


def calibration_sources(data) -> np.ndarray:
    """Source ids [N, S] that calibrate int8: the validation split's, or the first 64
    training sources when there is none; never the test split the parity report scores."""
    val = data.extras["arrays"]["val"][0]
    return val if len(val) else data.extras["arrays"]["train"][0][:64]


def write_tflite_targets(model, data, cfg, workdir) -> list[TFLiteTarget]:
    if cfg.model.arch == "rnn":  # the same weights in an unrolled encoder (no while loop)
        from keras_suite.apps.translation.model import build_translator

        twin = build_translator(cfg.model, data.info, unroll=True)
        twin.set_weights(model.get_weights())
        model = twin
    source_len = int(data.info["max_source_tokens"])
    max_steps = int(data.info["max_target_tokens"]) + 1
    example = tf.zeros([1, source_len], tf.int32)
    memory = model.encode(example)
    cache = model.initial_cache(memory)
    step_keys = model.step_memory_keys()
    cache_keys = sorted(cache)

    encoder_archive = keras.export.ExportArchive()
    encoder_archive.track(model)
    encoder_archive.add_endpoint(
        "serving_default",
        tf.function(lambda source_ids: model.encode(source_ids)),
        input_signature=[tf.TensorSpec([1, source_len], tf.int32, name="source_ids")],
    )
    encoder_dir = str(Path(workdir) / "translation_encoder")
    encoder_archive.write_out(encoder_dir, verbose=False)

    def step(token, index, *tensors):
        state = dict(zip(cache_keys, tensors[: len(cache_keys)]))
        mem = dict(zip(step_keys, tensors[len(cache_keys) :]))
        logits, new_cache = model.decode_step(token, index[0], state, mem)
        return {"logits": logits, **new_cache}

    signature = (
        [tf.TensorSpec([1], tf.int32, name="token"), tf.TensorSpec([1], tf.int32, name="index")]
        + [_spec(cache[k], k) for k in cache_keys]
        + [_spec(memory[k], k) for k in step_keys]
    )
    step_archive = keras.export.ExportArchive()
    step_archive.track(model)
    step_archive.add_endpoint("serving_default", tf.function(step), input_signature=signature)
    step_dir = str(Path(workdir) / "translation_decoder_step")
    step_archive.write_out(step_dir, verbose=False)

    calibration = calibration_sources(data)
    init = {
        k: np.zeros(cache[k].shape, cache[k].dtype.as_numpy_dtype)
        for k in cache_keys
        if k not in memory
    }

    def encoder_samples():
        for row in calibration:
            yield {"source_ids": row[None].astype(np.int32)}

    def step_samples():
        """Feeds of real greedy decoding steps (the Keras model), a few per sentence."""
        for row in calibration:
            mem = {k: v.numpy() for k, v in model.encode(tf.constant(row[None])).items()}
            state = {k: (mem[k] if k in mem else init[k]) for k in cache_keys}
            token = np.array([START_ID], np.int32)
            for i in range(max_steps):
                feeds = {
                    "token": token,
                    "index": np.array([i], np.int32),
                    **state,
                    **{k: mem[k] for k in step_keys},
                }
                yield feeds
                out = step(*[tf.constant(feeds[s.name]) for s in signature])
                token = np.array([int(np.argmax(out["logits"].numpy()[0]))], np.int32)
                state = {k: out[k].numpy() for k in cache_keys}
                if token[0] == END_ID:
                    break

    extras = {
        "source_length": source_len,
        "max_steps": max_steps,
        "cache_keys": cache_keys,
        "step_memory_keys": list(step_keys),
        "zero_cache": {k: list(v.shape) for k, v in init.items()},
        "encoder_dir": encoder_dir,
        "decoder_step_dir": step_dir,
    }
    calibrated_on = "val" if len(data.extras["arrays"]["val"][0]) else "train (no val split)"
    splits = {
        "calibration_split": f"{calibrated_on} ({len(calibration)} sentences; the step: their "
        "greedy decoding steps)",
        "evaluation_split": f"test (the first {min(cfg.decode.tflite_sentences, len(data.extras['test']))} "
        "sentences, greedy)",
    }
    return [
        TFLiteTarget(
            name="encoder",
            saved_model_dir=encoder_dir,
            representative_data=encoder_samples,
            extras=extras,
            **splits,
        ),
        TFLiteTarget(
            name="decoder_step",
            saved_model_dir=step_dir,
            representative_data=step_samples,
            extras=extras,
            **splits,
        ),
    ]


def _saved_signature(path):
    fn = tf.saved_model.load(path).signatures["serving_default"]
    return lambda feeds: {
        k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in feeds.items()}).items()
    }


def tflite_translate(
    run_signature, target: TFLiteTarget, targets: dict, source_ids: np.ndarray, vocab: list[str]
) -> list[str]:
    """Greedy translation of each row of source_ids [N, S] with batch-1 calls: the
    target being evaluated through run_signature, the other half from its SavedModel."""
    x = target.extras
    if target.name == "encoder":
        encode, step = run_signature, _saved_signature(x["decoder_step_dir"])
    else:
        encode, step = _saved_signature(x["encoder_dir"]), run_signature
    return greedy_loop(encode, step, x, source_ids, vocab)


def greedy_loop(encode, step, meta: dict, source_ids: np.ndarray, vocab: list[str]) -> list[str]:
    """The reference decoding loop around an encoder and a decoder step called one
    sentence at a time (what an app on a device runs around the two .tflite files).
    meta: max_steps, cache_keys, step_memory_keys, zero_cache {name: shape}."""
    out = []
    for row in source_ids:
        memory = encode({"source_ids": row[None].astype(np.int32)})
        state = {
            k: (memory[k] if k in memory else np.zeros(meta["zero_cache"][k], np.float32))
            for k in meta["cache_keys"]
        }
        token, pieces = START_ID, []
        for i in range(meta["max_steps"]):
            result = step(
                {
                    "token": np.array([token], np.int32),
                    "index": np.array([i], np.int32),
                    **state,
                    **{k: memory[k] for k in meta["step_memory_keys"]},
                }
            )
            logits = np.asarray(result["logits"], np.float32).reshape(-1).copy()
            logits[[PAD_ID, START_ID]] = -np.inf  # as the in-graph decoder does
            token = int(np.argmax(logits))
            pieces.append(token)
            state = {k: np.asarray(result[k]) for k in meta["cache_keys"]}
            if token == END_ID:
                break
        out.append(detokenize_python(pieces, vocab))
    return out


def tflite_files_translate(
    encoder_path,
    step_path,
    source_ids: np.ndarray,
    vocab: list[str],
    max_steps: int,
    num_threads: int = 2,
) -> list[str]:
    """Translate with the two .tflite files alone (`ksuite translate-tflite`); the loop's
    metadata is read from the step model's own inputs and outputs."""
    from keras_suite.tflite.runtime import LiteRTSignature

    encode = LiteRTSignature(str(encoder_path), num_threads=num_threads)
    step = LiteRTSignature(str(step_path), num_threads=num_threads)
    cache_keys = sorted(k for k in step.outputs if k != "logits")
    meta = {
        "max_steps": max_steps,
        "cache_keys": cache_keys,
        "step_memory_keys": sorted(
            k for k in step.inputs if k not in ("token", "index", *cache_keys)
        ),
        "zero_cache": {k: [int(d) for d in step.inputs[k]["shape"]] for k in cache_keys},
    }
    return greedy_loop(encode, step, meta, source_ids, vocab)

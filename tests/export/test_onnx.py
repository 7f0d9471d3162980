"""`ksuite export RUN_DIR --format onnx`: onnxruntime gives the SavedModel's outputs, and
what ONNX cannot express is one line naming the op, with the pure-tensor graphs offered."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tf2onnx")
ort = pytest.importorskip("onnxruntime")

from keras_suite.export import onnx as onnx_lib  # noqa: E402


def converted(report: dict) -> dict:
    entries = {**report["signatures"], **(report.get("pure_tensor") or {})}
    return {name: e for name, e in entries.items() if "file" in e}


def refused(report: dict) -> dict:
    entries = {**report["signatures"], **(report.get("pure_tensor") or {})}
    return {name: e["not_expressible"] for name, e in entries.items() if "file" not in e}


def test_classification_matches_the_savedmodel_and_keras(smoke_classification_run, tmp_path):
    from keras_suite.common.run import load_run

    report = onnx_lib.export_onnx(smoke_classification_run, tmp_path / "onnx")
    entry = report["signatures"]["serving_default"]
    assert entry["parity"]["agrees"] and entry["parity"]["requests"] >= 1
    assert entry["parity"]["outputs"]["probabilities"]["max_abs_diff"] < 1e-4
    assert report["signatures"]["serve_bytes"]["not_expressible"].startswith("DecodeImage")
    assert json.loads((tmp_path / "onnx" / "onnx_report.json").read_text()) == report
    # independently of the SavedModel: onnxruntime against the Keras model itself
    session = ort.InferenceSession(str(tmp_path / "onnx" / "serving_default.onnx"))
    images = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    got = onnx_lib.run_session(session, {"images": images})
    model = load_run(smoke_classification_run).state.model
    logits = np.asarray(model(images, training=False), np.float64)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(got["probabilities"], expected, atol=1e-5)
    names = json.loads((smoke_classification_run / "info.json").read_text())["class_names"]
    assert [n.decode() if isinstance(n, bytes) else n for n in got["class_names"]] == [
        names[i] for i in expected.argmax(1)
    ]


def test_cli_prints_one_line_per_signature(smoke_classification_run, tmp_path, capsys):
    from keras_suite.cli import main

    out = tmp_path / "cli"
    assert (
        main(["export", str(smoke_classification_run), "--format", "onnx", "--out", str(out)]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("serving_default: ") and "matches the SavedModel" in line for line in lines
    )
    assert "serve_bytes: not expressible in ONNX: DecodeImage (image decoding)" in "\n".join(lines)
    assert main(["export", str(smoke_classification_run)]) == 2  # savedmodel needs --base


def test_string_ops_are_named_before_converting():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def lower(text):
        return {"text": tf.strings.regex_replace(text, "A", "a")}

    reason = onnx_lib.inexpressible(lower.get_concrete_function())
    assert reason == "StaticRegexReplace (regular expressions)"


def test_compare_needs_every_output_close():
    ref = {"p": np.array([[0.5, 0.5]], np.float32), "ids": np.array([1]), "n": np.array([b"a"])}
    same = onnx_lib.compare(ref, {"p": ref["p"] + 1e-6, "ids": np.array([1]), "n": np.array(["a"])})
    assert all(row["agrees"] for row in same.values())
    off = onnx_lib.compare(ref, {"p": ref["p"] + 1e-2, "ids": np.array([0]), "n": np.array(["b"])})
    assert not any(row["agrees"] for row in off.values())


# Tiny runs: parity needs a run's graphs, not a good model (one short epoch each).
TINY = {
    "detection": [
        "data.train_images=16",
        "data.test_images=8",
        "train.batch_size=8",
        "data.mosaic=0",
    ],
    "segmentation": [
        "data.num_train=32",
        "data.num_val=8",
        "data.num_test=8",
        "train.batch_size=8",
    ],
    "gan": ["data.num_train=64", "data.num_test=32", "train.batch_size=16"],
    "vae": ["data.num_train=64", "data.num_val=16", "data.num_test=16", "train.batch_size=16"],
    "translation": ["data.num_train=200", "data.num_val=16", "data.num_test=16"],
    "textgen": ["data.max_chars=20000"],
}


@pytest.mark.slow
@pytest.mark.parametrize("app_name", sorted(TINY))
def test_onnx_matches_the_savedmodel(app_name, tmp_path):
    from keras_suite.common.run import train_run

    run_dir = tmp_path / app_name
    train_run(
        app_name,
        "smoke",
        overrides=["train.epochs=1", "train.steps_per_epoch=2", *TINY[app_name]],
        run_dir=run_dir,
        strategy_name="default",
        evaluate=False,
    )
    report = onnx_lib.export_onnx(run_dir)
    done = converted(report)
    assert done, f"nothing converted: {refused(report)}"
    for name, entry in done.items():
        parity = entry["parity"]
        assert parity["requests"] >= 1 and parity["agrees"], (name, parity)
        assert (run_dir / "onnx" / entry["file"]).is_file()
    for name, reason in refused(report).items():
        assert "\n" not in reason and reason.split()[0][0].isupper(), (name, reason)
    if app_name == "translation":  # strings in, strings out: the encoder / decoder step instead
        assert report["signatures"]["serving_default"]["not_expressible"].startswith(
            "StaticRegexReplace"
        )
        assert {"encoder", "decoder_step"} <= set(done)
    if app_name == "textgen":  # prompts are strings: the GPT's decode step instead
        assert report["signatures"]["generate"]["not_expressible"].startswith("UnicodeEncode")
        assert "decode_step" in done

"""The VAE smoke run end to end: metrics and PNGs, IWAE on the trained model, serving
signatures, TFLite halves, predict and `ksuite sample`."""

import json
import math

import numpy as np
import pytest

from keras_suite import common
from keras_suite.apps.vae import APP
from keras_suite.apps.vae import evaluate as eval_lib
from keras_suite.apps.vae.data import split_images
from keras_suite.common.errors import UserError

tf = common.quiet_import_tensorflow()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from keras_suite.common.run import train_run

    d = tmp_path_factory.mktemp("runs") / "vae-smoke"
    # a 2-D latent, so the manifold grid is drawn too
    train_run("vae", "smoke", overrides=["model.latent_dim=2"], run_dir=d, strategy_name="default")
    return d


@pytest.fixture(scope="module")
def loaded(run_dir):
    from keras_suite.common.run import load_run

    run = load_run(run_dir)
    return run, run.datasets()


@pytest.fixture(scope="module")
def model(loaded):
    run, _ = loaded
    return eval_lib.Model(
        run.state.models["encoder"], run.state.models["decoder"], run.cfg.model.likelihood
    )


def _png_size(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.size


def test_metrics_and_pictures(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    assert list(m)[0] == "neg_elbo" and m["iwae_k"] == 100 and m["latent_dim"] == 2
    assert m["neg_iwae"] <= m["neg_elbo_on_iwae_examples"]  # the IWAE bound is the tighter one
    assert m["bits_per_dim"] == pytest.approx(m["neg_elbo"] / (16 * 16 * math.log(2)), rel=1e-6)
    assert m["neg_elbo"] == pytest.approx(m["recon"] + m["kl"], rel=1e-5)
    assert 0 <= m["active_units"] <= 2 and len(m["posterior_mean_variance"]) == 2
    assert 0 < m["neg_elbo"] < 256 * math.log(2)  # better than a coin per pixel after training
    plots = run_dir / "plots"
    for name in ("reconstructions", "samples", "traversals", "manifold", "training_curves"):
        assert (plots / f"{name}.png").stat().st_size > 500, name
    # 15 x 15 manifold of 16 px images with 2 px gaps, enlarged 4x
    assert _png_size(plots / "manifold.png") == (4 * (15 * 18 + 2),) * 2


def test_iwae_on_the_trained_model_grows_with_k_and_k1_is_the_elbo(model, loaded):
    images = split_images(loaded[1])
    elbo_draws = [
        -(lambda s: s["recon"] + s["kl"])(eval_lib.score(model, images, seed)) for seed in range(20)
    ]
    k1_draws = [eval_lib.iwae(model, images, 1, 1, seed) for seed in range(20)]
    elbo, k1 = np.stack(elbo_draws).mean(1), np.stack(k1_draws).mean(1)  # per-seed dataset means
    se = math.sqrt(elbo.var() / len(elbo) + k1.var() / len(k1))
    assert abs(elbo.mean() - k1.mean()) < 4 * se + 0.05
    by_k = {k: eval_lib.iwae(model, images, k, 50, 0).mean() for k in (10, 100)}
    assert k1.mean() < by_k[10] < by_k[100]


def test_serving_signatures(loaded, model, tmp_path):
    run, data = loaded
    archive = APP.export_archive(
        state=run.state, info=run.info, cfg=run.cfg, artifacts=run.artifacts
    )
    archive.write_out(str(tmp_path / "sm"), verbose=False)
    sigs = tf.saved_model.load(str(tmp_path / "sm")).signatures
    assert {"serving_default", "reconstruct", "encode", "decode", "sample"} <= set(sigs)
    images = tf.constant(split_images(data, 4))
    enc = sigs["encode"](images=images)
    assert enc["mean"].shape == (4, 2) and enc["log_variance"].shape == (4, 2)
    rec = sigs["reconstruct"](images=images)["images"].numpy()
    np.testing.assert_allclose(sigs["serving_default"](images=images)["images"].numpy(), rec)
    np.testing.assert_allclose(
        sigs["decode"](latents=enc["mean"])["images"].numpy(), rec, atol=1e-4
    )
    np.testing.assert_allclose(rec, model.reconstruct(images.numpy()), atol=1e-3)
    a = sigs["sample"](seed=tf.constant(3, tf.int64), n=tf.constant(5, tf.int32))
    b = sigs["sample"](seed=tf.constant(3, tf.int64), n=tf.constant(5, tf.int32))
    c = sigs["sample"](seed=tf.constant(4, tf.int64), n=tf.constant(5, tf.int32))
    assert a["images"].shape == (5, 16, 16, 1) and a["latents"].shape == (5, 2)
    np.testing.assert_array_equal(a["images"].numpy(), b["images"].numpy())
    assert not np.allclose(a["latents"].numpy(), c["latents"].numpy())
    assert 0.0 <= float(tf.reduce_min(a["images"])) and float(tf.reduce_max(a["images"])) <= 255.0
    np.testing.assert_allclose(a["images"].numpy(), model.images(a["latents"].numpy()), atol=1e-3)


def test_tflite_halves_score_the_elbo_like_keras(loaded, tmp_path):
    from keras_suite.tflite.convert import convert
    from keras_suite.tflite.runtime import LiteRTSignature

    run, data = loaded
    targets = APP.tflite_targets(state=run.state, data=data, cfg=run.cfg, workdir=str(tmp_path))
    assert [t.name for t in targets] == ["encoder", "decoder"]
    keras_scores = {}
    for target in targets:
        reference = tf.saved_model.load(target.saved_model_dir).signatures[target.signature]
        as_keras = lambda feeds, f=reference: {
            k: v.numpy() for k, v in f(**{n: tf.constant(a) for n, a in feeds.items()}).items()
        }  # noqa: E731
        keras_scores[target.name] = APP.tflite_evaluate(
            run_signature=as_keras, data=data, cfg=run.cfg, info=run.info, target=target
        )
        lite = LiteRTSignature(
            convert(target.saved_model_dir, target.signature, "float32").model, target.signature
        )
        got = APP.tflite_evaluate(
            run_signature=lite, data=data, cfg=run.cfg, info=run.info, target=target
        )
        assert got["neg_elbo"] == pytest.approx(keras_scores[target.name]["neg_elbo"], abs=1e-2)
        assert got["max_pixel_diff"] < 0.05 and got["num_examples"] == run.cfg.eval.tflite_examples
    # both halves Keras: the pairing gives the same ELBO whichever half is "converted"
    assert keras_scores["encoder"]["neg_elbo"] == pytest.approx(
        keras_scores["decoder"]["neg_elbo"], rel=1e-5
    )
    assert keras_scores["encoder"]["max_pixel_diff"] == 0.0


def test_predict_renders_side_by_side_and_refuses_bad_files(loaded, tmp_path):
    run, data = loaded
    paths = APP.predict_examples(data=data, info=run.info, cfg=run.cfg, out_dir=tmp_path / "in")
    signature, inputs = APP.predict_request(inputs=paths, info=run.info, cfg=run.cfg)
    assert signature == "reconstruct"
    np.testing.assert_array_equal(
        inputs["images"], split_images(data, 3)
    )  # PNG round trip is exact
    outputs = {"images": np.zeros_like(inputs["images"])}
    written = APP.render_predictions(
        inputs=paths, outputs=outputs, info=run.info, out_dir=tmp_path / "out"
    )
    assert len(written) == 3 and _png_size(written[0]) == (8 * (2 * 18 + 2), 8 * (16 + 4))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="bad.png is not a readable image"):
        APP.predict_request(inputs=[str(tmp_path / "bad.png")], info=run.info, cfg=run.cfg)


def test_sample_command_writes_a_grid(run_dir, tmp_path):
    from keras_suite.cli import main

    out = tmp_path / "grid.png"
    assert main(["sample", str(run_dir), "--n", "9", "--seed", "2", "--out", str(out)]) == 0
    assert _png_size(out) == (4 * (3 * 18 + 2),) * 2
    assert main(["sample", str(run_dir), "--n", "0"]) != 0  # a UserError: one line, non-zero exit


# ---- VQ-VAE: the same pipeline with a discrete latent grid ------------------------------


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory):
    from keras_suite.common.run import load_run, train_run

    d = tmp_path_factory.mktemp("runs") / "vqvae-smoke"
    train_run(
        "vae",
        "smoke",
        overrides=["model.kind=vqvae", "model.codebook_size=16"],
        run_dir=d,
        strategy_name="default",
    )
    run = load_run(d)
    return d, run, run.datasets()


def test_vqvae_metrics_signatures_and_tflite(vq_run, tmp_path):
    from keras_suite.tflite.convert import convert
    from keras_suite.tflite.runtime import LiteRTSignature

    run_dir, run, data = vq_run
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["kl"] == pytest.approx(16 * math.log(16)) and m["latent_grid"] == [4, 4]
    assert m["neg_elbo"] == pytest.approx(m["recon"] + m["kl"], rel=1e-6)
    assert 1 <= m["codebook_perplexity"] <= m["codes_used"] <= 16
    assert (run_dir / "plots" / "samples_uniform_prior.png").exists()
    archive = APP.export_archive(
        state=run.state, info=run.info, cfg=run.cfg, artifacts=run.artifacts
    )
    archive.write_out(str(tmp_path / "sm"), verbose=False)
    sigs = tf.saved_model.load(str(tmp_path / "sm")).signatures
    images = tf.constant(split_images(data, 3))
    enc = sigs["encode"](images=images)
    assert enc["codes"].shape == (3, 4, 4) and enc["codes"].dtype == tf.int32
    np.testing.assert_allclose(
        sigs["decode"](codes=enc["codes"])["images"].numpy(),
        sigs["reconstruct"](images=images)["images"].numpy(),
        atol=1e-4,
    )
    s = sigs["sample"](seed=tf.constant(1, tf.int64), n=tf.constant(2, tf.int32))
    assert s["images"].shape == (2, 16, 16, 1) and int(tf.reduce_max(s["codes"])) < 16
    for target in APP.tflite_targets(
        state=run.state, data=data, cfg=run.cfg, workdir=str(tmp_path)
    ):
        lite = LiteRTSignature(
            convert(target.saved_model_dir, target.signature, "float32").model, target.signature
        )
        got = APP.tflite_evaluate(
            run_signature=lite, data=data, cfg=run.cfg, info=run.info, target=target
        )
        assert got["max_pixel_diff"] < 0.05 and got.get("code_agreement", 1.0) == 1.0

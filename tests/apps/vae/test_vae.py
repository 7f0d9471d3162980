"""VAE pieces against references: likelihoods (scipy), the KL, the IWAE bound on a model
whose log-likelihood is known exactly, active units, the training objective, data."""

import math

import numpy as np
import pytest

from keras_suite import common
from keras_suite.apps.vae import APP, losses
from keras_suite.apps.vae.evaluate import active_units
from keras_suite.common import config
from keras_suite.common.errors import UserError

tf = common.quiet_import_tensorflow()

# float64 references written from the definitions (no scipy in the project's environment)
_erfc = np.frompyfunc(math.erfc, 1, 1)


class _Logistic:
    cdf = staticmethod(lambda t, loc, s: 1.0 / (1.0 + np.exp(-(t - loc) / s)))
    sf = staticmethod(lambda t, loc, s: 1.0 / (1.0 + np.exp((t - loc) / s)))


class _Normal:
    cdf = staticmethod(
        lambda t, loc, s: 0.5 * _erfc(-(t - loc) / (s * math.sqrt(2))).astype(np.float64)
    )
    sf = staticmethod(
        lambda t, loc, s: 0.5 * _erfc((t - loc) / (s * math.sqrt(2))).astype(np.float64)
    )


def _norm_logpdf(z, mean=0.0, std=1.0):
    return -0.5 * ((z - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)


def _log_ndtr_reference(a: float) -> float:
    """erfc where it is representable; Laplace's continued fraction for the Mills ratio beyond."""
    if a > -20:
        return math.log(0.5 * math.erfc(-a / math.sqrt(2)))
    x, frac = -a, 0.0
    for n in range(200, 0, -1):
        frac = n / (x + frac)
    return -0.5 * x * x - 0.5 * math.log(2 * math.pi) - math.log(x + frac)


def _mvn_logpdf(x, mean, cov):
    d = x - mean
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (
        np.einsum("nd,nd->n", d, np.linalg.solve(cov, d.T).T)
        + logdet
        + len(mean) * math.log(2 * math.pi)
    )


def _discretised_reference(pixels, loc, log_scale, dist):
    """log P(bin) in float64 straight from the CDF: the definition the fast code must match."""
    x = pixels / 127.5 - 1.0
    scale = np.exp(
        losses.MIN_LOG_SCALE + np.logaddexp(0.0, log_scale - losses.MIN_LOG_SCALE)
    )  # smooth floor
    upper = np.where(pixels > 254.5, np.inf, x + 1 / 255)
    lower = np.where(pixels < 0.5, -np.inf, x - 1 / 255)
    # the upper-tail form avoids 1 - 1 cancellation in float64 too
    mass = np.where(
        x > loc,
        dist.sf(lower, loc, scale) - dist.sf(upper, loc, scale),
        dist.cdf(upper, loc, scale) - dist.cdf(lower, loc, scale),
    )
    with np.errstate(divide="ignore"):  # bins with no float64 mass: -inf, filtered out
        return np.log(mass)


@pytest.mark.parametrize("family,dist", [("logistic", _Logistic), ("gaussian", _Normal)])
def test_discretised_likelihood_matches_reference_and_normalises(family, dist):
    rng = np.random.default_rng(0)
    n = 4000
    pixels = rng.integers(0, 256, n).astype(np.float64)
    pixels[:50], pixels[50:100] = 0, 255  # the tail bins
    loc = rng.uniform(-1.1, 1.1, n)
    log_scale = rng.uniform(-5.0, 0.5, n)
    got = losses.discretised_log_prob(
        tf.constant(pixels, tf.float32),
        tf.constant(loc, tf.float32),
        tf.constant(log_scale, tf.float32),
        family,
    ).numpy()
    want = _discretised_reference(pixels, loc, log_scale, dist)
    big = want > np.log(1e-4)  # where the bin has mass, agreement to float32 rounding
    np.testing.assert_allclose(got[big], want[big], atol=2e-3, rtol=1e-3)
    small = (
        np.isfinite(want) & ~big
    )  # far bins: the density approximation, still close in log space
    np.testing.assert_allclose(got[small], want[small], rtol=0.02)
    # 256 bins of one sub-pixel sum to probability 1
    levels = np.arange(256, dtype=np.float32)
    for mu, s in [(-1.0, -4.0), (0.3, -2.0), (0.9, 0.0), (1.05, -5.5)]:
        lp = losses.discretised_log_prob(
            tf.constant(levels), tf.fill([256], mu), tf.fill([256], s), family
        )
        assert float(tf.reduce_logsumexp(lp)) == pytest.approx(0.0, abs=1e-3)


def test_log_ndtr_matches_reference_in_both_tails():
    a = np.concatenate([np.linspace(-60, -5, 200), np.linspace(-5, 8, 200)])
    got = losses.log_ndtr(tf.constant(a, tf.float32)).numpy()
    want = np.array([_log_ndtr_reference(v) for v in a])
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_bernoulli_log_prob_matches_reference():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, 1000)
    pixels = 255.0 * rng.integers(0, 2, 1000)
    got = losses.bernoulli_log_prob(
        tf.constant(pixels, tf.float32), tf.constant(logits, tf.float32)
    ).numpy()
    p = 1.0 / (1.0 + np.exp(-logits))
    want = np.where(pixels > 0, np.log(p), np.log1p(-p))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_log_likelihood_sums_over_every_pixel_and_channel():
    pixels = tf.constant(np.full((2, 4, 4, 3), 128.0, np.float32))
    loc, log_scale = tf.zeros((2, 4, 4, 3)), tf.fill((2, 4, 4, 3), -3.0)
    per = losses.discretised_log_prob(pixels, loc, log_scale)
    total = losses.log_likelihood(pixels, [loc, log_scale], "logistic")
    assert total.shape == (2,)
    np.testing.assert_allclose(total.numpy(), [48 * float(per[0, 0, 0, 0])] * 2, rtol=1e-6)


def test_gaussian_kl_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(2)
    mean, logvar = rng.normal(0, 1, 3), rng.normal(0, 0.7, 3)
    z = mean + np.exp(0.5 * logvar) * rng.standard_normal((400_000, 3))
    mc = (_norm_logpdf(z, mean, np.exp(0.5 * logvar)) - _norm_logpdf(z)).sum(1).mean()
    got = float(
        losses.gaussian_kl(
            tf.constant(mean[None], tf.float32), tf.constant(logvar[None], tf.float32)
        )[0]
    )
    assert got == pytest.approx(mc, abs=0.01)


@pytest.mark.parametrize("family", ["logistic", "gaussian"])
def test_likelihood_and_its_gradients_are_finite_at_extreme_parameters(family):
    """Every bin, locations far outside [-1, 1], log-scales far past both ends of the range
    a decoder should produce: log P and both gradients stay finite (no inf - inf, 0 * inf)."""
    levels = np.arange(256, dtype=np.float32)
    locs = [-1e6, -30.0, -1.0, 0.0, 0.999, 1.0, 30.0, 1e6]
    log_scales = [-1e4, -30.0, -7.0, -2.0, 0.0, 20.0, 88.8, 200.0, 1e4]
    grid = np.array([(m, s) for m in locs for s in log_scales], np.float32)
    pixels = tf.constant(np.tile(levels, len(grid)))
    loc = tf.constant(np.repeat(grid[:, 0], 256))
    log_scale = tf.constant(np.repeat(grid[:, 1], 256))
    with tf.GradientTape() as tape:
        tape.watch([loc, log_scale])
        lp = losses.discretised_log_prob(pixels, loc, log_scale, family)
        total = tf.reduce_sum(lp)
    g_loc, g_scale = tape.gradient(total, [loc, log_scale])
    where = np.stack([loc.numpy(), log_scale.numpy(), pixels.numpy()], 1)
    for name, t in (("log P", lp), ("d/d loc", g_loc), ("d/d log_scale", g_scale)):
        bad = ~np.isfinite(t.numpy())
        assert not bad.any(), f"{name} not finite at (loc, log_scale, pixel) {where[bad][:3]}"
    assert np.all(lp.numpy() <= 1e-6)


def test_log_scale_floor_is_smooth_and_still_passes_gradient_below_it():
    raw = tf.constant([-12.0, -9.0, -7.0, -4.0, -2.0, 1.0])
    floored = losses.floored_log_scale(raw).numpy()
    assert np.all(floored > losses.MIN_LOG_SCALE) and np.all(np.diff(floored) > 0)
    np.testing.assert_allclose(
        floored[-2:], [-2.0, 1.0], atol=0.01
    )  # the identity where decoders live
    # a pixel 20 levels from a location whose raw log-scale is under the floor: the
    # likelihood must still ask for a wider scale (a hard floor gives exactly 0 here)
    log_scale = tf.constant([-12.0])
    with tf.GradientTape() as tape:
        tape.watch(log_scale)
        lp = losses.discretised_log_prob(tf.constant([148.0]), tf.constant([0.0]), log_scale)[0]
    assert float(tape.gradient(lp, log_scale)[0]) > 1e-3


def test_encoder_log_variance_is_bounded_so_an_exploded_head_cannot_overflow():
    """The default preset's NaN: the encoder's log-variance reached +84, exp() of it in the
    KL overflowed, and Adam turned the inf gradient into NaN weights. With the head's bias
    pushed to +-500 the log-variance stays in range and a training step stays finite."""
    from keras_suite.apps.vae.model import LOGVAR_RANGE

    cfg = _cfg("model.kl_warmup_steps=0", "train.clip_norm=0")
    for bias in (500.0, -500.0):
        state, batch, step = _one_step(cfg)
        head = state.models["encoder"].get_layer("log_variance")
        head.bias.assign(tf.fill(head.bias.shape, bias))
        _, logvar = state.models["encoder"](batch)
        assert (
            LOGVAR_RANGE[0] <= float(tf.reduce_min(logvar))
            and float(tf.reduce_max(logvar)) <= LOGVAR_RANGE[1]
        )
        out = APP.train_step(state, batch, step)
        assert all(np.isfinite(float(v)) for v in out.values()), (bias, out)
        assert all(np.isfinite(v.numpy()).all() for v in state.trainable_variables("model")), bias


def test_initialisation_carries_the_latents_through_both_networks():
    """At initialisation the default-size encoder's means must vary with the image and the
    decoder's outputs with z. With Keras's default init and SiLU they shrank ~2x per layer
    (mean std 7e-4, decoder output std 2e-4 across z): the latents carried nothing and
    training crawled or blew up."""
    from keras_suite.apps.vae.model import build_decoder, build_encoder
    from keras_suite.common import shapes

    cfg = config.resolve(APP.presets, "default")
    images = shapes.classification_images(64, 32, seed=9)[0].astype(np.float32)
    mean, _ = build_encoder(cfg.model, 32, 3)(images)
    assert 0.1 < float(np.std(mean)) < 10.0
    loc, log_scale = build_decoder(cfg.model, 32, 3, "logistic")(
        np.random.default_rng(0).standard_normal((64, 32))
    )
    spread = np.std(loc.numpy(), axis=0).mean()  # over z, per output pixel
    assert 0.05 < spread < 1.0
    assert -2.5 < float(np.mean(log_scale)) < -1.5


def test_kl_warmup_ramps_to_beta():
    w = [float(losses.kl_weight(s, 2.0, 10)) for s in (0, 4, 9, 50)]
    assert w == pytest.approx([0.2, 1.0, 2.0, 2.0])
    assert float(losses.kl_weight(0, 0.5, 0)) == 0.5


class LinearGaussian:
    """z ~ N(0, I_L), x | z ~ N(W z + b, s^2 I_D): log p(x) and the posterior are exact.
    W has orthogonal columns, so the posterior is a diagonal Gaussian (what q can be)."""

    def __init__(self, seed=3, latent=2, dims=5, noise=0.5):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.normal(size=(dims, latent)))
        self.W = q * np.array([2.0, 1.0])[:latent]
        self.b, self.s = rng.normal(size=dims), noise
        cov = self.W @ self.W.T + noise**2 * np.eye(dims)
        self.data = rng.multivariate_normal(self.b, cov, size=64)
        self.log_px = _mvn_logpdf(self.data, self.b, cov)
        post_var = 1.0 / (1.0 + (self.W**2).sum(0) / noise**2)  # diagonal as W'W is
        self.post_mean = ((self.data - self.b) @ self.W) * post_var / noise**2
        self.post_logvar = np.log(np.broadcast_to(post_var, self.post_mean.shape))

    def log_px_given_z(self, z):  # z [B, c, L] -> [B, c]
        x = tf.constant(self.data, tf.float32)[:, None]
        mu = tf.einsum("bcl,dl->bcd", z, tf.constant(self.W, tf.float32)) + tf.constant(
            self.b, tf.float32
        )
        return tf.reduce_sum(
            -0.5 * ((x - mu) / self.s) ** 2 - math.log(self.s) - 0.5 * losses.LOG_2PI, -1
        )

    def bound(self, mean, logvar, k, seed=0, chunk=500):
        lw = losses.iwae_log_weights(
            tf.constant(mean, tf.float32),
            tf.constant(logvar, tf.float32),
            self.log_px_given_z,
            k,
            chunk,
            tf.constant([seed, 7], tf.int64),
        )
        return losses.iwae_bound(lw).numpy()

    def elbo(self, mean, logvar):
        """E_q[log p(x|z)] - KL in closed form (Gaussian q, linear-Gaussian decoder)."""
        resid = self.data - self.b - mean @ self.W.T
        var = np.exp(logvar)
        expected_sq = (resid**2).sum(1) + (var * (self.W**2).sum(0)).sum(1)
        d = self.data.shape[1]
        rec = -0.5 * expected_sq / self.s**2 - d * math.log(self.s) - 0.5 * d * losses.LOG_2PI
        kl = 0.5 * (mean**2 + var - 1 - logvar).sum(1)
        return rec - kl


def test_iwae_is_exact_with_the_true_posterior():
    m = LinearGaussian()
    # every importance weight is p(x): the bound is log p(x) for any k, k = 1 included
    np.testing.assert_allclose(m.bound(m.post_mean, m.post_logvar, 1), m.log_px, atol=2e-3)
    np.testing.assert_allclose(m.elbo(m.post_mean, m.post_logvar), m.log_px, atol=1e-6)


def test_iwae_grows_with_k_towards_log_likelihood_and_k1_is_the_elbo():
    m = LinearGaussian()
    mean, logvar = m.post_mean + 0.6, m.post_logvar + 0.8  # a poor q: a loose ELBO
    elbo = m.elbo(mean, logvar)
    by_k = {k: m.bound(mean, logvar, k).mean() for k in (1, 10, 100, 2000)}
    assert elbo.mean() < by_k[10] < by_k[100] < by_k[2000] <= m.log_px.mean() + 0.01
    assert by_k[2000] == pytest.approx(m.log_px.mean(), abs=0.05)
    assert m.log_px.mean() - elbo.mean() > 1.0  # the test would catch a bound stuck at the ELBO
    # k = 1: an unbiased estimate of the ELBO (mean over many draws within 4 standard errors)
    draws = np.stack([m.bound(mean, logvar, 1, seed=s) for s in range(200)])  # [200, 64]
    se = draws.mean(1).std() / math.sqrt(len(draws))
    assert abs(draws.mean() - elbo.mean()) < 4 * se + 1e-3


def test_active_units_counts_variance_of_posterior_means():
    rng = np.random.default_rng(4)
    means = rng.normal(size=(5000, 4)) * np.array(
        [1.0, 0.2, 0.05, 0.001]
    )  # variances 1, .04, .0025, 1e-6
    n, var = active_units(means, 0.01)
    assert n == 2 and var[0] == pytest.approx(1.0, rel=0.05)


# ---- training objective and data ------------------------------------------------------


def _cfg(*overrides):
    return config.resolve(APP.presets, "smoke", overrides=list(overrides))


def _one_step(cfg):
    from keras_suite.common.app import StepContext

    data = APP.datasets(cfg=cfg, artifacts=None)
    state = APP.build_state(cfg=cfg, info=data.info)
    batch = next(iter(data.train_epoch(0)))
    return (
        state,
        batch,
        StepContext(cfg=cfg, global_batch_size=cfg.train.batch_size, step=tf.constant(0, tf.int64)),
    )


def test_train_step_objective_with_free_bits_and_warmup():
    from keras_suite.apps.vae.app import forward_terms

    cfg = _cfg("model.free_bits=1000", "model.kl_warmup_steps=0", "model.beta=0.5")
    state, batch, step = _one_step(cfg)
    recon, kl_dims = forward_terms(state, batch, step, training=True)  # same seed as the step
    out = APP.train_step(state, batch, step)
    # every dim is under its 1000-nat allowance: the KL term is the constant L * allowance
    assert float(out["loss"]) == pytest.approx(
        float(tf.reduce_mean(recon)) + 0.5 * 1000 * cfg.model.latent_dim, rel=1e-5
    )
    assert float(out["neg_elbo"]) == pytest.approx(
        float(tf.reduce_mean(recon + tf.reduce_sum(kl_dims, -1))), rel=1e-5
    )
    dims = 16 * 16 * 1
    assert float(out["bits_per_dim"]) == pytest.approx(
        float(out["neg_elbo"]) / (dims * math.log(2)), rel=1e-5
    )


def test_plain_autoencoder_is_deterministic_and_has_no_kl():
    cfg = _cfg("model.kind=ae")
    state, batch, step = _one_step(cfg)
    mean, logvar = state.models["encoder"](batch)
    assert np.all(logvar.numpy() == -30.0)
    out = APP.train_step(state, batch, step)
    assert set(out) == {"loss", "recon"} and float(out["loss"]) == pytest.approx(
        float(out["recon"])
    )


def test_denoising_autoencoder_corrupts_inputs_only_in_training():
    from keras_suite.apps.vae.app import forward_terms

    cfg = _cfg("model.kind=dae", "model.denoise_std=0.5")
    state, batch, step = _one_step(cfg)
    clean = forward_terms(state, batch, step, training=False)[0]
    noisy = forward_terms(state, batch, step, training=True)[0]
    again = forward_terms(state, batch, step, training=True)[0]
    np.testing.assert_allclose(
        noisy.numpy(), again.numpy(), rtol=1e-6
    )  # stateless: same step, same noise
    # the encoder saw a corrupted image (an untrained decoder barely reacts, hence the small bound)
    assert np.abs(noisy.numpy() - clean.numpy()).max() > 1e-5


def test_config_errors_are_one_clear_line():
    with pytest.raises(UserError, match="multiple of 2\\*\\*model.num_downsamples"):
        _cfg("data.image_size=18")
    with pytest.raises(UserError, match="set data.binarize=true"):
        _cfg("data.binarize=false")
    with pytest.raises(UserError, match="model.kind='gan'"):
        _cfg("model.kind=gan")


def _write_images(folder, n, size=20, seed=5):
    from keras_suite.apps.vae.app import png_bytes
    from keras_suite.common import shapes

    folder.mkdir(parents=True, exist_ok=True)
    images, _ = shapes.classification_images(n, size, seed=seed)
    for i, img in enumerate(images):
        (folder / f"{i:03d}.png").write_bytes(png_bytes(img))


def test_folder_of_colour_images_skips_unreadable_files(tmp_path, caplog):
    _write_images(tmp_path / "photos" / "a", 30)
    _write_images(tmp_path / "photos" / "b", 10, seed=6)  # sub-folders are just more images
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (tmp_path / "photos" / "notes.txt").write_text("ignored: not an image extension")
    cfg = config.resolve(
        APP.presets,
        "default",
        overrides=[
            "data.source=folder",
            f"data.path={tmp_path / 'photos'}",
            "data.image_size=16",
            "model.num_downsamples=2",
            "train.batch_size=8",
            "data.val_fraction=0.1",
            "data.test_fraction=0.2",
        ],
    )
    with caplog.at_level("WARNING", logger="ksuite"):
        data = APP.datasets(cfg=cfg, artifacts=None)
    assert "skipped 1 of 41 images" in caplog.text and "broken.jpg" in caplog.text
    info = data.info
    assert (info["num_train"], info["num_val"], info["num_test"]) == (28, 4, 8)
    batch = next(iter(data.train_epoch(0))).numpy()
    assert batch.shape == (8, 16, 16, 3)
    assert np.all(batch == np.round(batch)) and batch.min() >= 0 and batch.max() <= 255


def test_folder_greyscale_binarised_with_split_folders(tmp_path):
    for split, n in (("train", 12), ("test", 5)):
        _write_images(tmp_path / split, n)
    cfg = _cfg("data.source=folder", f"data.path={tmp_path}", "train.batch_size=4")
    data = APP.datasets(cfg=cfg, artifacts=None)
    # train/ and test/ folders: val is carved out of train (data.val_fraction of it), test kept
    # whole but for images whose binarised pixels equal a training (or val) image's
    info, removed = data.info, data.info["evaluation_split"]["removed_by_split"]
    assert info["num_train"] == 11
    assert (info["num_val"] + removed["val"], info["num_test"] + removed["test"]) == (1, 5)
    test = np.concatenate([b.numpy() for b in data.test])
    assert test.shape == (info["num_test"], 16, 16, 1) and set(np.unique(test)) <= {0.0, 255.0}


def test_missing_or_empty_folder_fails_clearly(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        APP.datasets(
            cfg=_cfg("data.source=folder", f"data.path={tmp_path / 'nope'}"), artifacts=None
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        APP.datasets(
            cfg=_cfg("data.source=folder", f"data.path={tmp_path / 'empty'}"), artifacts=None
        )


# ---- VQ-VAE --------------------------------------------------------------------------


def test_vector_quantizer_picks_the_nearest_code_and_passes_gradients_straight_through():
    from keras_suite.apps.vae.vq import VectorQuantizer

    rng = np.random.default_rng(5)
    layer = VectorQuantizer(16, 3)
    z_e = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    codes, z_q = layer(tf.constant(z_e))
    book = layer.codebook.numpy()
    dist = ((z_e[..., None, :] - book) ** 2).sum(-1)
    chosen = np.take_along_axis(dist, codes.numpy()[..., None], -1)[..., 0]
    np.testing.assert_allclose(
        chosen, dist.min(-1), atol=1e-5
    )  # a nearest code (ties up to rounding)
    assert (codes.numpy() == dist.argmin(-1)).mean() > 0.9
    np.testing.assert_allclose(z_q.numpy(), book[codes.numpy()], atol=1e-7)
    x = tf.constant(z_e)
    with tf.GradientTape() as tape:
        tape.watch(x)
        st = x + tf.stop_gradient(layer(x)[1] - x)
        y = tf.reduce_sum(st * tf.constant(rng.normal(size=z_e.shape).astype(np.float32)))
    g = tape.gradient(y, x)
    np.testing.assert_allclose(st.numpy(), z_q.numpy(), atol=1e-6)  # x + (z_q - x) rounds
    assert np.all(np.abs(g.numpy()) > 0)  # the encoder gets the decoder's gradient unchanged


def test_vqvae_step_logs_the_elbo_with_the_uniform_prior():
    cfg = _cfg("model.kind=vqvae", "model.codebook_size=8")
    state, batch, step = _one_step(cfg)
    assert set(state.models) == {"encoder", "codebook", "decoder"}
    out = APP.train_step(state, batch, step)
    grid = 16 // 4
    assert float(out["neg_elbo"]) == pytest.approx(
        float(out["recon"]) + grid * grid * math.log(8), rel=1e-5
    )
    assert float(out["loss"]) == pytest.approx(
        float(out["recon"]) + float(out["codebook_loss"]) + 0.25 * float(out["commitment"]),
        rel=1e-5,
    )

"""GAN metrics and losses: FID/KID against independent formulas and on real images,
KID's unbiasedness, mode-collapse detection, per-example penalties."""

from __future__ import annotations

import numpy as np
import pytest

from keras_suite import common
from keras_suite.apps.gan import losses, metrics
from keras_suite.apps.gan.features import FeatureNet, build_classifier
from keras_suite.common import shapes

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


# ---- FID against independent computations -------------------------------------------
def test_frechet_distance_matches_closed_form_and_eigen_reference():
    rng = np.random.default_rng(0)
    # diagonal covariances: FID = |mu1-mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2))
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    want = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    assert metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(
        want, rel=1e-10
    )
    # general covariances: pytorch-fid's tr sqrtm(S1 S2), here from the eigenvalues of S1 S2
    # (real and >= 0 for PSD S1, S2): a different route to the same trace
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    eig = np.linalg.eigvals(c1 @ c2)
    ref = np.trace(c1) + np.trace(c2) - 2 * np.sqrt(eig.real).sum()
    assert metrics.frechet_distance(np.zeros(6), c1, np.zeros(6), c2) == pytest.approx(
        ref, rel=1e-8
    )
    assert metrics.frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(
        0.0, abs=1e-10
    )


def _naive_unbiased_mmd(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_a_naive_loop_and_is_unbiased():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 4)), rng.normal(0.3, 1.0, size=(9, 4))
    assert metrics.polynomial_mmd_unbiased(x, y) == pytest.approx(
        _naive_unbiased_mmd(x, y), rel=1e-10
    )
    # equal distributions: the unbiased estimate averages to ~0 at every sample size (no
    # drift with n), while the biased (V-statistic, diagonals kept) one shrinks like 1/n
    d = 16

    def biased(a, b):
        k = lambda p, q: (p @ q.T / d + 1.0) ** 3  # noqa: E731
        return k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()

    means, biased_means = {}, {}
    for m in (20, 200):
        draws = [(rng.normal(size=(m, d)), rng.normal(size=(m, d))) for _ in range(60)]
        means[m] = np.mean([metrics.polynomial_mmd_unbiased(a, b) for a, b in draws])
        biased_means[m] = np.mean([biased(a, b) for a, b in draws])
    assert biased_means[20] > 5 * biased_means[200] > 0  # the bias the unbiased form removes
    for m in means:
        assert abs(means[m]) < 0.1 * biased_means[20], (means, biased_means)
    assert abs(means[20] - means[200]) < 0.1 * (biased_means[20] - biased_means[200])
    # a real difference is detected
    shifted = metrics.kid(rng.normal(size=(300, d)), rng.normal(0.5, 1.0, size=(300, d)), 100, 10)[
        0
    ]
    assert shifted > 20 * max(abs(means[20]), abs(means[200]))


# ---- on real images, with the app's feature network ------------------------------------
@pytest.fixture(scope="module")
def feature_net():
    """The app's feature classifier, trained briefly on 16x16 shapes (a few seconds)."""
    keras.utils.set_random_seed(0)
    images, labels = shapes.classification_images(2000, 16, seed=5)
    model = build_classifier(16, len(shapes.SHAPES))
    head = keras.Model(model.input, model.outputs[1])
    head.compile(
        keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    head.fit(images.astype(np.float32), labels, batch_size=64, epochs=3, verbose=0)
    return FeatureNet(model, "shapes-classifier", {"name": "shapes-classifier"})


@pytest.fixture(scope="module")
def real_sets():
    a, _ = shapes.classification_images(600, 16, seed=1)
    b, _ = shapes.classification_images(600, 16, seed=3)
    return a, b


def test_fid_is_near_zero_on_real_splits_and_orders_distributions(feature_net, real_sets):
    a, b = real_sets
    rng = np.random.default_rng(0)
    fa, fb = feature_net(a), feature_net(b)
    noisy = np.clip(b.astype(np.float32) + rng.normal(0, 25, b.shape), 0, 255)
    blurred = tf.image.resize(tf.image.resize(b.astype(np.float32), (6, 6)), (16, 16)).numpy()
    static = rng.uniform(0, 255, b.shape)
    same = metrics.fid(fa, fb)
    graded = [metrics.fid(fa, feature_net(x)) for x in (noisy, blurred, static)]
    assert same < 0.1 * min(graded), (same, graded)
    assert graded[0] < graded[2] and graded[1] < graded[2], graded  # uniform noise is the farthest
    kid_same = metrics.kid(fa, fb, 200, 20)[0]
    kid_static = metrics.kid(fa, feature_net(static), 200, 20)[0]
    assert abs(kid_same) < 0.05 * kid_static


def test_precision_recall_coverage_detect_mode_collapse(feature_net, real_sets):
    a, b = real_sets
    rng = np.random.default_rng(0)
    collapsed = np.repeat(b[:4], 150, axis=0).astype(np.float32)  # 4 modes, repeated
    collapsed = np.clip(collapsed + rng.normal(0, 2, collapsed.shape), 0, 255)
    fa = feature_net(a)
    good = metrics.precision_recall_density_coverage(fa, feature_net(b), k=3)
    bad = metrics.precision_recall_density_coverage(fa, feature_net(collapsed), k=3)
    assert good["recall"] > 0.6 and good["coverage"] > 0.6, good
    assert bad["precision"] > 0.5, bad  # what it makes looks real ...
    assert bad["recall"] < 0.1 and bad["coverage"] < 0.1, bad  # ... but it covers almost nothing


def _prdc_brute_force(real, fake, k, strict=True):
    """Precision/recall/density/coverage by loops over points and math.dist: radii from the
    sorted distances to every point of the same set (the point itself first), `<=` for
    precision/recall (Kynkaanniemi et al.) and `<` for density/coverage (prdc; `<=` with
    strict=False)."""
    import math
    import operator

    inside = operator.lt if strict else operator.le

    real, fake = [list(map(float, r)) for r in real], [list(map(float, f)) for f in fake]

    def radius(point, points):
        return sorted(math.dist(point, q) for q in points)[k]

    real_r = [radius(r, real) for r in real]
    fake_r = [radius(f, fake) for f in fake]
    precision = sum(any(math.dist(f, r) <= rr for r, rr in zip(real, real_r)) for f in fake)
    recall = sum(any(math.dist(r, f) <= fr for f, fr in zip(fake, fake_r)) for r in real)
    density = sum(inside(math.dist(f, r), rr) for f in fake for r, rr in zip(real, real_r))
    coverage = sum(inside(min(math.dist(f, r) for f in fake), rr) for r, rr in zip(real, real_r))
    return {
        "precision": precision / len(fake),
        "recall": recall / len(real),
        "density": density / (k * len(fake)),
        "coverage": coverage / len(real),
    }


@pytest.mark.parametrize("integer_features", [True, False])
def test_prdc_follows_the_reference_inequalities_on_duplicated_images(integer_features):
    """Duplicated real images and fakes that copy real images put points exactly on the
    k-NN balls' surfaces (radius 0 for an image with k copies): the tie rule decides."""
    rng = np.random.default_rng(4)
    if integer_features:  # exact distances: ties are real ties
        base = rng.integers(-3, 4, size=(14, 5)).astype(np.float64)
    else:  # float features: the |a|^2 + |b|^2 - 2ab expansion leaves residues on copies
        base = rng.normal(size=(14, 5)) * 37.0
    real = np.concatenate([base, base[:3], base[:3], base[5:7]])  # images 0-2 three times
    fake = np.concatenate([base[[0, 1, 5, 9]], rng.normal(size=(6, 5)), base[[0]]])
    k = 2
    got = metrics.precision_recall_density_coverage(real, fake, k=k)
    want = _prdc_brute_force(real, fake, k)
    assert got == pytest.approx(want, abs=1e-12)
    # the data has ties that matter: `<=` would count more density and coverage
    loose = _prdc_brute_force(real, fake, k, strict=False)
    assert loose["density"] > want["density"] and loose["coverage"] > want["coverage"]


# ---- losses and penalties are per example --------------------------------------------
def _critic():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="tanh")(inputs)
    out = keras.layers.Dense(1)(keras.layers.Flatten()(x))

    class Critic(keras.Model):
        def __init__(self):
            super().__init__()
            self.net = keras.Model(inputs, out)

        def call(self, images, class_ids=None, training=False):
            return self.net(images)[:, 0]

    return Critic()


def test_gradient_penalty_and_r1_are_per_example():
    d = _critic()
    real = tf.random.stateless_normal([5, 8, 8, 3], seed=[1, 2])
    fake = tf.random.stateless_normal([5, 8, 8, 3], seed=[3, 4])
    seed = tf.constant([7, 8], tf.int64)
    gp = losses.gradient_penalty(d, real, fake, None, seed).numpy()
    eps = tf.random.stateless_uniform([5, 1, 1, 1], seed=seed)
    r1 = losses.r1_penalty(d, real, None).numpy()
    for i in range(5):  # one example at a time: the reference
        x_hat = eps[i : i + 1] * real[i : i + 1] + (1 - eps[i : i + 1]) * fake[i : i + 1]
        with tf.GradientTape() as tape:
            tape.watch(x_hat)
            y = d(x_hat)
        norm = float(tf.norm(tape.gradient(y, x_hat)))
        assert gp[i] == pytest.approx((norm - 1.0) ** 2, rel=1e-4)
        x = real[i : i + 1]
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = d(x)
        assert r1[i] == pytest.approx(float(tf.reduce_sum(tape.gradient(y, x) ** 2)), rel=1e-4)


def test_losses_have_the_textbook_values():
    real, fake = tf.constant([2.0, -1.0]), tf.constant([-3.0, 0.5])
    ns = losses.d_loss("nonsaturating", real, fake).numpy()
    want = -np.log(1 / (1 + np.exp(-real.numpy()))) - np.log(1 - 1 / (1 + np.exp(-fake.numpy())))
    np.testing.assert_allclose(ns, want, rtol=1e-5)
    np.testing.assert_allclose(losses.d_loss("hinge", real, fake).numpy(), [0.0 + 0.0, 2.0 + 1.5])
    np.testing.assert_allclose(losses.d_loss("wgan-gp", real, fake).numpy(), [-5.0, 1.5])
    np.testing.assert_allclose(
        losses.g_loss("nonsaturating", fake).numpy(), np.log1p(np.exp(-fake.numpy())), rtol=1e-5
    )


def test_config_refuses_penalties_with_batch_norm():
    from keras_suite.apps.gan.config import default
    from keras_suite.common.config import merge, validate
    from keras_suite.common.errors import UserError

    with pytest.raises(UserError, match="d_norm"):
        validate(merge(default(), {"model": {"loss": "wgan-gp"}}))
    with pytest.raises(UserError, match="R1"):
        validate(merge(default(), {"stability": {"r1_gamma": 1.0}}))
    with pytest.raises(UserError, match="divisible"):
        validate(
            merge(
                default(),
                {"model": {"loss": "wgan-gp", "d_norm": "layer"}, "stability": {"critic_steps": 5}},
            )
        )

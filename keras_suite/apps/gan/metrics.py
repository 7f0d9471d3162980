"""Image-quality metrics on features of an offline network.

The feature network is named in every report: by default a small CNN classifier this app
trains on the run's own domain (the built-in shapes, or the user folder's classes), not
InceptionV3, so its numbers are NOT comparable with published FIDs; they compare runs,
models and the held-out real set with each other. `metrics.features=inception_v3` uses
ImageNet InceptionV3 pool features when its weights can be downloaded.

    FID   Heusel et al. 2017: |mu1-mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)
    KID   Binkowski et al. 2018: unbiased MMD^2, kernel (x.y/d + 1)^3, mean over subsets
    precision / recall   Kynkaanniemi et al. 2019: k-NN manifolds of real and fake
    density / coverage   Naeem et al. 2020: robust to outliers; coverage drops on collapse
"""

from __future__ import annotations

import numpy as np

# ---- distances between feature sets ---------------------------------------------------


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance of two Gaussians. The trace of (S1 S2)^1/2 is computed as that of
    (S1^1/2 S2 S1^1/2)^1/2, a symmetric PSD matrix: no complex parts to drop (pytorch-fid's
    scipy.linalg.sqrtm(S1 S2) gives the same trace, checked in the tests)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _sqrtm_psd(s1)
    covmean_trace = np.trace(_sqrtm_psd(root1 @ s2 @ root1))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * covmean_trace)


def gaussian_stats(features: np.ndarray):
    f = np.asarray(features, np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def polynomial_mmd_unbiased(x: np.ndarray, y: np.ndarray, degree=3, coef=1.0) -> float:
    """Unbiased MMD^2 with the kernel (x.y/d + coef)^degree (diagonals excluded)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]
    kxx = (x @ x.T / d + coef) ** degree
    kyy = (y @ y.T / d + coef) ** degree
    kxy = (x @ y.T / d + coef) ** degree
    m, n = len(x), len(y)
    term_xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    term_yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(term_xx + term_yy - 2.0 * kxy.mean())


def kid(features_a, features_b, subset_size=1000, subsets=50, seed=0) -> tuple[float, float]:
    """KID: mean and std of the unbiased MMD^2 over random subsets (without replacement
    inside a subset), as in Binkowski et al. and torch-fidelity."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(features_a), len(features_b))
    values = [
        polynomial_mmd_unbiased(
            features_a[rng.choice(len(features_a), m, replace=False)],
            features_b[rng.choice(len(features_b), m, replace=False)],
        )
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def _pairwise(a, b):
    """Euclidean distances [len(a), len(b)]. Identical rows (duplicated images, a copied
    training image) are exactly 0 apart: the |a|^2 + |b|^2 - 2ab expansion can leave a
    rounding residue there, and density/coverage compare distances with strict `<`."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    dist = np.sqrt(np.clip(sq, 0.0, None))
    _, row_ids = np.unique(np.concatenate([a, b]), axis=0, return_inverse=True)
    row_ids = row_ids.reshape(-1)
    dist[row_ids[: len(a), None] == row_ids[None, len(a) :]] = 0.0
    return dist


def _knn_radii(features, k):
    dist = _pairwise(features, features)
    return np.sort(dist, axis=1)[:, k]  # column 0 is the point itself


def precision_recall_density_coverage(real, fake, k=3) -> dict:
    """Precision: share of fakes inside the real k-NN manifold; recall: share of reals
    inside the fake one (Kynkaanniemi et al.). Density and coverage (Naeem et al.): the
    real balls a fake falls in (averaged, / k) and the share of real balls holding a fake.

    Ties: precision and recall count a point on a ball's surface as inside (`<=`, as
    Kynkaanniemi et al.'s code does); density and coverage do not (`<`, as Naeem et al.'s
    prdc does). They differ when images repeat: a real image with k copies has radius 0,
    and a fake equal to it is inside for precision but adds nothing to density/coverage."""
    real_r, fake_r = _knn_radii(real, k), _knn_radii(fake, k)
    d_fr = _pairwise(fake, real)  # [fake, real]
    precision = float((d_fr <= real_r[None, :]).any(1).mean())
    recall = float((d_fr.T <= fake_r[None, :]).any(1).mean())
    density = float((d_fr < real_r[None, :]).sum() / (k * len(fake)))
    coverage = float((d_fr.min(0) < real_r).mean())
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}

"""Scores over feature vectors: Frechet distance, KID, k-NN precision and recall, class-histogram scores, and NDB
(the number of statistically different bins) with the share of bins covered.

NumPy, SciPy and scikit-learn only, no Keras: every function takes float arrays (N, D) or class probabilities
(N, K) and returns numbers, so each can be checked against a closed form or a reference implementation. Features
are accumulated in batches (FeatureStats), so memory stays flat however many samples are scored: the mean and
covariance are running sums, and only the first `keep` rows are kept for the scores that need the vectors
themselves (KID, precision, recall and NDB).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats
from tqdm import tqdm

MODE_SHARE = 0.02  # a class counts as covered when at least this share of the samples is predicted as it
NEAREST_K = 3  # k of the k-NN manifolds (Kynkaanniemi et al. 2019)
KID_SUBSETS = 100  # KID: number of random subsets (Binkowski et al. 2018; torch-fidelity's default)
KID_SUBSET_SIZE = 1000  # KID: samples per subset, fewer when fewer are available
ROWS_PER_BLOCK = 1024  # pairwise distances are computed this many rows at a time
NDB_BINS = 20  # NDB: k-means bins of the real features (fewer when there are fewer than 10 real images a bin)
NDB_MIN_PER_BIN = 10  # ... real images per bin at least
NDB_ALPHA = 0.05  # NDB: a bin differs when its two-proportion z-test rejects equal shares at this level
COVERED_SHARE = 0.5  # a bin is covered when it holds at least this share of its real share of the samples


class FeatureStats:
    """Running mean and covariance of feature vectors added in batches, and the first `keep` vectors."""

    def __init__(self, *, keep: int):
        self.keep = keep
        self.count = 0
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None
        self._kept: list[np.ndarray] = []
        self._kept_count = 0

    def add(self, features: np.ndarray) -> None:
        """Add a batch of feature vectors (B, D)."""
        features = np.asarray(features, dtype=np.float64)
        if self._sum is None:
            self._sum = np.zeros(features.shape[1])
            self._outer = np.zeros((features.shape[1], features.shape[1]))
        self._sum += features.sum(axis=0)
        self._outer += features.T @ features
        self.count += len(features)
        if self._kept_count < self.keep:
            taken = features[:self.keep - self._kept_count].astype(np.float32)
            self._kept.append(taken)
            self._kept_count += len(taken)

    @property
    def mean(self) -> np.ndarray:
        """(D,) mean of every vector added."""
        return self._sum / self.count

    @property
    def covariance(self) -> np.ndarray:
        """(D, D) unbiased covariance of every vector added."""
        mean = self.mean
        return (self._outer - self.count * np.outer(mean, mean)) / max(self.count - 1, 1)

    @property
    def kept(self) -> np.ndarray:
        """(min(count, keep), D) float32: the first vectors added."""
        return np.concatenate(self._kept) if self._kept else np.zeros((0, 0), np.float32)


@dataclass(frozen=True)
class Summary:
    """What the scores need of one set of images in one feature space: the count, the features' mean and
    covariance, the first vectors kept, and, for a classifier's features, the top-class histogram and the sum of
    the top-class probabilities."""

    count: int
    mean: np.ndarray  # (D,)
    covariance: np.ndarray  # (D, D)
    kept: np.ndarray  # (min(count, keep), D) float32
    histogram: np.ndarray | None = None  # (K,) int64 counts of top classes
    confidence_sum: float = 0.0

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The summary as plain arrays (for np.savez; nothing needs pickle)."""
        arrays = {"count": np.array(self.count), "mean": self.mean, "covariance": self.covariance,
                  "kept": self.kept, "confidence_sum": np.array(self.confidence_sum)}
        if self.histogram is not None:
            arrays["histogram"] = self.histogram
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> "Summary":
        """The inverse of to_arrays (any mapping of arrays, an open .npz included)."""
        return cls(count=int(arrays["count"]), mean=np.asarray(arrays["mean"]),
                   covariance=np.asarray(arrays["covariance"]), kept=np.asarray(arrays["kept"]),
                   histogram=np.asarray(arrays["histogram"]) if "histogram" in arrays else None,
                   confidence_sum=float(arrays["confidence_sum"]))


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Frechet distance between the Gaussians N(mean_a, cov_a) and N(mean_b, cov_b) (the "F" of FID):
    |mean_a - mean_b|^2 + tr(cov_a) + tr(cov_b) - 2 tr((cov_a cov_b)^(1/2)).

    tr((cov_a cov_b)^(1/2)) = tr((S cov_b S)^(1/2)) with S = cov_a^(1/2): the sum of the square roots of the
    eigenvalues of a symmetric positive semi-definite matrix, found with two symmetric eigensolvers (stable and
    fast at 2048 dimensions); eigenvalues that rounding makes slightly negative count as 0.
    """
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    diff = np.asarray(mean_a, np.float64) - np.asarray(mean_b, np.float64)
    values, vectors = np.linalg.eigh(cov_a)
    sqrt_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2.0), 0.0, None)).sum()
    value = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt
    return float(max(value, 0.0))


def _polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KID's kernel (a . b / D + 1)^3 between rows of a (M, D) and b (N, D): (M, N)."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased estimate of the squared maximum mean discrepancy between samples x and y, both (m, D)."""
    m = len(x)
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kid(real: np.ndarray, fake: np.ndarray, rng: np.random.Generator, *, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, progress: bool = False) -> tuple[float, float, int]:
    """Kernel Inception Distance (Binkowski et al. 2018) of features real (N, D) and fake (M, D): the unbiased
    squared MMD with the cubic polynomial kernel, averaged over `subsets` random subsets (drawn from `rng`,
    without replacement within each) of min(subset_size, N, M) rows of each. Returns (mean, std, subset size)."""
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples on each side. Received: {len(real)} and {len(fake)}")
    values = [_mmd2_unbiased(real[rng.choice(len(real), size, replace=False)].astype(np.float64),
                             fake[rng.choice(len(fake), size, replace=False)].astype(np.float64))
              for _ in tqdm(range(subsets), desc="KID", unit="subset", disable=not progress, leave=False)]
    return float(np.mean(values)), float(np.std(values)), size


def _blocks(count: int, bar: tqdm | None = None):
    for start in range(0, count, ROWS_PER_BLOCK):
        yield slice(start, min(start + ROWS_PER_BLOCK, count))
        if bar is not None:
            bar.update(min(ROWS_PER_BLOCK, count - start))


def _squared_distances(a: np.ndarray, b: np.ndarray, b_norms: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows of a (M, D) and b (N, D): (M, N), never negative."""
    a_norms = np.einsum("ij,ij->i", a, a)
    return np.maximum(a_norms[:, None] - 2.0 * (a @ b.T) + b_norms[None, :], 0.0)


def knn_radii(features: np.ndarray, k: int = NEAREST_K, bar: tqdm | None = None) -> np.ndarray:
    """Squared distance from each row of features (N, D) to its k-th nearest other row: (N,)."""
    features = np.asarray(features, np.float64)
    norms = np.einsum("ij,ij->i", features, features)
    radii = np.empty(len(features))
    for rows in _blocks(len(features), bar):
        distances = _squared_distances(features[rows], features, norms)
        radii[rows] = np.partition(distances, k, axis=1)[:, k]  # index 0 is the row itself
    return radii


def _inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, bar: tqdm | None = None) -> np.ndarray:
    """For each row of points (M, D): whether it lies within radii[j] of some centres[j] (N, D). Bool (M,)."""
    points, centres = np.asarray(points, np.float64), np.asarray(centres, np.float64)
    norms = np.einsum("ij,ij->i", centres, centres)
    found = np.empty(len(points), dtype=bool)
    for rows in _blocks(len(points), bar):
        found[rows] = (_squared_distances(points[rows], centres, norms) <= radii[None, :]).any(axis=1)
    return found


def precision_recall(real: np.ndarray, fake: np.ndarray, *, k: int = NEAREST_K,
                     progress: bool = False) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of features real (N, D) and fake (M, D): each
    set's manifold is the union of balls around its points reaching their k-th nearest neighbour. Precision is the
    share of fakes inside the real manifold (quality), recall the share of reals inside the fake one (diversity).
    Distances are computed in blocks of rows, so memory grows with N + M, not N x M."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision and recall need more than k={k} samples on each side. "
                         f"Received: {len(real)} and {len(fake)}")
    with tqdm(total=2 * (len(real) + len(fake)), desc="precision, recall", unit="row", disable=not progress,
              leave=False) as bar:
        precision = _inside(fake, real, knn_radii(real, k, bar), bar).mean()
        recall = _inside(real, fake, knn_radii(fake, k, bar), bar).mean()
    return float(precision), float(recall)


def class_scores(histogram: np.ndarray, real_histogram: np.ndarray, confidence_sum: float, names: Sequence[str],
                 *, share: float = MODE_SHARE) -> dict[str, float | int | list[str]]:
    """Scores of predicted classes: `histogram` (K,) counts the samples' top classes, `real_histogram` (K,) the
    real images', `confidence_sum` adds the samples' top-class probabilities, `names` (K,) names the classes.

    modes_covered: classes holding at least `share` of the samples (of the classes the real images have), named
    in covered_classes; class_kl: KL(p_samples || p_real) of the two histograms, in nats (finite where every
    class the samples fall in has real mass); mean_confidence: the samples' mean top-class probability.
    """
    histogram, real_histogram = np.asarray(histogram, np.float64), np.asarray(real_histogram, np.float64)
    present = real_histogram > 0
    p = histogram / histogram.sum()
    q = real_histogram / real_histogram.sum()
    mass = p > 0
    covered = (p >= share) & present
    return {
        "modes_covered": int(covered.sum()),
        "covered_classes": [name for name, hit in zip(names, covered) if hit],
        "classes": int(present.sum()),
        "class_kl": float(np.sum(p[mass] * np.log(p[mass] / np.maximum(q[mass], 1e-12)))),
        "mean_confidence": float(confidence_sum / histogram.sum()),
    }


def mean_pairwise_distance(images: np.ndarray) -> float:
    """The mean Euclidean distance between the distinct pairs of uint8 images (N >= 2, any shape after N), pixels
    scaled to [0, 1]: how different the images are from each other. A generator whose samples all look alike
    (mode collapse) scores a small fraction of the real images' value; no labels are needed."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0
    norms = np.einsum("ij,ij->i", x, x)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2.0 * (x @ x.T), 0.0)
    upper = np.triu_indices(len(x), k=1)
    return float(np.sqrt(squared[upper]).mean())


@dataclass(frozen=True)
class Bins:
    """NDB's bins of one real set: k-means centroids of its features and how many of them fall in each."""

    centroids: np.ndarray  # (K, D)
    counts: np.ndarray  # (K,) int64

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centroids, "counts": self.counts}

    @classmethod
    def from_arrays(cls, arrays) -> "Bins":
        return cls(centroids=np.asarray(arrays["centroids"]), counts=np.asarray(arrays["counts"]))


def bin_count(real_count: int) -> int:
    """NDB's number of bins for a real set of this many feature vectors: NDB_BINS, fewer for a small set so
    each bin holds NDB_MIN_PER_BIN on average; 0 (no NDB) below two bins."""
    k = min(NDB_BINS, real_count // NDB_MIN_PER_BIN)
    return k if k >= 2 else 0


def make_bins(real: np.ndarray, k: int, *, seed: int = 0) -> Bins:
    """k-means (scikit-learn, seeded) of real feature vectors (N, D) into k bins (Richardson & Weiss 2018)."""
    from sklearn.cluster import KMeans

    real = np.asarray(real, np.float64)
    model = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(real)
    return Bins(centroids=model.cluster_centers_, counts=np.bincount(nearest_bin(real, model.cluster_centers_),
                                                                     minlength=k))


def nearest_bin(features: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The index of each row's nearest centroid: (N,)."""
    features, centroids = np.asarray(features, np.float64), np.asarray(centroids, np.float64)
    norms = np.einsum("ij,ij->i", centroids, centroids)
    nearest = np.empty(len(features), dtype=np.int64)
    for rows in _blocks(len(features)):
        nearest[rows] = _squared_distances(features[rows], centroids, norms).argmin(axis=1)
    return nearest


def ndb(bins: Bins, fake: np.ndarray, *, alpha: float = NDB_ALPHA,
        covered_share: float = COVERED_SHARE) -> dict[str, float | int]:
    """NDB (Richardson & Weiss 2018) of fake features (M, D) against the real set's bins: each fake goes to its
    nearest centroid, and a bin differs when a two-proportion z-test (pooled) rejects that the real and the fake
    shares of the bin are equal at level `alpha`. Returns ndb (differing bins), bins (K), ndb_k (ndb / K) and
    bins_covered: the bins holding at least `covered_share` of their real share of the fakes, which a set that
    misses whole regions of the data (mode collapse) loses."""
    k = len(bins.counts)
    counts = np.bincount(nearest_bin(fake, bins.centroids), minlength=k)
    n_real, n_fake = bins.counts.sum(), counts.sum()
    p_real, p_fake = bins.counts / n_real, counts / n_fake
    pooled = (bins.counts + counts) / (n_real + n_fake)
    error = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n_real + 1.0 / n_fake))
    z = np.divide(p_fake - p_real, error, out=np.zeros(k), where=error > 0)
    different = 2.0 * stats.norm.sf(np.abs(z)) < alpha
    return {"ndb": int(different.sum()), "bins": k, "ndb_k": float(different.mean()),
            "bins_covered": int((p_fake >= covered_share * p_real).sum())}

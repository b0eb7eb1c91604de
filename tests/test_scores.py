"""Score arithmetic against known values: Frechet distance, KID, precision/recall, class-histogram scores."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from dcgan_cli.evaluate import stats
from dcgan_cli.evaluate.features import coverage
from dcgan_cli.evaluate.stats import FeatureStats, Summary


def rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q


def test_frechet_distance_of_two_gaussians_matches_the_closed_form():
    """For covariances with the same eigenvectors, FD = |m1 - m2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2."""
    rng = np.random.default_rng(0)
    dim = 12
    q = rotation(dim, rng)
    a, b = rng.uniform(0.1, 4.0, dim), rng.uniform(0.1, 4.0, dim)
    mean_a, mean_b = rng.standard_normal(dim), rng.standard_normal(dim)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    value = stats.frechet_distance(mean_a, q @ np.diag(a) @ q.T, mean_b, q @ np.diag(b) @ q.T)
    assert value == pytest.approx(expected, rel=1e-9)
    assert stats.frechet_distance(mean_a, q @ np.diag(a) @ q.T, mean_a, q @ np.diag(a) @ q.T) == pytest.approx(
        0.0, abs=1e-9)


def test_frechet_distance_agrees_with_scipy_sqrtm_for_unrelated_covariances():
    rng = np.random.default_rng(1)
    dim = 20
    x, y = rng.standard_normal((dim, 3 * dim)), rng.standard_normal((dim, 3 * dim))
    cov_a, cov_b = x @ x.T / dim, y @ y.T / dim
    mean_a, mean_b = rng.standard_normal(dim), np.zeros(dim)
    expected = (mean_a @ mean_a + np.trace(cov_a) + np.trace(cov_b)
                - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b)).real)
    assert stats.frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-8)


def test_feature_stats_in_batches_equal_numpy_on_the_whole_set_and_keep_the_first_rows():
    rng = np.random.default_rng(2)
    features = rng.standard_normal((1000, 6)) * [1, 2, 3, 4, 5, 6] + 10
    accumulated = FeatureStats(keep=300)
    for start in range(0, 1000, 128):
        accumulated.add(features[start:start + 128])
    assert accumulated.count == 1000
    np.testing.assert_allclose(accumulated.mean, features.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(accumulated.covariance, np.cov(features, rowvar=False), rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(accumulated.kept, features[:300].astype(np.float32))


def test_frechet_distance_of_samples_converges_to_the_closed_form():
    rng = np.random.default_rng(3)
    dim, n = 4, 200_000
    a, b = FeatureStats(keep=0), FeatureStats(keep=0)
    scales = np.array([1.0, 2.0, 0.5, 1.5])
    for _ in range(4):
        a.add(rng.standard_normal((n // 4, dim)))
        b.add(rng.standard_normal((n // 4, dim)) * scales + 1.0)
    expected = dim * 1.0 + np.sum((1 - scales) ** 2)
    assert stats.frechet_distance(a.mean, a.covariance, b.mean, b.covariance) == pytest.approx(expected, rel=0.02)


def test_kid_is_near_zero_for_one_distribution_and_clearly_above_for_a_shifted_one():
    rng = np.random.default_rng(4)
    real = rng.standard_normal((2000, 32))
    same = rng.standard_normal((2000, 32))
    shifted = rng.standard_normal((2000, 32)) + 0.5
    kid_same, std_same, size = stats.kid(real, same, np.random.default_rng(0), subsets=20, subset_size=500)
    kid_shifted, std_shifted, _ = stats.kid(real, shifted, np.random.default_rng(0), subsets=20, subset_size=500)
    assert size == 500
    assert abs(kid_same) < 3 * std_same + 1e-3, "unbiased: no systematic offset on identical distributions"
    assert kid_shifted > 0.05 and kid_shifted > 20 * std_shifted
    assert stats.kid(real[:50], same[:40], np.random.default_rng(0), subsets=2)[2] == 40, "subsets fit the sets"


def test_kid_matches_the_unbiased_mmd_written_out_on_a_whole_small_set():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((30, 5)), rng.standard_normal((30, 5)) + 0.2
    k = lambda a, b: (a @ b.T / 5 + 1) ** 3  # noqa: E731
    m = 30
    within = (k(x, x).sum() - np.trace(k(x, x)) + k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1))
    expected = within - 2 * k(x, y).mean()
    value, std, _ = stats.kid(x, y, np.random.default_rng(0), subsets=3, subset_size=30)
    assert value == pytest.approx(expected, rel=1e-10) and std == pytest.approx(0.0, abs=1e-12)


def test_precision_recall_of_identical_sets_is_one_and_of_disjoint_clusters_zero():
    rng = np.random.default_rng(6)
    real = rng.standard_normal((500, 8))
    assert stats.precision_recall(real, real.copy()) == (1.0, 1.0)
    far = rng.standard_normal((500, 8)) + 100.0
    assert stats.precision_recall(real, far) == (0.0, 0.0)


def test_precision_drops_with_off_manifold_fakes_and_recall_with_missing_modes():
    rng = np.random.default_rng(7)
    centres = np.eye(4) * 20
    real = np.concatenate([rng.standard_normal((250, 4)) + c for c in centres])
    half_modes = np.concatenate([rng.standard_normal((500, 4)) + c for c in centres[:2]])
    precision, recall = stats.precision_recall(real, half_modes)
    assert precision > 0.9 and 0.4 < recall < 0.6, "two of four modes: good quality, half the diversity"
    blurred = np.concatenate([real[:500], rng.standard_normal((500, 4)) * 0.3 + 10.0])
    precision, recall = stats.precision_recall(real, blurred)
    assert 0.4 < precision < 0.6, "half the fakes lie between the modes"


def test_precision_recall_equal_the_prdc_reference_and_do_not_depend_on_the_block_size(monkeypatch):
    prdc = pytest.importorskip("prdc")
    rng = np.random.default_rng(8)
    real = rng.standard_normal((600, 16)).astype(np.float32)
    fake = (rng.standard_normal((600, 16)) * 1.3 + 0.2).astype(np.float32)
    reference = prdc.compute_prdc(real, fake, nearest_k=3)
    mine = stats.precision_recall(real, fake, k=3)
    assert mine == pytest.approx((reference["precision"], reference["recall"]), abs=2 / 600)
    monkeypatch.setattr(stats, "ROWS_PER_BLOCK", 7)
    assert stats.precision_recall(real, fake, k=3) == mine


def test_class_scores_count_modes_and_measure_the_histogram_kl():
    real = np.full(10, 100)
    two_classes = np.array([50, 50, 0, 0, 0, 0, 0, 0, 0, 0])
    names = "zero one two three four five six seven eight nine".split()
    scores = stats.class_scores(two_classes, real, 90.0, names)
    assert scores == {"modes_covered": 2, "covered_classes": ["zero", "one"], "classes": 10,
                      "class_kl": pytest.approx(np.log(5)), "mean_confidence": pytest.approx(0.9)}
    assert stats.class_scores(real, real, 1000.0, names)["class_kl"] == pytest.approx(0.0)
    barely = np.array([980, 19, 1, 0, 0, 0, 0, 0, 0, 0])  # 1.9% is not a covered mode, 2% would be
    assert stats.class_scores(barely, real, 0.0, names)["covered_classes"] == ["zero"]
    missing = np.array([0, 0, 0, 0, 0, 0, 0, 0, 100, 100])  # classes without real images are not modes
    assert stats.class_scores(missing, np.append(real[:9], 0), 0.0, names)["modes_covered"] == 1


def test_summary_round_trips_through_plain_arrays():
    summary = Summary(count=3, mean=np.ones(2), covariance=np.eye(2), kept=np.zeros((3, 2), np.float32),
                      histogram=np.array([1, 2]), confidence_sum=2.5)
    again = Summary.from_arrays(summary.to_arrays())
    assert again.count == 3 and again.confidence_sum == 2.5 and np.array_equal(again.histogram, [1, 2])
    assert Summary.from_arrays(Summary(2, np.ones(1), np.eye(1), np.ones((2, 1))).to_arrays()).histogram is None


def clusters(rng: np.random.Generator, count: int, centres: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`count` points around the given centres (K, D), each centre drawn with its weight."""
    chosen = rng.choice(len(centres), count, p=weights / weights.sum())
    return centres[chosen] + 0.3 * rng.standard_normal((count, centres.shape[1]))


def test_ndb_of_one_distribution_finds_about_no_differing_bins():
    rng = np.random.default_rng(0)
    centres = 4.0 * rng.standard_normal((20, 8))
    weights = rng.uniform(0.5, 1.5, 20)
    bins = stats.make_bins(clusters(rng, 10_000, centres, weights), 20)
    assert bins.centroids.shape == (20, 8) and bins.counts.sum() == 10_000
    differing = [stats.ndb(bins, clusters(rng, 5_000, centres, weights))["ndb"] for _ in range(5)]
    assert np.mean(differing) <= 2.5, differing  # about alpha x K = 1 differ by chance
    result = stats.ndb(bins, clusters(rng, 5_000, centres, weights))
    assert result["bins"] == 20 and result["ndb_k"] == result["ndb"] / 20 and result["bins_covered"] >= 19


def test_ndb_catches_a_distribution_with_half_its_bins_missing():
    rng = np.random.default_rng(1)
    centres = 4.0 * rng.standard_normal((20, 8))
    weights = np.ones(20)
    bins = stats.make_bins(clusters(rng, 10_000, centres, weights), 20)
    half = weights.copy()
    half[::2] = 0.0
    result = stats.ndb(bins, clusters(rng, 5_000, centres, half))
    assert result["ndb"] >= 18 and result["bins_covered"] <= 11, result
    assert stats.ndb(bins, clusters(rng, 5_000, centres, weights))["bins_covered"] >= 19


def test_ndb_two_proportion_test_matches_the_formula_on_two_bins():
    """Two bins at 0 and 10 on a line; the fakes split 70/30 against the real 50/50: z = 0.2 / se."""
    bins = stats.Bins(centroids=np.array([[0.0], [10.0]]), counts=np.array([500, 500]))
    fake = np.concatenate([np.zeros((140, 1)), np.full((60, 1), 10.0)])
    pooled = np.array([640, 560]) / 1200
    z = 0.2 / np.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 200))
    assert (z > 1.96).all()
    assert stats.ndb(bins, fake) == {"ndb": 2, "bins": 2, "ndb_k": 1.0, "bins_covered": 2}
    assert stats.ndb(bins, fake[:100])["bins_covered"] == 1, "a bin with none of the fakes is not covered"


def test_bin_count_shrinks_for_small_real_sets():
    assert stats.bin_count(10_000) == stats.NDB_BINS
    assert stats.bin_count(100) == 10 and stats.bin_count(19) == 0


def test_the_progress_bar_names_classes_as_modes_and_ndb_bins_as_covered():
    assert coverage({"modes_covered": 9, "classes": 10, "bins_covered": 18, "bins": 20}) == "9/10 modes"
    assert coverage({"bins_covered": 18, "bins": 20}) == "18/20 bins covered"
    assert coverage({"kid": 0.1}) == ""

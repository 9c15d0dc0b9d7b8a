"""Fast paths of library routines added for issue 15 (analysis throughput), each equal to the library's.

The detection's frozen outputs (``tests/test_detection_frozen.py``) pin what they compute inside
the pipeline; these tests pin each routine alone, on inputs the pipeline rarely meets (ties,
odd and even counts, both float widths), so a numpy or scikit-image release that changes the
library's behaviour is noticed here.
"""

import numpy as np
import pytest
from scipy import ndimage

from semqa.particles.primitives import majority3, median, nonnegative_line_fit


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_equals_numpy_to_the_bit(dtype: type) -> None:
    rng = np.random.default_rng(15)
    for i in range(600):
        n = int(rng.integers(1, 12)) if i % 4 == 0 else int(rng.integers(1, 5000))
        x = rng.normal(size=n).astype(dtype)
        if i % 3 == 0:
            x = np.round(x * 4).astype(dtype)  # many ties, as 16-bit frames have
        if i % 5 == 0:
            x = np.abs(x)
        expected, got = np.median(x), median(x)
        assert type(got) is type(expected)
        assert got == expected and np.signbit(got) == np.signbit(expected)


def test_median_of_a_2d_array_nan_and_empty_as_numpy() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert median(x) == np.median(x)
    assert np.isnan(median(np.array([1.0, np.nan, 0.0])))
    with pytest.warns(RuntimeWarning):
        assert np.isnan(median(np.empty(0)))


def test_crofton_perimeter_equals_scikit_image_to_the_bit() -> None:
    from scipy import ndimage
    from skimage.measure import perimeter_crofton as library

    from semqa.particles.primitives import perimeter_crofton

    rng = np.random.default_rng(15)
    masks = [np.ones((1, 1), bool), np.zeros((3, 4), bool), np.eye(7, dtype=bool)]
    for _ in range(400):
        shape = (int(rng.integers(1, 50)), int(rng.integers(1, 50)))
        masks.append(ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.5, 4)) > rng.uniform(0.4, 0.6))
    for mask in masks:
        assert perimeter_crofton(mask) == library(mask, directions=4)
    labels = rng.integers(0, 3, size=(20, 30))  # a label image counts its non-zero pixels, as the library's
    assert perimeter_crofton(labels) == library(labels, directions=4)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_opening_by_a_disc_equals_scipy(radius: int) -> None:
    from scipy import ndimage
    from skimage.morphology import disk

    from semqa.particles.primitives import open_disc

    rng = np.random.default_rng(radius)
    disc = disk(radius).astype(bool)
    for i in range(300):
        shape = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
        mask = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.3, 2)) > rng.uniform(0.3, 0.6)
        if i % 2:  # the contact test's crops: a part with a zero border
            mask[[0, -1]] = False
            mask[:, [0, -1]] = False
        np.testing.assert_array_equal(open_disc(mask, radius, disc), ndimage.binary_opening(mask, structure=disc))


def test_nonnegative_line_fit_equals_scipy_nnls_on_every_face() -> None:
    """The noise model's and the focus fit's non-negative line gives scipy.optimize.nnls's optimum,
    row by row and for many rows at once, inside and on each face of the constraint set."""
    from scipy.optimize import nnls

    rng = np.random.default_rng(15)
    faces = set()
    rows = []
    for _ in range(400):
        k = int(rng.integers(2, 17))
        x, w = rng.uniform(0.0, 1.0, k), rng.uniform(0.25, 4.0, k)
        # True (slope, intercept) of either sign, so the optimum lies inside or on any face.
        y = np.column_stack([x, np.ones(k)]) @ rng.normal(0.0, 1e-3, 2) + rng.normal(0.0, 1e-5, k)
        theirs, _ = nnls(np.column_stack([x, np.ones(k)]) * np.sqrt(w)[:, None], y * np.sqrt(w))
        ours = np.array(nonnegative_line_fit(x, y, w))
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12 * float(np.abs(theirs).max(initial=1e-3)))
        faces.add(tuple(ours > 0))
        if k == 8:
            rows.append((x, y, w, theirs))
    assert faces == {(True, True), (True, False), (False, True), (False, False)}
    x, y, w, expected = (np.array(v) for v in zip(*rows))
    np.testing.assert_allclose(np.column_stack(nonnegative_line_fit(x, y, w)), expected, rtol=1e-9, atol=1e-12)


def test_majority_vote_equals_the_median_filter() -> None:
    rng = np.random.default_rng(0)
    for shape in [(3, 3), (17, 40), (64, 64)]:
        mask = rng.random(shape) > 0.5
        assert np.array_equal(majority3(mask), ndimage.median_filter(mask.astype(np.uint8), size=3) > 0)


def test_label_sets_give_the_roots_of_scipys_disjoint_set() -> None:
    """The splitting numbers merged regions by their roots: the same roots as the library's, after
    merges in any order, of sets of equal and unequal sizes, repeated and redundant ones included."""
    from scipy.cluster.hierarchy import DisjointSet

    from semqa.particles.primitives import LabelSets

    rng = np.random.default_rng(15)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        ours, theirs = LabelSets(n), DisjointSet(range(1, n + 1))
        for _ in range(int(rng.integers(0, 3 * n))):
            a, b = (int(v) for v in rng.integers(1, n + 1, 2))
            assert ours.merge(a, b) == theirs.merge(a, b)
            probe = int(rng.integers(1, n + 1))
            assert ours[probe] == theirs[probe]
        assert ours.roots() == [theirs[r] for r in range(1, n + 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_median_mean_equals_scipy_to_the_bit(dtype: type) -> None:
    """The contact test's sides' levels: per label, the library's median (mean of the middle two)."""
    from semqa.particles.primitives import label_median_mean

    rng = np.random.default_rng(15)
    for i in range(300):
        n = int(rng.integers(1, 12))
        ids = np.concatenate([np.arange(1, n + 1), rng.integers(1, n + 1, int(rng.integers(0, 400)))])
        rng.shuffle(ids)
        values = rng.normal(size=ids.size).astype(dtype)
        if i % 3 == 0:
            values = np.round(values * 3).astype(dtype)  # ties
        expected = ndimage.median(values, ids, index=np.arange(1, n + 1))
        got = label_median_mean(values, ids, n)
        assert got.dtype == np.asarray(expected).dtype
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError):
        label_median_mean(np.zeros(3), np.array([1, 1, 3]), 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_max_equals_scipy_to_the_bit(dtype: type) -> None:
    """The merge tree's region peaks and the edge rule's deepest pixels: per label, the library's maximum."""
    from semqa.particles.primitives import label_max

    rng = np.random.default_rng(16)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        ids = rng.integers(0, n + 1, int(rng.integers(0, 400)))
        values = rng.normal(size=ids.size).astype(dtype)
        got = label_max(values, ids, n)
        assert got.dtype == np.float64 and got.shape == (n + 1,)
        present = np.isin(np.arange(n + 1), ids)
        expected = np.asarray(ndimage.maximum(values, ids, index=np.arange(n + 1)), dtype=np.float64) if ids.size else np.zeros(n + 1)
        np.testing.assert_array_equal(got[present], expected[present])
        assert not got[~present].any()
    big = np.array([3, 70_000, 3])  # labels past 2**16 sort as themselves
    np.testing.assert_array_equal(label_max(np.array([1.0, 2.0, 5.0]), big, 70_000)[[3, 70_000]], [5.0, 2.0])


@pytest.mark.parametrize("s", [0.5, 1.0, 2.0, 3.0])
def test_dog_norms_from_border_columns_equal_the_full_filter_matrices(s: float) -> None:
    """The detection's per-position DoG norms are computed from the border columns and one interior
    column of the filter matrices: the same values, to the bit, as from the full matrices."""
    from semqa.particles.detection import SURROUND, _dog_norm_1d

    for n in (1, 2, 7, 24, 48, 77, 96, 200, 385, 768):
        eye = np.eye(n, dtype=np.float64)
        ga = ndimage.gaussian_filter1d(eye, s, axis=0, mode="reflect")
        gb = ndimage.gaussian_filter1d(eye, SURROUND * s, axis=0, mode="reflect")
        expected = ((ga * ga).sum(0), (gb * gb).sum(0), (ga * gb).sum(0))
        for got, want in zip(_dog_norm_1d.__wrapped__(n, s), expected):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_cross_equals_the_library_filter(dtype: type) -> None:
    from semqa.particles.primitives import max_cross

    rng = np.random.default_rng(15)
    cross = ndimage.generate_binary_structure(2, 1)
    for i in range(200):
        shape = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
        image = rng.normal(size=shape).astype(dtype)
        if i % 4 == 0:
            image = np.round(image).astype(dtype)  # ties
        np.testing.assert_array_equal(max_cross(image), ndimage.maximum_filter(image, footprint=cross))

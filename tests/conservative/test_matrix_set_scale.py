"""MatrixSet queries are homogeneous: correct from 1e-300 to 1e300 (no over/underflow of squares)."""

import math

import numpy as np
import pytest

from conservative import MatrixSet
from theory import distance, gap, hausdorff, project

EPS = np.finfo(np.float64).eps
SCALES = [1e-300, 1e-200, 1e-170, 1e-160, 1e-100, 1.0, 1e100, 1e154, 1e200, 1e300]

TRIANGLE = np.array([[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]]])  # conv of 3 points of R^{1×2}
OUTSIDE = np.array([[1.0, 1.0]])  # distance 1/√2 to the triangle (nearest point (1/2, 1/2))
INSIDE = np.array([[0.25, 0.5]])


def _floor(value, scale, c=64):
    return max(abs(value), c * EPS) * scale


@pytest.mark.parametrize("s", SCALES)
def test_distance_scales_with_the_data(s):
    S = MatrixSet(s * TRIANGLE)
    lo, hi = S.distance_bounds(s * OUTSIDE)
    true = s / math.sqrt(2)
    assert lo <= true * (1 + 1e-12) and hi >= true * (1 - 1e-12)
    assert hi - lo <= 1e-9 * true
    d = distance(s * OUTSIDE, S)
    assert abs(float(d) - true) <= 64 * EPS * true
    P = project(s * OUTSIDE, S)
    assert np.allclose(P / s, [[0.5, 0.5]], rtol=0, atol=1e-12)


@pytest.mark.parametrize("s", SCALES)
def test_contains_at_tol_zero(s):
    S = MatrixSet(s * TRIANGLE)
    assert not S.contains(s * OUTSIDE, tol=0)
    assert S.contains(s * TRIANGLE[1], tol=0)  # a vertex
    near = s * np.array([[0.5, 0.5 + 1e-6]])  # just outside the edge x + y = 1
    assert not S.contains(near, tol=0)


@pytest.mark.parametrize("s", SCALES)
def test_support_and_diameter_scale(s):
    S = MatrixSet(s * TRIANGLE)
    assert S.support(np.array([[1.0, 2.0]])) == pytest.approx(2 * s, rel=1e-14)
    assert S.support(np.array([[1e-200, 2e-200]])) == pytest.approx(2e-200 * s, rel=1e-14) or 2e-200 * s < 1e-290
    assert S.diameter() == pytest.approx(math.sqrt(2) * s, rel=1e-14)
    assert np.allclose(S.argsupport(np.array([[1.0, 2.0]])) / s, [[0.0, 1.0]])


@pytest.mark.parametrize("s", [1e-300, 1e-160, 1.0, 1e154, 1e300])
def test_gap_and_hausdorff_scale(s):
    X = MatrixSet(s * TRIANGLE)
    Y = MatrixSet(s * 0.5 * TRIANGLE)  # the triangle shrunk towards the origin
    g = gap(X, Y)  # farthest vertices (1,0), (0,1) from conv{0, (½,0), (0,½)}: distance ½
    assert g.lower <= 0.5 * s * (1 + 1e-12) and float(g) >= 0.5 * s * (1 - 1e-12)
    assert float(g) - g.lower <= 1e-9 * s
    assert float(gap(Y, X)) <= _floor(0.0, s)
    h = hausdorff(X, Y)
    assert float(h) == pytest.approx(0.5 * s, rel=1e-9)


def test_mixed_scales_in_one_query():
    # a tiny query against a huge set and vice versa: nothing overflows
    S = MatrixSet(1e300 * TRIANGLE)
    lo, hi = S.distance_bounds(np.array([[-1e-300, 0.0]]))
    assert lo <= 1e-300 * (1 + 1e-9) and hi >= 1e-300 * (1 - 1e-9) or hi <= 1e-280
    assert S.contains(np.zeros((1, 2)), tol=0)
    T = MatrixSet(1e-300 * TRIANGLE)
    assert T.distance(np.array([[1e300, 1e300]])) == pytest.approx(math.sqrt(2) * 1e300, rel=1e-12)


@pytest.mark.parametrize("bad", [float("nan"), -1.0, float("inf"), -1e-300])
def test_contains_rejects_bad_tol(bad):
    S = MatrixSet(TRIANGLE)
    with pytest.raises(ValueError, match="tol"):
        S.contains(INSIDE, tol=bad)


@pytest.mark.parametrize("bad", ["0.1", None, True, [0.1]])
def test_contains_rejects_non_numeric_tol(bad):
    S = MatrixSet(TRIANGLE)
    with pytest.raises(TypeError, match="tol"):
        S.contains(INSIDE, tol=bad)


def test_scale_overflow_is_an_error():
    S = MatrixSet(1e300 * TRIANGLE)
    with pytest.raises(ValueError, match="non-finite|overflow"):
        S.scale(1e300)


@pytest.mark.parametrize("s", [1e-300, 1e-200, 1e-160, 1e-100, 1e100, 1e154, 1e300])
def test_random_sets_distances_are_homogeneous(s):
    rng = np.random.default_rng(3)
    Xg, Yg = rng.standard_normal((5, 2, 3)), rng.standard_normal((4, 2, 3))
    base = gap(MatrixSet(Xg), MatrixSet(Yg))
    scaled = gap(MatrixSet(s * Xg), MatrixSet(s * Yg))
    floor = max(base.accuracy, 64 * EPS * float(base))
    assert scaled.lower / s <= float(base) + 1e3 * floor
    assert float(scaled) / s >= base.lower - 1e3 * floor
    assert abs(float(scaled) / s - float(base)) <= 1e3 * floor
    M = rng.standard_normal((2, 3))
    d0 = distance(M, MatrixSet(Yg))
    d1 = distance(s * M, MatrixSet(s * Yg))
    assert abs(float(d1) / s - float(d0)) <= 1e3 * max(d0.accuracy, 64 * EPS * float(d0))

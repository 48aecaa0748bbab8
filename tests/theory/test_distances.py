"""gap / hausdorff / distance: exactness against cvxpy, metric axioms, certificates."""

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conservative import MatrixSet
from theory import CertifiedDistance, distance, gap, hausdorff, project


def random_hull(seed, k=4, shape=(2, 2), scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    return MatrixSet(shift + scale * rng.standard_normal((k,) + shape))


def cvxpy_distance(M, S):
    G = S.vertices.reshape(len(S.vertices), -1)
    lam = cp.Variable(len(G), nonneg=True)
    prob = cp.Problem(cp.Minimize(cp.norm(M.ravel() - G.T @ lam)), [cp.sum(lam) == 1])
    prob.solve(solver=cp.CLARABEL)
    return prob.value


def test_point_to_set_distance_matches_cvxpy():
    S = random_hull(0, k=5)
    rng = np.random.default_rng(1)
    for _ in range(5):
        M = 3 * rng.standard_normal((2, 2))
        d = distance(M, S)
        assert isinstance(d, CertifiedDistance)
        assert d.lower <= float(d) + 1e-15
        assert float(d) == pytest.approx(cvxpy_distance(M, S), abs=1e-7)
        assert np.linalg.norm(project(M, S) - M) == pytest.approx(float(d), abs=1e-9)


def test_gap_matches_cvxpy_over_vertices():
    X, Y = random_hull(2, k=3), random_hull(3, k=4, scale=0.5)
    g = gap(X, Y)
    expected = max(cvxpy_distance(v, Y) for v in X.vertices)
    assert float(g) == pytest.approx(expected, abs=1e-7)
    assert g.lower <= float(g)
    assert Y.distance(g.witness) == pytest.approx(float(g), abs=1e-9)


def test_gap_closed_form_intervals():
    X = MatrixSet(np.array([[[0.0]], [[3.0]]]))
    Y = MatrixSet(np.array([[[1.0]], [[2.0]]]))
    assert float(gap(X, Y)) == pytest.approx(1.0, abs=1e-9)
    assert float(gap(Y, X)) == pytest.approx(0.0, abs=1e-9)
    assert float(hausdorff(X, Y)) == pytest.approx(1.0, abs=1e-9)


def test_gap_is_zero_iff_inclusion():
    Y = random_hull(4, k=5)
    X = MatrixSet(0.5 * Y.vertices[:2] + 0.5 * Y.vertices[2:4])  # points of Y
    assert float(gap(X, Y)) <= 1e-8
    assert float(gap(Y, X)) > 1e-3


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 10_000))
def test_hausdorff_axioms(s1, s2, s3):
    X, Y, Z = random_hull(s1, k=3), random_hull(s2, k=3), random_hull(s3, k=3)
    hxy, hyx = hausdorff(X, Y), hausdorff(Y, X)
    assert float(hxy) == pytest.approx(float(hyx), abs=1e-8)  # symmetry
    assert float(hausdorff(X, X)) <= 1e-8  # zero on equal sets
    assert float(hxy) > 0 or s1 == s2  # different random hulls are at positive distance
    # triangle inequality, with the certified bounds: h(X,Z) ≥ lower, h(X,Y)+h(Y,Z) ≤ upper
    assert hausdorff(X, Z).lower <= float(hxy) + float(hausdorff(Y, Z)) + 1e-12
    assert 0 <= hxy.lower <= float(hxy)


def test_shape_mismatch_and_bad_input():
    with pytest.raises(ValueError, match="shape"):
        gap(random_hull(0, shape=(2, 2)), random_hull(1, shape=(2, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        hausdorff(np.array([[[np.nan]]]), MatrixSet([[[0.0]]]))
    with pytest.raises(ValueError, match="empty"):
        gap([], MatrixSet([[[0.0]]]))
    with pytest.raises(ValueError):
        distance(np.zeros((3, 3)), random_hull(0))


def test_certified_distance_is_a_float_and_immutable():
    d = distance(np.array([[2.0]]), MatrixSet([[[0.0]], [[1.0]]]))
    assert d == pytest.approx(1.0) and d < 2 and d.upper == float(d)
    with pytest.raises(AttributeError):
        d.lower = 0.0

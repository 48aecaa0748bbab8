"""Implicit vs piggyback limits: inclusion, strictness, covering radius."""

import numpy as np
import pytest

from conservative import MatrixSet
from theory import compare_limits, implicit_set

STRICT = MatrixSet([[[0.5, 1.0]], [[-0.5, 1.0]]])  # J_imp = [2/3, 2] ⊊ J_pb = [0, 2]


def test_strict_inclusion_scalar_example():
    c = compare_limits(STRICT, resolution=200)
    assert c.strict and c.includes
    assert c.excess == pytest.approx(2 / 3, abs=1e-9)
    assert c.witness.ravel() == pytest.approx([0.0], abs=1e-9)
    assert 0 < c.excess_lower <= 2 / 3
    assert "⊊" in c.summary()


def test_implicit_set_samples_by_hand():
    imp = implicit_set(STRICT, resolution=4)
    assert sorted(imp.samples.ravel()) == pytest.approx(sorted(1 / (1 - a) for a in np.linspace(-0.5, 0.5, 5)))
    assert sorted(imp.vertex_images.ravel()) == pytest.approx([2 / 3, 2.0])
    lo, hi = imp.distance(np.array([[0.0]]))
    assert lo <= 2 / 3 <= hi + 1e-12


def test_equal_limits_when_all_selections_agree():
    # same A for all selections: J_pb = J_imp = (I - A)^{-1} conv{B_i}
    fam = MatrixSet([[[0.5, 1.0]], [[0.5, 2.0]]])
    c = compare_limits(fam, resolution=50)
    assert c.includes and not c.strict
    assert c.excess <= 1e-8


def test_covering_radius_is_valid():
    imp = implicit_set(STRICT, resolution=10)
    fine = implicit_set(STRICT, resolution=1000)
    for s in fine.samples:
        assert imp.distance(s)[1] <= imp.covering_radius + 1e-12


def test_bad_input():
    with pytest.raises(ValueError, match="singular"):
        implicit_set(MatrixSet([[[1.0, 1.0]], [[0.0, 1.0]]]))
    with pytest.raises(ValueError, match="resolution"):
        implicit_set(STRICT, resolution=0)
    with pytest.raises(ValueError, match="max_samples"):
        implicit_set(MatrixSet(np.random.default_rng(0).standard_normal((6, 1, 2)) * 0.1), resolution=100,
                     max_samples=1000)
    with pytest.raises(ValueError, match="do not contract"):
        compare_limits(MatrixSet([[[1.5, 1.0]], [[0.0, 1.0]]]))


def test_compare_limits_reuses_a_fixed_set_and_rejects_a_wrong_one():
    from conservative import MatrixSet
    from theory import compare_limits, contraction_factor, fixed_set

    family = MatrixSet(np.array([[[0.5, 1.0]], [[-0.5, 1.0]]]))
    fx = fixed_set(family, tol=1e-9)
    cert = contraction_factor(np.array([[[0.5]], [[-0.5]]]))
    a = compare_limits(family, fixed=fx, contraction=cert)
    b = compare_limits(family)
    assert abs(a.excess - b.excess) < 1e-9 and a.strict and b.strict
    with pytest.raises(ValueError, match="fixed"):
        compare_limits(family, fixed=(MatrixSet(np.zeros((1, 2, 2))), 0.0))


@pytest.mark.parametrize("scale", [1e-200, 1.0, 1e200])
def test_implicit_set_distances_do_not_underflow_or_overflow(scale):
    # J_imp of {[a, b]} is {b / (1 - a)}: distances between points of size `scale` are of size `scale`
    fam = np.array([[[0.5, 1.0 * scale]], [[0.25, 1.0 * scale]]])
    imp = implicit_set(MatrixSet(fam), resolution=20)
    lo, up = imp.distance(np.array([[5.0 * scale]]))
    # the nearest point of J_imp = [4/3, 2]·scale is 2·scale: the distance is 3·scale
    assert lo <= 3.0 * scale * (1 + 1e-12) and up >= 3.0 * scale * (1 - 1e-12) and up > 0


def test_limits_follow_a_product_contraction_when_no_ellipsoid_contracts():
    """Heavy-ball × 0.9 (α = 1, β = 3/4): no ellipsoidal norm contracts (best ≈ 1.03), products of
    length 2 do.  compare_limits and implicit_set use that certificate: J_imp ⊆ J_pb holds up to the
    fixed-set error, and the covering radius of the samples is finite and covers J_imp."""
    from theory import contraction_factor
    from theory._contraction import product_contraction

    M1 = 0.9 * np.array([[0.75, -0.75], [1.0, 0.0]])
    M2 = 0.9 * np.array([[1.5, -0.75], [1.0, 0.0]])
    b = np.array([[1.0], [0.0]])
    fam = np.array([np.hstack([M1, b]), np.hstack([M2, b])])
    A = fam[:, :, :2]
    assert not contraction_factor(A).contracts
    prod = product_contraction(A)
    assert prod.contracts and prod.length >= 2
    imp = implicit_set(fam, resolution=20, contraction=prod)
    assert np.isfinite(imp.covering_radius)
    rng = np.random.default_rng(0)
    for lam in rng.dirichlet(np.ones(2), size=50):
        Al, Bl = np.tensordot(lam, A, 1), np.tensordot(lam, fam[:, :, 2:], 1)
        M = np.linalg.solve(np.eye(2) - Al, Bl)
        assert imp.distance(M)[0] == 0.0  # within the covering radius of a sample
    cmp = compare_limits(fam, resolution=20, tol=1e-6)
    assert cmp.includes and cmp.pb_error <= 1e-6

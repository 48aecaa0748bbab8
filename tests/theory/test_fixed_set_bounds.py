"""fixed_set_bounds: certified inner set and outer template polytope of conv fix(𝒥), any dimension."""

import numpy as np
import pytest

from conservative import MatrixSet
from theory import fixed_set, fixed_set_bounds, jsr

EPS = np.finfo(np.float64).eps
M1 = np.array([[0.75, -0.75], [1.0, 0.0]])
M2 = np.array([[1.5, -0.75], [1.0, 0.0]])


def random_family(m, target, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((2, 2, 2))
    A *= target / jsr(A).upper
    return MatrixSet(np.concatenate([A, rng.standard_normal((2, 2, m))], axis=2))


def test_two_d_bounds_bracket_the_exact_fixed_set():
    fam = random_family(1, 0.5, 0)
    X, err_x = fixed_set(fam, tol=1e-10)  # exact reference: dist_H(X, fix) ≤ err_x
    res = fixed_set_bounds(fam, tol=1e-7)
    assert res.complete and res.error <= 1e-7
    floor = max(err_x, 64 * EPS * float(np.abs(X.vertices).max()))
    # inner ⊆ fix up to e_in
    for p in res.inner.vertices:
        assert X.distance(p) <= res.e_in + floor
    D, Dn = res.directions, np.linalg.norm(res.directions.reshape(len(res.directions), -1), axis=1)
    h_fix = np.array([X.support(d) for d in D])
    h_in = np.array([res.inner.support(d) for d in D])
    # fix ⊆ outer, and the lower values are below h_fix
    assert np.all(h_fix <= res.upper + floor * Dn)
    assert np.all(res.lower <= h_fix + floor * Dn)
    # the reported error bounds the true template gaps on both sides
    assert np.max(np.abs(h_fix - h_in) / Dn) <= res.error + floor
    assert np.max((res.upper - h_fix) / Dn) <= res.error + floor
    # the full Hausdorff bound is a bound
    from theory import hausdorff
    assert float(hausdorff(X, res.inner)) <= res.hausdorff_bound + floor


def test_four_d_brute_force_iteration_lands_inside_the_bounds():
    fam = random_family(2, 0.5, 1)  # fixed sets in R^{2×2}
    res = fixed_set_bounds(fam, tol=1e-6)
    assert res.complete and res.error <= 1e-6
    V = fam.vertices
    A, B = V[:, :, :2], V[:, :, 2:]
    rng = np.random.default_rng(3)
    # the set recursion from a point along random words (and random convex combinations of the
    # members): after 80 steps (ρ^80 ≈ 1e-24) every orbit point is within rounding of fix 𝒥
    X = np.zeros((400, 2, 2))
    for _ in range(80):
        lam = rng.uniform(size=(400, 1, 1)) ** 4
        lam = np.where(rng.uniform(size=(400, 1, 1)) < 0.5, lam, 1 - lam)
        Aw = lam * A[0] + (1 - lam) * A[1]
        Bw = lam * B[0] + (1 - lam) * B[1]
        X = Aw @ X + Bw
    scale = float(np.abs(X).max())
    floor = 1e3 * EPS * scale
    D = res.directions
    Dn = np.linalg.norm(D.reshape(len(D), -1), axis=1)
    h_in = np.array([res.inner.support(d) for d in D])
    vals = np.einsum("pij,kij->pk", D, X)
    assert np.all(vals <= res.upper[:, None] + floor * Dn[:, None])  # inside the outer polytope
    assert np.all(vals <= h_in[:, None] + (res.error + floor) * Dn[:, None])  # within error of inner
    for x in X[:40]:
        assert res.inner.distance(x) <= res.hausdorff_bound + floor


def test_non_contracting_family_and_bad_input():
    hb = MatrixSet(np.array([np.hstack([M1, [[1.0], [0.0]]]), np.hstack([M2, [[1.0], [0.0]]])]))
    with pytest.raises(ValueError, match=r"family: .*JSR ∈ \[1\.03.*≥ 1"):
        fixed_set_bounds(hb)
    fam = random_family(1, 0.5, 0)
    with pytest.raises(ValueError, match="directions"):
        fixed_set_bounds(fam, directions=np.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="directions"):
        fixed_set_bounds(fam, directions=np.zeros((1, 2, 1)))
    with pytest.raises(ValueError, match="tol"):
        fixed_set_bounds(fam, tol=-1.0)
    with pytest.raises(TypeError, match="max_nodes"):
        fixed_set_bounds(fam, max_nodes=1.5)
    with pytest.raises(ValueError, match="family"):
        fixed_set_bounds(np.ones((2, 2, 2)))  # A square, no B block

"""Invariant polytopes: exact JSR proofs and honest failures."""

import time

import numpy as np
import pytest

from theory import invariant_polytope, verify_polytope
from theory._invariant_polytope import _l1_member

M1 = np.array([[0.75, -0.75], [1.0, 0.0]])
M2 = np.array([[1.5, -0.75], [1.0, 0.0]])


def test_golden_pair_polytope_is_invariant():
    A = np.array([[[1.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]])
    poly = invariant_polytope(A, (0, 1))
    assert poly.success
    assert poly.rho_hat == pytest.approx((1 + 5**0.5) / 2, rel=1e-14)
    assert poly.rho_hat <= poly.bound <= poly.rho_hat * (1 + 1e-9)
    # re-check: every image of a vertex lies in bound/ρ̂ · absconv(V)
    for a in A:
        for v in poly.vertices:
            c, _ = _l1_member(poly.vertices, a @ v / poly.bound)
            assert np.abs(c).sum() <= 1 + 1e-9


def test_heavy_ball_polytope():
    poly = invariant_polytope([M1, M2], (0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1))
    assert poly.success and poly.bound <= poly.rho_hat * (1 + 1e-9)
    assert "vertices" in repr(poly)


def test_non_maximizing_word_fails_honestly():
    poly = invariant_polytope([M1, M2], (0, 0, 1, 1), max_vertices=60)
    assert not poly.success and "max_vertices" in poly.reason
    assert poly.bound == np.inf


def test_complex_leading_eigenvalue_gets_a_complex_polytope():
    # 0.9·rotation: JSR = 0.9; the eigenvector v and v̄ span absconv_ℂ, which the rotation maps onto itself
    rot = 0.9 * np.array([[np.cos(1.0), -np.sin(1.0)], [np.sin(1.0), np.cos(1.0)]])
    poly = invariant_polytope([rot], (0,))
    assert poly.success and poly.kind == "complex" and np.iscomplexobj(poly.vertices)
    assert poly.rho_hat == pytest.approx(0.9, rel=1e-14)
    assert 0.9 * (1 - 1e-15) <= poly.bound <= 0.9 * (1 + 1e-9)
    # with a non-rotating second member the bound stays a true bound: above every product's radius
    B = np.array([[0.3, 0.8], [-0.2, 0.1]])
    poly = invariant_polytope([rot, B], (0,))
    assert poly.success
    for w in [(1,), (0, 1), (0, 0, 1), (0, 1, 1)]:
        P = np.linalg.multi_dot([[rot, B][i] for i in w] + [np.eye(2)])
        assert np.abs(np.linalg.eigvals(P)).max() ** (1 / len(w)) <= poly.bound * (1 + 1e-12)


def test_bad_word():
    with pytest.raises(ValueError, match="word"):
        invariant_polytope([M1], (1,))
    with pytest.raises(ValueError, match="word"):
        invariant_polytope([M1], ())


def kozyakin_pair():
    """Kozyakin's pair: A = [[0, -1/κ], [κ, 2cos θ]], B = [[0, -κ], [1/κ, 2cos θ]], θ = 2π/3, κ = 1.1³.

    Source: V. Kozyakin, "On sets of matrices having different spectrum maximizing products with
    unequal numbers of the same name factors", arXiv:2407.10513 (2024), and his script
    SMP_JSRToolbox.m (the MATLAB JSR toolbox finds a 12-vertex extremal polytope).  AAB and ABB
    are both spectrum maximizing: ρ(AAB) = ρ(ABB) = 1.1⁶, so JSR = 1.1² = 1.21.
    """
    th, k = 2 * np.pi / 3, 1.1**3
    c = 2 * np.cos(th)
    return np.array([[[0.0, -1 / k], [k, c]], [[0.0, -k], [1 / k, c]]])


def test_kozyakin_pair_is_proved_exact_by_a_balanced_polytope():
    A = kozyakin_pair()
    t0 = time.monotonic()
    poly = invariant_polytope(A, [(0, 0, 1), (0, 1, 1)])
    assert time.monotonic() - t0 < 10  # loose: about 0.1 s here
    assert poly.success and poly.exact and poly.check == "rational"
    assert poly.rho_hat == pytest.approx(1.21, rel=1e-14)
    assert poly.rho_hat <= poly.bound <= poly.rho_hat * (1 + 1e-12)
    # absconv of N stored vertices has 2N vertices; the JSR toolbox's polytope has 12
    assert 2 * len(poly.vertices) <= 12
    assert set(poly.words) == {(0, 0, 1), (0, 1, 1)}


def test_rational_recheck_rejects_a_perturbed_certificate():
    A = kozyakin_pair()
    poly = invariant_polytope(A, [(0, 0, 1), (0, 1, 1)])
    assert verify_polytope(A, poly.vertices, poly.rho_hat) <= poly.rho_hat * (1 + 1e-12)
    V = poly.vertices.copy()
    V[0] *= 1 - 1e-6  # the image of the orbit's last vertex now sticks out by ~1e-6
    bad = verify_polytope(A, V, poly.rho_hat)
    assert bad >= poly.rho_hat * (1 + 5e-7)  # a bound, but not a proof of JSR = ρ̂
    # any ρ gives a valid bound: with a too small ρ the bound still covers the true JSR
    assert verify_polytope(A, poly.vertices, 1.2) >= 1.21 * (1 - 1e-15)
    # a degenerate (not full-dimensional) vertex set proves nothing
    assert verify_polytope(A, np.array([[1.0, 0.0], [2.0, 0.0]]), 1.21) == np.inf


def test_tight_tolerances_keep_the_golden_polytope_small():
    A = np.array([[[1.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]])
    poly = invariant_polytope(A, (0, 1))
    assert poly.exact and len(poly.vertices) <= 4
    # no two stored vertices are ±near-duplicates
    V = poly.vertices
    for i in range(len(V)):
        for j in range(i):
            assert min(np.abs(V[i] - V[j]).max(), np.abs(V[i] + V[j]).max()) > 1e-9


def test_cone_polytope_for_nonnegative_families():
    # golden pair (nonnegative): the positive polytope needs only the Perron orbit
    G = np.array([[[1.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]])
    poly = invariant_polytope(G, (0, 1), kind="cone")
    assert poly.kind == "cone" and poly.exact and len(poly.vertices) == 2
    assert poly.rho_hat == pytest.approx((1 + 5**0.5) / 2, rel=1e-14)
    A = np.random.default_rng(0).random((2, 8, 8))
    rho = [np.abs(np.linalg.eigvals(a)).max() for a in A]
    w = (int(np.argmax(rho)),)
    cone = invariant_polytope(A, w, kind="cone")
    sym = invariant_polytope(A, w)
    assert cone.exact and sym.exact and len(cone.vertices) < len(sym.vertices)
    # a cone certificate is a true norm bound: every product's spectral radius stays below it
    for word in [(0, 1), (1, 1, 0), (0, 0, 1, 1)]:
        P = np.linalg.multi_dot([A[i] for i in word])
        assert np.abs(np.linalg.eigvals(P)).max() ** (1 / len(word)) <= cone.bound * (1 + 1e-12)


def test_cone_kind_needs_a_nonnegative_family():
    with pytest.raises(ValueError, match="nonnegative"):
        invariant_polytope([M1, M2], (0,), kind="cone")
    with pytest.raises(ValueError, match="kind"):
        invariant_polytope([M1, M2], (0,), kind="elliptic")

"""Invariant polytopes: exact JSR proofs and honest failures."""

import numpy as np
import pytest

from theory import invariant_polytope
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


def test_complex_leading_eigenvalue_is_not_supported():
    rot = 0.9 * np.array([[np.cos(1.0), -np.sin(1.0)], [np.sin(1.0), np.cos(1.0)]])
    poly = invariant_polytope([rot], (0,))
    assert not poly.success and "complex" in poly.reason


def test_bad_word():
    with pytest.raises(ValueError, match="word"):
        invariant_polytope([M1], (1,))
    with pytest.raises(ValueError, match="word"):
        invariant_polytope([M1], ())

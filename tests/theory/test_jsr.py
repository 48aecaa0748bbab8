"""Joint spectral radius: known values, certificates, brute force, exact sympy checks."""

import itertools

import numpy as np
import pytest
import sympy

from conservative import MatrixSet
from theory import exact_eigenvalues, jsr, symmetric_lift, word_product

GOLDEN = (1 + 5**0.5) / 2
M1 = np.array([[0.75, -0.75], [1.0, 0.0]])  # heavy-ball, f'' = 1 branch (α = 1, β = 3/4)
M2 = np.array([[1.5, -0.75], [1.0, 0.0]])  # heavy-ball, f'' = 1/4 branch


def check_certificate(A, res):
    A = np.asarray(A)
    w = res.certificate
    val = np.abs(np.linalg.eigvals(word_product(A, w))).max() ** (1 / len(w))
    assert val == pytest.approx(res.lower, rel=1e-12)
    assert res.lower <= res.upper


def test_golden_ratio_pair():
    A = [np.array([[1.0, 1.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [1.0, 1.0]])]
    res = jsr(A, tol=1e-6)
    assert res.lower <= GOLDEN * (1 + 1e-12) and res.upper >= GOLDEN * (1 - 1e-12)
    assert res.upper - res.lower <= 1e-6
    assert sorted(res.certificate) == [0, 1]
    check_certificate(A, res)


def test_single_matrix_is_its_spectral_radius():
    A = np.array([[0.5, 2.0], [0.0, -0.7]])
    res = jsr([A], tol=1e-6)
    assert res.lower == pytest.approx(0.7, rel=1e-12)
    assert res.upper <= 0.7 * (1 + 1e-6)
    rot = 0.9 * np.array([[np.cos(1.0), -np.sin(1.0)], [np.sin(1.0), np.cos(1.0)]])  # complex eigenvalues
    res = jsr(MatrixSet(rot))
    assert res.lower == pytest.approx(0.9, rel=1e-12) and res.upper <= 0.9 * (1 + 1e-6)


def test_commuting_diagonal_family():
    A = [np.diag([0.5, 1.2, -0.3]), np.diag([-1.1, 0.2, 0.9])]
    res = jsr(A, tol=1e-6)
    assert res.lower == pytest.approx(1.2, rel=1e-12)
    assert res.upper <= 1.2 * (1 + 1e-6)


def test_heavy_ball_family_exact():
    res = jsr([M1, M2], tol=1e-6)
    assert res.lower > (9 / 8) ** 0.25 > 1  # better than the slides' word M1M1M2M2
    assert res.exact and res.upper <= res.lower * (1 + 1e-6)
    assert len(res.certificate) == 11
    check_certificate([M1, M2], res)


def test_heavy_ball_word_has_eigenvalue_minus_9_8_exactly():
    eig = exact_eigenvalues([M1, M2], (0, 0, 1, 1))
    assert sympy.Rational(-9, 8) in eig
    assert set(eig) == {sympy.Rational(-9, 8), sympy.Rational(-9, 32)}
    assert jsr([M1, M2], invariant_polytope_search=False, max_length=4).lower >= (9 / 8) ** 0.25 - 1e-15


def brute_force(A, L):
    best = 0.0
    for length in range(1, L + 1):
        for w in itertools.product(range(len(A)), repeat=length):
            best = max(best, np.abs(np.linalg.eigvals(word_product(A, w))).max() ** (1 / length))
    return best


@pytest.mark.parametrize("seed,n,k", [(0, 2, 2), (1, 3, 2), (2, 3, 3), (3, 4, 2)])
def test_bounds_bracket_brute_force_products(seed, n, k):
    A = np.random.default_rng(seed).standard_normal((k, n, n))
    res = jsr(A, tol=1e-4, max_length=10, time_limit=10)
    assert res.upper >= brute_force(A, 6) * (1 - 1e-12)
    assert res.lower <= res.upper
    check_certificate(A, res)


def test_symmetric_lift_powers_the_jsr():
    A = np.random.default_rng(5).standard_normal((2, 3, 3))
    L2 = symmetric_lift(A, 2)
    assert L2.shape == (2, 6, 6)
    for w in [(0,), (1,), (0, 1), (0, 0, 1)]:
        r = np.abs(np.linalg.eigvals(word_product(A, w))).max()
        r2 = np.abs(np.linalg.eigvals(word_product(L2, w))).max()
        assert r2 == pytest.approx(r**2, rel=1e-10)
        assert np.linalg.norm(word_product(L2, w), 2) == pytest.approx(np.linalg.norm(word_product(A, w), 2) ** 2,
                                                                       rel=1e-10)


def test_zero_family_and_result_repr():
    assert jsr([np.zeros((2, 2))]).upper == 0.0
    res = jsr([np.diag([0.5, 0.25])])
    assert "JSR" in repr(res) and res.ratio >= 1


def test_bad_input():
    with pytest.raises(ValueError, match="square"):
        jsr([np.zeros((2, 3))])
    with pytest.raises(ValueError, match="empty"):
        jsr([])
    with pytest.raises(ValueError, match="different shapes"):
        jsr([np.eye(2), np.eye(3)])
    with pytest.raises(ValueError, match="non-finite"):
        jsr([np.array([[np.nan]])])
    with pytest.raises(ValueError, match="tol"):
        jsr([np.eye(2)], tol=0)
    with pytest.raises(ValueError, match="tol"):
        jsr([np.eye(2)], tol=1e-15)
    with pytest.raises(ValueError, match="word"):
        exact_eigenvalues([np.eye(2)], (0, 3))


def test_kozyakin_pair_exact_with_two_spectrum_maximizing_products():
    """Kozyakin (arXiv:2407.10513; script SMP_JSRToolbox.m): θ = 2π/3, κ = 1.1³,
    A = [[0, -1/κ], [κ, 2cos θ]], B = [[0, -κ], [1/κ, 2cos θ]]; AAB and ABB are both spectrum
    maximizing with ρ = 1.1⁶, JSR = 1.21 (the JSR toolbox certifies it with a 12-vertex polytope)."""
    th, k = 2 * np.pi / 3, 1.1**3
    A = [np.array([[0.0, -1 / k], [k, 2 * np.cos(th)]]), np.array([[0.0, -k], [1 / k, 2 * np.cos(th)]])]
    res = jsr(A, time_limit=30)
    assert res.exact and "balanced" in res.upper_method and "rational" in res.upper_method
    assert res.lower == pytest.approx(1.21, rel=1e-14)
    assert res.lower <= 1.21 * (1 + 1e-15) and res.upper >= 1.21 * (1 - 1e-15)
    assert res.upper <= res.lower * (1 + 1e-12)
    check_certificate(A, res)


def test_parrilo_jadbabaie_example_5_4_is_exact():
    """PJ08 Example 5.4 (Linear Algebra Appl. 428, 2008): the JSR was conjectured to be
    ρ(A1 A3)^{1/2} = 8.9149 (SOS-4 ≈ SOS-6 ≈ 8.92); an invariant polytope proves it."""
    A = np.array([
        [[0, 1, 7, 4], [1, 6, -2, -3], [-1, -1, -2, -6], [3, 0, 9, 1]],
        [[-3, 3, 0, -2], [-2, 1, 4, 9], [4, -3, 1, 1], [1, -5, -1, -2]],
        [[1, 4, 5, 10], [0, 5, 1, -4], [0, -1, 4, 6], [-1, 5, 0, 1]]], dtype=float)
    res = jsr(A, time_limit=30)
    assert res.exact and sorted(res.certificate) == [0, 2]
    assert res.lower == pytest.approx(8.914964, rel=1e-6)
    assert res.upper <= res.lower * (1 + 1e-9)
    check_certificate(A, res)


def test_scalar_family_is_exact():
    res = jsr([np.array([[0.5]]), np.array([[-0.75]])])
    assert res.exact and res.lower == res.upper == 0.75 and res.certificate == (1,)

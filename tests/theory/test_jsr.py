"""Joint spectral radius: known values, certificates, brute force, exact sympy checks."""

import itertools
import math

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


def daubechies_family(N):
    """Transition matrices T_0, T_1 of the Daubechies filter D2N restricted to their common invariant
    subspace W = {x : Σ_j j^k x_j = 0, k < N} (basis: N-th finite differences, a non-orthogonal basis).

    Filter: m_0(ξ) = ((1 + e^{-iξ})/2)^N L(ξ), |L|² = Σ_{k<N} C(N-1+k, k) sin^{2k}(ξ/2), minimum phase
    (Daubechies, Ten Lectures on Wavelets, 1992, Sec. 6.1), coefficients c_k with Σ c_k = 2;
    (T_ε)_{ij} = c_{2i-j+ε-1}.  The Hölder exponent of the scaling function is -log2 JSR(T|_W)
    (Daubechies & Lagarias, SIAM J. Math. Anal. 23, 1992; Guglielmi & Protasov, "Invariant polytopes
    of linear operators with applications to regularity of wavelets and of subdivisions", SIAM J.
    Matrix Anal. Appl. 37, 2016): D6 1.0878, D8 1.6179, D10 1.9690.
    """
    from numpy.polynomial import polynomial as Pn

    q = np.zeros(2 * N - 1)
    y = np.array([-0.25, 0.5, -0.25])  # z·sin²(ξ/2) with z = e^{-iξ}
    for k in range(N):
        term = np.array([1.0])
        for _ in range(k):
            term = Pn.polymul(term, y)
        term = np.concatenate([np.zeros(N - 1 - k), term])
        q[:len(term)] += math.comb(N - 1 + k, k) * term
    L = np.array([1.0 + 0j])
    for r in Pn.polyroots(q):
        if abs(r) < 1:
            L = Pn.polymul(L, np.array([-r, 1.0]))
    L = np.real(L) / np.real(Pn.polyval(1.0, L))
    c = L
    for _ in range(N):
        c = Pn.polymul(c, np.array([0.5, 0.5]))
    c = 2 * c
    m = 2 * N - 1
    T = np.zeros((2, m, m))
    for e in range(2):
        for i in range(m):
            for j in range(m):
                k = 2 * (i + 1) - (j + 1) + e - 1
                if 0 <= k < len(c):
                    T[e, i, j] = c[k]
    D = np.zeros((m, N - 1))
    for j in range(N - 1):
        for k in range(N + 1):
            D[j + k, j] = (-1) ** k * math.comb(N, k)
    return np.array([np.linalg.lstsq(D, t @ D, rcond=None)[0] for t in T])


@pytest.mark.parametrize("N,holder", [(3, 1.0878), (4, 1.6179), (5, 1.9690)])
def test_daubechies_families_are_exact(N, holder):
    A = daubechies_family(N)
    res = jsr(A, time_limit=30)
    assert res.exact and "rational" in res.upper_method
    assert res.upper <= res.lower * (1 + 1e-9)
    assert -math.log2(res.lower) == pytest.approx(holder, abs=1e-4)
    check_certificate(A, res)


def test_nonnegative_family_falls_back_to_a_cone_polytope():
    A = np.random.default_rng(3).random((3, 10, 10))
    res = jsr(A, max_polytope_vertices=40, time_limit=30)  # too few vertices for the balanced polytope
    assert res.exact and "cone" in res.upper_method and res.upper_certificate.kind == "cone"
    check_certificate(A, res)


def test_complex_leading_eigenvalue_is_proved_exact_by_a_complex_polytope():
    rng = np.random.default_rng(7)
    rot = np.array([[np.cos(1.0), -np.sin(1.0), 0], [np.sin(1.0), np.cos(1.0), 0], [0, 0, 0.3]])
    A = [rot, rot + 0.3 * rng.standard_normal((3, 3))]
    res = jsr(A, time_limit=30)
    w = res.certificate
    ev = np.linalg.eigvals(word_product(np.array(A), w))
    assert abs(ev[np.argmax(np.abs(ev))].imag) > 1e-3  # the spectrum-maximizing product rotates
    assert res.exact and res.upper_certificate.kind == "complex"
    assert res.upper <= res.lower * (1 + 1e-9)
    assert res.upper >= brute_force(np.array(A), 6) * (1 - 1e-12)
    check_certificate(A, res)

"""Re-checking an invariant polytope certificate, in floating point and in rational arithmetic.

A balanced polytope 𝒫 = absconv{v_1, ..., v_N} ⊂ ℝⁿ with non-empty interior defines the norm
‖x‖_𝒫 = min{‖c‖₁ : Σ_j c_j v_j = x}.  If for every member A_i and vertex v_j

    A_i v_j = r · Σ_l c^{(ij)}_l v_l    exactly,

then ‖A_i‖_𝒫 ≤ r · max_{ij} ‖c^{(ij)}‖₁ (convexity and symmetry of 𝒫), hence
JSR ≤ r · max_{ij} ‖c^{(ij)}‖₁.  Any representation c gives a valid bound; a minimal one gives
the best.  The LP min ‖c‖₁ (scipy's HiGHS dual simplex, tight tolerances) returns a *basic*
optimal c: at most n non-zeros, on a basis of n vertices.  The basis is discrete, so the LP's
tolerance does not matter once the basis is known:

* ``float`` check: c is re-solved on the basis with one step of iterative refinement, the
  residual ρ = y - Vᵀc is bounded through the inverse of a well-conditioned basis B,
  ‖y‖_𝒫 ≤ ‖c‖₁ + ‖B⁻¹ρ‖₁ + a rounding margin;
* ``rational`` check: the vertices, the members and r are floats, hence exact rationals
  (``fractions.Fraction``); the n×n system on the basis is solved exactly and ‖c‖₁ computed
  exactly, so the bound r·max‖c‖₁ is a theorem about the data, rounded upward to a float
  once at the end.  A basis that is singular in exact arithmetic is replaced by a pivoted-QR
  completion; if that fails too, the check rejects the certificate (bound ``inf``).

Guglielmi & Protasov, "Exact computation of joint spectral characteristics of linear
operators", Found. Comput. Math. 13 (2013) 37-97, Sec. 3 (the polytope norm); the rational
re-check is the standard way to turn a numerically found polytope into a proof.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from fractions import Fraction

import numpy as np
from scipy.linalg import qr
from scipy.optimize import linprog

__all__ = ["l1_member", "float_bound", "rational_bound", "fraction_up"]

_EPS = np.finfo(np.float64).eps
# HiGHS defaults are 1e-7: certificates would come out ~1e-7 above ρ̂ and boundary images would
# be taken for new vertices.  The basis is re-solved afterwards, so these only steer the search.
_LP_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


def l1_member(V: np.ndarray, y: np.ndarray) -> tuple[np.ndarray | None, tuple[int, ...]]:
    """min ‖c‖₁ s.t. Vᵀc = y (V: N×n), by HiGHS dual simplex at tight tolerances.

    Returns (c, basis): c (N,) or None when infeasible, and the indices of at most n vertices
    carrying c (the LP basis; empty when c = 0).
    """
    N = V.shape[0]
    A_eq = np.hstack([V.T, -V.T])
    res = linprog(np.ones(2 * N), A_eq=A_eq, b_eq=y, bounds=(0, None), method="highs-ds", options=_LP_OPTIONS)
    if res.status != 0:
        return None, ()
    c = res.x[:N] - res.x[N:]
    scale = max(float(np.abs(c).max()), 1e-300)
    support = np.flatnonzero(np.abs(c) > 1e-14 * scale)
    support = support[np.argsort(-np.abs(c[support]))]
    return c, tuple(int(j) for j in support)


def complete_basis(V: np.ndarray, support: Iterable[int]) -> np.ndarray | None:
    """n indices of linearly independent vertices containing as much of ``support`` as possible.

    The support is taken greedily (largest coefficients first) while it stays independent
    (pivoted QR), then completed with the vertices that best span the orthogonal complement.
    None when the vertices do not span ℝⁿ.
    """
    n = V.shape[1]
    chosen = []
    for j in support:
        M = V[chosen + [j]].T
        if np.linalg.matrix_rank(M, tol=1e-12 * max(1.0, float(np.abs(M).max()))) == len(chosen) + 1:
            chosen.append(int(j))
        if len(chosen) == n:
            return np.array(chosen)
    if chosen:
        Qc, _ = np.linalg.qr(V[chosen].T)
        R = V - (V @ Qc) @ Qc.T
    else:
        R = V
    _, _, piv = qr(R.T, pivoting=True, mode="economic")
    for j in piv:
        if len(chosen) == n:
            break
        if j in chosen:
            continue
        M = V[chosen + [int(j)]].T
        if np.linalg.matrix_rank(M) == len(chosen) + 1:
            chosen.append(int(j))
    return np.array(chosen) if len(chosen) == n else None


def _global_basis_inverse(V: np.ndarray):
    n = V.shape[1]
    _, _, piv = qr(V.T, pivoting=True, mode="economic")
    B = V[piv[:n]].T
    if np.linalg.matrix_rank(B) < n:
        return None
    return np.linalg.inv(B)


def float_bound(A: np.ndarray, r: float, V: np.ndarray, bases: dict, deadline: float | None = None) -> float:
    """r·max_{ij}(‖c_ij‖₁ + ‖B⁻¹ρ_ij‖₁ + margin) for the members A (k,n,n), vertices V (N,n).

    ``bases[(i, j)]`` is the basis found by the LP for the image A_i v_j / r (see ``l1_member``);
    missing entries are computed.  ``inf`` when the vertices do not span ℝⁿ, an LP fails or the
    deadline (time.monotonic) passes.
    """
    n = V.shape[1]
    Binv = _global_basis_inverse(V)
    if Binv is None:
        return math.inf
    binv1 = float(np.abs(Binv).sum(axis=0).max())
    vmax = float(np.abs(V).max())
    worst = 0.0
    for i, a in enumerate(A):
        At = a / r
        anorm = float(np.abs(At).sum(axis=1).max())
        for j, v in enumerate(V):
            if deadline is not None and time.monotonic() > deadline:
                return math.inf
            y = At @ v
            basis = bases.get((i, j))
            if basis is None:
                c_lp, support = l1_member(V, y)
                if c_lp is None:
                    return math.inf
                basis = complete_basis(V, support)
                if basis is None:
                    return math.inf
                bases[(i, j)] = basis
            Bm = V[basis].T
            cb = np.linalg.solve(Bm, y)
            cb = cb + np.linalg.solve(Bm, y - Bm @ cb)  # one step of iterative refinement
            res = y - Bm @ cb
            c1 = float(np.abs(cb).sum())
            rounding = 8 * (n + n) * _EPS * (anorm * vmax + c1 * vmax) * binv1 * n
            worst = max(worst, c1 + float(np.abs(Binv @ res).sum()) + rounding)
    return r * worst * (1 + 8 * n * _EPS)


def _solve_exact(B: list, y: list):
    """Solve B c = y exactly (Fractions, Gaussian elimination); None when B is singular."""
    n = len(y)
    M = [row[:] + [y[i]] for i, row in enumerate(B)]
    for col in range(n):
        piv = next((r for r in range(col, n) if M[r][col] != 0), None)
        if piv is None:
            return None
        M[col], M[piv] = M[piv], M[col]
        p = M[col][col]
        for r in range(col + 1, n):
            f = M[r][col]
            if f != 0:
                f = f / p
                Mr, Mc = M[r], M[col]
                for c in range(col, n + 1):
                    Mr[c] -= f * Mc[c]
    x = [Fraction(0)] * n
    for r in range(n - 1, -1, -1):
        s = M[r][n] - sum(M[r][c] * x[c] for c in range(r + 1, n))
        x[r] = s / M[r][r]
    return x


def fraction_up(F: Fraction) -> float:
    """The smallest float ≥ F."""
    f = float(F)
    if math.isfinite(f) and Fraction(f) < F:
        f = float(np.nextafter(f, np.inf))
    return f


def rational_bound(A: np.ndarray, r: float, V: np.ndarray, bases: dict, deadline: float | None = None) -> float:
    """The bound r·max_{ij}‖c_ij‖₁ with A_i v_j = r Σ c_ij,l v_l solved *exactly* in rationals.

    A (k,n,n), r > 0 and V (N,n) are floats, read as the exact rationals they are; the result is
    rounded upward.  ``inf`` when a basis is singular in exact arithmetic, the vertices do not
    span ℝⁿ, or the deadline passes.
    """
    n = V.shape[1]
    rq = Fraction(float(r))
    Aq = [[[Fraction(float(x)) for x in row] for row in a] for a in A]
    Vq = [[Fraction(float(x)) for x in v] for v in V]
    worst = Fraction(0)
    for i in range(len(A)):
        for j in range(len(V)):
            if deadline is not None and time.monotonic() > deadline:
                return math.inf
            basis = bases.get((i, j))
            if basis is None:
                c_lp, support = l1_member(V, A[i] @ V[j] / r)
                if c_lp is None:
                    return math.inf
                basis = complete_basis(V, support)
                if basis is None:
                    return math.inf
                bases[(i, j)] = basis
            y = [sum((Aq[i][row][col] * Vq[j][col] for col in range(n)), Fraction(0)) / rq for row in range(n)]
            B = [[Vq[int(b)][row] for b in basis] for row in range(n)]
            c = _solve_exact(B, y)
            if c is None:
                return math.inf
            worst = max(worst, sum((abs(x) for x in c), Fraction(0)))
    return fraction_up(rq * worst)

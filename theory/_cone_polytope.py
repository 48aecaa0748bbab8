"""Cone (positive) invariant polytopes for nonnegative families (Guglielmi & Protasov).

For a family of entrywise nonnegative matrices the natural extremal sets live in the cone ℝⁿ₊.
For vertices v_1, ..., v_N ≥ 0 let

    co₋(V) = {x ≥ 0 : x ≤ Σ_j c_j v_j, c ≥ 0, Σ_j c_j ≤ 1}          (a "positive polytope"),
    ‖x‖₊ = min{Σ c_j : c ≥ 0, Σ_j c_j v_j ≥ |x|}                       (an LP),

a monotone norm on ℝⁿ as soon as Σ_j v_j > 0 entrywise.  For A ≥ 0, |Ax| ≤ A|x|, so
‖A‖₊ ≤ max_j ‖A v_j‖₊: if A_i v_j ≤ t·ρ̂·Σ_l c_l v_l with c ≥ 0, Σ c ≤ 1 for every member and
vertex, then JSR ≤ t·ρ̂ (Guglielmi & Protasov, "Exact computation of joint spectral
characteristics of linear operators", Found. Comput. Math. 13 (2013), Sec. 5, and
"Invariant polytopes of sets of matrices with application to regularity of wavelets and
subdivisions", SIAM J. Matrix Anal. Appl. 37 (2016)).  The construction is the symmetric one with
the cone LP; these polytopes are usually much smaller than the balanced ones.

Exact re-check: the LP's c (floats, exact rationals, clipped at 0) is kept; in rational
arithmetic t_ij = max_k (A_i v_j)_k / (r Σ_l c_l v_l)_k over the k with (A_i v_j)_k > 0 (∞ if
such a component of Σ c v is 0), and the bound r·max_ij t_ij Σc_ij is a theorem about the data.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from fractions import Fraction

import numpy as np
from scipy.optimize import linprog

from ._polytope_certificate import _LP_OPTIONS, fraction_up

__all__ = ["cone_member", "cone_polytope_unit", "cone_rational_bound"]


def cone_member(V: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """min Σc s.t. Vᵀc ≥ y, c ≥ 0 (V: N×n, y ≥ 0).  Returns c (N,) or None when the LP fails."""
    N = V.shape[0]
    res = linprog(np.ones(N), A_ub=-V.T, b_ub=-y, bounds=(0, None), method="highs-ds", options=_LP_OPTIONS)
    return None if res.status != 0 else np.maximum(res.x, 0.0)


def cone_rational_bound(A: np.ndarray, r: float, V: np.ndarray, coeffs: dict, deadline: float | None = None) -> float:
    """r·max_ij t_ij Σc_ij (see the module docstring) in exact arithmetic, rounded up; ``inf``
    when a component cannot be covered or the deadline passes."""
    n = V.shape[1]
    rq = Fraction(float(r))
    Aq = [[[Fraction(float(x)) for x in row] for row in a] for a in A]
    Vq = [[Fraction(float(x)) for x in v] for v in V]
    worst = Fraction(0)
    for i in range(len(A)):
        for j in range(len(V)):
            if deadline is not None and time.monotonic() > deadline:
                return math.inf
            c = coeffs.get((i, j))
            if c is None:
                c = cone_member(V, A[i] @ V[j] / r)
                if c is None:
                    return math.inf
            cq = [(l, Fraction(float(x))) for l, x in enumerate(c) if x > 0]
            y = [sum((Aq[i][row][col] * Vq[j][col] for col in range(n)), Fraction(0)) for row in range(n)]
            cover = [rq * sum((x * Vq[l][row] for l, x in cq), Fraction(0)) for row in range(n)]
            t = Fraction(0)
            for yk, ck in zip(y, cover):
                if yk > 0:
                    if ck <= 0:
                        return math.inf
                    t = max(t, yk / ck)
            worst = max(worst, t * sum((x for _, x in cq), Fraction(0)))
    return fraction_up(rq * worst)


def cone_polytope_unit(A: np.ndarray, start: Iterable[np.ndarray], rho_hat: float, At: np.ndarray, max_vertices: int,
                       accept: float, deadline: float | None) -> tuple[np.ndarray, float, str, bool]:
    """Build co₋(V) from the starting vertices ``start`` (≥ 0: the orbits of the candidates' Perron
    vectors); returns (V, bound, reason, timed_out) with bound = ``inf`` on failure."""
    verts = list(start)
    queue = list(range(len(verts)))
    head = 0
    coeffs = {}
    while head < len(queue):
        u = verts[queue[head]]
        head += 1
        for i in range(len(A)):
            if deadline is not None and time.monotonic() > deadline:
                return np.array(verts), math.inf, f"stopped by time_limit after {len(verts)} vertices", True
            y = At[i] @ u
            c = cone_member(np.array(verts), y)
            if c is not None and float(c.sum()) <= 1 + accept:
                continue
            verts.append(y)
            queue.append(len(verts) - 1)
            if len(verts) > max_vertices:
                return (np.array(verts), math.inf, f"more than max_vertices={max_vertices} vertices (cone polytope)",
                        False)
    V = np.array(verts)
    if np.any(V.sum(axis=0) <= 0):
        return V, math.inf, "cone polytope has an empty coordinate (Σ v_j not > 0): not a norm", False
    bound = cone_rational_bound(A, rho_hat, V, coeffs, deadline)
    if not np.isfinite(bound):
        return V, math.inf, "cone polytope re-check failed", bool(deadline is not None and time.monotonic() > deadline)
    return V, bound, "", False

"""Complex balanced polytopes: invariant sets for candidate products with a complex leading eigenvalue.

When the spectrum-maximizing product Π has a complex leading eigenvalue λ = |λ|e^{iφ}, no real
polytope built from its eigenvector closes (the orbit rotates by φ forever).  The extremal sets
are then *complex* polytopes (Guglielmi, Wirth & Zennaro, "Complex polytope extremality results
for families of matrices", SIAM J. Matrix Anal. Appl. 27 (2005); Guglielmi & Protasov, Found.
Comput. Math. 13 (2013), Sec. 6):

    𝒫 = absconv_ℂ{v_1, ..., v_N} = {Σ_j c_j v_j : c ∈ ℂᴺ, Σ_j |c_j| ≤ 1},   v_j ∈ ℂⁿ,
    ‖x‖_𝒫 = min{Σ_j |c_j| : Σ_j c_j v_j = x},

a norm on ℂⁿ when the v_j span ℂⁿ; its restriction to ℝⁿ is a norm, and a real matrix A with
A v_j ∈ t·𝒫 for every j has ‖A‖_𝒫 ≤ t, so JSR ≤ t (the JSR over ℂⁿ equals the one over ℝⁿ).
The eigenvector v of Π/ρ̂^L satisfies Π v = e^{iφ} v: a unit complex multiple of a vertex is on
the boundary, never a new vertex.  Membership is a second-order cone program (cvxpy).

Re-check: for each image y = Ã_i v_j the representation is either y ≈ μ v_l (|μ| ≤ 1 + tiny,
μ = v_lᴴy / v_lᴴv_l, which is how boundary images of the eigenvector's cycle come back) or the
SOCP's c; with ρ = y − Vᵀc computed in numpy and a basis B of n vertices,
‖y‖_𝒫 ≤ Σ|c_j| + ‖B⁻¹ρ‖₁ + a rounding margin.  This is a floating-point re-check (``check =
"float"``): exact rational arithmetic is not attempted for moduli of complex numbers.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable

import numpy as np
from scipy.linalg import qr

__all__ = ["complex_member", "complex_polytope_unit"]

_EPS = np.finfo(np.float64).eps


def complex_member(V: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """min Σ|c_j| s.t. Vᵀc = y over c ∈ ℂᴺ (an SOCP); returns c or None when the solver fails."""
    import cvxpy as cp

    c = cp.Variable(V.shape[0], complex=True)
    prob = cp.Problem(cp.Minimize(cp.sum(cp.abs(c))), [V.T @ c == y])
    try:
        with warnings.catch_warnings():  # accuracy is re-checked by the caller
            warnings.simplefilter("ignore", UserWarning)
            prob.solve(solver="CLARABEL", tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    except cp.error.SolverError:
        return None
    return None if c.value is None else np.asarray(c.value)


def _unit_multiple(V: np.ndarray, y: np.ndarray):
    """(l, μ) when y = μ v_l up to 1e-12 relative, else None."""
    ny = float(np.linalg.norm(y))
    if ny == 0:
        return None
    for l, v in enumerate(V):
        vv = float(np.real(np.vdot(v, v)))
        mu = np.vdot(v, y) / vv
        if np.linalg.norm(y - mu * v) <= 1e-12 * ny:
            return l, mu
    return None


def _norm_upper(V, y, Binv, binv1, vmax, anorm, n):
    """A verified upper bound on ‖y‖_𝒫 (floating point with a rounding margin); inf on failure."""
    hit = _unit_multiple(V, y)
    if hit is not None:
        c = np.zeros(len(V), dtype=complex)
        c[hit[0]] = hit[1]
    else:
        c = complex_member(V, y)
        if c is None:
            return math.inf
    res = y - V.T @ c
    c1 = float(np.abs(c).sum())
    rounding = 16 * (n + len(V)) * _EPS * (anorm * vmax + c1 * vmax) * binv1 * n
    return c1 + float(np.abs(Binv @ res).sum()) + rounding


def complex_polytope_unit(A: np.ndarray, start: Iterable[np.ndarray], rho_hat: float, At: np.ndarray,
                          max_vertices: int, accept: float, deadline: float | None
                          ) -> tuple[np.ndarray, float, str, bool]:
    """Build absconv_ℂ(V) from the complex starting vertices (the eigenvector's orbit) under the
    normalized family ``At`` = A/ρ̂; returns (V, bound, reason, timed_out), bound = inf on failure."""
    n = A.shape[1]
    # the family is real: with 𝒫 its conjugate is invariant too, so the vertices come in pairs
    # (v, v̄) and 𝒫 = conj(𝒫) contains real neighbourhoods of 0
    verts = []
    for u in start:
        for w in (u, np.conj(u)):
            if not verts or _unit_multiple(np.array(verts), w) is None:
                verts.append(w)
    queue = list(range(len(verts)))
    head = 0
    while head < len(queue):
        u = verts[queue[head]]
        head += 1
        for i in range(len(A)):
            if deadline is not None and time.monotonic() > deadline:
                return np.array(verts), math.inf, f"stopped by time_limit after {len(verts)} vertices", True
            y = At[i] @ u
            V = np.array(verts)
            if _unit_multiple(V, y) is not None and abs(_unit_multiple(V, y)[1]) <= 1 + accept:
                continue
            if np.linalg.matrix_rank(V) == n:
                c = complex_member(V, y)
                if c is not None and float(np.abs(c).sum()) <= 1 + accept:
                    continue
            verts.append(y)
            queue.append(len(verts) - 1)
            if _unit_multiple(np.array(verts), np.conj(y)) is None:
                verts.append(np.conj(y))
                queue.append(len(verts) - 1)
            if len(verts) > max_vertices:
                return (np.array(verts), math.inf, f"more than max_vertices={max_vertices} vertices (complex polytope)",
                        False)
    V = np.array(verts)
    _, _, piv = qr(V.T, pivoting=True, mode="economic")
    B = V[piv[:n]].T
    if np.linalg.matrix_rank(B) < n:
        return V, math.inf, "complex polytope is not full-dimensional", False
    Binv = np.linalg.inv(B)
    binv1 = float(np.abs(Binv).sum(axis=0).max())
    vmax = float(np.abs(V).max())
    worst = 0.0
    for a in At:
        anorm = float(np.abs(a).sum(axis=1).max())
        for v in V:
            if deadline is not None and time.monotonic() > deadline:
                return V, math.inf, "complex polytope re-check stopped by time_limit", True
            worst = max(worst, _norm_upper(V, a @ v, Binv, binv1, vmax, anorm, n))
    if not np.isfinite(worst):
        return V, math.inf, "complex polytope re-check failed (SOCP failure)", False
    # At = A/ρ̂ was rounded: the relative error of each entry is ≤ eps, covered by the (1 + 8n eps)
    return V, rho_hat * worst * (1 + 8 * n * _EPS), "", False

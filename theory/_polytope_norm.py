"""Polytope (extremal) norms as contraction certificates for the fixed-set iteration.

A balanced polytope 𝒫 = absconv{v_1, ..., v_N} ⊂ Rⁿ with non-empty interior defines the norm
(its Minkowski functional)

    ‖x‖_𝒫 = min { ‖c‖₁ : Σ_l c_l v_l = x }                                      (an LP),

and the induced operator norm of A is max_l ‖A v_l‖_𝒫 (x = Σ c_l v_l with Σ|c_l| = ‖x‖_𝒫, and
‖·‖_𝒫 is a norm).  An invariant polytope of Guglielmi & Protasov (Found. Comput. Math. 2013),
as built by ``invariant_polytope`` / ``jsr``, is such a 𝒫 with ‖A_i‖_𝒫 ≤ JSR: an *extremal*
norm, in which a family with JSR < 1 contracts even when no ellipsoidal norm does.

On n×m matrices X = [x_1 … x_m] the iteration uses ‖X‖_𝒫,F = (Σ_j ‖x_j‖_𝒫²)^½; X ↦ AX acts
columnwise, so ‖AX‖_𝒫,F ≤ ‖A‖_𝒫 ‖X‖_𝒫,F.  Norm equivalence (certified constants):

    ‖x‖₂ ≤ c_F ‖x‖_𝒫      with c_F = max_l ‖v_l‖₂ (triangle inequality on x = Σ c_l v_l),
    ‖x‖_𝒫 ≤ c_N ‖x‖₂      with c_N from the inscribed cross-polytope or a basis of vertices:
                          ‖x‖_𝒫 ≤ ‖B⁻¹x‖₁ for any n vertices B (absconv B ⊆ 𝒫), and
                          ‖x‖_𝒫 ≤ √n max_i ‖e_i‖_𝒫 (the ℓ₂ ball lies in √n·absconv{e_i});

both carry over to ‖·‖_𝒫,F ↔ ‖·‖_F with the same constants.

Re-check.  ``polytope_contraction`` never trusts the polytope's construction: for every member
A_i and vertex v_l it solves the LP for y = A_i v_l, takes its coefficients c and bounds
‖y‖_𝒫 ≤ ‖c‖₁ + c_N ‖y - Vᵀc‖₂, with the rounding of y and of the residual added (γ = (n+N+2)·eps
relative to the magnitudes).  The result, enlarged by a relative margin, is the certified ρ.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linprog

from conservative import MatrixSet

from ._contraction import as_square_family

__all__ = ["PolytopeContraction", "polytope_contraction", "polytope_norm_upper"]

_EPS = np.finfo(np.float64).eps


def _l1_coefficients(V: np.ndarray, y: np.ndarray):
    """argmin ‖c‖₁ s.t. Vᵀc = y (HiGHS); ``None`` when the LP fails."""
    N = len(V)
    res = linprog(np.ones(2 * N), A_eq=np.hstack([V.T, -V.T]), b_eq=y, bounds=(0, None), method="highs",
                  options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:
        return None
    return res.x[:N] - res.x[N:]


def _inverse_2_to_1(Bm: np.ndarray) -> float:
    """A certified upper bound on ‖B⁻¹‖_{2→1} = max_{‖x‖₂≤1} ‖B⁻¹x‖₁ (∞ if B is singular).

    Z ≈ B⁻¹ is computed; with θ ≥ ‖I - BZ‖₂ (residual plus its rounding) < 1,
    ‖B⁻¹ - Z‖₂ ≤ ‖Z‖₂ θ/(1-θ).  ‖Z‖_{2→1} = max over sign vectors s of ‖Zᵀs‖₂ (enumerated for
    n ≤ 12, else bounded by √n‖Z‖₂), and ‖E‖_{2→1} ≤ √n‖E‖₂.
    """
    n = Bm.shape[0]
    try:
        Z = np.linalg.inv(Bm)
    except np.linalg.LinAlgError:
        return math.inf
    if not np.all(np.isfinite(Z)):
        return math.inf
    Rres = np.eye(n) - Bm @ Z
    theta = float(np.linalg.norm(Rres, 2)) * (1 + 1e-12) + \
        2 * (n + 2) * _EPS * float(np.linalg.norm(np.abs(Bm) @ np.abs(Z), 2))
    if not theta < 0.5:
        return math.inf
    z2 = float(np.linalg.norm(Z, 2))
    err = z2 * theta / (1 - theta)
    if n <= 12:
        S = np.array(list(itertools.product((-1.0, 1.0), repeat=n)))
        z21 = float(np.max(np.linalg.norm(S @ Z, axis=1)))
    else:
        z21 = math.sqrt(n) * z2
    return (z21 * (1 + 4 * n * _EPS) + math.sqrt(n) * err) * (1 + 1e-12)


def _basis_bound(V: np.ndarray) -> float:
    """min over a few bases B of n vertices of the certified ‖B⁻¹‖_{2→1} (∞ if none is found)."""
    from scipy.linalg import qr

    n = V.shape[1]
    _, _, piv = qr(V.T, pivoting=True, mode="economic")
    best = _inverse_2_to_1(V[piv[:n]].T)
    # a second candidate: the n vertices of largest norm that are well spread (greedy, Gram-Schmidt)
    order = np.argsort(-np.linalg.norm(V, axis=1))
    chosen, Q = [], np.zeros((0, n))
    for i in order:
        v = V[i] - Q.T @ (Q @ V[i])
        if np.linalg.norm(v) > 1e-3 * np.linalg.norm(V[i]):
            chosen.append(i)
            Q = np.vstack([Q, v / np.linalg.norm(v)])
        if len(chosen) == n:
            break
    if len(chosen) == n:
        best = min(best, _inverse_2_to_1(V[chosen].T))
    return best


def polytope_norm_upper(V: np.ndarray, Y: np.ndarray, c_N: float) -> np.ndarray:
    """Certified upper bounds on ‖y‖_𝒫 for the rows y of Y (𝒫 = absconv of the rows of V).

    ‖y‖_𝒫 ≤ ‖c‖₁ + ‖r‖_𝒫 ≤ ‖c‖₁ + c_N (‖fl(r)‖₂ + rounding) for the LP's coefficients c and
    r = y - Vᵀc; an LP failure falls back to ‖y‖_𝒫 ≤ c_N‖y‖₂.
    """
    V = np.asarray(V, dtype=np.float64)
    N, n = V.shape
    out = []
    for y in np.atleast_2d(Y):
        ny = float(np.linalg.norm(y))
        if ny == 0.0:
            out.append(0.0)
            continue
        c = _l1_coefficients(V, y)
        fallback = c_N * ny * (1 + 4 * n * _EPS)
        if c is None:
            out.append(fallback)
            continue
        r = y - V.T @ c
        rnd = (N + 2) * _EPS * float(np.linalg.norm(np.abs(y) + np.abs(V.T) @ np.abs(c)))
        val = float(np.abs(c).sum()) * (1 + 2 * N * _EPS) + c_N * (float(np.linalg.norm(r)) + rnd) * (1 + 4 * n * _EPS)
        out.append(min(val, fallback))
    return np.array(out)


@dataclass(frozen=True)
class PolytopeContraction:
    """‖A‖_𝒫 ≤ ``rho`` for every A in conv(family), 𝒫 = absconv(``vertices``) (re-checked).

    ``norm_to_2`` = c_F (‖x‖₂ ≤ c_F‖x‖_𝒫) and ``two_to_norm`` = c_N (‖x‖_𝒫 ≤ c_N‖x‖₂) are
    certified; ``condition`` = c_F·c_N.  ``source`` says where the polytope came from.
    """

    rho: float
    vertices: np.ndarray = field(repr=False)
    norm_to_2: float
    two_to_norm: float
    source: str = ""
    norm: str = "polytope"

    @property
    def contracts(self) -> bool:
        return self.rho < 1.0

    @property
    def condition(self) -> float:
        return self.norm_to_2 * self.two_to_norm

    def summary(self) -> str:
        verdict = "contracts" if self.contracts else "does NOT contract"
        return (f"family {verdict}: ρ = {self.rho:.10g} in the polytope norm of {len(self.vertices)} vertices "
                f"(κ = {self.condition:.3g}{'; ' + self.source if self.source else ''})")

    def __repr__(self) -> str:
        return f"PolytopeContraction({self.summary()})"


def polytope_contraction(family: MatrixSet | ArrayLike, vertices: ArrayLike, *, source: str = ""
                         ) -> PolytopeContraction:
    """Certify the polytope norm of absconv(``vertices``) on ``family``: ρ ≥ max_i ‖A_i‖_𝒫.

    ``vertices``: array (N, n) (e.g. ``InvariantPolytope.vertices``; the norm does not depend on
    the polytope's scale).  Raises ``ValueError`` when the polytope does not span Rⁿ.  The
    returned ρ is recomputed from the data (see the module doc), never taken from the builder.
    """
    A = as_square_family(family)
    n = A.shape[1]
    V = np.asarray(vertices, dtype=np.float64)
    if V.ndim != 2 or V.shape[1] != n or len(V) == 0:
        raise ValueError(f"vertices: expected an array (N, {n}) of polytope vertices, got shape {V.shape}")
    if not np.all(np.isfinite(V)):
        raise ValueError("vertices: non-finite entries")
    if np.linalg.matrix_rank(V) < n:
        raise ValueError(f"vertices: the polytope absconv(vertices) is not full-dimensional in R^{n} "
                         "(it defines no norm)")
    s = float(np.max(np.linalg.norm(V, axis=1)))
    V = V / s  # a scale-free norm: only the shape of 𝒫 matters (the constants below are for V/s)
    c_F = float(np.max(np.linalg.norm(V, axis=1))) * (1 + 4 * n * _EPS)
    c_basis = _basis_bound(V)
    # ‖x‖_𝒫 ≤ √n max_i ‖e_i‖_𝒫 (unit ball ⊆ √n·absconv{e_i}); ‖e_i‖_𝒫 bounded with the basis constant
    c_cross = math.sqrt(n) * float(np.max(polytope_norm_upper(V, np.eye(n), c_basis))) * (1 + 4 * n * _EPS) \
        if math.isfinite(c_basis) else math.inf
    c_N = min(c_basis, c_cross)
    if not math.isfinite(c_N):
        raise ValueError("vertices: no well-conditioned basis of vertices found: cannot certify the norm")
    worst = 0.0
    for a in A:
        Y = V @ a.T  # rows A v_l
        rnd = (n + 2) * _EPS * float(np.max(np.linalg.norm(np.abs(V) @ np.abs(a).T, axis=1)))
        worst = max(worst, float(np.max(polytope_norm_upper(V, Y, c_N))) + c_N * rnd)
    rho = worst * (1 + 16 * (n + len(V)) * _EPS)
    return PolytopeContraction(rho, V, c_F, c_N, source)

"""Invariant polytopes (Guglielmi & Protasov): proving that a product is spectrum-maximizing.

Let Π = A_{w_1} ⋯ A_{w_L} be a candidate product with ρ̂ = ρ(Π)^{1/L} and normalized family
Ã_i = A_i / ρ̂.  If a *balanced* (centrally symmetric) polytope 𝒫 = absconv{v_1, ..., v_N}
with non-empty interior satisfies Ã_i 𝒫 ⊆ 𝒫 for all i, then its Minkowski functional ‖·‖_𝒫 is
a norm with ‖Ã_i‖_𝒫 ≤ 1, hence JSR ≤ ρ̂ = ρ(Π)^{1/L} ≤ JSR: the JSR is *exactly* ρ̂.

Construction (Guglielmi & Protasov, Found. Comput. Math. 2013): start from the leading
eigenvector v of Π and its orbit under the cyclic shifts of the word, then repeatedly add the
images Ã_i u that do not already lie in the current absolute convex hull (an LP:
min ‖c‖₁ s.t. Vᵀc = y).  The process stops when every image lies inside.

Certificate re-check (after the LPs): for each vertex v_j and member i the LP returns c with
Ã_i v_j ≈ Vᵀc; with the residual r = Ã_i v_j - Vᵀc computed in numpy and a basis B of n vertices,
‖Ã_i v_j‖_𝒫 ≤ ‖c‖₁ + ‖B⁻¹ r‖₁ (+ a rounding margin).  By convexity and symmetry
‖A_i‖_𝒫 ≤ ρ̂ · max_{i,j}(‖c_ij‖₁ + ‖B⁻¹r_ij‖₁), which is the certified upper bound reported.

Only *real* leading eigenvalues that are strictly dominant in modulus are supported: a complex
leading eigenvalue needs a complex (elliptic) polytope, which is not implemented; such
candidates are rejected with an explanatory ``reason`` and the caller falls back to the other
upper bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from ._contraction import as_square_family

__all__ = ["InvariantPolytope", "invariant_polytope", "word_product"]

_EPS = np.finfo(np.float64).eps


def word_product(A: np.ndarray, word) -> np.ndarray:
    """A_{w_1} A_{w_2} ⋯ A_{w_L} (left to right) for a word of member indices."""
    P = np.eye(A.shape[1])
    for i in word:
        P = P @ A[i]
    return P


@dataclass(frozen=True)
class InvariantPolytope:
    """absconv(``vertices``) with A_i 𝒫 ⊆ ``bound``·𝒫 for every member (re-checked numerically).

    ``rho_hat`` = ρ(A_word)^{1/len(word)} (a lower bound on the JSR), ``bound`` ≥ the JSR.
    ``success`` is False when the construction did not close; ``reason`` says why.
    """

    word: tuple
    rho_hat: float
    vertices: np.ndarray = field(repr=False)
    bound: float
    success: bool
    reason: str = ""

    def __repr__(self) -> str:
        if not self.success:
            return f"InvariantPolytope(word={self.word}, failed: {self.reason})"
        return (f"InvariantPolytope(word={self.word}, {len(self.vertices)} vertices, "
                f"ρ̂ = {self.rho_hat:.15g}, certified bound {self.bound:.15g})")


def _l1_member(V: np.ndarray, y: np.ndarray):
    """min ‖c‖₁ s.t. Vᵀc = y (V: N×n).  Returns (c, status) with c=None if infeasible."""
    N = V.shape[0]
    A_eq = np.hstack([V.T, -V.T])
    res = linprog(np.ones(2 * N), A_eq=A_eq, b_eq=y, bounds=(0, None), method="highs")
    if res.status != 0:
        return None, res.status
    return res.x[:N] - res.x[N:], 0


def _basis_inverse(V: np.ndarray):
    """Inverse of an n×n matrix of n well-conditioned vertices (columns), via pivoted QR."""
    from scipy.linalg import qr

    n = V.shape[1]
    _, _, piv = qr(V.T, pivoting=True, mode="economic")
    B = V[piv[:n]].T
    if np.linalg.matrix_rank(B) < n:
        return None
    return np.linalg.inv(B)


def certify_polytope(A: np.ndarray, rho_hat: float, V: np.ndarray) -> float:
    """Verified max_i ‖A_i‖_𝒫 / ρ̂ ... times ρ̂: an upper bound on the JSR (``inf`` if it fails)."""
    n = A.shape[1]
    Binv = _basis_inverse(V)
    if Binv is None:
        return np.inf
    binv1 = float(np.abs(Binv).sum(axis=0).max())  # ‖B⁻¹‖₁ (induced)
    vmax = float(np.abs(V).max())
    worst = 0.0
    for a in A:
        At = a / rho_hat
        anorm = float(np.abs(At).sum(axis=1).max())  # ‖Ã‖_∞
        for v in V:
            y = At @ v
            c, status = _l1_member(V, y)
            if c is None:
                return np.inf
            r = y - V.T @ c
            c1 = float(np.abs(c).sum())
            rounding = 8 * (n + len(V)) * _EPS * (anorm * vmax + c1 * vmax) * binv1 * n
            worst = max(worst, c1 + float(np.abs(Binv @ r).sum()) + rounding)
    return rho_hat * worst * (1 + 8 * n * _EPS)


def invariant_polytope(A: np.ndarray, word, *, max_vertices: int = 400, accept: float = 1e-10
                       ) -> InvariantPolytope:
    """Try to build a balanced invariant polytope for A/ρ̂ from the leading eigenvector of A_word.

    ``accept``: an image y with min ‖c‖₁ ≤ 1 + accept counts as inside (the final certificate
    accounts for the excess exactly, so this only trades polytope size against tightness).
    """
    A = as_square_family(A)
    word = tuple(int(i) for i in word)
    if not word or any(not 0 <= i < len(A) for i in word):
        raise ValueError(f"word: expected a non-empty sequence of indices in [0, {len(A)}), got {word}")
    n = A.shape[1]
    L = len(word)
    Pi = word_product(A, word)
    ev, evec = np.linalg.eig(Pi)
    order = np.argsort(-np.abs(ev))
    lam = ev[order[0]]
    rho_pi = float(abs(lam))
    if rho_pi == 0.0:
        return InvariantPolytope(word, 0.0, np.zeros((0, n)), np.inf, False, "the product is nilpotent")
    rho_hat = rho_pi ** (1.0 / L)
    if abs(lam.imag) > 1e-12 * rho_pi:
        return InvariantPolytope(word, rho_hat, np.zeros((0, n)), np.inf, False,
                                 "leading eigenvalue is complex: needs a complex (elliptic) polytope, not supported")
    if n > 1 and abs(ev[order[1]]) > rho_pi * (1 - 1e-9):
        return InvariantPolytope(word, rho_hat, np.zeros((0, n)), np.inf, False,
                                 "leading eigenvalue is not strictly dominant in modulus")
    v = np.real(evec[:, order[0]])
    v /= np.linalg.norm(v)
    At = A / rho_hat
    # orbit of v under the cyclic shifts: A_{w_L} v, A_{w_{L-1}} A_{w_L} v, ...
    verts = [v]
    u = v
    for i in reversed(word[1:]):
        u = At[i] @ u
        verts.append(u)
    queue = list(range(len(verts)))
    head = 0
    while head < len(queue):
        u = verts[queue[head]]
        head += 1
        for i in range(len(A)):
            y = At[i] @ u
            V = np.array(verts)
            c, _ = _l1_member(V, y)
            if c is not None and np.abs(c).sum() <= 1 + accept:
                continue
            verts.append(y)
            queue.append(len(verts) - 1)
            if len(verts) > max_vertices:
                return InvariantPolytope(word, rho_hat, np.array(verts), np.inf, False,
                                         f"more than max_vertices={max_vertices} vertices (the candidate may "
                                         "not be spectrum-maximizing, or the polytope is large)")
    V = np.array(verts)
    bound = certify_polytope(A, rho_hat, V)
    if not np.isfinite(bound):
        return InvariantPolytope(word, rho_hat, V, np.inf, False, "certificate re-check failed "
                                 "(polytope not full-dimensional or LP failure)")
    return InvariantPolytope(word, rho_hat, V, bound, True)

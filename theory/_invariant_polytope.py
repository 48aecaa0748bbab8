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

Scale.  ρ̂ and the bound are homogeneous (c·𝒜 has ρ̂ and bound times |c|, the same polytope):
the construction runs on 𝒜/2^e (a power of two near the largest entry, exact) and on products
renormalized by powers of two at every factor, so that neither long words nor families of
extreme scale over- or underflow; ``rho_hat`` and ``bound`` are scaled back (the bound rounded
upward).  ``vertices`` describe the polytope of A/ρ̂, which does not depend on the scale.

Only *real* leading eigenvalues that are strictly dominant in modulus are supported: a complex
leading eigenvalue needs a complex (elliptic) polytope, which is not implemented; such
candidates are rejected with an explanatory ``reason`` and the caller falls back to the other
upper bounds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from conservative._qp import ldexp_up, pow2_exponent

from ._contraction import as_square_family, normalized_family
from ._validate import check_count, check_time_limit, check_tolerance

__all__ = ["InvariantPolytope", "invariant_polytope", "word_product", "scaled_word_product"]

_EPS = np.finfo(np.float64).eps


def word_product(A: np.ndarray, word) -> np.ndarray:
    """A_{w_1} A_{w_2} ⋯ A_{w_L} (left to right) for a word of member indices."""
    P = np.eye(A.shape[1])
    for i in word:
        P = P @ A[i]
    return P


def scaled_word_product(A: np.ndarray, word) -> tuple[np.ndarray, int]:
    """(Q, k) with A_{w_1}⋯A_{w_L} = 2^k·Q and max|Q| in [1/2, 1) (Q = 0, k = 0 for a zero product).

    After each factor the running product is divided by a power of two near its largest entry
    (exact), so words of any length of matrices of any scale neither overflow nor underflow.
    """
    Q = np.eye(A.shape[1])
    k = 0
    for i in word:
        Q = Q @ A[i]
        e = pow2_exponent(Q)
        if e:
            Q = np.ldexp(Q, -e)
            k += e
        if not np.any(Q):
            return Q, 0
    return Q, k


def log_spectral_radius(A: np.ndarray, word) -> float:
    """log ρ(A_word) (−inf for a nilpotent product), from ``scaled_word_product``."""
    Q, k = scaled_word_product(A, word)
    r = float(np.abs(np.linalg.eigvals(Q)).max())
    return math.log(r) + k * math.log(2.0) if r > 0 else -math.inf


@dataclass(frozen=True)
class InvariantPolytope:
    """absconv(``vertices``) with A_i 𝒫 ⊆ ``bound``·𝒫 for every member (re-checked numerically).

    ``rho_hat`` = ρ(A_word)^{1/len(word)} (a lower bound on the JSR), ``bound`` ≥ the JSR.
    ``vertices`` span the polytope invariant under A_i/ρ̂ (scale-free).
    ``success`` is False when the construction did not close; ``reason`` says why
    (``timed_out`` when it was stopped by ``time_limit``).
    """

    word: tuple
    rho_hat: float
    vertices: np.ndarray = field(repr=False)
    bound: float
    success: bool
    reason: str = ""
    timed_out: bool = False

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


def certify_polytope(A: np.ndarray, rho_hat: float, V: np.ndarray, deadline: float | None = None) -> float:
    """Verified max_i ‖A_i‖_𝒫 / ρ̂ ... times ρ̂: an upper bound on the JSR (``inf`` if it fails
    or the ``deadline`` (time.monotonic) passes)."""
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
            if deadline is not None and time.monotonic() > deadline:
                return np.inf
            y = At @ v
            c, status = _l1_member(V, y)
            if c is None:
                return np.inf
            r = y - V.T @ c
            c1 = float(np.abs(c).sum())
            rounding = 8 * (n + len(V)) * _EPS * (anorm * vmax + c1 * vmax) * binv1 * n
            worst = max(worst, c1 + float(np.abs(Binv @ r).sum()) + rounding)
    return rho_hat * worst * (1 + 8 * n * _EPS)


def invariant_polytope(A: np.ndarray, word, *, max_vertices: int = 400, accept: float = 1e-10,
                       time_limit: float | None = None) -> InvariantPolytope:
    """Try to build a balanced invariant polytope for A/ρ̂ from the leading eigenvector of A_word.

    ``accept``: an image y with min ‖c‖₁ ≤ 1 + accept counts as inside (the final certificate
    accounts for the excess exactly, so this only trades polytope size against tightness).
    ``time_limit`` (seconds, optional): stop and report failure (``timed_out``) when exceeded.
    """
    A = as_square_family(A)
    max_vertices = check_count(max_vertices, "max_vertices")
    accept = check_tolerance(accept, "accept", positive=False)
    deadline = None if time_limit is None else time.monotonic() + check_time_limit(time_limit)
    word = tuple(int(i) for i in word)
    if not word or any(not 0 <= i < len(A) for i in word):
        raise ValueError(f"word: expected a non-empty sequence of indices in [0, {len(A)}), got {word}")
    An, e, loss = normalized_family(A)
    poly = _invariant_polytope_unit(An, word, max_vertices, accept, deadline)
    if e == 0 and loss == 0:
        return poly
    bound = poly.bound
    if loss > 0 and np.isfinite(bound):  # the normalized family is not exactly the data
        return InvariantPolytope(poly.word, float(np.ldexp(poly.rho_hat, e)), poly.vertices, np.inf, False,
                                 "entries below 2^-1022 of the largest were rounded when normalizing the "
                                 "family: the polytope certificate would not be for the data")
    return InvariantPolytope(poly.word, float(np.ldexp(poly.rho_hat, e)), poly.vertices,
                             ldexp_up(bound, e) if np.isfinite(bound) else bound, poly.success, poly.reason,
                             poly.timed_out)


def _invariant_polytope_unit(A, word, max_vertices, accept, deadline) -> InvariantPolytope:
    """``invariant_polytope`` on a normalized family (entries ≤ 1)."""
    n = A.shape[1]
    L = len(word)
    Q, k = scaled_word_product(A, word)
    ev, evec = np.linalg.eig(Q)
    order = np.argsort(-np.abs(ev))
    lam = ev[order[0]]
    rho_q = float(abs(lam))  # ρ(Π) = 2^k ρ(Q)
    if rho_q == 0.0:
        return InvariantPolytope(word, 0.0, np.zeros((0, n)), np.inf, False, "the product is nilpotent")
    rho_hat = math.exp((math.log(rho_q) + k * math.log(2.0)) / L)
    if abs(lam.imag) > 1e-12 * rho_q:
        return InvariantPolytope(word, rho_hat, np.zeros((0, n)), np.inf, False,
                                 "leading eigenvalue is complex: needs a complex (elliptic) polytope, not supported")
    if n > 1 and abs(ev[order[1]]) > rho_q * (1 - 1e-9):
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
            if deadline is not None and time.monotonic() > deadline:
                return InvariantPolytope(word, rho_hat, np.array(verts), np.inf, False,
                                         f"stopped by time_limit after {len(verts)} vertices", True)
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
    bound = certify_polytope(A, rho_hat, V, deadline)
    if not np.isfinite(bound) and deadline is not None and time.monotonic() > deadline:
        return InvariantPolytope(word, rho_hat, V, np.inf, False,
                                 f"certificate re-check stopped by time_limit ({len(V)} vertices)", True)
    if not np.isfinite(bound):
        return InvariantPolytope(word, rho_hat, V, np.inf, False, "certificate re-check failed "
                                 "(polytope not full-dimensional or LP failure)")
    return InvariantPolytope(word, rho_hat, V, bound, True)

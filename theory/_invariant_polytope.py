"""Invariant polytopes (Guglielmi & Protasov): proving that a product is spectrum-maximizing.

Let Π = A_{w_1} ⋯ A_{w_L} be a candidate product with ρ̂ = ρ(Π)^{1/L} and normalized family
Ã_i = A_i / ρ̂.  If a *balanced* (centrally symmetric) polytope 𝒫 = absconv{v_1, ..., v_N}
with non-empty interior satisfies Ã_i 𝒫 ⊆ 𝒫 for all i, then its Minkowski functional ‖·‖_𝒫 is
a norm with ‖Ã_i‖_𝒫 ≤ 1, hence JSR ≤ ρ̂ = ρ(Π)^{1/L} ≤ JSR: the JSR is *exactly* ρ̂.

Construction (Guglielmi & Protasov, Found. Comput. Math. 2013): start from the leading
eigenvector v of Π and its orbit under the cyclic shifts of the word, then repeatedly add the
images Ã_i u that do not already lie in the current absolute convex hull (an LP:
min ‖c‖₁ s.t. Vᵀc = y).  The process stops when every image lies inside.

Several candidates.  When several products reach ρ̂ (Kozyakin's pair below has two), the
polytope starts from all their orbits, each scaled by a weight α_j found by *balancing*
(Guglielmi & Protasov 2013, Sec. 4.4; see ``_balance``): without it the construction does not
terminate, the orbit of one eigenvector creeping towards the other one forever.

Tolerances.  The membership LPs run on HiGHS' dual simplex with feasibility tolerances 1e-10
(the defaults, 1e-7, leave boundary images looking outside and inflate the polytope), images
within 1e-13 of ±a vertex are not added, and vertices inside the hull of the others are pruned.

Certificate re-check (``_polytope_certificate``): for each member i and vertex v_j the LP's basis
is kept; c is re-solved on it (i) in floating point with iterative refinement and a residual
bound through a well-conditioned basis, and (ii) *exactly* in rational arithmetic (the floats of
the data, the vertices and ρ̂ are exact rationals), giving ‖A_i‖_𝒫 ≤ ρ̂·max‖c_ij‖₁ as a theorem
about the data.  ``bound`` is the smaller of the two; ``check`` says which ran.  ``verify_polytope``
re-runs the rational check on any vertex set.

Example: Kozyakin's pair A = [[0, -1/κ], [κ, 2cos θ]], B = [[0, -κ], [1/κ, 2cos θ]] with θ = 2π/3,
κ = 1.1³ (V. Kozyakin, "On sets of matrices having different spectrum maximizing products with
unequal numbers of the same name factors", arXiv:2407.10513, computed there with the JSR
toolbox: a 12-vertex extremal polytope) has the two spectrum-maximizing products AAB and ABB,
JSR = 1.21.

Scale.  ρ̂ and the bound are homogeneous (c·𝒜 has ρ̂ and bound times |c|, the same polytope):
the construction runs on 𝒜/2^e (a power of two near the largest entry, exact) and on products
renormalized by powers of two at every factor, so that neither long words nor families of
extreme scale over- or underflow; ``rho_hat`` and ``bound`` are scaled back (the bound rounded
upward).  ``vertices`` describe the polytope of A/ρ̂, which does not depend on the scale.

A complex leading eigenvalue (strictly dominant up to its conjugate) gets a complex polytope
(``_complex_polytope``, ``kind = "complex"``, re-checked in floating point with a margin); for
entrywise nonnegative families ``kind="cone"`` builds positive polytopes (``_cone_polytope``).
Leading eigenvalues that are not strictly dominant are rejected with an explanatory ``reason``
and the caller falls back to the other upper bounds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linprog

from conservative import MatrixSet
from conservative._qp import ldexp_up, pow2_exponent

from ._complex_polytope import complex_polytope_unit
from ._cone_polytope import cone_polytope_unit
from ._contraction import as_square_family, normalized_family
from ._polytope_certificate import float_bound, l1_member, rational_bound
from ._validate import check_count, check_time_limit, check_tolerance

__all__ = ["InvariantPolytope", "invariant_polytope", "verify_polytope", "word_product", "scaled_word_product"]

_EPS = np.finfo(np.float64).eps
# the rational re-check costs about k·N·n³ Fraction operations: skipped (float check only) above this
_EXACT_BUDGET = 2_000_000


def word_product(A: np.ndarray, word: Sequence[int]) -> np.ndarray:
    """A_{w_1} A_{w_2} ⋯ A_{w_L} (left to right) for a word of member indices."""
    P = np.eye(A.shape[1])
    for i in word:
        P = P @ A[i]
    return P


def scaled_word_product(A: np.ndarray, word: Sequence[int]) -> tuple[np.ndarray, int]:
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


def log_spectral_radius(A: np.ndarray, word: Sequence[int]) -> float:
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
    (``timed_out`` when it was stopped by ``time_limit``).  ``words`` are all the candidate
    products the polytope was started from (balanced), ``word`` the one giving ``rho_hat``.
    ``check`` names the re-check behind ``bound``: ``"rational"`` (exact arithmetic), or
    ``"float ..."`` (floating point with a rounding margin, when the rational check was skipped);
    ``rational_bound`` / ``float_bound`` are the two values (``inf`` when not computed).
    ``kind``: ``"symmetric"`` — the polytope is absconv(vertices), its norm the Minkowski
    functional min{‖c‖₁ : Σ c_j v_j = x}; ``"complex"`` — complex vertices (n-vectors of
    complex numbers), 𝒫 = absconv_ℂ(vertices), norm min{Σ|c_j| : c ∈ ℂᴺ, Σ c_j v_j = x}, used
    when the leading eigenvalue is complex (see ``_complex_polytope``); ``"cone"`` (nonnegative families) — the positive
    polytope co₋(vertices), norm min{Σc : c ≥ 0, Σ c_j v_j ≥ |x|} (see ``_cone_polytope``).
    """

    word: tuple
    rho_hat: float
    vertices: np.ndarray = field(repr=False)
    bound: float
    success: bool
    reason: str = ""
    timed_out: bool = False
    words: tuple = ()
    check: str = ""
    rational_bound: float = math.inf
    float_bound: float = math.inf
    kind: str = "symmetric"

    @property
    def exact(self) -> bool:
        """True when the rational re-check proves bound ≤ ρ̂·(1 + 1e-9): JSR = ρ̂ up to that."""
        return self.success and self.check == "rational" and self.rational_bound <= self.rho_hat * (1 + 1e-9)

    def __repr__(self) -> str:
        if not self.success:
            return f"InvariantPolytope(word={self.word}, failed: {self.reason})"
        return (f"InvariantPolytope({self.kind}, word={self.word}, {len(self.vertices)} vertices, "
                f"ρ̂ = {self.rho_hat:.15g}, certified bound {self.bound:.15g}, {self.check} check)")


def _l1_member(V: np.ndarray, y: np.ndarray):
    """min ‖c‖₁ s.t. Vᵀc = y (V: N×n).  Returns (c, status) with c=None if infeasible."""
    c, _ = l1_member(V, y)
    return (None, 2) if c is None else (c, 0)


def certify_polytope(A: np.ndarray, rho_hat: float, V: np.ndarray, deadline: float | None = None) -> float:
    """Verified max_i ‖A_i‖_𝒫 (floating-point check with a rounding margin, see
    ``_polytope_certificate.float_bound``): an upper bound on the JSR, ``inf`` if it fails."""
    return float_bound(A, rho_hat, V, {}, deadline)


def verify_polytope(family: MatrixSet | ArrayLike, vertices: ArrayLike, rho: float) -> float:
    """Exact re-check of a polytope certificate: the smallest float ≥ r·max_{ij}‖c_ij‖₁ where
    A_i v_j = r Σ_l c_ij,l v_l is solved in rational arithmetic (r = ``rho``, the vertices and the
    members read as the exact rationals they are).  An upper bound on JSR(family) whenever it is
    finite; ``inf`` when the vertices do not span ℝⁿ.  ``vertices`` may be those of an
    ``InvariantPolytope`` (they do not depend on the scale of the family)."""
    A = as_square_family(family)
    V = np.asarray(vertices, dtype=np.float64)
    if V.ndim != 2 or V.shape[1] != A.shape[1] or not np.all(np.isfinite(V)):
        raise ValueError(f"vertices: expected a finite array (N, {A.shape[1]}), got shape {V.shape}")
    rho = check_tolerance(rho, "rho")
    return rational_bound(A, rho, V, {})


def invariant_polytope(A: np.ndarray, word: Sequence[int] | Sequence[Sequence[int]], *, max_vertices: int = 400,
                       accept: float = 1e-10, time_limit: float | None = None, exact_check: bool = True,
                       kind: str = "symmetric") -> InvariantPolytope:
    """Try to build a balanced invariant polytope for A/ρ̂ from the leading eigenvector of A_word.

    ``word``: a word (sequence of member indices), or a list of candidate words, which are then
    balanced and used together (those below the largest ρ̂ by more than 1e-9 are dropped).
    ``accept``: an image y with min ‖c‖₁ ≤ 1 + accept counts as inside (the final certificate
    accounts for the excess exactly, so this only trades polytope size against tightness).
    ``time_limit`` (seconds, optional): stop and report failure (``timed_out``) when exceeded.
    ``exact_check``: run the rational re-check (when the polytope is small enough).
    ``kind``: ``"symmetric"`` (balanced polytope absconv V) or ``"cone"`` (positive polytope, for
    entrywise nonnegative families; always re-checked in rational arithmetic).
    """
    A = as_square_family(A)
    max_vertices = check_count(max_vertices, "max_vertices")
    accept = check_tolerance(accept, "accept", positive=False)
    if not isinstance(exact_check, (bool, np.bool_)):
        raise TypeError(f"exact_check: expected a bool, got {type(exact_check).__name__}")
    if kind not in ("symmetric", "cone"):
        raise ValueError(f"kind: expected 'symmetric' or 'cone', got {kind!r}")
    if kind == "cone" and np.any(A < 0):
        raise ValueError("kind='cone' needs an entrywise nonnegative family (a member has a negative entry)")
    deadline = None if time_limit is None else time.monotonic() + check_time_limit(time_limit)
    try:
        several = len(word) > 0 and not isinstance(word[0], (int, np.integer))
        words = [tuple(int(i) for i in w) for w in word] if several else [tuple(int(i) for i in word)]
    except TypeError:
        raise ValueError(f"word: expected a sequence of member indices (or of words), got {word!r}") from None
    for w in words:
        if not w or any(not 0 <= i < len(A) for i in w):
            raise ValueError(f"word: expected a non-empty sequence of indices in [0, {len(A)}), got {w}")
    An, e, loss = normalized_family(A)
    poly = _invariant_polytope_unit(An, words, max_vertices, accept, deadline, exact_check, kind)
    if e == 0 and loss == 0:
        return poly
    if loss > 0 and np.isfinite(poly.bound):  # the normalized family is not exactly the data
        return InvariantPolytope(poly.word, float(np.ldexp(poly.rho_hat, e)), poly.vertices, np.inf, False,
                                 "entries below 2^-1022 of the largest were rounded when normalizing the "
                                 "family: the polytope certificate would not be for the data", words=poly.words)
    return scale_polytope(poly, e)


def scale_polytope(poly: InvariantPolytope, e: int) -> InvariantPolytope:
    """The certificate of ``poly`` (for A/2^e) for the family A: ρ̂ and the bounds times 2^e, rounded up."""
    def up(b):
        return ldexp_up(b, e) if np.isfinite(b) else b
    return replace(poly, rho_hat=float(np.ldexp(poly.rho_hat, e)), bound=up(poly.bound),
                   rational_bound=up(poly.rational_bound), float_bound=up(poly.float_bound))


_COMPLEX = "leading eigenvalue is complex"
_COMPLEX_MAX_VERTICES = 60


def _candidate(A, word):
    """(ρ̂, λ/|λ|, Q, leading eigenvector, left eigenvector, reason) for the product A_word."""
    Q, k = scaled_word_product(A, word)
    ev, evec = np.linalg.eig(Q)
    order = np.argsort(-np.abs(ev))
    lam = ev[order[0]]
    rho_q = float(abs(lam))
    if rho_q == 0.0:
        return 0.0, None, None, None, "the product is nilpotent"
    rho_hat = math.exp((math.log(rho_q) + k * math.log(2.0)) / len(word))
    if abs(lam.imag) > 1e-12 * rho_q:
        return rho_hat, None, None, None, _COMPLEX
    if A.shape[1] > 1 and abs(ev[order[1]]) > rho_q * (1 - 1e-9):
        return rho_hat, None, None, None, "leading eigenvalue is not strictly dominant in modulus"
    v = np.real(evec[:, order[0]])
    v /= np.linalg.norm(v)
    lev, levec = np.linalg.eig(Q.T)
    ell = np.real(levec[:, int(np.argmin(np.abs(lev - lam)))])
    ell = ell / float(ell @ v)
    return rho_hat, float(np.sign(lam.real)), v, ell, ""


def _orbit(At, word, v, ell):
    """The cyclic orbit v, A_{w_L} v, A_{w_{L-1}} A_{w_L} v, ... and the matching left eigenvectors
    (ℓ_s of the shifted product, normalized ℓ_s·u_s = 1)."""
    verts, lefts = [v], [ell]
    u, lft = v, ell
    for i in reversed(word[1:]):
        u = At[i] @ u
        lft = np.linalg.solve(At[i].T, lft) if np.linalg.matrix_rank(At[i]) == len(v) else None
        verts.append(u)
        lefts.append(lft)
    # left eigenvectors of shifted products that went through a singular factor: recompute
    out = []
    for s, (u, lft) in enumerate(zip(verts, lefts)):
        if lft is None or not np.all(np.isfinite(lft)):
            shifted = word[len(word) - s:] + word[:len(word) - s]
            P = word_product(At, shifted)
            lev, levec = np.linalg.eig(P.T)
            lft = np.real(levec[:, int(np.argmax(np.abs(lev)))])
        out.append(lft / float(lft @ u) if abs(float(lft @ u)) > 0 else lft)
    return verts, out


def _balance(At, orbits):
    """Weights α_j > 0 for several candidate products (balancing, Guglielmi & Protasov,
    Found. Comput. Math. 2013, Sec. 4.4): the orbit of α_i v_i under the normalized family has,
    along each leading eigenvector u_{j,s}, a limit component ℓ_{j,s}·u; the construction can only
    terminate when those limits lie strictly inside, i.e. α_j > α_i·m_ij with
    m_ij = sup_u |ℓ_{j,s}·u|.  m_ij is estimated on all products up to a length with ≤ 2000 images
    and log α found by an LP maximizing the margin.  Returns (α, balanced)."""
    k, m = len(At), len(orbits)
    if m == 1:
        return np.ones(1), True
    depth = max(1, int(math.log(2000) / math.log(max(k, 2))))
    M = np.zeros((m, m))
    for i, (verts_i, _) in enumerate(orbits):
        images = [verts_i[0]]
        layer = [verts_i[0]]
        for _ in range(depth):
            layer = [a @ u for u in layer for a in At]
            images.extend(layer)
        U = np.array(images)
        for j, (_, lefts_j) in enumerate(orbits):
            if i != j:
                M[i, j] = max(float(np.abs(U @ lft).max()) for lft in lefts_j)
    # maximize t subject to a_j - a_i ≥ log m_ij + t (i ≠ j), a_0 = 0, t ≤ 1
    rows, rhs = [], []
    for i in range(m):
        for j in range(m):
            if i != j and M[i, j] > 0:
                row = np.zeros(m + 1)
                row[i], row[j], row[m] = 1.0, -1.0, 1.0
                rows.append(row)
                rhs.append(-math.log(M[i, j]))
    if not rows:
        return np.ones(m), True
    c = np.zeros(m + 1)
    c[m] = -1.0
    bounds = [(0, 0)] + [(-50, 50)] * (m - 1) + [(None, 1.0)]
    res = linprog(c, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=bounds, method="highs")
    if res.status != 0 or res.x[m] <= 0:
        return np.ones(m), False
    return np.exp(res.x[:m]), True


def _inside(V, y, accept):
    """y ∈ (1 + accept)·absconv(V)?  Near-duplicates of ±vertices are inside without an LP."""
    scale = max(float(np.abs(y).max()), 1e-300)
    if np.any(np.abs(V - y).max(axis=1) <= 1e-13 * scale) or np.any(np.abs(V + y).max(axis=1) <= 1e-13 * scale):
        return True
    c, _ = l1_member(V, y)
    return c is not None and float(np.abs(c).sum()) <= 1 + accept


def _prune(V, keep_first):
    """Drop vertices that lie in absconv of the others (‖c‖₁ ≤ 1 + 1e-13), newest first; the
    first ``keep_first`` (the leading eigenvectors' orbits) are kept."""
    keep = list(range(len(V)))
    for j in range(len(V) - 1, keep_first - 1, -1):
        others = [i for i in keep if i != j]
        if len(others) < V.shape[1]:
            break
        c, _ = l1_member(V[others], V[j])
        if c is not None and float(np.abs(c).sum()) <= 1 + 1e-13:
            keep = others
    return V[sorted(keep)]


def _invariant_polytope_unit(A, words, max_vertices, accept, deadline, exact_check=True,
                             kind="symmetric") -> InvariantPolytope:
    """``invariant_polytope`` on a normalized family (entries ≤ 1).  ``words``: one word (a tuple
    of ints) or several candidate words; several are balanced (see ``_balance``)."""
    n = A.shape[1]
    if words and isinstance(words[0], (int, np.integer)):
        words = [tuple(int(i) for i in words)]
    words = [tuple(int(i) for i in w) for w in words]
    word = words[0]
    cands = [_candidate(A, w) for w in words]
    rho_hat = max(c[0] for c in cands)
    if rho_hat == 0.0:
        return InvariantPolytope(word, 0.0, np.zeros((0, n)), np.inf, False, "the product is nilpotent")
    # keep the candidates that reach ρ̂ (to 1e-9): the others cannot be spectrum-maximizing
    best = [(w, c) for w, c in zip(words, cands) if c[0] >= rho_hat * (1 - 1e-9)]
    bad = [c[4] for _, c in best if c[4]]
    if bad and bad[0] == _COMPLEX and kind == "symmetric":
        return _complex(A, best[0][0], tuple(w for w, _ in best), rho_hat, max_vertices, accept, deadline)
    if bad:
        return InvariantPolytope(best[0][0], rho_hat, np.zeros((0, n)), np.inf, False, bad[0], words=tuple(words))
    word = max(best, key=lambda t: t[1][0])[0]
    words = tuple(w for w, _ in best)
    At = A / rho_hat
    orbits = [_orbit(At, w, c[2], c[3]) for w, c in best]
    alpha, balanced = _balance(At, orbits)
    if kind == "cone":
        return _cone(A, At, word, words, rho_hat, orbits, alpha, max_vertices, accept, deadline)
    verts = []
    for a, (vs, _) in zip(alpha, orbits):
        for u in vs:
            if not verts or not _inside(np.array(verts), a * u, 0.0):
                verts.append(a * u)
    n_start = len(verts)
    note = "" if balanced else " (the candidates could not be balanced)"
    queue = list(range(len(verts)))
    head = 0
    while head < len(queue):
        u = verts[queue[head]]
        head += 1
        for i in range(len(A)):
            if deadline is not None and time.monotonic() > deadline:
                return InvariantPolytope(word, rho_hat, np.array(verts), np.inf, False,
                                         f"stopped by time_limit after {len(verts)} vertices", True, words=words)
            y = At[i] @ u
            if _inside(np.array(verts), y, accept):
                continue
            verts.append(y)
            queue.append(len(verts) - 1)
            if len(verts) > max_vertices:
                return InvariantPolytope(word, rho_hat, np.array(verts), np.inf, False,
                                         f"more than max_vertices={max_vertices} vertices (the candidate may "
                                         "not be spectrum-maximizing, or the polytope is large)" + note,
                                         words=words)
    V = _prune(np.array(verts), n_start)
    bases = {}
    fbound = float_bound(A, rho_hat, V, bases, deadline)
    if not np.isfinite(fbound):
        if deadline is not None and time.monotonic() > deadline:
            return InvariantPolytope(word, rho_hat, V, np.inf, False,
                                     f"certificate re-check stopped by time_limit ({len(V)} vertices)", True,
                                     words=words)
        return InvariantPolytope(word, rho_hat, V, np.inf, False, "certificate re-check failed "
                                 "(polytope not full-dimensional or LP failure)", words=words)
    qbound = math.inf
    if exact_check and len(A) * len(V) * n**3 <= _EXACT_BUDGET:
        qbound = rational_bound(A, rho_hat, V, bases, deadline)
        check = "rational" if np.isfinite(qbound) else "rational check failed"
    else:
        check = "float" if exact_check else "float (rational check not requested)"
        if exact_check:
            check = f"float (rational check skipped: {len(A)}·{len(V)}·{n}³ > {_EXACT_BUDGET})"
    return InvariantPolytope(word, rho_hat, V, min(fbound, qbound), True, words=words, check=check,
                             rational_bound=qbound, float_bound=fbound)



def _cone(A, At, word, words, rho_hat, orbits, alpha, max_vertices, accept, deadline) -> InvariantPolytope:
    """The cone-polytope branch of ``_invariant_polytope_unit`` (nonnegative families)."""
    n = A.shape[1]
    start = []
    for a, (vs, _) in zip(alpha, orbits):
        for u in vs:
            u = u if u.sum() >= 0 else -u
            if np.any(u < -1e-12 * np.abs(u).max()):
                return InvariantPolytope(word, rho_hat, np.zeros((0, n)), np.inf, False,
                                         "leading eigenvector is not nonnegative: no cone polytope", words=words,
                                         kind="cone")
            start.append(a * np.maximum(u, 0.0))
    V, bound, reason, timed_out = cone_polytope_unit(A, start, rho_hat, At, max_vertices, accept, deadline)
    if not np.isfinite(bound):
        return InvariantPolytope(word, rho_hat, V, np.inf, False, reason, timed_out, words=words, kind="cone")
    return InvariantPolytope(word, rho_hat, V, bound, True, words=words, check="rational", rational_bound=bound,
                             kind="cone")


def _complex(A, word, words, rho_hat, max_vertices, accept, deadline) -> InvariantPolytope:
    """The complex-polytope branch (see ``_complex_polytope``) for a complex leading eigenvalue."""
    n = A.shape[1]
    Q, _ = scaled_word_product(A, word)
    ev, evec = np.linalg.eig(Q)
    order = np.argsort(-np.abs(ev))
    rho_q = float(abs(ev[order[0]]))
    # the conjugate pair shares the modulus; every other eigenvalue must be strictly smaller
    if n > 2 and abs(ev[order[2]]) > rho_q * (1 - 1e-9):
        return InvariantPolytope(word, rho_hat, np.zeros((0, n)), np.inf, False,
                                 "complex leading eigenvalue pair is not strictly dominant in modulus", words=words,
                                 kind="complex")
    v = evec[:, order[0]]
    v = v / np.linalg.norm(v)
    At = A / rho_hat
    start, u = [v], v
    for i in reversed(word[1:]):
        u = At[i] @ u
        start.append(u)
    # each membership test is an SOCP (tens of ms): the vertex count is capped lower than for LPs
    cap = min(max_vertices, _COMPLEX_MAX_VERTICES)
    V, bound, reason, timed_out = complex_polytope_unit(A, start, rho_hat, At, cap, accept, deadline)
    if not np.isfinite(bound):
        return InvariantPolytope(word, rho_hat, V, np.inf, False, reason, timed_out, words=words, kind="complex")
    return InvariantPolytope(word, rho_hat, V, bound, True, words=words, check="float (complex polytope)",
                             float_bound=bound, kind="complex")

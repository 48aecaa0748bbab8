"""Joint spectral radius with certified lower and upper bounds.

For a bounded family 𝒜 = {A_1, ..., A_k} of n×n matrices (or its convex hull, which has the
same JSR) the joint spectral radius is

    JSR(𝒜) = lim_{L→∞} max_{|w|=L} ‖A_w‖^{1/L},      A_w = A_{w_1} ⋯ A_{w_L},

and for every word w and every operator norm:  ρ(A_w)^{1/|w|} ≤ JSR ≤ max_i ‖A_i‖.
It decides whether every product of Jacobians eventually contracts (Assumption A holds in
*some* norm iff JSR < 1); the heavy-ball counterexample of the slides ("Example where
heavy-ball fails", Vaiter 2023) has JSR > 1 because M1 M1 M2 M2 has eigenvalue -9/8.

``jsr(family)`` combines:

* **lower bounds** ρ(A_w)^{1/|w|} from a branch-and-bound over words (Gripenberg, Linear
  Algebra Appl. 1996): a word w is extended only while min_{j≤|w|} ‖A_{w_1..w_j}‖^{1/j} exceeds
  the current lower bound by the tolerance; the certificate is the best word;
* **upper bounds**: (i) Gripenberg's bound max(pruned, kept) min_j ‖prefix_j‖^{1/j} at the last
  complete level (every long product factors into prefixes of norm ≤ γ^{length}); (ii) the SDP
  ellipsoidal norm of ``contraction_factor`` (Aᵢᵀ P Aᵢ ⪯ ρ² P), and the same on the symmetric
  d-th tensor power lift A^{[d]} (JSR(𝒜^{[d]}) = JSR(𝒜)^d), giving ρ_d^{1/d}: the *lifted
  ellipsoid*, a quadratic form on the lift, which is weaker than the sum-of-squares bound of the
  same degree (it fixes the Gram matrix of γ^{2d}p − p∘A_i, see ``_sos``); (iii) an invariant
  polytope of Guglielmi & Protasov built from the best products (balanced when several are
  optimal), which, when it closes and passes its exact re-check, proves upper = lower; for
  entrywise nonnegative families a positive (cone) polytope is tried when the balanced one fails
  (``InvariantPolytope.kind`` says which norm the certificate defines), and a complex leading
  eigenvalue gets a complex polytope (``kind = "complex"``, complex vertices);
  (iv) optionally (``sos_degrees``) the true sum-of-squares bounds of Parrilo & Jadbabaie 2008
  (``sos_jsr_bound``), re-verified after every solve.

Every upper bound is recomputed from the data with numpy after the solver returns, enlarged by
a rounding margin; norms of products use the verified ellipsoidal norm.  Lower bounds are
spectral radii computed by LAPACK (backward stable); for rational data
``exact_eigenvalues(family, word)`` recomputes the spectrum of a certificate exactly in sympy.

Scale.  JSR(c·𝒜) = |c|·JSR(𝒜).  Everything is computed for the normalized family 𝒜/2^e, with
2^e a power of two near the largest entry (an exact division in binary floating point), and
products are kept as 2^k·Q with max|Q| < 1 (renormalized after every factor) so that neither
long words nor extreme scales over- or underflow.  The bounds are scaled back by 2^e, the lower
rounded down and the upper up.  The certificate objects (``upper_certificate``) are those of
the normalized family 2^-e·𝒜, with e = ``JSRResult.scale_exponent``.

Time.  ``time_limit`` is a deadline for the whole call: every stage (the SDP bisections, the
branch and bound, the invariant polytope LPs, the lifted SDPs) checks it and receives the time
left; the bounds certified so far are returned and ``JSRResult.cut`` names the stages that were
stopped or skipped by it.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from conservative import MatrixSet
from conservative._qp import ldexp_down, ldexp_up, pow2_exponent

from ._contraction import _contraction_factor_unit, as_square_family, normalized_family
from ._invariant_polytope import _invariant_polytope_unit, log_spectral_radius, word_product
from ._nilpotent import nilpotency_index
from ._reducibility import BlockCertificate, block_triangularize
from ._sos import sos_jsr_bound
from ._validate import check_count, check_counts, check_time_limit, check_tolerance

__all__ = ["JSRResult", "jsr", "exact_eigenvalues", "exact_product", "symmetric_lift", "word_product"]

_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class JSRResult:
    """Certified bounds ``lower ≤ JSR ≤ upper``.

    ``certificate``: the word w (member indices, product A_{w_1}⋯A_{w_L} left to right) with
    lower = ρ(A_w)^{1/|w|}.  ``upper_method`` names the bound that gave ``upper`` and
    ``upper_certificate`` holds its witness (a ``ContractionCertificate`` for an ellipsoidal norm,
    possibly of a lifted family, an ``InvariantPolytope``, an ``SOSCertificate``, a
    ``NilpotencyCertificate`` for JSR = 0, or a ``BlockCertificate`` holding one ``JSRResult``
    per diagonal block), for the normalized family family / 2**``scale_exponent``.  ``exact`` is
    True when upper = lower is proved up to the certificate's rounding margin (relative 1e-9):
    by an invariant polytope that passed its re-check (``upper_certificate.check``: exact rational
    arithmetic, or floating point with a rounding margin for complex polytopes and polytopes too
    large for the rational check; a polytope the rational check rejected never counts), by
    nilpotency (JSR = 0), by a 1×1 family,
    or by the diagonal blocks of a block-triangular family.  ``cut`` names the stages that
    ``time_limit`` stopped or skipped (empty when none was).
    """

    lower: float
    upper: float
    certificate: tuple
    upper_method: str
    upper_certificate: object = field(default=None, repr=False)
    exact: bool = False
    bounds: dict = field(default_factory=dict, repr=False)  # every upper bound tried
    depth: int = 0  # last complete level of the branch and bound
    seconds: float = 0.0
    cut: tuple = ()  # stages stopped or skipped by time_limit
    scale_exponent: int = 0  # upper_certificate is for the family divided by 2**scale_exponent

    @property
    def ratio(self) -> float:
        """upper / lower (∞ when lower = 0)."""
        return self.upper / self.lower if self.lower > 0 else math.inf

    @property
    def gap(self) -> float:
        return self.upper - self.lower

    def summary(self) -> str:
        word = "".join(str(i) for i in self.certificate) if len(self.certificate) < 40 else \
            f"{self.certificate[:20]}…(length {len(self.certificate)})"
        head = "JSR = " if self.exact else "JSR ∈ "
        val = (f"{self.lower:.12g} (exact)" if self.exact
               else f"[{self.lower:.12g}, {self.upper:.12g}], ratio {self.ratio:.3g}")
        out = (f"{head}{val}; lower from word {word} (length {len(self.certificate)}), upper from "
               f"{self.upper_method}; depth {self.depth}, {self.seconds:.2f}s")
        if self.cut:
            out += "; cut by time_limit: " + ", ".join(self.cut)
        return out

    def __repr__(self) -> str:
        return f"JSRResult({self.summary()})"


# ---------------------------------------------------------------------------- lifts
def _sym_basis(n: int, d: int) -> np.ndarray:
    """Orthonormal basis (n^d × C(n+d-1, d)) of the symmetric tensors in (R^n)^{⊗d}."""
    cols = []
    for combo in itertools.combinations_with_replacement(range(n), d):
        col = np.zeros(n**d)
        for perm in set(itertools.permutations(combo)):
            col[np.ravel_multi_index(perm, (n,) * d)] = 1.0
        cols.append(col / np.linalg.norm(col))
    return np.array(cols).T


def symmetric_lift(A: np.ndarray, d: int) -> np.ndarray:
    """Restriction of A^{⊗d} to symmetric tensors, for each member: JSR(lift) = JSR(A)^d.

    (A^{⊗d} maps symmetric tensors to symmetric tensors and ‖Π^{⊗d}‖₂ = ‖Π‖₂^d is attained on
    the symmetric tensor v^{⊗d}, so norms of products, hence the JSR, are exactly powered.)
    """
    A = as_square_family(A)
    if d == 1:
        return A
    n = A.shape[1]
    U = _sym_basis(n, d)
    out = []
    for a in A:
        K = a
        for _ in range(d - 1):
            K = np.kron(K, a)
        out.append(U.T @ K @ U)
    return np.array(out)


# ---------------------------------------------------------------------------- exact checks
def exact_product(family: MatrixSet | ArrayLike, word: Sequence[int]) -> Any:
    """The product A_{w_1}⋯A_{w_L} in exact rational arithmetic (sympy).

    Float entries are converted *exactly* (sympy.Rational of a binary float), so the result is
    the exact product of the computed data: 0.75 becomes 3/4, 0.1 its exact binary value.
    """
    import sympy

    A = as_square_family(family)
    mats = [sympy.Matrix(a.shape[0], a.shape[1], [sympy.Rational(float(x)) for x in a.ravel()]) for a in A]
    P = sympy.eye(A.shape[1])
    for i in word:
        if not 0 <= int(i) < len(mats):
            raise ValueError(f"word: index {i} out of range for a family of {len(mats)} matrices")
        P = P * mats[int(i)]
    return P


def exact_eigenvalues(family: MatrixSet | ArrayLike, word: Sequence[int]) -> dict:
    """Exact eigenvalues {λ: multiplicity} of A_w (sympy), e.g. {-9/8: 1, -9/32: 1} for the
    heavy-ball word M1 M1 M2 M2 = ``(0, 0, 1, 1)``."""
    return exact_product(family, word).eigenvals()


# ---------------------------------------------------------------------------- branch and bound
def _log_spectral_radii(Q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """log ρ(2^k_j Q_j) for each product (−inf when nilpotent)."""
    with np.errstate(divide="ignore"):
        return np.log(np.abs(np.linalg.eigvals(Q)).max(axis=1)) + k * _LN2


def _log_norms(Q: np.ndarray, k: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.linalg.norm(Q, 2, axis=(1, 2))) + k * _LN2


def _renormalize(Q: np.ndarray, k: np.ndarray):
    """Divide each product by a power of two near its largest entry (exact); track the exponent."""
    m = np.abs(Q).max(axis=(1, 2))
    e = np.where(m > 0, np.frexp(np.where(m > 0, m, 1.0))[1], 0)
    return np.ldexp(Q, -e[:, None, None]), k + e


_LN2 = math.log(2.0)


def _primitive(word: tuple) -> tuple:
    """Shortest root u with word = u^k, rotated to its lexicographically smallest shift."""
    L = len(word)
    for p in range(1, L + 1):
        if L % p == 0 and word == word[:p] * (L // p):
            root = word[:p]
            return min(root[i:] + root[:i] for i in range(p))
    return word


def _branch_and_bound(B, tol, max_length, max_products, deadline):
    """Gripenberg's algorithm on the (already norm-transformed) family B, 2-norms of products.

    Products are stored as 2^k·Q (``_renormalize``) and all bounds are handled as logarithms,
    so no norm or spectral radius of a long product over- or underflows.  Returns
    (log lower, best word, log upper, depth, candidates {primitive word: log value}, cut).
    """
    k, n = B.shape[0], B.shape[1]
    words = np.arange(k)[:, None]
    prods, ex = _renormalize(B.copy(), np.zeros(k, dtype=np.int64))
    lnorms = _log_norms(prods, ex)
    lmins = lnorms.copy()  # min_j log‖prefix_j‖ / j
    lradii = _log_spectral_radii(prods, ex)
    lower = float(lradii.max())
    best = (int(np.argmax(lradii)),)
    candidates = {_primitive(best): lower}
    pruned_max = -math.inf
    upper = float(lnorms.max())
    depth = 1
    cut = False
    log_tol = math.log1p(tol)
    for L in range(1, max_length + 1):
        level_start = time.monotonic()
        if L > 1:
            vals = lradii / L
            i = int(np.argmax(vals))
            if vals[i] > lower:
                lower, best = float(vals[i]), tuple(int(x) for x in words[i])
            for j in np.argsort(-vals)[:4]:
                if vals[j] >= lower + math.log1p(-1e-9):
                    w = _primitive(tuple(int(x) for x in words[j]))
                    candidates[w] = max(candidates.get(w, -math.inf), float(vals[j]))
            lmins = np.minimum(lmins, lnorms / L)
        threshold = lower + log_tol
        keep = lmins > threshold
        if np.any(~keep):
            pruned_max = max(pruned_max, float(lmins[~keep].max()))
        level_upper = max(pruned_max, float(lmins[keep].max()) if np.any(keep) else -math.inf)
        upper = min(upper, level_upper)
        depth = L
        words, prods, ex, lmins = words[keep], prods[keep], ex[keep], lmins[keep]
        if len(words) == 0 or L == max_length or len(words) * k > max_products:
            break
        # stop when the next level (about k times this one) cannot finish before the deadline
        now = time.monotonic()
        if now > deadline or now + (now - level_start) * k * 1.2 > deadline:
            cut = True
            break
        prods, ex = _renormalize((prods[:, None] @ B[None]).reshape(-1, n, n), np.repeat(ex, k))
        words = np.hstack([np.repeat(words, k, axis=0), np.tile(np.arange(k), len(words))[:, None]])
        lmins = np.repeat(lmins, k)
        lnorms = _log_norms(prods, ex)
        lradii = _log_spectral_radii(prods, ex)
    return lower, best, upper, depth, candidates, cut


_NILPOTENT_MAX_DIM = 24  # the rational nilpotency test runs up to this dimension


def _jsr_by_blocks(A, split, t0, deadline, options) -> JSRResult:
    """JSR = max over the diagonal blocks of a block-triangular family, each block by ``jsr``."""
    results = []
    cut = []
    for b in range(len(split.blocks)):
        left = max(deadline - time.monotonic(), 0.0)
        share = max(left / (len(split.blocks) - b), 0.05)
        res = jsr(split.block(A, b), time_limit=share, reduce=False, **options)
        results.append(res)
        cut.extend(f"block {b}: {c}" for c in res.cut)
    best = max(range(len(results)), key=lambda b: results[b].lower)
    lower = results[best].lower
    upper = max(max(r.upper for r in results), lower)
    # exact: the block giving the lower bound is proved exact and no block's upper bound exceeds it
    exact = bool(results[best].exact and upper <= lower * (1 + 1e-9))
    sizes = [len(b) for b in split.blocks]
    top = max(range(len(results)), key=lambda b: results[b].upper)
    method = (f"block triangularization ({len(sizes)} diagonal blocks of sizes {sizes}): max over blocks; "
              f"largest upper bound from block {top}: {results[top].upper_method}")
    bounds = {f"block {b} (size {sizes[b]})": (r.lower, r.upper) for b, r in enumerate(results)}
    return JSRResult(lower, upper, results[best].certificate, method, BlockCertificate(split, tuple(results)),
                     exact, bounds, max(r.depth for r in results), time.monotonic() - t0, tuple(cut), 0)


def _exp(x: float) -> float:
    return math.exp(x) if x < 709.0 else math.inf


def jsr(family: MatrixSet | ArrayLike, *, tol: float = 1e-6, max_length: int = 24, max_products: int = 200_000,
        lift_degrees: Sequence[int] = (1, 2), max_lift_dim: int = 36, invariant_polytope_search: bool = True,
        max_polytope_vertices: int = 400, time_limit: float = 60.0, solver: str = "CLARABEL",
        reduce: bool = True, sos_degrees: Sequence[int] = ()) -> JSRResult:
    """Certified bounds on the joint spectral radius of a family of square matrices.

    ``family``: a ``MatrixSet`` (its vertices) or a sequence/array of n×n matrices.
    ``tol``: relative target; the search stops once upper ≤ lower·(1 + tol).
    ``max_length``/``max_products`` cap the branch and bound (the bounds stay valid when it
    stops early); ``lift_degrees`` are the degrees d of the lifted ellipsoid (an ellipsoidal
    norm on the symmetric d-th tensor lift; skipped when the lifted dimension exceeds
    ``max_lift_dim``).  ``sos_degrees``: even degrees 2d of Parrilo-Jadbabaie sum-of-squares
    bounds to try last while the bounds are apart (none by default: each costs a bisection of
    SDPs of size C(n+d-1, d); skipped, and named in ``cut``, when the lifted size exceeds
    ``max_lift_dim``).
    ``time_limit`` (seconds) is a deadline for the whole call: stages are stopped or skipped
    when it passes and ``JSRResult.cut`` says which; the bounds returned are still certified.
    The result's ``certificate`` is the word of the lower bound; see ``JSRResult``.
    ``reduce``: split a structurally block-triangular family into its diagonal blocks first
    (``block_triangularize``; JSR = max over blocks, each block certified on its own, the
    ``upper_certificate`` is then a ``BlockCertificate``).

    Exact shortcuts come first: a 1×1 family has JSR = max |a_i|; a jointly nilpotent family
    (every product of length n vanishes, decided in rational arithmetic by ``nilpotency_index``)
    has JSR = 0, both with ``exact=True``.

    The stages, in order: the ellipsoidal norm SDP on the family (degree 1), the branch and bound
    in that norm, the invariant polytope from the best words (which may prove upper = lower),
    then the SDPs on the lifts of degree ≥ 2 while the bounds are not within ``tol``.
    """
    t0 = time.monotonic()
    A = as_square_family(family)
    tol = check_tolerance(tol, "tol")
    if tol < 1e-12:
        raise ValueError(f"tol: {tol:g} is below what float64 certificates can resolve (use tol ≥ 1e-12)")
    max_length = check_count(max_length, "max_length")
    max_products = check_count(max_products, "max_products")
    lift_degrees = check_counts(lift_degrees, "lift_degrees")
    if isinstance(sos_degrees, (str, bytes)) or not hasattr(sos_degrees, "__iter__"):
        raise TypeError(f"sos_degrees: expected a sequence of even integers, got {type(sos_degrees).__name__}")
    sos_degrees = tuple(check_count(v, f"sos_degrees[{i}]", 2) for i, v in enumerate(sos_degrees))
    if any(v % 2 for v in sos_degrees):
        raise ValueError(f"sos_degrees: expected even degrees 2d, got {sos_degrees}")
    max_lift_dim = check_count(max_lift_dim, "max_lift_dim")
    max_polytope_vertices = check_count(max_polytope_vertices, "max_polytope_vertices")
    time_limit = check_time_limit(time_limit)
    if not isinstance(invariant_polytope_search, (bool, np.bool_)):
        raise TypeError(f"invariant_polytope_search: expected a bool, got {type(invariant_polytope_search).__name__}")
    if not isinstance(solver, str):
        raise TypeError(f"solver: expected a solver name (str), got {type(solver).__name__}")
    if not isinstance(reduce, (bool, np.bool_)):
        raise TypeError(f"reduce: expected a bool, got {type(reduce).__name__}")
    deadline = t0 + time_limit
    n = A.shape[1]
    if not np.any(A):
        return JSRResult(0.0, 0.0, (0,), "zero family", exact=True, seconds=time.monotonic() - t0)
    if n == 1:  # products of scalars: JSR = max |a_i|, attained by the word (argmax)
        i = int(np.argmax(np.abs(A[:, 0, 0])))
        val = float(abs(A[i, 0, 0]))
        return JSRResult(val, val, (i,), "1×1 family: JSR = max |a_i|", exact=True,
                         bounds={"1×1 family": val}, seconds=time.monotonic() - t0)
    if n <= _NILPOTENT_MAX_DIM:
        nil = nilpotency_index(A)
        if nil is not None:
            return JSRResult(0.0, 0.0, (0,), f"jointly nilpotent: every product of length {nil.length} is zero "
                             "(exact rational check)", nil, exact=True, bounds={"nilpotent": 0.0},
                             seconds=time.monotonic() - t0)
    if reduce:
        split = block_triangularize(A)
        if len(split.blocks) > 1:
            return _jsr_by_blocks(A, split, t0, deadline, dict(
                tol=tol, max_length=max_length, max_products=max_products, lift_degrees=lift_degrees,
                max_lift_dim=max_lift_dim, invariant_polytope_search=invariant_polytope_search,
                max_polytope_vertices=max_polytope_vertices, solver=solver, sos_degrees=sos_degrees))
    An, e, loss = normalized_family(A)

    def stage_deadline(share):
        now = time.monotonic()
        return now + share * max(0.0, deadline - now)

    cut = []
    bounds = {}  # values on the normalized scale, rescaled at the end
    best_up, best_method, best_cert = math.inf, "", None
    norm_cert = None
    degrees = sorted(set(lift_degrees))
    feasible = [d for d in degrees if (d == 1 or n > 1) and math.comb(n + d - 1, d) <= max_lift_dim]
    # (ii, degree 1) ellipsoidal norm on the family
    if 1 in feasible:
        cert, was_cut = _contraction_factor_unit(An, "sdp", min(1e-3, tol), solver, 60, stage_deadline(0.35), loss)
        if was_cut:
            cut.append("ellipsoidal norm SDP (lift degree 1)")
        bounds["ellipsoidal norm, lift degree 1"] = cert.rho
        norm_cert = cert
        best_up, best_method, best_cert = cert.rho, "ellipsoidal norm (SDP, lift degree 1)", cert
    # (i) branch and bound in the best degree-1 norm
    if norm_cert is not None:
        R = norm_cert.R
        B = np.array([R @ a @ np.linalg.inv(R) for a in An])
        margin = 64 * n * _EPS * max(1.0, float(np.linalg.cond(R)))
    else:
        B, margin = An, 64 * n * _EPS
    eB = pow2_exponent(B)
    B = np.ldexp(B, -eB)  # JSR(B) = 2^-eB JSR(An): logarithms of bounds are shifted back by eB·ln 2
    shift = eB * _LN2
    llower, word, lgup, depth, candidates, bb_cut = _branch_and_bound(
        B, tol, max_length, max_products, stage_deadline(0.5))
    if bb_cut:
        cut.append(f"branch and bound (at depth {depth})")
    gup = _exp(lgup + shift) * (1 + margin * depth)
    if loss > 0:
        gup = math.inf  # products of the rounded family: no certificate for the data
    bounds[f"norms of products (branch and bound, depth {depth})"] = gup
    if gup < best_up:
        best_up, best_method, best_cert = gup, f"norms of products up to length {depth} (Gripenberg)", norm_cert
    # report the primitive word (w = u^k gives the same bound) and recompute its value
    word = _primitive(word)
    lower = _exp(log_spectral_radius(An, word) / len(word)) if np.any(An) else 0.0
    upper = max(best_up, lower)
    exact = False
    # (iii) invariant polytope from the best candidates: tries to prove upper = lower.  All
    # candidates within 1e-9 of the best are first tried together (balanced), then one by one.
    if invariant_polytope_search and loss == 0:
        ranked = sorted(candidates.items(), key=lambda t: (-t[1], len(t[0])))
        ranked = [(w, lval) for w, lval in ranked if _exp(lval + shift) >= lower * (1 - 1e-9)]
        group = [w for w, _ in ranked[:8]]
        attempts = [(ws, "symmetric") for ws in ([group] if len(group) > 1 else []) + [[w] for w in group[:3]]]
        if group and not np.any(An < 0):  # nonnegative family: positive (cone) polytopes as a fallback
            attempts.append((group, "cone"))
        for ws, kind in attempts:
            if time.monotonic() > deadline:
                cut.append("invariant polytope (not started)")
                break
            poly = _invariant_polytope_unit(An, ws, max_polytope_vertices, 1e-10, stage_deadline(0.6), kind=kind)
            label = ws[0] if len(ws) == 1 else tuple(ws)
            if poly.timed_out:
                cut.append(f"invariant polytope from word {label}")
            bounds[f"{'cone ' if kind == 'cone' else ''}invariant polytope from word{'s' if len(ws) > 1 else ''} "
                   f"{label}"] = (poly.bound if poly.success else poly.reason)
            if poly.success:
                if poly.rho_hat >= lower:
                    lower, word = poly.rho_hat, tuple(poly.word)
                # a certificate the rational re-check rejected never proves exactness
                proves = poly.bound <= lower * (1 + 1e-9) and poly.check != "rational check failed"
                if proves or poly.bound < upper:
                    upper = max(min(upper, poly.bound), lower)
                    prefix = "" if poly.kind == "symmetric" else poly.kind + " "
                    best_method = (prefix + "invariant polytope (Guglielmi-Protasov"
                                   + (", balanced" if len(poly.words) > 1 else "") + f", {poly.check} check)")
                    best_cert = poly
                    exact = proves
                    break
    # (ii, degree ≥ 2) ellipsoidal norms on symmetric lifts, while the bounds are apart
    for d in feasible:
        if d == 1 or exact or upper <= lower * (1 + tol) or loss > 0:
            continue
        left = deadline - time.monotonic()
        N = math.comb(n + d - 1, d)
        # setting up the lifted SDP (cvxpy compilation) cannot be interrupted: skip it when a
        # rough estimate of that cost does not fit in the time left
        if left <= 0 or 6e-7 * len(An) * N**4 > left:
            cut.append(f"ellipsoidal norm SDP (lift degree {d}, not started)")
            continue
        Ad = symmetric_lift(An, d)  # entries below C(n+d-1, d): no over/underflow
        cert, was_cut = _contraction_factor_unit(Ad, "sdp", min(1e-3, tol), solver, 60, stage_deadline(1.0))
        if was_cut:
            cut.append(f"ellipsoidal norm SDP (lift degree {d})")
        up = _exp(math.log(cert.rho) / d) * (1 + 16 * _EPS) if cert.rho > 0 else 0.0
        bounds[f"ellipsoidal norm, lift degree {d}"] = up
        if up < upper:
            upper = max(up, lower)
            best_method, best_cert = f"ellipsoidal norm (SDP, lift degree {d})", cert
    # (iv) sum-of-squares bounds (Parrilo-Jadbabaie), while the bounds are apart
    for deg in sorted(set(sos_degrees)):
        if exact or upper <= lower * (1 + tol) or loss > 0:
            break
        left = deadline - time.monotonic()
        if math.comb(n + deg // 2 - 1, deg // 2) > max_lift_dim or left <= 0:
            cut.append(f"sum of squares degree {deg} (not started)")
            continue
        try:
            sos = sos_jsr_bound(An, deg, lower=lower, rel_tol=min(1e-4, tol), solver=solver, time_limit=left)
        except ValueError as err:
            bounds[f"sum of squares, degree {deg}"] = str(err)
            continue
        bounds[f"sum of squares, degree {deg}"] = sos.bound
        if sos.bound < upper:
            upper = max(sos.bound, lower)
            best_method, best_cert = f"sum of squares (Parrilo-Jadbabaie, degree {deg}, re-verified)", sos
    lower_out, upper_out = ldexp_down(lower, e), ldexp_up(upper, e)
    bounds = {key: (ldexp_up(v, e) if isinstance(v, float) and np.isfinite(v) else v) for key, v in bounds.items()}
    if loss > 0:
        bounds["normalization"] = ("entries below 2^-1022 of the largest were rounded when dividing by a power "
                                   "of two: only the degree-1 norm bound (enlarged by the rounding) is certified")
    return JSRResult(float(lower_out), float(upper_out), tuple(int(i) for i in word), best_method, best_cert,
                     exact, bounds, depth, time.monotonic() - t0, tuple(cut), e)

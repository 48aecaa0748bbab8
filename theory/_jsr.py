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
  d-th tensor power lift A^{[d]} (JSR(𝒜^{[d]}) = JSR(𝒜)^d; the sum-of-squares hierarchy of
  Parrilo & Jadbabaie 2008), giving ρ_d^{1/d}; (iii) an invariant polytope of Guglielmi &
  Protasov built from the best product, which, when it closes, proves upper = lower.

Every upper bound is recomputed from the data with numpy after the solver returns, enlarged by
a rounding margin; norms of products use the verified ellipsoidal norm.  Lower bounds are
spectral radii computed by LAPACK (backward stable); for rational data
``exact_eigenvalues(family, word)`` recomputes the spectrum of a certificate exactly in sympy.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ._contraction import as_square_family, contraction_factor
from ._invariant_polytope import InvariantPolytope, invariant_polytope, word_product

__all__ = ["JSRResult", "jsr", "exact_eigenvalues", "exact_product", "symmetric_lift", "word_product"]

_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class JSRResult:
    """Certified bounds ``lower ≤ JSR ≤ upper``.

    ``certificate``: the word w (member indices, product A_{w_1}⋯A_{w_L} left to right) with
    lower = ρ(A_w)^{1/|w|}.  ``upper_method`` names the bound that gave ``upper`` and
    ``upper_certificate`` holds its witness (a ``ContractionCertificate`` for an ellipsoidal norm,
    possibly of a lifted family, or an ``InvariantPolytope``).  ``exact`` is True when an
    invariant polytope proved upper = lower up to the certificate's rounding margin.
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
        val = (f"{self.lower:.12g} (exact: invariant polytope)" if self.exact
               else f"[{self.lower:.12g}, {self.upper:.12g}], ratio {self.ratio:.3g}")
        return (f"{head}{val}; lower from word {word} (length {len(self.certificate)}), upper from "
                f"{self.upper_method}; depth {self.depth}, {self.seconds:.2f}s")

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
def exact_product(family, word):
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


def exact_eigenvalues(family, word) -> dict:
    """Exact eigenvalues {λ: multiplicity} of A_w (sympy), e.g. {-9/8: 1, -9/32: 1} for the
    heavy-ball word M1 M1 M2 M2 = ``(0, 0, 1, 1)``."""
    return exact_product(family, word).eigenvals()


# ---------------------------------------------------------------------------- branch and bound
def _spectral_radii(P: np.ndarray) -> np.ndarray:
    return np.abs(np.linalg.eigvals(P)).max(axis=1)


def _primitive(word: tuple) -> tuple:
    """Shortest root u with word = u^k, rotated to its lexicographically smallest shift."""
    L = len(word)
    for p in range(1, L + 1):
        if L % p == 0 and word == word[:p] * (L // p):
            root = word[:p]
            return min(root[i:] + root[:i] for i in range(p))
    return word


def _branch_and_bound(B, tol, max_length, max_products, deadline):
    """Gripenberg's algorithm on the (already norm-transformed) family B, 2-norms of products."""
    k, n = B.shape[0], B.shape[1]
    words = np.arange(k)[:, None]
    prods = B.copy()
    norms = np.linalg.norm(prods, 2, axis=(1, 2))
    mins = norms.copy()  # min_j ‖prefix_j‖^{1/j}
    radii = _spectral_radii(prods)
    lower = float(radii.max())
    best = (int(np.argmax(radii)),)
    candidates = {_primitive(best): lower}
    pruned_max = 0.0
    upper = float(norms.max())
    depth = 1
    for L in range(1, max_length + 1):
        if L > 1:
            vals = radii ** (1.0 / L)
            i = int(np.argmax(vals))
            if vals[i] > lower:
                lower, best = float(vals[i]), tuple(int(x) for x in words[i])
            for j in np.argsort(-vals)[:4]:
                if vals[j] >= lower * (1 - 1e-9):
                    w = _primitive(tuple(int(x) for x in words[j]))
                    candidates[w] = max(candidates.get(w, 0.0), float(vals[j]))
            mins = np.minimum(mins, norms ** (1.0 / L))
        threshold = lower * (1 + tol)
        keep = mins > threshold
        if np.any(~keep):
            pruned_max = max(pruned_max, float(mins[~keep].max()))
        level_upper = max(pruned_max, float(mins[keep].max()) if np.any(keep) else 0.0)
        upper = min(upper, level_upper)
        depth = L
        words, prods, mins = words[keep], prods[keep], mins[keep]
        if len(words) == 0 or L == max_length or len(words) * k > max_products or time.monotonic() > deadline:
            break
        prods = (prods[:, None] @ B[None]).reshape(-1, n, n)
        words = np.hstack([np.repeat(words, k, axis=0), np.tile(np.arange(k), len(words))[:, None]])
        mins = np.repeat(mins, k)
        norms = np.linalg.norm(prods, 2, axis=(1, 2))
        radii = _spectral_radii(prods)
    return lower, best, upper, depth, candidates


def jsr(family, *, tol: float = 1e-6, max_length: int = 24, max_products: int = 200_000,
        lift_degrees=(1, 2), max_lift_dim: int = 36, invariant_polytope_search: bool = True,
        max_polytope_vertices: int = 400, time_limit: float = 60.0, solver: str = "CLARABEL") -> JSRResult:
    """Certified bounds on the joint spectral radius of a family of square matrices.

    ``family``: a ``MatrixSet`` (its vertices) or a sequence/array of n×n matrices.
    ``tol``: relative target; the search stops once upper ≤ lower·(1 + tol).
    ``max_length``/``max_products``/``time_limit`` cap the branch and bound (the bounds stay
    valid when it stops early); ``lift_degrees`` are the SOS degrees d of the ellipsoidal norm
    on symmetric tensor lifts (skipped when the lifted dimension exceeds ``max_lift_dim``).
    The result's ``certificate`` is the word of the lower bound; see ``JSRResult``.
    """
    t0 = time.monotonic()
    A = as_square_family(family)
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol: expected a positive relative tolerance, got {tol!r}")
    if tol < 1e-12:
        raise ValueError(f"tol: {tol:g} is below what float64 certificates can resolve (use tol ≥ 1e-12)")
    if int(max_length) < 1:
        raise ValueError(f"max_length: expected ≥ 1, got {max_length}")
    deadline = t0 + float(time_limit)
    n = A.shape[1]
    if not np.any(A):
        return JSRResult(0.0, 0.0, (0,), "zero family", exact=True, seconds=time.monotonic() - t0)
    bounds = {}
    # (ii) ellipsoidal norms, on the family and on symmetric lifts
    best_up, best_method, best_cert = math.inf, "", None
    norm_cert = None
    for d in lift_degrees:
        if math.comb(n + d - 1, d) > max_lift_dim or (d > 1 and n == 1):
            continue
        Ad = symmetric_lift(A, d)
        cert = contraction_factor(Ad, method="sdp", rtol=min(1e-3, tol), solver=solver)
        up = cert.rho ** (1.0 / d)
        bounds[f"ellipsoidal norm, lift degree {d}"] = up
        if d == 1:
            norm_cert = cert
        if up < best_up:
            best_up, best_method, best_cert = up, f"ellipsoidal norm (SDP, lift degree {d})", cert
    # (i) branch and bound in the best degree-1 norm
    if norm_cert is not None:
        R = norm_cert.R
        B = np.array([R @ a @ np.linalg.inv(R) for a in A])
        margin = 64 * n * _EPS * max(1.0, float(np.linalg.cond(R)))
    else:
        B, margin = A, 64 * n * _EPS
    lower, word, gup, depth, candidates = _branch_and_bound(B, tol, int(max_length), int(max_products), deadline)
    gup *= 1 + margin * depth
    bounds[f"norms of products (branch and bound, depth {depth})"] = gup
    if gup < best_up:
        best_up, best_method, best_cert = gup, f"norms of products up to length {depth} (Gripenberg)", norm_cert
    # report the primitive word (w = u^k gives the same bound) and recompute its value
    word = _primitive(word)
    lower = float(_spectral_radii(word_product(A, word)[None])[0] ** (1.0 / len(word)))
    upper = max(best_up, lower)
    exact = False
    # (iii) invariant polytope from the best candidates: tries to prove upper = lower
    if invariant_polytope_search:
        tried = 0
        for w, val in sorted(candidates.items(), key=lambda t: (-t[1], len(t[0]))):
            if val < lower * (1 - 1e-9) or tried >= 3 or time.monotonic() > deadline:
                break
            tried += 1
            poly: InvariantPolytope = invariant_polytope(A, w, max_vertices=max_polytope_vertices)
            bounds[f"invariant polytope from word {w}"] = poly.bound if poly.success else poly.reason
            if poly.success:
                if poly.rho_hat >= lower:
                    lower, word = poly.rho_hat, tuple(w)
                proves = poly.bound <= lower * (1 + 1e-9)
                if proves or poly.bound < upper:
                    upper = max(min(upper, poly.bound), lower)
                    best_method, best_cert = "invariant polytope (Guglielmi-Protasov)", poly
                    exact = proves
                    break
    return JSRResult(float(lower), float(upper), tuple(int(i) for i in word), best_method, best_cert,
                     exact, bounds, depth, time.monotonic() - t0)

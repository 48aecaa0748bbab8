"""Fixed sets of contracting families of affine maps X ↦ A X + B (the piggyback limit).

Let 𝒥 ⊂ R^{n×(n+m)} be compact (here a polytope conv{[A_i, B_i]}) with every A contracting.
The set-valued map 𝒥(𝒳) = {A X + B : [A, B] ∈ 𝒥, X ∈ 𝒳} has a unique compact fixed set
fix(𝒥) = 𝒥(fix 𝒥), and iterates 𝒳_{t+1} = 𝒥(𝒳_t) satisfy

    dist_H(𝒳_t, fix 𝒥) ≤ ρᵗ dist_H(𝒳_0, 𝒥(𝒳_0)) / (1 - ρ)                 (a priori)
    dist_H(𝒳_t, fix 𝒥) ≤ ρ/(1 - ρ) · dist_H(𝒳_{t-1}, 𝒳_t)                   (a posteriori)

(Bolte, Pauwels & Vaiter 2022; slides "Behind the scene: fixed-point theorem for set-valued
mapping", Vaiter 2023).  We iterate the convexified map 𝒦(𝒳) = conv 𝒥(𝒳), which for a polytope
𝒳 is conv{A_i X_j + B_i : [A_i, B_i], X_j vertices} ((A, X) ↦ AX + B is bilinear), pruned to
extreme points.  𝒦 is a ρ-contraction too and its fixed point is conv(fix 𝒥) (because
𝒥(conv S) ⊆ conv 𝒥(S)), so ``fixed_set`` returns the convex hull of the fixed set.

Norms.  Any certified norm in which some power 𝒦^k contracts will do (``_step_norm``): the SDP
ellipsoidal norm of ``contraction_factor`` (‖R A R⁻¹‖₂ ≤ ρ, P = RᵀR, k = 1), a product length k
with max_{|w|=k} ‖A_w‖_P ≤ ρ (``product_contraction``), or an extremal polytope norm from an
invariant polytope (``polytope_contraction``, ``jsr``): a family with JSR < 1 always has one,
whereas an ellipsoidal contraction may not exist (heavy-ball × 0.95: JSR 0.9805, best ellipsoid
1.09).  X ↦ AX acts columnwise, so ‖AX‖_N ≤ ‖A‖‖X‖_N for the columnwise norms used; Hausdorff
distances are computed as certified Frobenius distances between L·𝒳 and L·𝒴 (L = R, exact for
ellipsoids; L = I and h_N ≤ c_N h_F for polytopes) and converted with ‖X‖_F ≤ c_F ‖X‖_N.
Every valid norm gives a valid bound, so the bounds are also evaluated in the 2-norm when it
contracts, and the smaller is kept: a badly conditioned P then does not cap the accuracy.
For k > 1 the bounds below hold with 𝒦 replaced by 𝒦^k and 𝒳_{t-1} by 𝒳_{t-k}.

Rounding.  The computed iterate Ŷ differs from the exact 𝒦(𝒳) by δ in the Hausdorff distance:
each candidate A_i X_j + B_i is computed with entrywise error ≤ γ(|A_i||X_j| + |B_i|),
γ = (n+2)·eps, and pruning to extreme points drops only points verified within the pruning
tolerance of the kept hull.  With δ_N = c_N‖L‖₂·δ (summed over a block of k steps with the
weights Lip_N(𝒦^i)) the bounds used are

    dist_H(Ŷ, fix) ≤ c_F [ρ/(1-ρ)·(h_N(𝒳, Ŷ) + δ_N) + δ_N]                     (a posteriori)

(triangle inequality through 𝒦(𝒳)); the a-priori bound gets δ_N/(1-ρ) added.  They are true
for the computed data; their floor is about κ·δ/(1-ρ) with κ = c_F c_N ‖L‖₂.

Stopping test.  h_N(𝒳, Ŷ) is bounded by certified distances from each vertex to the other
polytope: the nearest vertex first (cheap), then, for the vertices where that exceeds what the
tolerance needs, the NNLS projection and the certified QP of ``MatrixSet.distance_bounds``
(exact up to its duality certificate), so the reported bound does not plateau at the
nearest-vertex distance when the hull has many extreme points.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from conservative import MatrixSet, SetTooLargeError
from conservative._qp import ldexp_up, pow2_exponent, rescale_exactly

from ._contraction import ContractionCertificate, ProductContraction
from ._invariant_polytope import InvariantPolytope
from ._jsr import JSRResult
from ._polytope_norm import PolytopeContraction
from ._step_norm import StepNorm, step_norms
from ._validate import check_count, check_tolerance

_EPS = np.finfo(np.float64).eps

__all__ = ["FixedSetIteration", "fixed_set", "fixed_set_iteration", "as_block_family"]


def as_block_family(family: MatrixSet | ArrayLike, name: str = "family") -> tuple[np.ndarray, np.ndarray]:
    """Vertices of a family of [A, B] blocks (MatrixSet n×(n+m), or array (k, n, n+m)) → (A, B)."""
    if isinstance(family, MatrixSet):
        V = family.vertices
    else:
        try:
            V = MatrixSet(family).vertices
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name}: {exc}") from exc
    n, N = V.shape[1], V.shape[2]
    if N <= n:
        raise ValueError(f"{name}: expected [A, B] blocks of shape n×(n+m) with m ≥ 1 (A square n×n), "
                         f"got {n}×{N}")
    return V[:, :, :n], V[:, :, n:]


@dataclass(frozen=True)
class FixedSetIteration:
    """The iterates 𝒳_0, …, 𝒳_T of 𝒳_{t+1} = conv 𝒥(𝒳_t) with certified Frobenius bounds.

    With the certified norm N in which 𝒦^k is a ρ-contraction (k = 1 for an ellipsoidal or
    polytope norm), t = qk + r: ``a_priori[t]`` = c_F ρ^q Lip(𝒦^r) h_N(𝒳_0, 𝒳_k)/(1-ρ) and
    ``a_posteriori[t]`` = c_F ρ/(1-ρ) h_N(𝒳_{t-k}, 𝒳_t) (∞ for t < k), plus rounding, both bound
    dist_H(𝒳_t, conv fix 𝒥) in the Frobenius norm.  ``steps[t]`` = h_N(𝒳_{t-k}, 𝒳_t) (certified
    upper bounds in N).  ``contraction`` is the (re-checked) certificate used.
    """

    sets: tuple = field(repr=False)
    a_priori: np.ndarray = field(repr=False)
    a_posteriori: np.ndarray = field(repr=False)
    steps: np.ndarray = field(repr=False)
    contraction: ContractionCertificate = field(repr=False)

    @property
    def error_bounds(self) -> np.ndarray:
        """min(a priori, a posteriori) at each t."""
        return np.minimum(self.a_priori, self.a_posteriori)

    @property
    def error_bound(self) -> float:
        return float(self.error_bounds[-1])

    def __repr__(self) -> str:
        return (f"FixedSetIteration({len(self.sets) - 1} steps, ρ = {self.contraction.rho:.6g} "
                f"({self.contraction.norm} norm), final error bound {self.error_bound:.3e}, "
                f"{len(self.sets[-1].vertices)} vertices)")


def _step(A, B, X: MatrixSet, max_vertices: int) -> tuple[MatrixSet, float]:
    """(Ŷ, δ): the computed conv 𝒥(X) pruned to extreme points, and a Frobenius bound δ on
    dist_H(Ŷ, conv 𝒥(X)) from the rounding of the candidates and of the pruning (see module doc)."""
    Xv = X.vertices
    cand = (A[:, None] @ Xv[None] + B[:, None]).reshape(-1, *Xv.shape[1:])
    S = MatrixSet(cand)
    try:
        V = S.enumerate_vertices(max_vertices=max_vertices)
    except SetTooLargeError as exc:
        raise SetTooLargeError(
            f"fixed_set: the iterate has more than max_vertices={max_vertices} extreme points "
            f"({len(cand)} candidates); raise max_vertices or loosen tol.") from exc
    n = A.shape[1]
    mag = (np.abs(A)[:, None] @ np.abs(Xv)[None] + np.abs(B)[:, None]).reshape(len(cand), -1)
    delta = (n + 2) * _EPS / (1 - (n + 2) * _EPS) * float(np.max(np.sqrt(np.sum((mag / mag.max()) ** 2, axis=1)))) \
        * float(mag.max()) if mag.max() > 0 else 0.0
    flat = cand.reshape(len(cand), -1)
    if len(V) < len(np.unique(flat, axis=0)):
        # points were dropped as lying in the hull of the kept ones: within the pruning tolerance
        # 1e-12·max|P| (entrywise residual) or the rank cut 1e-13·max|P|·max(shape) of the
        # affine hull (distance to the kept subspace), in Frobenius norm at most √(mn) times that
        d = flat.shape[1]
        delta += math.sqrt(d) * float(np.abs(flat).max()) * (1e-12 + 1e-13 * max(len(flat), d) * math.sqrt(d))
    return MatrixSet(V), delta


def _default_start(A, B) -> MatrixSet:
    """conv{(I - A_i)⁻¹ B_i}: each point is the fixed point of one map, hence lies in fix 𝒥."""
    n = A.shape[1]
    return MatrixSet(np.array([np.linalg.solve(np.eye(n) - a, b) for a, b in zip(A, B)]))


def _start(X0, A, B):
    if X0 is None:
        return _default_start(A, B)
    X0 = X0 if isinstance(X0, MatrixSet) else MatrixSet(X0)
    if X0.shape != B.shape[1:]:
        raise ValueError(f"X0: expected matrices of shape {B.shape[1:]}, got {X0.shape}")
    return X0


def _normalized_start(X0, A, B):
    """(B·2^-e, 𝒳_0·2^-e, e, τ): the problem rescaled by an exact power of two near max |B|, |X0|.

    𝒦(𝒳) = conv{A X + B} is positively homogeneous in (B, 𝒳): the fixed set of (A, cB) is c times
    that of (A, B) and the iterates from c𝒳_0 are c times the iterates from 𝒳_0, so the whole
    computation runs on entries ≤ 1 (no overflow or underflow from the data's scale, e.g. B of
    size 1e-300 or 1e300) and its sets and bounds are multiplied back by 2^e. τ bounds the
    entrywise rounding of B·2^-e (nonzero only for entries pushed into the subnormal range).
    """
    X0 = None if X0 is None else (X0 if isinstance(X0, MatrixSet) else MatrixSet(X0))
    e = pow2_exponent(B, *(() if X0 is None else (X0.vertices,)))
    Bs, tau = rescale_exactly(B, e)
    Xs = None if X0 is None else MatrixSet(rescale_exactly(X0.vertices, e)[0])
    return Bs, _start(Xs, A, Bs), e, tau


def _rounding_of_b(tau: float, B, sn: StepNorm) -> float:
    """Frobenius bound on the move of fix 𝒥 when B is perturbed entrywise by τ (a ρ-contraction 𝒦^k
    in the norm N moves its fixed set by at most Σ_{i<k} Lip(𝒦^i)·c_N‖L‖‖ΔB‖_F/(1-ρ) there)."""
    if tau == 0.0:
        return 0.0
    return sn.c_F * sn.c_N * sn.L_norm * sn.lip_sum * math.sqrt(B[0].size) * tau / (1 - sn.rho)


def _scaled_back(X: MatrixSet, e: int) -> MatrixSet:
    return MatrixSet(np.ldexp(X.vertices, e)) if e else X


def _up(values, e: int):
    """Bounds multiplied by 2^e, rounded upward."""
    return np.array([ldexp_up(v, e) for v in np.ravel(values)]).reshape(np.shape(values))


def fixed_set_iteration(family: MatrixSet | ArrayLike, steps: int, *, X0: MatrixSet | ArrayLike | None = None,
                        contraction: ContractionCertificate | ProductContraction | PolytopeContraction
                        | InvariantPolytope | JSRResult | None = None,
                        max_vertices: int = 512) -> FixedSetIteration:
    """Run ``steps`` iterations of 𝒳_{t+1} = conv 𝒥(𝒳_t) and record both error bounds.

    ``X0`` (default conv{(I-A_i)⁻¹B_i}) is a ``MatrixSet`` or stack of n×m matrices;
    ``contraction`` an optional certificate (``ContractionCertificate``, ``ProductContraction``,
    ``PolytopeContraction``, ``InvariantPolytope`` or ``JSRResult``; re-checked on this family);
    by default the first that contracts among an SDP ellipsoidal norm, products and ``jsr``.
    """
    A, B = as_block_family(family)
    steps = check_count(steps, "steps")
    max_vertices = check_count(max_vertices, "max_vertices")
    sn = step_norms(A, contraction)[0]
    rho, c, k = sn.rho, sn.c_F, sn.k
    B, X, e, tau = _normalized_start(X0, A, B)
    sets, deltas = [X], [0.0]
    for _ in range(steps):
        Xn, delta = _step(A, B, X, max_vertices)
        deltas.append(sn.c_N * sn.L_norm * delta)  # in the norm N
        sets.append(Xn)
        X = Xn
    T = len(sets)
    d = np.full(T, np.inf)
    for t in range(k, T):
        d[t] = _hausdorff_upper_norm(sets[t - k], sets[t], sn)
    dN = np.maximum.accumulate(np.array(deltas)) * sn.lip_sum  # rounding of one block of k steps, in N
    t = np.arange(T)
    q, r = t // k, t % k
    lip_r = np.array(sn.lip)[r]
    d0 = d[k] if T > k else np.inf
    a_priori = c * (rho**q * lip_r * (d0 + dN[min(k, T - 1)]) / (1 - rho) + dN / (1 - rho)) + _rounding_of_b(tau, B, sn)
    a_post = c * (rho / (1 - rho) * (d + dN) + dN) + _rounding_of_b(tau, B, sn)
    return FixedSetIteration(tuple(_scaled_back(X, e) for X in sets), _up(a_priori, e), _up(a_post, e),
                             _up(d, e), sn.cert)


def _hull_distance_upper(v: np.ndarray, W: np.ndarray) -> float:
    """A certified upper bound on d(v, conv W) (rows of W): the distance to a feasible point.

    The convex weights come from NNLS on the system [Wᵀ; s·1ᵀ] λ ≈ [v; s] (the row s·1ᵀ pushes
    Σλ to 1); after renormalising, Wᵀλ/Σλ lies in conv W, so its distance is an upper bound
    whatever the accuracy of NNLS.  Much faster than a general QP for the many small distance
    queries of the fixed-set iteration.
    """
    from scipy.optimize import nnls

    s = 1e3 * max(1.0, float(np.abs(W).max()), float(np.abs(v).max()))
    M = np.vstack([W.T, np.full((1, len(W)), s)])
    lam, _ = nnls(M, np.concatenate([v, [s]]), maxiter=50 * len(W))
    if lam.sum() <= 0:
        return float(np.min(np.linalg.norm(W - v, axis=1)))
    lam /= lam.sum()
    # W.T @ lam is in conv W up to its rounding, ≤ γ·(|W|ᵀλ) entrywise (γ = (N+2)·eps, with the norm's)
    g = (len(W) + 2 + W.shape[1]) * np.finfo(np.float64).eps
    return float(np.linalg.norm(W.T @ lam - v)) * (1 + g) + g * float(np.linalg.norm(np.abs(W.T) @ lam + np.abs(v)))


def _excess_upper(V: np.ndarray, S: MatrixSet, near: np.ndarray, need: float | None):
    """(bound, True): a certified upper bound on max_{v ∈ rows of V} d(v, S).

    ``near`` holds the nearest-vertex distances (certified: vertices of S belong to S); they
    plateau far above d(v, S) when S has many extreme points near v (a vertex of a polygon with
    short edges is far from the other vertices but on the boundary).  Each vertex above ``need``
    (every vertex for ``need=None``) therefore gets the distance to a feasible point of S from
    the NNLS projection (``_hull_distance_upper``, with its rounding), a certified upper bound that
    is the exact distance up to the solver's accuracy (a few percent to 3× tighter than the QP
    upper bound of ``MatrixSet.distance_bounds`` on these tiny distances, and ~10× faster).
    """
    W = S.vertices.reshape(len(S.vertices), -1)
    ub = near.astype(float).copy()
    for i in np.flatnonzero(ub > (0.0 if need is None else need)):
        ub[i] = min(ub[i], _hull_distance_upper(V[i], W))
    return float(ub.max()) if len(ub) else 0.0, True


def _hausdorff_upper_full(X: MatrixSet, Y: MatrixSet, L: np.ndarray, need: float | None = None):
    """(bound, complete) for h_F(L·X, L·Y) (see ``_excess_upper``); ``need=None``: the tightest bound."""
    XP, YP = X.left_multiply(L), Y.left_multiply(L)
    Vx = XP.vertices.reshape(len(XP.vertices), -1)
    Vy = YP.vertices.reshape(len(YP.vertices), -1)
    D = np.linalg.norm(Vx[:, None, :] - Vy[None, :, :], axis=2)
    worst, complete = 0.0, True
    for V, S, near in ((Vx, YP, D.min(axis=1)), (Vy, XP, D.min(axis=0))):
        val, ok = _excess_upper(V, S, near, need)
        worst = max(worst, val)
        if not ok:
            return worst, False
    return worst, complete


def _hausdorff_upper(X: MatrixSet, Y: MatrixSet, R: np.ndarray, need: float | None = None) -> float:
    """A certified upper bound on dist_H(R·X, R·Y) (Frobenius): ``_hausdorff_upper_full`` run to the end."""
    return _hausdorff_upper_full(X, Y, R, None)[0]


def _hausdorff_upper_norm(X: MatrixSet, Y: MatrixSet, sn: StepNorm, need_N: float | None = None):
    """A certified upper bound on h_N(X, Y) = c_N·h_F(L·X, L·Y) (or the early-stop value, see above)."""
    need = None if need_N is None else need_N / sn.c_N
    val, ok = _hausdorff_upper_full(X, Y, sn.L, need)
    return (sn.c_N * val, ok) if need_N is not None else sn.c_N * val


def _merge_close(X: MatrixSet, eta: float) -> MatrixSet:
    """Inner approximation X' ⊆ X keeping one vertex per cluster of vertices closer than ``eta``.

    Every dropped vertex is within ``eta`` (Frobenius) of a kept one, and d(·, X') is convex, so
    gap(X, X') = max over vertices ≤ eta and X' ⊆ X: dist_H(X, X') ≤ eta, certified.
    """
    V = X.vertices
    if len(V) <= 2 or eta <= 0:
        return X
    flat = V.reshape(len(V), -1)
    keep = []
    for i, v in enumerate(flat):
        if not keep or np.min(np.linalg.norm(flat[keep] - v, axis=1)) > eta:
            keep.append(i)
    return X if len(keep) == len(V) else MatrixSet(V[keep])


def fixed_set(family: MatrixSet | ArrayLike, *, tol: float = 1e-8, max_iter: int = 500,
              X0: MatrixSet | ArrayLike | None = None,
              contraction: ContractionCertificate | ProductContraction | PolytopeContraction
              | InvariantPolytope | JSRResult | None = None,
              max_vertices: int = 512, merge: bool = True) -> tuple[MatrixSet, float]:
    """conv fix(𝒥) of the family of [A, B] blocks, with a certified Hausdorff error bound.

    Returns ``(X, err)`` with dist_H(X, conv fix 𝒥) ≤ err in the Frobenius norm, stopping as
    soon as err ≤ ``tol``.  The contraction may come from any certified norm (module doc):
    ``contraction`` is a ``ContractionCertificate``, ``ProductContraction``,
    ``PolytopeContraction``, ``InvariantPolytope`` or ``JSRResult`` (re-checked on this family),
    or ``None``: an SDP ellipsoidal norm, else products of length ≤ 12 in it, else ``jsr``'s
    invariant polytope (Bolte, Pauwels & Vaiter 2022 need a contraction of the set map in *some*
    norm; JSR < 1 gives one).  With 𝒦^k a ρ-contraction in N, each block computes Y = 𝒦^k(𝒳)
    exactly and bounds dist_H(Y, conv fix 𝒥) ≤ c_F ρ/(1-ρ) h_N(𝒳, Y), which holds for *any*
    compact 𝒳, so the next block may start from a simplified set: with ``merge=True`` vertices of
    Y closer than η = tol(1-ρ)/(4ρκ) are merged (a certified inner approximation, see
    ``_merge_close``), which keeps the vertex count finite when the limit hull has infinitely
    many extreme points.  The returned X is the unmerged Y.

    The bound is evaluated in the certified norm and in the 2-norm when it contracts (the
    smaller wins), with certified point-to-polytope distances (QPs, module doc) and the rounding
    of each computed iterate, so it is true for the computed data; exact iterates (e.g.
    nilpotent or finite fixed sets) reach any tol above that rounding floor.

    Raises ``ValueError`` when no contraction is certified (naming the family and what was
    proved: ellipsoidal ρ, product norms, JSR bounds) and when the certified bound stalls above
    ``tol`` (the message states the achievable floor); ``SetTooLargeError`` when an iterate
    exceeds ``max_vertices``; warns and returns the honest bound when ``max_iter`` is reached.
    """
    A, B = as_block_family(family)
    tol = check_tolerance(tol, "tol")
    max_iter = check_count(max_iter, "max_iter")
    max_vertices = check_count(max_vertices, "max_vertices")
    if not isinstance(merge, (bool, np.bool_)):
        raise TypeError(f"merge: expected a bool, got {type(merge).__name__}")
    norms = step_norms(A, contraction)
    B, X, e, tau = _normalized_start(X0, A, B)
    tol_given, tol = tol, float(np.ldexp(tol, -e))  # the tolerance of the rescaled problem
    if not tol > 0:
        raise ValueError(f"tol: {tol_given:g} is below the smallest positive float relative to the "
                         f"family's scale 2^{e}")
    extra = min(_rounding_of_b(tau, B, sn) for sn in norms)
    # merging radius: small enough for the best-conditioned norm's bound to stay below tol
    eta_of = [tol * (1 - sn.rho) / (4 * max(sn.rho, 1e-300) * sn.condition * sn.lip_sum) for sn in norms]
    eta = max(eta_of) if merge else 0.0
    k = max(sn.k for sn in norms)  # block length: a multiple of every norm's k (1 or the product length)
    norms = [sn for sn in norms if k % sn.k == 0]
    best, stall, err = np.inf, 0, np.inf
    best_rho = min(sn.rho for sn in norms)
    t = 0
    while t < max_iter:
        Ys, deltas = [X], []
        for _ in range(k):
            Yn, delta = _step(A, B, Ys[-1], max_vertices)
            Ys.append(Yn)
            deltas.append(delta)
        t += k
        Y = Ys[-1]
        err, complete = _block_error(Ys, deltas, norms, tol)
        err += extra
        if complete and err <= tol:
            return _scaled_back(Y, e), ldexp_up(err, e)
        stall = stall + 1 if err >= best * (1 - 0.1 * (1 - best_rho)) else 0
        best = min(best, err)
        if stall >= 8:
            floor = ldexp_up(best, e)
            raise ValueError(
                f"tol: {tol_given:g} is below the resolution of the certified distance computations for this "
                f"family: the certified error bound stalls at {floor:.3e} after {t} iterations (rounding of the "
                f"iterates and of the vertex pruning, amplified by κ/(1-ρ)); the achievable floor is about "
                f"{floor:.1e}, use tol ≥ {floor:.1e}")
        X = _merge_close(Y, eta)
    if not complete:
        err = _block_error(Ys, deltas, norms, None)[0] + extra
    err = ldexp_up(err, e)
    warnings.warn(f"fixed_set: tol={tol_given:g} not reached after max_iter={max_iter} iterations; "
                  f"returning the certified bound {err:.3e}", RuntimeWarning, stacklevel=2)
    return _scaled_back(Y, e), err


def _block_error(Ys, deltas, norms, tol):
    """(err, complete): the a-posteriori Frobenius bound on dist_H(Ys[-1], conv fix 𝒥) from the block
    Ys[0] → Ys[-1] of computed steps (rounding ``deltas``), the best over ``norms``.

    With ``tol`` given, distances are only resolved as far as the test err ≤ tol needs (see
    ``_excess_upper``); the bound is certified either way.
    """
    K = len(deltas)
    err, complete = np.inf, False
    for sn in norms:
        c, rho = sn.c_F, sn.rho
        # the last sn.k steps form one application of the contracting map 𝒦^{sn.k}
        dN = sn.c_N * sn.L_norm * sum(sn.lip[sn.k - 1 - j] * deltas[K - sn.k + j] for j in range(sn.k))
        need = None if tol is None else 0.5 * tol * (1 - rho) / (c * max(rho, 1e-300))
        d = _hausdorff_upper_norm(Ys[K - sn.k], Ys[K], sn, need)
        d, ok = (d, True) if need is None else d
        val = c * (rho / (1 - rho) * (d + dN) + dN)
        if ok and (not complete or val < err):
            err, complete = val, True
        elif not complete:
            err = min(err, val)
    return err, complete

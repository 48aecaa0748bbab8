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

Norms.  ρ comes from ``contraction_factor``: ‖R A R⁻¹‖₂ ≤ ρ for all A in the family, P = RᵀR.
X ↦ AX acts columnwise, so in the norm ‖X‖_{P,F} = ‖R X‖_F we have ‖AX‖_{P,F} ≤ ρ‖X‖_{P,F};
Hausdorff distances are computed in that norm (as Frobenius distances between R·𝒳 and R·𝒴)
and converted honestly with ‖X‖_F ≤ ‖R⁻¹‖₂ ‖X‖_{P,F}.  Every valid norm gives a valid bound, so
the bounds are evaluated in the certified ellipsoidal norm *and* in the 2-norm when it contracts,
and the smaller is kept: a badly conditioned P (κ(R) large) then does not cap the accuracy.

Rounding.  The computed iterate Ŷ differs from the exact 𝒦(𝒳) by δ in the Hausdorff distance:
each candidate A_i X_j + B_i is computed with entrywise error ≤ γ(|A_i||X_j| + |B_i|),
γ = (n+2)·eps, and pruning to extreme points drops only points verified within the pruning
tolerance of the kept hull.  With δ_P = ‖R‖₂·δ the bounds used are

    dist_H(Ŷ, fix) ≤ ‖R⁻¹‖₂ [ρ/(1-ρ)·(h_P(𝒳, Ŷ) + δ_P) + δ_P]                 (a posteriori)

(triangle inequality through 𝒦(𝒳)); the a-priori bound gets δ_P/(1-ρ) added.  They are true
for the computed data; their floor is about κ(R)·δ/(1-ρ).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from conservative import MatrixSet, SetTooLargeError
from conservative._qp import ldexp_up, pow2_exponent, rescale_exactly

from ._contraction import ContractionCertificate, certify_norm, contraction_factor
from ._validate import check_count, check_tolerance

_EPS = np.finfo(np.float64).eps

__all__ = ["FixedSetIteration", "fixed_set", "fixed_set_iteration", "as_block_family"]


def as_block_family(family, name: str = "family"):
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


def _check_contraction(A, contraction, name="family") -> ContractionCertificate:
    if contraction is None:
        cert = contraction_factor(A)
    elif isinstance(contraction, ContractionCertificate):
        cert = certify_norm(A, contraction.P)  # never trust a certificate computed for other data
    else:
        raise TypeError(f"contraction: expected a ContractionCertificate or None, got {type(contraction).__name__}")
    if not cert.contracts:
        raise ValueError(
            f"{name}: the A blocks do not contract: best ρ found = {cert.rho:.6g} ≥ 1 ({cert.norm} norm; "
            f"2-norm {cert.rho_2norm:.6g}, max spectral radius {cert.spectral_radius:.6g}). "
            "fix(𝒥) is only guaranteed (and computed) for ρ < 1.")
    return cert


@dataclass(frozen=True)
class FixedSetIteration:
    """The iterates 𝒳_0, …, 𝒳_T of 𝒳_{t+1} = conv 𝒥(𝒳_t) with certified Frobenius bounds.

    ``a_priori[t]`` = ‖R⁻¹‖ ρᵗ h_P(𝒳_0, 𝒳_1)/(1-ρ) and ``a_posteriori[t]`` =
    ‖R⁻¹‖ ρ/(1-ρ) h_P(𝒳_{t-1}, 𝒳_t) (∞ at t = 0) both bound dist_H(𝒳_t, conv fix 𝒥) in the
    Frobenius norm.  ``steps[t]`` = h_P(𝒳_{t-1}, 𝒳_t) (certified upper bounds, P-norm).
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


def _rounding_of_b(tau: float, B, cert) -> float:
    """Frobenius bound on the move of fix 𝒥 when B is perturbed entrywise by τ (a ρ-contraction in
    the P-norm moves its fixed set by at most ‖R‖₂‖ΔB‖_F/(1-ρ) there)."""
    if tau == 0.0:
        return 0.0
    return cert.norm_to_2 * cert.two_to_norm * math.sqrt(B[0].size) * tau / (1 - cert.rho)


def _scaled_back(X: MatrixSet, e: int) -> MatrixSet:
    return MatrixSet(np.ldexp(X.vertices, e)) if e else X


def _up(values, e: int):
    """Bounds multiplied by 2^e, rounded upward."""
    return np.array([ldexp_up(v, e) for v in np.ravel(values)]).reshape(np.shape(values))


def fixed_set_iteration(family, steps: int, *, X0=None, contraction=None, max_vertices: int = 512
                        ) -> FixedSetIteration:
    """Run ``steps`` iterations of 𝒳_{t+1} = conv 𝒥(𝒳_t) and record both error bounds.

    ``X0`` (default conv{(I-A_i)⁻¹B_i}) is a ``MatrixSet`` or stack of n×m matrices;
    ``contraction`` an optional ``ContractionCertificate`` (re-checked on this family).
    """
    A, B = as_block_family(family)
    steps = check_count(steps, "steps")
    max_vertices = check_count(max_vertices, "max_vertices")
    cert = _check_contraction(A, contraction)
    R, rho, c = cert.R, cert.rho, cert.norm_to_2
    B, X, e, tau = _normalized_start(X0, A, B)
    sets, dists, deltas = [X], [np.inf], [0.0]
    for _ in range(steps):
        Xn, delta = _step(A, B, X, max_vertices)
        dists.append(_hausdorff_upper(X, Xn, R))
        deltas.append(cert.two_to_norm * delta)  # in the P-norm
        sets.append(Xn)
        X = Xn
    d = np.array(dists)
    dP = np.maximum.accumulate(np.array(deltas))
    t = np.arange(len(sets))
    a_priori = c * (rho**t * (d[1] + dP[1]) / (1 - rho) + dP / (1 - rho)) + _rounding_of_b(tau, B, cert)
    a_post = c * (rho / (1 - rho) * (d + dP) + dP) + _rounding_of_b(tau, B, cert)
    return FixedSetIteration(tuple(_scaled_back(X, e) for X in sets), _up(a_priori, e), _up(a_post, e),
                             _up(d, e), cert)


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
    return float(np.linalg.norm(W.T @ lam - v))


def _hausdorff_upper(X: MatrixSet, Y: MatrixSet, R: np.ndarray, need: float | None = None) -> float:
    """A certified upper bound on h_P(X, Y) = dist_H(R·X, R·Y), cheap when it is far from ``need``.

    d(v, Y) ≤ min_w ‖v - w‖ over vertices w of Y (they belong to Y); only the vertices whose
    nearest-vertex bound exceeds ``need`` get a projection onto the hull (``_hull_distance_upper``), and
    none do while the cheap bound is above 20·need (far from convergence any bound will do).
    ``need=None`` projects every vertex (the tightest upper bound).
    """
    XP, YP = X.left_multiply(R), Y.left_multiply(R)
    Vx = XP.vertices.reshape(len(XP.vertices), -1)
    Vy = YP.vertices.reshape(len(YP.vertices), -1)
    D = np.linalg.norm(Vx[:, None, :] - Vy[None, :, :], axis=2)
    worst = 0.0
    for V, S, near in ((Vx, YP, D.min(axis=1)), (Vy, XP, D.min(axis=0))):
        cheap = float(near.max())
        if need is not None and (cheap <= need or cheap > 20 * need):
            worst = max(worst, cheap)
            continue
        for v, ub in zip(V, near):
            if need is None or ub > need:
                W = S.vertices.reshape(len(S.vertices), -1)
                ub = min(ub, _hull_distance_upper(v, W))
            worst = max(worst, float(ub))
    return worst


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


def fixed_set(family, *, tol: float = 1e-8, max_iter: int = 500, X0=None, contraction=None,
              max_vertices: int = 512, merge: bool = True) -> tuple[MatrixSet, float]:
    """conv fix(𝒥) of the family of [A, B] blocks, with a certified Hausdorff error bound.

    Returns ``(X, err)`` with dist_H(X, conv fix 𝒥) ≤ err in the Frobenius norm, stopping as
    soon as err ≤ ``tol``.  Each step computes Y = conv 𝒥(𝒳) exactly and bounds
    dist_H(Y, conv fix 𝒥) ≤ ‖R⁻¹‖ ρ/(1-ρ) h_P(𝒳, Y), which holds for *any* compact 𝒳 (𝒦 is a
    ρ-contraction), so the next iterate may be simplified without invalidating the bound: with
    ``merge=True`` vertices of Y closer than η = tol(1-ρ)/(4ρ κ(R)) are merged (a certified inner
    approximation, see ``_merge_close``), which keeps the vertex count finite when the limit hull
    has infinitely many extreme points.  The returned X is the unmerged Y.

    The bound is evaluated in the certified norm and in the 2-norm when it contracts (the
    smaller wins) and includes the rounding of each computed iterate (see the module doc), so it
    is true for the computed data; exact iterates (e.g. nilpotent or finite fixed sets) reach
    any tol above that rounding floor.

    Raises ``ValueError`` when the A blocks do not contract (with the best ρ found) and when
    the certified bound stalls above ``tol`` (the message states the achievable floor);
    ``SetTooLargeError`` when an iterate exceeds ``max_vertices``; warns and returns the honest
    bound when ``max_iter`` is reached.
    """
    A, B = as_block_family(family)
    tol = check_tolerance(tol, "tol")
    max_iter = check_count(max_iter, "max_iter")
    max_vertices = check_count(max_vertices, "max_vertices")
    if not isinstance(merge, (bool, np.bool_)):
        raise TypeError(f"merge: expected a bool, got {type(merge).__name__}")
    cert = _check_contraction(A, contraction)
    norms = [cert]
    if cert.norm != "2":
        two = contraction_factor(A, method="2-norm")
        if two.contracts:
            norms.append(two)  # a second valid norm, perfectly conditioned
    B, X, e, tau = _normalized_start(X0, A, B)
    tol_given, tol = tol, float(np.ldexp(tol, -e))  # the tolerance of the rescaled problem
    if not tol > 0:
        raise ValueError(f"tol: {tol_given:g} is below the smallest positive float relative to the "
                         f"family's scale 2^{e}")
    extra = _rounding_of_b(tau, B, cert)
    # merging radius: small enough for the best-conditioned norm's bound to stay below tol
    eta_of = [tol * (1 - k.rho) / (4 * max(k.rho, 1e-300) * k.norm_to_2 * k.two_to_norm) for k in norms]
    eta = max(eta_of) if merge else 0.0
    best, stall, err = np.inf, 0, np.inf
    best_rho = min(k.rho for k in norms)
    for t in range(1, max_iter + 1):
        Y, delta = _step(A, B, X, max_vertices)
        err = np.inf
        for k in norms:
            c, rho, dP = k.norm_to_2, k.rho, k.two_to_norm * delta
            d = _hausdorff_upper(X, Y, k.R, need=0.5 * tol * (1 - rho) / (c * max(rho, 1e-300)))
            err = min(err, c * (rho / (1 - rho) * (d + dP) + dP))
        err += extra
        if err <= tol:
            return _scaled_back(Y, e), ldexp_up(err, e)
        stall = stall + 1 if err >= best * (1 - 0.1 * (1 - best_rho)) else 0
        best = min(best, err)
        if stall >= 8:
            floor = ldexp_up(best, e)
            raise ValueError(
                f"tol: {tol_given:g} is below the resolution of the certified distance computations for this "
                f"family: the certified error bound stalls at {floor:.3e} after {t} iterations (rounding of the "
                f"iterates and of the vertex pruning, amplified by κ(R)/(1-ρ)); the achievable floor is about "
                f"{floor:.1e}, use tol ≥ {floor:.1e}")
        X = _merge_close(Y, eta)
    err = ldexp_up(err, e)
    warnings.warn(f"fixed_set: tol={tol_given:g} not reached after max_iter={max_iter} iterations; "
                  f"returning the certified bound {err:.3e}", RuntimeWarning, stacklevel=2)
    return _scaled_back(Y, e), err

"""Certified distance from a point to a Minkowski sum of convex hulls.

For y ∈ R^d and groups A_g ∈ R^{d×k_g} (columns are points), the set is
S = {Σ_g A_g λ_g : λ_g ∈ Δ_{k_g}} and we want dist(y, S) = min ‖y - Σ_g A_g λ_g‖₂.

The solvers (non-negative least squares with the simplex equalities as weighted rows and an
exact re-solve on the support, then cvxpy/Clarabel and SLSQP as fallbacks) return a feasible λ, hence an
*upper* bound ‖y - x(λ)‖.  Weak duality gives a *lower* bound from any direction u:
dist(y, S) ≥ (⟨u, y⟩ - σ_S(u)) / ‖u‖ with the support function σ_S(u) = Σ_g max_i ⟨u, A_g e_i⟩,
evaluated exactly.  Taking u = y - x(λ) makes the bounds meet at the optimum, so every
distance reported comes with a certificate of its accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

__all__ = ["DistanceResult", "min_norm_point", "pow2_exponent", "ldexp_up", "ldexp_down", "safe_norm",
           "rescale_exactly"]

_TINY = 2.0 ** -1074  # the smallest positive subnormal float64


def pow2_exponent(*arrays) -> int:
    """e with max|x| over ``arrays`` in [2^(e-1), 2^e) (0 when every entry is 0).

    Dividing by 2^e is exact in binary floating point (no rounding) for every entry that stays
    in the normal range, so computations on x·2^-e (entries ≤ 1) and results scaled back by 2^e
    are free of overflow and underflow from the scale of the data.
    """
    m = 0.0
    for a in arrays:
        a = np.asarray(a, dtype=np.float64)
        if a.size:
            m = max(m, float(np.max(a)), -float(np.min(a)))  # max|a| without a temporary array
    if m == 0.0 or not np.isfinite(m):
        return 0
    return int(np.frexp(m)[1])


def rescale_exactly(x, e: int):
    """(x·2^-e, loss): ``loss`` bounds |x·2^-e - fl(x·2^-e)| entrywise (0 when exact).

    Only entries that land in the subnormal range below 2^-1022 can be rounded, each by at
    most half the smallest subnormal; ``loss`` is then 2^-1074 (a safe overestimate).
    """
    x = np.asarray(x, dtype=np.float64)
    # a product with the exact power of two 2^-e rounds like ldexp (correctly), and is vectorized
    y = x * (2.0 ** -e) if abs(e) < 1000 else np.ldexp(x, -e)
    if e <= 0 or y.size == 0:
        return y, 0.0  # scaling up by 2^-e ≥ 1 is exact (the callers' data stays ≤ 1 in magnitude)
    # scaling down rounds only the entries that land below the normal range
    flat, tiny, step = x.reshape(-1), 2.0 ** (e - 1022), 1 << 20
    exact = True
    for i in range(0, flat.size, step):  # in chunks: no temporaries the size of a large query
        a = np.abs(flat[i : i + step])
        if np.any((a < tiny) & (a > 0)):
            exact = False
            break
    return y, (0.0 if exact else _TINY)


def ldexp_up(x: float, e: int) -> float:
    """The smallest float ≥ x·2^e (x·2^e rounded upward; +inf on overflow)."""
    x = float(x)
    r = float(np.ldexp(x, e))
    if np.isfinite(r) and float(np.ldexp(r, -e)) < x:
        r = float(np.nextafter(r, np.inf))
    return r


def ldexp_down(x: float, e: int) -> float:
    """The largest float ≤ x·2^e (x·2^e rounded downward; never above the exact value)."""
    x = float(x)
    r = float(np.ldexp(x, e))
    if not np.isfinite(r):
        return float(np.finfo(np.float64).max) if r > 0 else r
    if float(np.ldexp(r, -e)) > x:
        r = float(np.nextafter(r, -np.inf))
    return r


def safe_norm(v) -> float:
    """Euclidean (Frobenius) norm without overflow or underflow of the squares: m·‖v/m‖, m = max|v|."""
    v = np.asarray(v, dtype=np.float64).ravel()
    if v.size == 0:
        return 0.0
    m = max(float(np.max(v)), -float(np.min(v)))
    if m == 0.0 or not np.isfinite(m):
        return abs(m)
    if 2.0**-400 <= m <= 2.0**400:
        # squares of entries ≤ 2^400 do not overflow, and the entries small enough to underflow
        # (below 2^-537) are as negligible as after dividing by m
        return float(np.sqrt(np.dot(v, v)))
    return m * float(np.linalg.norm(v / m))


@dataclass(frozen=True)
class DistanceResult:
    point: np.ndarray  # the nearest point found, x(λ) ∈ S
    weights: tuple  # λ_g for each group
    lower: float  # certified lower bound on dist(y, S)
    upper: float  # ‖y - point‖, an upper bound (point is feasible)


def _support(groups, u):
    return float(sum(np.max(u @ A) for A in groups))


def _certify(y, groups, lams):
    x = sum((A @ lam for A, lam in zip(groups, lams)), np.zeros_like(y))
    u = y - x
    upper = safe_norm(u)
    if upper == 0.0:
        return x, 0.0, 0.0
    # the bound (⟨u, y⟩ - σ_S(u))/‖u‖ is invariant under u ↦ u/c: use u/max|u| so that tiny
    # residuals do not underflow in the inner products
    u = u / float(np.max(np.abs(u)))
    lower = max(0.0, (float(u @ y) - _support(groups, u)) / safe_norm(u))
    return x, lower, upper


def _split(z, sizes):
    return np.split(z, np.cumsum(sizes)[:-1])


def _project_simplex(v):
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    ind = np.arange(1, len(v) + 1)
    rho = ind[u - css / ind > 0][-1]
    return np.maximum(v - css[rho - 1] / rho, 0.0)


def _solve_nnls(y, groups):
    """min ‖y - Σ A_g λ_g‖² + w² Σ_g (1ᵀλ_g - 1)², λ ≥ 0 (Lawson-Hanson), projected to the simplices."""
    from scipy.optimize import nnls

    sizes = [A.shape[1] for A in groups]
    Afull = np.hstack(groups)
    scale = max(1.0, float(np.abs(Afull).max()), float(np.abs(y).max()))
    w = 1e3 * scale
    E = np.zeros((len(groups), Afull.shape[1]))
    start = 0
    for g, k in enumerate(sizes):
        E[g, start : start + k] = w
        start += k
    try:
        z, _ = nnls(np.vstack([Afull, E]), np.concatenate([y, np.full(len(groups), w)]), maxiter=50 * Afull.shape[1])
    except RuntimeError:
        return None
    out = []
    for lam in _split(z, sizes):
        total = lam.sum()
        out.append(lam / total if total > 0 else np.full(len(lam), 1.0 / len(lam)))
    return out


def _solve_slsqp(y, groups):
    sizes = [A.shape[1] for A in groups]
    Afull = np.hstack(groups)
    n = Afull.shape[1]
    z0 = np.concatenate([np.full(k, 1.0 / k) for k in sizes])
    cons = []
    start = 0
    for k in sizes:
        row = np.zeros(n)
        row[start : start + k] = 1.0
        cons.append({"type": "eq", "fun": (lambda z, r=row: r @ z - 1.0), "jac": (lambda z, r=row: r)})
        start += k

    def f(z):
        r = Afull @ z - y
        return 0.5 * float(r @ r), Afull.T @ r

    res = minimize(f, z0, jac=True, method="SLSQP", bounds=[(0.0, None)] * n, constraints=cons,
                   options={"ftol": 1e-16, "maxiter": 200})
    return [_project_simplex(lam) for lam in _split(res.x, sizes)]


def _solve_cvxpy(y, groups):
    import cvxpy as cp

    lams = [cp.Variable(A.shape[1], nonneg=True) for A in groups]
    expr = sum(A @ lam for A, lam in zip(groups, lams))
    prob = cp.Problem(cp.Minimize(cp.sum_squares(y - expr)), [cp.sum(lam) == 1 for lam in lams])
    prob.solve(solver=cp.CLARABEL)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy/Clarabel failed on the distance QP: status {prob.status!r}")
    return [_project_simplex(np.asarray(lam.value).ravel()) for lam in lams]


def _polish(y, groups, lams, thresh=1e-10):
    """Re-solve exactly on the support of λ (equality-constrained least squares, KKT system)."""
    support = [np.flatnonzero(lam > thresh) for lam in lams]
    if any(len(s) == 0 for s in support):
        return None
    A = np.hstack([G[:, s] for G, s in zip(groups, support)])
    sizes = [len(s) for s in support]
    E = np.zeros((len(groups), A.shape[1]))
    start = 0
    for g, k in enumerate(sizes):
        E[g, start : start + k] = 1.0
        start += k
    K = np.block([[A.T @ A, E.T], [E, np.zeros((len(groups), len(groups)))]])
    rhs = np.concatenate([A.T @ y, np.ones(len(groups))])
    sol = np.linalg.lstsq(K, rhs, rcond=None)[0][: A.shape[1]]
    if np.any(sol < -1e-14):
        return None
    sol = np.maximum(sol, 0.0)
    out = []
    for (G, s), part in zip(zip(groups, support), _split(sol, sizes)):
        lam = np.zeros(G.shape[1])
        lam[s] = part / part.sum()
        out.append(lam)
    return out


def feasible_combination(y, groups, tol):
    """An exact membership test: λ with Σ_g A_g λ_g = y by LP (HiGHS), verified: residual ≤ tol."""
    from scipy.optimize import linprog

    sizes = [A.shape[1] for A in groups]
    Afull = np.hstack(groups)
    E = np.zeros((len(groups), Afull.shape[1]))
    start = 0
    for g, k in enumerate(sizes):
        E[g, start : start + k] = 1.0
        start += k
    res = linprog(np.zeros(Afull.shape[1]), A_eq=np.vstack([Afull, E]),
                  b_eq=np.concatenate([y, np.ones(len(groups))]), bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    lams = [_project_simplex(lam) for lam in _split(np.maximum(res.x, 0), sizes)]
    x = sum((A @ lam for A, lam in zip(groups, lams)), np.zeros_like(y))
    return lams if safe_norm(y - x) <= tol else None


def min_norm_point(y: np.ndarray, groups: list[np.ndarray], *, rtol: float = 1e-10) -> DistanceResult:
    """Nearest point to ``y`` in Σ_g conv(columns of A_g), with certified bounds.

    ``rtol`` is the relative gap (upper - lower) / max(1, upper) above which the fallback
    solvers are tried; whatever the outcome, the returned bounds are valid.

    The problem is homogeneous: dist(c·y, c·S) = c·dist(y, S).  It is solved on the data divided
    by a power of two 2^e near its largest entry (exact in binary floating point, so entries are
    ≤ 1 and squares neither overflow nor underflow), and the bounds are scaled back by 2^e with
    outward rounding.  If an entry is so small relative to the largest that it rounds in the
    subnormal range, the distance (1-Lipschitz in y and in each point) moves by at most
    (1 + #groups)·√d·2^-1074 in the scaled units, and the bounds are widened by that much.
    """
    y = np.asarray(y, dtype=np.float64)
    groups = [np.asarray(A, dtype=np.float64) for A in groups]
    e = pow2_exponent(y, *groups)
    ys, loss = rescale_exactly(y, e)
    gs = []
    for A in groups:
        As, lossA = rescale_exactly(A, e)
        gs.append(As)
        loss = max(loss, lossA)
    res = _min_norm_point_unit(ys, gs, rtol=rtol)
    slack = (1 + len(groups)) * math.sqrt(max(1, y.size)) * loss
    lo, hi = res.lower, res.upper
    if slack > 0:  # widen outward (the sums are rounded away from the bound)
        lo = max(0.0, float(np.nextafter(lo - slack, -np.inf)))
        hi = float(np.nextafter(hi + slack, np.inf))
    lower = ldexp_down(lo, e)
    upper = ldexp_up(hi, e)
    return DistanceResult(np.ldexp(res.point, e), res.weights, min(lower, upper), upper)


def _min_norm_point_unit(y: np.ndarray, groups: list[np.ndarray], *, rtol: float) -> DistanceResult:
    """``min_norm_point`` on data with entries ≤ 1 (no rescaling)."""
    if not groups:
        n = safe_norm(y)
        return DistanceResult(np.zeros_like(y), (), n, n)
    # Single group with a single point, or y of dimension 0: closed form.
    if y.size == 0:
        return DistanceResult(y.copy(), tuple(np.eye(A.shape[1])[0] for A in groups), 0.0, 0.0)
    best = None  # (lams, x, hi); lo is the best certified lower bound over all attempts
    lo = 0.0

    def consider(candidate):
        nonlocal best, lo
        if candidate is None:
            return
        for lams in (candidate, _polish(y, groups, candidate)):
            if lams is None:
                continue
            x, l, h = _certify(y, groups, lams)
            lo = max(lo, l)
            if best is None or h < best[2]:
                best = (lams, x, h)

    def done():
        return best[2] - lo <= rtol * max(1.0, best[2])

    # 1) NNLS with the simplex equalities as heavily weighted rows, then exact polishing
    consider(_solve_nnls(y, groups))
    # 2) an interior-point QP (cvxpy/Clarabel), 3) SLSQP: only while the bounds are not tight
    for solver in (_solve_cvxpy, _solve_slsqp):
        if done():
            break
        try:
            consider(solver(y, groups))
        except Exception:  # noqa: BLE001 - the bounds found so far remain valid
            pass
    lams, x, hi = best
    # the lower bound is a certificate up to rounding: never report it above the attained upper
    return DistanceResult(x, tuple(lams), min(lo, hi), hi)

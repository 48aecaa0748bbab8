"""Sum-of-squares upper bounds on the joint spectral radius (Parrilo & Jadbabaie 2008).

Parrilo & Jadbabaie, "Approximation of the joint spectral radius using sum of squares", Linear
Algebra Appl. 428 (2008) 2385-2402, Theorem 2.2 / Sec. 3: if a homogeneous polynomial p of
degree 2d is positive definite and

    γ^{2d} p(x) − p(A_i x)   is a sum of squares (hence ≥ 0) for every member,

then JSR ≤ γ (p^{1/2d} is a positively homogeneous function between two multiples of ‖x‖ that
no member expands by more than γ).  The smallest such γ, ρ_{SOS,2d}, decreases with d and
ρ_{SOS,2d} ≤ n^{1/2d}·JSR.  With z(x) the vector of the m = C(n+d-1, d) monomials of degree d,
z(Ax) = L_A z(x), p(x) = z(x)ᵀ P z(x) and the SOS condition is the existence of a Gram matrix

    Q_i ⪰ 0   with   coef(zᵀ Q_i z) = coef(γ^{2d} zᵀPz − zᵀ L_iᵀ P L_i z)   (coefficient matching),

a semidefinite program for fixed γ, bisected on γ^{2d} (cvxpy, one compiled problem with γ^{2d}
as a parameter).  The *lifted ellipsoid* of ``jsr`` (an ellipsoidal norm on the symmetric d-th
tensor lift) is the special case Q_i = γ^{2d} P − L_iᵀ P L_i without the Gram freedom: it is
never better, often worse (Example 5.4 of the paper: 9.007 for the degree-2 lift, 8.92 for SOS-4).

Re-check (after every solve): p is *defined* as zᵀPz with the solver's P, rounded to floats, so
p ≥ λ_min(P)‖z‖² exactly (λ_min with its rounding error).  For each member the target
coefficients c = coef(γ^{2d}P − L_iᵀPL_i) are recomputed in numpy with an a-priori rounding
bound, the solver's Q_i is corrected to match c (spreading each coefficient residual over its
Gram entries), and zᵀQ̃_iz − q_i(x) = Σ_α δ_α x^α with |x^α| ≤ ‖z(x)‖², so q_i ≥ 0 whenever
λ_min(Q̃_i) > ‖δ‖₁ + rounding.  A γ is certified only when both checks pass with margin;
otherwise the bisection treats it as infeasible.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from conservative import MatrixSet
from conservative._qp import ldexp_up

from ._contraction import as_square_family, normalized_family
from ._validate import check_count, check_time_limit, check_tolerance

__all__ = ["SOSCertificate", "sos_jsr_bound"]

_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class SOSCertificate:
    """JSR ≤ ``bound`` from the SOS polynomial p(x) = z(x)ᵀ ``P`` z(x) of degree ``degree``.

    ``monomials`` are the exponents of z (degree ``degree``/2); ``P`` and ``gamma_2d`` (the
    certified γ^{2d}) are for the normalized family family / 2**``scale_exponent``.  ``margins``
    are the verified slacks λ_min(Q̃_i) − error for each member (all > 0), ``p_margin`` that of P.
    ``bisection`` is the pair (infeasible, certified) of γ values bracketing ρ_{SOS,2d}.
    """

    degree: int
    bound: float
    P: np.ndarray = field(repr=False)
    monomials: tuple = field(repr=False)
    gamma_2d: float = math.nan
    margins: tuple = ()
    p_margin: float = 0.0
    scale_exponent: int = 0
    bisection: tuple = ()
    seconds: float = 0.0
    rho: float = field(init=False, default=math.nan, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rho", self.bound)


def _monomials(n: int, d: int) -> list:
    return [tuple(sum(1 for i in c if i == j) for j in range(n))
            for c in itertools.combinations_with_replacement(range(n), d)]


def _poly_mul(p: dict, q: dict) -> dict:
    out = {}
    for a, x in p.items():
        for b, y in q.items():
            k = tuple(i + j for i, j in zip(a, b))
            out[k] = out.get(k, 0.0) + x * y
    return out


def _lift_matrix(a: np.ndarray, mons: list) -> np.ndarray:
    """L with z(a x) = L z(x) for the monomials ``mons`` of degree d."""
    n = a.shape[0]
    index = {m: j for j, m in enumerate(mons)}
    rows = [{tuple(int(i == j) for i in range(n)): a[k, j] for j in range(n) if a[k, j] != 0} for k in range(n)]
    L = np.zeros((len(mons), len(mons)))
    for r, beta in enumerate(mons):
        poly = {(0,) * n: 1.0}
        for k, e in enumerate(beta):
            for _ in range(e):
                poly = _poly_mul(poly, rows[k])
        for m, c in poly.items():
            L[r, index[m]] += c
    return L


def _coefficient_map(mons: list):
    """(C, pairs): coef(zᵀSz)_α = Σ_{(a,b) ∈ pairs[α]} S_ab, as a matrix C (#α × m²) on vec(S)."""
    m = len(mons)
    alphas = {}
    for a in range(m):
        for b in range(m):
            k = tuple(i + j for i, j in zip(mons[a], mons[b]))
            alphas.setdefault(k, []).append(a * m + b)
    keys = sorted(alphas)
    C = np.zeros((len(keys), m * m))
    for r, k in enumerate(keys):
        C[r, alphas[k]] = 1.0
    return C, [alphas[k] for k in keys]


def _verify(g, P, Qs, Ls, C, pairs, m, lmin_P):
    """Verified slacks (one per member) of γ^{2d}p − p∘A_i ≥ 0 for p = zᵀPz; see the module docstring."""
    margins = []
    absP = np.abs(P)
    for Q, L in zip(Qs, Ls):
        target = C @ (g * P - L.T @ P @ L).ravel()
        # a-priori bound on the rounding of the target coefficients (products and sums of m² terms)
        mag = C @ (g * absP + np.abs(L).T @ absP @ np.abs(L)).ravel()
        round_err = 4 * (2 * m + 4) * _EPS * float(mag.sum())
        Q = 0.5 * (Q + Q.T)
        delta = target - C @ Q.ravel()
        Qt = Q.copy().ravel()
        for r, idx in enumerate(pairs):
            Qt[idx] += delta[r] / len(idx)
        Qt = Qt.reshape(m, m)
        Qt = 0.5 * (Qt + Qt.T)
        resid = float(np.abs(target - C @ Qt.ravel()).sum())
        lam = float(np.linalg.eigvalsh(Qt).min()) - 4 * m * _EPS * float(np.abs(Qt).sum())
        margins.append(lam - resid - round_err)
    return margins


def sos_jsr_bound(family: MatrixSet | ArrayLike, degree: int = 4, *, lower: float = 0.0, rel_tol: float = 1e-5,
                  solver: str = "CLARABEL", time_limit: float = 60.0) -> SOSCertificate:
    """ρ_{SOS,degree}: a verified sum-of-squares upper bound on JSR(family) (Parrilo-Jadbabaie).

    ``degree`` = 2d (even, ≥ 2; degree 2 is the common quadratic Lyapunov function).  The
    bisection on γ stops when the bracket is within ``rel_tol`` (relative) or ``time_limit``
    passes; ``lower`` (a known lower bound on the JSR, e.g. ``jsr(...).lower``) starts it.
    Every γ reported passed the numerical re-check of the module docstring.  Raises ValueError
    when no γ up to the starting upper bound could be certified.
    """
    import cvxpy as cp

    t0 = time.monotonic()
    A = as_square_family(family)
    degree = check_count(degree, "degree", minimum=2)
    if degree % 2:
        raise ValueError(f"degree: expected an even degree 2d (2, 4, 6, ...), got {degree}")
    rel_tol = check_tolerance(rel_tol, "rel_tol")
    lower = check_tolerance(lower, "lower", positive=False)
    time_limit = check_time_limit(time_limit)
    if not isinstance(solver, str):
        raise TypeError(f"solver: expected a solver name (str), got {type(solver).__name__}")
    An, e, loss = normalized_family(A)
    if loss > 0:
        raise ValueError("family: entries span more than 2^1022 and were rounded when normalizing; "
                         "no SOS certificate for the data")
    if not np.any(An):
        return SOSCertificate(degree, 0.0, np.eye(1), (), 0.0, (), 1.0, e, (), time.monotonic() - t0)
    n, d = An.shape[1], degree // 2
    mons = _monomials(n, d)
    m = len(mons)
    Ls = [_lift_matrix(a, mons) for a in An]
    C, pairs = _coefficient_map(mons)
    g_par = cp.Parameter(nonneg=True)
    Pv = cp.Variable((m, m), symmetric=True)
    Qv = [cp.Variable((m, m), symmetric=True) for _ in An]
    t = cp.Variable()
    cons = [Pv >> np.eye(m), Pv << 1e6 * np.eye(m), t <= 1]
    for Q, L in zip(Qv, Ls):
        cons += [Q >> t * np.eye(m), C @ cp.vec(Q, order="C") == C @ cp.vec(g_par * Pv - L.T @ Pv @ L, order="C")]
    prob = cp.Problem(cp.Maximize(t), cons)

    def attempt(g):
        g_par.value = g
        try:
            with warnings.catch_warnings():  # an inaccurate solve is caught by the re-check below
                warnings.simplefilter("ignore", UserWarning)
                prob.solve(solver=solver)
        except cp.error.SolverError:
            return None
        if Pv.value is None or t.value is None or t.value <= 0:
            return None
        P = 0.5 * (Pv.value + Pv.value.T)
        lmin_P = float(np.linalg.eigvalsh(P).min()) - 4 * m * _EPS * float(np.abs(P).sum())
        if lmin_P <= 0:
            return None
        margins = _verify(g, P, [q.value for q in Qv], Ls, C, pairs, m, lmin_P)
        if min(margins) <= 0:
            return None
        return P, margins, lmin_P

    lo = float(lower) / 2.0**e
    hi = max(float(np.linalg.norm(a, 2)) for a in An) * 1.01
    best = None
    for _ in range(8):  # find a certified starting upper end
        best = attempt(hi**degree)
        if best is not None:
            break
        lo, hi = max(lo, hi), hi * 2
    if best is None:
        raise ValueError(f"no degree-{degree} SOS certificate found up to γ = {hi * 2.0**e:.6g}")
    best_g = hi**degree
    while hi - lo > rel_tol * hi and time.monotonic() - t0 < time_limit:
        mid = 0.5 * (lo + hi)
        out = attempt(mid**degree)
        if out is None:
            lo = mid
        else:
            hi, best, best_g = mid, out, mid**degree
    P, margins, lmin_P = best
    gamma = math.exp(math.log(best_g) / degree) * (1 + 8 * _EPS)
    return SOSCertificate(degree, ldexp_up(gamma, e), P, tuple(mons), best_g, tuple(margins), lmin_P, e,
                          (lo * 2.0**e, hi * 2.0**e), time.monotonic() - t0)

"""Contraction checks for families of square matrices (Assumption A).

Assumption A of Bolte, Pauwels & Vaiter (NeurIPS 2022; slides "Main result", Vaiter 2023) asks
for ρ < 1 with σ_max(A) ≤ ρ for every A in the family 𝒜 = conv{A_1, ..., A_k}.  Two checks:

* ``max_singular_value(family)`` = max_i ‖A_i‖₂, which is max_{A∈conv 𝒜} ‖A‖₂ because a norm
  is convex and its maximum over a polytope is attained at a vertex;
* ``contraction_factor(family)`` goes beyond the slides: it searches for an ellipsoidal norm
  ‖x‖_P = √(xᵀPx), P ≻ 0, in which the family contracts, by solving the SDP feasibility problems

      P ⪰ I,    A_iᵀ P A_i ⪯ ρ² P   (i = 1..k)

  with bisection on ρ.  The induced norm is ‖A‖_P = ‖R A R⁻¹‖₂ with P = RᵀR (Cholesky).  Every
  P returned by the solver is *re-checked* with numpy: the reported ρ is max_i ‖R A_i R⁻¹‖₂
  computed from the data, enlarged by a rounding margin, never the solver's target value.

Any such ρ bounds the joint spectral radius from above, and ρ < 1 is exactly the
contraction the fixed-set theorem needs ("Behind the scene: fixed-point theorem for
set-valued mapping").  Norm equivalence: λ_min(P)‖x‖² ≤ ‖x‖_P² ≤ λ_max(P)‖x‖², so
‖x‖₂ ≤ ‖R⁻¹‖₂ ‖x‖_P and ‖x‖_P ≤ ‖R‖₂ ‖x‖₂ (fields ``norm_to_2`` and ``two_to_norm``).

Scale.  Both problems are homogeneous: c·𝒜 contracts with factor |c|ρ in the same norm P.  All
computations run on 𝒜/2^e, with 2^e a power of two near max|entry| (exact in binary floating
point), and ρ is scaled back by 2^e rounded upward, so families from 1e-300 to 1e300 neither
overflow nor underflow.  If an entry rounds in the subnormal range (data spanning more than
2^1022), the scaled family moves by E with ‖E‖₂ ≤ n·2^-1074 and ρ is enlarged by κ(R)·‖E‖₂.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike

from conservative import MatrixSet, as_matrix_stack
from conservative._qp import ldexp_up, pow2_exponent, rescale_exactly

from ._validate import check_count, check_time_limit, check_tolerance

__all__ = ["as_square_family", "max_singular_value", "ContractionCertificate", "contraction_factor",
           "ProductContraction", "product_contraction",
           "induced_norm", "certify_norm"]

_EPS = np.finfo(np.float64).eps


def as_square_family(family: MatrixSet | ArrayLike, name: str = "family") -> np.ndarray:
    """The members of ``family`` as a float64 array (k, n, n).

    ``family`` is a ``MatrixSet`` (its vertices are used: every convex function of the members,
    norms and spectral-radius bounds of products included, is maximised at vertices), a sequence
    of square matrices, or an array (k, n, n).
    """
    arr = family.vertices if isinstance(family, MatrixSet) else as_matrix_stack(family, name)
    if arr.shape[1] != arr.shape[2]:
        raise ValueError(f"{name}: expected square n×n matrices, got {arr.shape[1]}×{arr.shape[2]}")
    return arr


def normalized_family(A: np.ndarray) -> tuple[np.ndarray, int, float]:
    """(A/2^e, e, loss): the family divided by a power of two near its largest entry (see ``rescale_exactly``)."""
    e = pow2_exponent(A)
    An, loss = rescale_exactly(A, e)
    return An, e, loss


def max_singular_value(family: MatrixSet | ArrayLike) -> float:
    """max_{A ∈ conv family} σ_max(A) = max_i ‖A_i‖₂ (Assumption A in the 2-norm).

    Computed on the family divided by a power of two 2^e near its largest entry and scaled back
    by 2^e (rounded upward), so that it is right from 1e-300 to 1e300.
    """
    A = as_square_family(family)
    An, e, loss = normalized_family(A)
    val = float(max(np.linalg.norm(a, 2) for a in An)) + A.shape[1] * loss
    return ldexp_up(val, e)


def _norm_margin(n: int, cond: float) -> float:
    """Relative rounding margin for ‖R A R⁻¹‖₂ computed in floating point (generous)."""
    return 64.0 * n * _EPS * max(1.0, cond)


def induced_norm(A: np.ndarray, R: np.ndarray) -> np.ndarray:
    """‖R A_i R⁻¹‖₂ for each member: the operator norm induced by ‖x‖_P = ‖R x‖₂."""
    A = np.asarray(A, dtype=np.float64)
    Rinv = np.linalg.inv(R)
    if A.ndim == 2:
        A = A[None]
    return np.array([np.linalg.norm(R @ a @ Rinv, 2) for a in A])


class _EllipsoidalNorm:
    """‖x‖_P = ‖R x‖₂ with P = RᵀR (``P`` and ``rho`` are fields of the certificate classes)."""

    @property
    def contracts(self) -> bool:
        return self.rho < 1.0

    @property
    def R(self) -> np.ndarray:
        """Upper-triangular factor with P = RᵀR, so that ‖x‖_P = ‖R x‖₂."""
        return np.linalg.cholesky(self.P).T

    @property
    def norm_to_2(self) -> float:
        return float(np.linalg.norm(np.linalg.inv(self.R), 2))

    @property
    def two_to_norm(self) -> float:
        return float(np.linalg.norm(self.R, 2))

    @property
    def condition(self) -> float:
        """κ(R) = √κ(P): the distortion between ‖·‖_P and ‖·‖₂."""
        return self.norm_to_2 * self.two_to_norm


@dataclass(frozen=True)
class ContractionCertificate(_EllipsoidalNorm):
    """A norm in which every member of the family is a ρ-contraction (if ``contracts``).

    ``rho`` is max_i ‖R A_i R⁻¹‖₂ recomputed with numpy from ``P = RᵀR`` and the data, times
    (1 + ``margin``); it bounds ‖A‖_P for all A in conv(family) and the joint spectral radius.
    ``rho_solver`` is the bisection target the SDP accepted (informative only).
    ``norm_to_2`` = ‖R⁻¹‖₂ and ``two_to_norm`` = ‖R‖₂ are the equivalence constants:
    ‖x‖₂ ≤ norm_to_2·‖x‖_P and ‖x‖_P ≤ two_to_norm·‖x‖₂.
    """

    rho: float
    P: np.ndarray = field(repr=False)
    norm: str  # "2" or "ellipsoidal"
    margin: float
    rho_2norm: float  # max_i ‖A_i‖₂ for comparison
    spectral_radius: float  # max_i ρ(A_i): no norm can do better
    rho_solver: float | None = None
    solver: str | None = None
    message: str = ""

    def summary(self) -> str:
        verdict = "contracts" if self.contracts else "does NOT contract (no certificate with ρ < 1 found)"
        s = (f"family {verdict}: ρ = {self.rho:.10g} in the {self.norm} norm "
             f"(2-norm gives {self.rho_2norm:.6g}; max spectral radius {self.spectral_radius:.6g}")
        if self.norm == "ellipsoidal":
            s += f"; κ(P^½) = {self.condition:.3g}"
        s += ")"
        return s + (f". {self.message}" if self.message else "")

    def __repr__(self) -> str:
        return f"ContractionCertificate({self.summary()})"


def _certificate(A, P, norm, rho_2, srad, rho_solver=None, solver=None, message="", loss=0.0):
    """Verified certificate for the (normalized) family A; ``loss`` is the entrywise rounding of
    A with respect to the data it stands for (the bound is enlarged by κ(R)·n·loss)."""
    P = 0.5 * (P + P.T)
    R = np.linalg.cholesky(P).T
    cond = float(np.linalg.cond(R))
    vals = induced_norm(A, R)
    margin = _norm_margin(A.shape[1], cond)
    rho = float(vals.max()) * (1.0 + margin) + cond * A.shape[1] * loss
    return ContractionCertificate(rho, P, norm, margin, rho_2, srad, rho_solver, solver, message)


def _rescaled(cert: ContractionCertificate, e: int) -> ContractionCertificate:
    """The certificate for 2^e·(family) from one for the family: P is unchanged, ρ scales by 2^e."""
    if e == 0:
        return cert
    return replace(cert, rho=ldexp_up(cert.rho, e), rho_2norm=float(np.ldexp(cert.rho_2norm, e)),
                   spectral_radius=float(np.ldexp(cert.spectral_radius, e)),
                   rho_solver=None if cert.rho_solver is None else float(np.ldexp(cert.rho_solver, e)))


def certify_norm(family: MatrixSet | ArrayLike, P: ArrayLike) -> ContractionCertificate:
    """Re-check a given norm ‖x‖_P = √(xᵀPx) on ``family``: ρ = max_i ‖R A_i R⁻¹‖₂ (1 + margin).

    Use it to verify a certificate obtained elsewhere (or for another family); P must be
    symmetric positive definite.
    """
    A = as_square_family(family)
    P = np.asarray(P, dtype=np.float64)
    n = A.shape[1]
    if P.ndim != 2 or P.shape != (n, n):
        raise ValueError(f"P: expected a {n}×{n} matrix, got shape {P.shape}")
    if not np.all(np.isfinite(P)) or not np.allclose(P, P.T, rtol=1e-12, atol=0):
        raise ValueError("P: expected a finite symmetric matrix")
    if np.linalg.eigvalsh(0.5 * (P + P.T)).min() <= 0:
        raise ValueError("P: expected a positive definite matrix")
    An, e, loss = normalized_family(A)
    rho_2 = float(max(np.linalg.norm(a, 2) for a in An))
    srad = float(max(np.abs(np.linalg.eigvals(a)).max() for a in An))
    # P is scale-free: normalize it too (only its shape matters for the norm)
    P = np.ldexp(P, -pow2_exponent(P))
    cert = _certificate(An, P, "2" if np.array_equal(P, np.eye(n)) else "ellipsoidal", rho_2, srad, loss=loss)
    return _rescaled(cert, e)


class _FeasibilitySDP:
    """P ⪰ I, ρ²P - A_iᵀPA_i ⪰ 0, minimise trace(P); ρ² is a cvxpy Parameter (compiled once)."""

    def __init__(self, A):
        import cvxpy as cp

        n = A.shape[1]
        self.P = cp.Variable((n, n), symmetric=True)
        self.rho2 = cp.Parameter(nonneg=True)
        cons = [self.P >> np.eye(n)]
        for a in A:
            M = self.rho2 * self.P - a.T @ self.P @ a
            cons.append(0.5 * (M + M.T) >> 0)
        self.prob = cp.Problem(cp.Minimize(cp.trace(self.P)), cons)

    def solve(self, rho, solver, seconds=None):
        """(P or None, status string); ``seconds`` caps the solver's own run time."""
        self.rho2.value = float(rho) ** 2
        opts = {}
        if seconds is not None:
            opts = {"time_limit": max(float(seconds), 1e-3)} if solver == "CLARABEL" else \
                   {"time_limit_secs": max(float(seconds), 1e-3)} if solver == "SCS" else {}
        try:
            with warnings.catch_warnings():  # inaccurate solutions are re-checked, not trusted
                warnings.simplefilter("ignore", UserWarning)
                self.prob.solve(solver=solver, **opts)
        except Exception as exc:  # noqa: BLE001 - solver failure is reported, not hidden
            return None, f"solver error: {type(exc).__name__}: {exc}"
        P = self.P.value
        if self.prob.status in ("optimal", "optimal_inaccurate") and P is not None:
            P = 0.5 * (P + P.T)
            if np.all(np.isfinite(P)) and np.linalg.eigvalsh(P).min() > 0:
                return P, self.prob.status
        return None, str(self.prob.status)


def contraction_factor(family: MatrixSet | ArrayLike, *, method: str = "sdp", rtol: float = 1e-6,
                       solver: str = "CLARABEL", max_bisections: int = 60, time_limit: float | None = None
                       ) -> ContractionCertificate:
    """Best certified ρ with ‖A‖ ≤ ρ for all A ∈ conv(family), in the 2-norm or an ellipsoidal norm.

    ``method="2-norm"`` returns max_i ‖A_i‖₂ (P = I).  ``method="sdp"`` (default) bisects on ρ
    in [max_i ρ(A_i), max_i ‖A_i‖₂] over the SDP feasibility problems P ⪰ I, A_iᵀPA_i ⪯ ρ²P
    (cvxpy, ``solver`` default Clarabel, SCS as a fallback) until the bracket is below ``rtol``
    relatively; each solution is re-checked with numpy and the *verified* value is reported.
    If the solver fails the 2-norm certificate is returned with a warning naming the solver and
    its status.  A family whose best ρ is ≥ 1 is reported with ``contracts == False``.
    ``time_limit`` (seconds, optional) stops the bisection (and caps each solve); the best
    verified certificate so far is returned and its ``message`` says that the limit was hit.
    The SDP is solved for the family divided by a power of two near its largest entry (P is
    the same for every positive multiple of the family) and ρ is scaled back, rounded upward.
    """
    A = as_square_family(family)
    if method not in ("sdp", "2-norm"):
        raise ValueError(f"method: expected 'sdp' or '2-norm', got {method!r}")
    rtol = check_tolerance(rtol, "rtol")
    max_bisections = check_count(max_bisections, "max_bisections")
    deadline = None if time_limit is None else time.monotonic() + check_time_limit(time_limit)
    An, e, loss = normalized_family(A)
    cert, cut = _contraction_factor_unit(An, method, rtol, solver, max_bisections, deadline, loss)
    if cut:
        cert = replace(cert, message=(cert.message + "; " if cert.message else "") +
                       f"bisection stopped by time_limit={time_limit:g}s")
    cert = _rescaled(cert, e)
    return _flag_noncontracting(cert, cert.spectral_radius)


def _contraction_factor_unit(A, method, rtol, solver, max_bisections, deadline, loss=0.0):
    """``contraction_factor`` on an already normalized family; returns (certificate, cut by deadline)."""
    n = A.shape[1]
    rho_2 = float(max(np.linalg.norm(a, 2) for a in A))
    srad = float(max(np.abs(np.linalg.eigvals(a)).max() for a in A))
    best = _certificate(A, np.eye(n), "2", rho_2, srad, loss=loss)
    cut = False
    if method == "2-norm" or n == 1 or rho_2 == 0.0:
        return best, cut
    if deadline is not None and time.monotonic() >= deadline:
        return best, True
    lo, hi = srad, best.rho
    statuses = []
    used = None
    sdp = _FeasibilitySDP(A)
    for _ in range(max_bisections):
        if hi - lo <= rtol * max(hi, 1e-300):
            break
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            cut = True
            break
        target = 0.5 * (lo + hi)
        P, status = None, None
        for s in ([solver, "SCS"] if solver != "SCS" else ["SCS"]):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            P, status = sdp.solve(target, s) if left is None else sdp.solve(target, s, left)
            statuses.append(f"{s}: {status}")
            if P is not None or status in ("infeasible", "infeasible_inaccurate"):
                used = s
                break
        if P is None:
            if status is not None and status.startswith("infeasible"):
                lo = target
                continue
            if deadline is not None and (time.monotonic() >= deadline or status == "user_limit"):
                cut = True  # the solve was stopped by the time limit, not a solver failure
                break
            warnings.warn(f"contraction_factor: SDP solver failed at ρ = {target:.6g} ({'; '.join(statuses[-2:])}); "
                          f"returning the best verified certificate (ρ = {best.rho:.6g}, {best.norm} norm)",
                          RuntimeWarning, stacklevel=3)
            break
        cert = _certificate(A, P / np.linalg.eigvalsh(P).min(), "ellipsoidal", rho_2, srad, target, used, loss=loss)
        if cert.rho < best.rho:
            best = cert
        # the solver accepted `target`; the verified value may be slightly above it
        hi = min(hi, max(cert.rho, target))
        if cert.rho > target * (1 + 1e-4):  # solver claims feasibility the data does not confirm
            lo = max(lo, target)  # stay honest: do not trust this target further
    return best, cut


def _flag_noncontracting(best, srad):
    if best.contracts:
        return best
    return replace(best, message=f"best ρ found is {best.rho:.6g} ≥ 1" +
                   (" and a member has spectral radius ≥ 1, so no norm can contract" if srad >= 1 else ""))


@dataclass(frozen=True)
class ProductContraction(_EllipsoidalNorm):
    """‖A_{w_1}⋯A_{w_k}‖_P ≤ ``rho`` < 1 for every word of length k = ``length`` (re-checked).

    ``rhos[j-1]`` bounds max_{|w|=j} ‖R A_w R⁻¹‖₂ for j = 1..k (P = RᵀR; P = I is the 2-norm).
    By multi-convexity of (A_1, ..., A_k) ↦ ‖A_1⋯A_k‖ the bound holds for products of members
    of conv(family), so the k-fold set map 𝒦^k of the fixed-set iteration is a ``rho``-contraction
    in ‖X‖_{P,F} = ‖RX‖_F although 𝒦 itself need not be (Bolte, Pauwels & Vaiter 2022 only need
    *some* iterate of the set map to contract).  ``norm_to_2`` = ‖R⁻¹‖₂, ``two_to_norm`` = ‖R‖₂.
    """

    rho: float
    length: int
    P: np.ndarray = field(repr=False)
    rhos: tuple = ()
    base: str = "2"  # the norm of the products: "2" or "ellipsoidal"
    words: int = 0  # products checked at the last length

    norm = "product"

    def summary(self) -> str:
        verdict = "contracts" if self.contracts else "does NOT contract"
        return (f"family {verdict} after {self.length} steps: max over the {self.words} products of length "
                f"{self.length} of ‖A_w‖ ≤ {self.rho:.10g} in the {self.base} norm (per step "
                f"{self.rho ** (1 / self.length):.6g}; κ(P^½) = {self.condition:.3g})")

    def __repr__(self) -> str:
        return f"ProductContraction({self.summary()})"


def product_contraction(family: MatrixSet | ArrayLike, *, P: ArrayLike | None = None, max_length: int = 12,
                        max_products: int = 200_000) -> ProductContraction:
    """The shortest length k ≤ ``max_length`` with max_{|w|=k} ‖A_w‖_P < 1, certified.

    ``P`` (default: the SDP norm of ``contraction_factor`` when it beats the 2-norm, else I) is
    the ellipsoidal norm ‖x‖_P = ‖Rx‖₂ of the products.  All products of length j are formed
    level by level (at most ``max_products`` per level); ‖R Â_w R⁻¹‖₂ of the computed product
    is enlarged by its rounding, |fl(A_w) - A_w| ≤ γ_{jn} |A_{w_1}|⋯|A_{w_j}| with γ_q = q·eps/(1-q·eps),
    i.e. by κ(R)·γ_{jn}·‖|A_{w_1}|⋯|A_{w_j}|‖_F, and by the relative margin of ``induced_norm``.
    Returns the certificate at the last length tried (``contracts`` False) when none contracts.
    """
    A = as_square_family(family)
    max_length = check_count(max_length, "max_length")
    max_products = check_count(max_products, "max_products")
    n = A.shape[1]
    An, e, loss = normalized_family(A)
    if P is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cert = contraction_factor(A)
        P = cert.P
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (n, n) or not np.all(np.isfinite(P)) or np.linalg.eigvalsh(0.5 * (P + P.T)).min() <= 0:
        raise ValueError(f"P: expected a symmetric positive definite {n}×{n} matrix")
    P = 0.5 * (P + P.T)
    P = np.ldexp(P, -pow2_exponent(P))
    base = "2" if np.array_equal(P / P[0, 0], np.eye(n)) else "ellipsoidal"
    R = np.linalg.cholesky(P).T
    Rinv = np.linalg.inv(R)
    cond = float(np.linalg.norm(R, 2) * np.linalg.norm(Rinv, 2))
    margin = _norm_margin(n, cond)
    absA = np.abs(An)
    prods, mags = An.copy(), absA.copy()
    rhos = []
    for j in range(1, max_length + 1):
        if j > 1:
            if len(prods) * len(An) > max_products:
                break
            prods = (prods[:, None] @ An[None]).reshape(-1, n, n)
            mags = (mags[:, None] @ absA[None]).reshape(-1, n, n)
        g = j * n * _EPS / (1 - j * n * _EPS)
        vals = np.linalg.norm(R[None] @ prods @ Rinv[None], 2, axis=(1, 2)) * (1 + margin)
        vals = vals + cond * (g * np.linalg.norm(mags, axis=(1, 2)) + j * n * loss * 2.0 ** j)
        r = ldexp_up(float(vals.max()), j * e)
        rhos.append(r)
        if r < 1:
            break
    return ProductContraction(rhos[-1], len(rhos), P, tuple(rhos), base, len(prods))

"""The papers' error bounds for Jacobian estimators, as plain vectorized functions.

All bounds are in operator norm and take the distance of an iterate to the solution, so examples
can plot the bound against the observed error along an iteration.  Arguments broadcast (numpy).

* ``one_step_error_bound``: one-step differentiation J^OS x_k = ∂_θF(x_{k-1}, θ) under
  Assumption 1 (‖∂ₓF‖_op ≤ ρ < 1), θ ↦ F(x, θ) L_F-Lipschitz and x ↦ ∂_θF(x, θ) L_J-Lipschitz
  (Bolte, Pauwels & Vaiter, "One-step differentiation of iterative algorithms", NeurIPS 2023,
  Corollary 1, eq. (5)):   ‖J^OS x_k - J x̄‖_op ≤ ρ L_F/(1-ρ) + L_J ‖x_{k-1} - x̄‖.
* ``one_step_error_bound_superlinear``: same paper, Corollary 3, eq. (7): under Assumption 2
  (∂ₓF(x̄, θ) = 0) with the joint Jacobian L_J-Lipschitz,  ‖J^OS x_k - J x̄‖_op ≤ L_J ‖x_{k-1} - x̄‖.
* ``implicit_error_bound_one_step_paper``: same paper, Remark 2, eq. (6) (stated there as
  "roughly", for implicit differentiation at x_k):  L_J L_F/(1-ρ)² ‖x_k - x̄‖ + L_J/(1-ρ) ‖x_k - x̄‖.
* ``implicit_jacobian_error_bound``: Blondel et al., "Efficient and modular implicit
  differentiation" (NeurIPS 2022), Theorem 1: with A = -∂₁F, B = ∂₂F of the optimality map F,
  ‖A(x,θ)v‖ ≥ α‖v‖, ‖A(x,θ) - A(x*,θ)‖_op ≤ γ‖x - x*‖, ‖B(x*,θ)‖ ≤ R,
  ‖B(x,θ) - B(x*,θ)‖ ≤ β‖x - x*‖ for ‖x - x*‖ ≤ ε:
      ‖J(x̂, θ) - ∂x*(θ)‖ ≤ (β/α + γR/α²) ‖x̂ - x*(θ)‖      when ‖x̂ - x*‖ ≤ ε.
  (For gradient descent's fixed point, their Corollary 1: α = strong convexity of f, γ the
  Lipschitz constant of ∇²₁f, β and R those of ∂₂∇₁f.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["one_step_error_bound", "one_step_error_bound_superlinear", "implicit_error_bound_one_step_paper",
           "implicit_jacobian_error_bound", "estimator_error_bounds"]


def _nonneg(x, name):
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: expected finite values, got {x!r}")
    if np.any(a < 0):
        raise ValueError(f"{name}: expected nonnegative values, got {x!r}")
    return a


def _rho(rho):
    r = _nonneg(rho, "rho")
    if np.any(r >= 1):
        raise ValueError(f"rho: the bound needs a contraction factor 0 ≤ ρ < 1, got {rho!r}")
    return r


def _out(x):
    return float(x) if np.ndim(x) == 0 else x


def one_step_error_bound(rho: ArrayLike, L_F: ArrayLike, L_J: ArrayLike, dist_prev: ArrayLike) -> float | np.ndarray:
    """ρ L_F/(1-ρ) + L_J ‖x_{k-1} - x̄‖  (one-step paper, Corollary 1, eq. (5))."""
    r = _rho(rho)
    return _out(r * _nonneg(L_F, "L_F") / (1 - r) + _nonneg(L_J, "L_J") * _nonneg(dist_prev, "dist_prev"))


def one_step_error_bound_superlinear(L_J: ArrayLike, dist_prev: ArrayLike) -> float | np.ndarray:
    """L_J ‖x_{k-1} - x̄‖  (one-step paper, Corollary 3, eq. (7); needs ∂ₓF(x̄, θ) = 0)."""
    return _out(_nonneg(L_J, "L_J") * _nonneg(dist_prev, "dist_prev"))


def implicit_error_bound_one_step_paper(rho: ArrayLike, L_F: ArrayLike, L_J: ArrayLike,
                                        dist: ArrayLike) -> float | np.ndarray:
    """(L_J L_F/(1-ρ)² + L_J/(1-ρ)) ‖x_k - x̄‖  (one-step paper, Remark 2, eq. (6))."""
    r = _rho(rho)
    LF, LJ = _nonneg(L_F, "L_F"), _nonneg(L_J, "L_J")
    return _out((LJ * LF / (1 - r) ** 2 + LJ / (1 - r)) * _nonneg(dist, "dist"))


def implicit_jacobian_error_bound(alpha: ArrayLike, beta: ArrayLike, gamma: ArrayLike, R: ArrayLike, dist: ArrayLike, *,
                                  epsilon: float | None = None) -> float | np.ndarray:
    """(β/α + γR/α²) ‖x̂ - x*‖  (Blondel et al. 2022, Theorem 1).

    ``epsilon``: the radius of the neighbourhood where the assumptions hold; distances above it
    raise ``ValueError`` (the theorem says nothing there).
    """
    a = _nonneg(alpha, "alpha")
    if np.any(a <= 0):
        raise ValueError(f"alpha: expected a positive lower bound on ‖A v‖/‖v‖, got {alpha!r}")
    d = _nonneg(dist, "dist")
    if epsilon is not None and np.any(d > _nonneg(epsilon, "epsilon")):
        raise ValueError(f"dist: Theorem 1 only holds for ‖x̂ - x*‖ ≤ epsilon={epsilon!r}")
    return _out((_nonneg(beta, "beta") / a + _nonneg(gamma, "gamma") * _nonneg(R, "R") / a**2) * d)


def estimator_error_bounds(errors: Any, *, rho: float | None = None, L_F: float | None = None, L_J: float | None = None,
                           alpha: float | None = None, beta: float | None = None, gamma: float | None = None,
                           R: float | None = None, epsilon: float | None = None) -> dict:
    """The papers' bounds next to measured estimator errors (``algorithms.estimator_errors``).

    ``errors`` is an ``algorithms.EstimatorErrors`` (anything with ``iterate_error``,
    ``previous_iterate_error`` and ``jacobian_error``). The constants are the papers' (see the
    functions above); a bound is returned for every estimator whose constants are given:

    * ``"one_step"``: Corollary 1, ρL_F/(1-ρ) + L_J‖x_{k-1} - x̄‖ (needs ``rho``, ``L_F``, ``L_J``),
      or Corollary 3, L_J‖x_{k-1} - x̄‖, when ``rho=0`` (Assumption 2: ∂ₓF(x̄, θ) = 0);
    * ``"implicit"``: Blondel et al. Theorem 1, (β/α + γR/α²)‖x_k - x̄‖ (needs ``alpha``,
      ``beta``, ``gamma``, ``R``; ``epsilon`` its radius of validity), else the one-step paper's
      Remark 2, (L_J L_F/(1-ρ)² + L_J/(1-ρ))‖x_k - x̄‖ (needs ``rho``, ``L_F``, ``L_J``).

    Returns ``{mode: {"bound": array, "error": array, "holds": bool}}`` for the modes measured
    in ``errors`` that have a bound; ``holds`` compares the measured error with the bound up to a
    rounding allowance of 1e-12·(1 + bound). The bounds are only as valid as the constants.
    Raises ``ValueError`` when no bound can be formed from the given constants.
    """
    prev = np.asarray(errors.previous_iterate_error, dtype=np.float64)
    cur = np.asarray(errors.iterate_error, dtype=np.float64)
    measured = errors.jacobian_error
    def given(*values):
        return all(v is not None for v in values)

    superlinear = given(rho) and np.all(np.asarray(rho) == 0)
    bounds = {}
    if "one_step" in measured and given(L_J):
        if superlinear:
            bounds["one_step"] = one_step_error_bound_superlinear(L_J, prev)
        elif given(rho, L_F):
            bounds["one_step"] = one_step_error_bound(rho, L_F, L_J, prev)
    if "implicit" in measured:
        if given(alpha, beta, gamma, R):
            bounds["implicit"] = implicit_jacobian_error_bound(alpha, beta, gamma, R, cur, epsilon=epsilon)
        elif given(rho, L_F, L_J):
            bounds["implicit"] = implicit_error_bound_one_step_paper(rho, L_F, L_J, cur)
    if not bounds:
        raise ValueError(
            "estimator_error_bounds: no bound applies; give rho, L_F, L_J (one-step Corollary 1 / Remark 2; "
            "rho=0 with L_J for Corollary 3) or alpha, beta, gamma, R (implicit, Blondel et al. Theorem 1) "
            f"for the measured modes {sorted(measured)}"
        )
    out = {}
    for mode, b in bounds.items():
        b = np.broadcast_to(np.asarray(b, dtype=np.float64), cur.shape)
        e = np.asarray(measured[mode], dtype=np.float64)
        out[mode] = {"bound": b, "error": e, "holds": bool(np.all(e <= b + 1e-12 * (1 + b)))}
    return out

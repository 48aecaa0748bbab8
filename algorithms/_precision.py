"""Precision of the Jacobian estimators of :func:`iterate` against a reference Jacobian.

For k in ``steps`` and each estimator (autodiff, implicit, one-step, truncated) this measures

    e_k = ‖J^est x_k(θ) - J_θ x̄(θ)‖    and    ‖x_k(θ) - x̄(θ)‖,

where the reference J_θ x̄ is a closed form when one is supplied, else the implicit Jacobian
(I - ∂ₓF)⁻¹∂_θF at a very accurate fixed point (iterated until ‖F(x) - x‖ ≤ tol). These are the
quantities of the one-step paper's Figure 4 and of the jaxopt paper's Figure 2 (Theorem 1); the
theoretical bounds live in ``theory`` (which this package does not import).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from ._implicit import custom_fixed_point, custom_root
from ._iterate import MODES, iterate


@dataclasses.dataclass(frozen=True)
class EstimatorErrors:
    """Errors of the estimators along the iterations (NumPy arrays indexed like ``steps``)."""

    steps: np.ndarray
    iterate_error: np.ndarray
    jacobian_error: dict
    x_ref: np.ndarray
    jac_ref: np.ndarray


def flat_jacobian(fun: Callable, theta):
    """Jacobian of θ ↦ ravel(fun(θ)) w.r.t. ravel(θ) as a dense matrix (forward mode)."""
    flat, unravel = ravel_pytree(theta)
    return jax.jacfwd(lambda v: ravel_pytree(fun(unravel(v)))[0])(flat)


def reference_jacobian(F: Callable, x0, theta, *, tol: float = 1e-14, maxiter: int = 1_000_000,
                       optimality_fun: Callable | None = None, solve: str = "lu"):
    """(x̄, J_θx̄): iterate F to ‖F(x) - x‖_∞ ≤ tol, then the implicit Jacobian there (dense).

    Raises ``ValueError`` when the iteration stops at ``maxiter`` before reaching ``tol``.
    """

    def solver(init, th):
        def cond(c):
            x, fx, k = c
            gap = jnp.max(jnp.abs(ravel_pytree(fx)[0] - ravel_pytree(x)[0]))
            return (gap > tol) & (k < maxiter)

        x, fx, k = lax.while_loop(cond, lambda c: (c[1], F(c[1], th), c[2] + 1),
                                  (init, F(init, th), 0))
        return fx

    if optimality_fun is None:
        wrapped = custom_fixed_point(F, solve=solve)(solver)
    else:
        wrapped = custom_root(optimality_fun, solve=solve)(solver)
    x_ref = wrapped(x0, theta)
    gap = float(jnp.max(jnp.abs(ravel_pytree(F(x_ref, theta))[0] - ravel_pytree(x_ref)[0])))
    if not gap <= 10 * tol:
        raise ValueError(
            f"reference_jacobian: the iteration did not reach ‖F(x) - x‖ ≤ tol={tol:.1e} within "
            f"maxiter={maxiter} steps (gap {gap:.3e}); raise `maxiter` or `tol`"
        )
    jac = flat_jacobian(lambda th: wrapped(x0, th), theta)
    return x_ref, jac


def estimator_errors(F: Callable, x0, theta, steps: Sequence[int], *,
                     modes: Sequence[str] = ("autodiff", "implicit", "one_step"),
                     truncate: int | None = None, x_ref=None, jac_ref=None, ord=2,
                     optimality_fun: Callable | None = None, solve: str = "lu") -> EstimatorErrors:
    """Errors ‖J^mode x_k - J_ref‖ (matrix norm ``ord``, default spectral) and ‖x_k - x̄‖₂ for k in steps.

    ``x_ref``/``jac_ref``: reference fixed point (pytree like x0) and flat Jacobian (n × m),
    e.g. from a closed form; computed by :func:`reference_jacobian` when omitted. ``truncate``
    is the K of the truncated estimator (required if ``"truncated"`` is in ``modes``).
    """
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"`modes` entries must be in {MODES}, got {mode!r}")
    if "truncated" in modes and truncate is None:
        raise ValueError("`truncate` is required when 'truncated' is in `modes`")
    steps = [int(k) for k in steps]
    if not steps or min(steps) <= 0:
        raise ValueError(f"`steps` must be a non-empty list of positive ints, got {steps}")
    if x_ref is None or jac_ref is None:
        xr, jr = reference_jacobian(F, x0, theta, optimality_fun=optimality_fun, solve=solve)
        x_ref = xr if x_ref is None else x_ref
        jac_ref = jr if jac_ref is None else jac_ref
    x_ref_flat = np.asarray(ravel_pytree(x_ref)[0])
    jac_ref = np.asarray(jac_ref)

    it_err = []
    jac_err = {mode: [] for mode in modes}
    for k in steps:
        xk = iterate(F, x0, theta, k)
        it_err.append(np.linalg.norm(np.asarray(ravel_pytree(xk)[0]) - x_ref_flat))
        for mode in modes:
            kw = {}
            if mode == "truncated":
                kw["truncate"] = min(truncate, k)
            if mode == "implicit":
                kw.update(optimality_fun=optimality_fun, solve=solve)
            J = flat_jacobian(lambda th: iterate(F, x0, th, k, mode=mode, **kw), theta)
            jac_err[mode].append(np.linalg.norm(np.asarray(J) - jac_ref, ord=ord))
    return EstimatorErrors(np.asarray(steps), np.asarray(it_err),
                           {m: np.asarray(v) for m, v in jac_err.items()}, x_ref_flat, jac_ref)

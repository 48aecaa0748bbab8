"""Newton's method with backtracking line search, as an iteration map F(x, θ).

    d(x, θ) = -[∇²₁f(x, θ)]⁻¹ ∇₁f(x, θ),     F(x, θ) = x + t(x, θ) d(x, θ),

with t the first of 1, β, β², ... satisfying the Armijo condition
f(x + t d) ≤ f(x) + c t ⟨∇₁f, d⟩ (Boyd & Vandenberghe, §9.5). For a strongly convex f with
Lipschitz Hessian, t = 1 after finitely many steps and ∂ₓF(x̄, θ) = 0: the map satisfies
Assumption 2 / Corollary 3 of the one-step paper (Example 3), so the one-step Jacobian
∂_θF(x_{k-1}, θ) converges quadratically to the implicit one. The step length t is piecewise
constant in (x, θ); it is computed under ``stop_gradient``, which is its (a.e.) derivative.

Implicit differentiation of Newton should use the root form G = ∇₁f (one-step paper, Remark 3):
``iterate(newton_map(f), x0, θ, k, mode="implicit", optimality_fun=stationarity(f))``.

The experiment of the one-step paper (eq. (11)) is :func:`logistic_regression_objective`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from ._linear_solve import DENSE_SOLVERS, check_solver_converged, report
from ._optimality import stationarity


def logistic_regression_objective(A: ArrayLike, y: ArrayLike, lam: float) -> Callable:
    """Weighted ℓ2-regularized logistic regression (one-step paper, eq. (11)):

        f(x, θ) = Σᵢ θᵢ ℓ(yᵢ⟨aᵢ, x⟩) + λ‖x₋₁‖²,   ℓ(t) = log(1 + e^{-t}),

    with the first column of A the intercept (not penalized, x₋₁ = x[1:]), labels yᵢ ∈ {-1, 1}
    and per-sample weights θ ∈ ℝᴺ (the differentiated parameters).
    """
    A = jnp.asarray(A)
    y = jnp.asarray(y)
    if A.ndim != 2 or y.shape != (A.shape[0],):
        raise ValueError(f"`A` must be (N, n) and `y` of shape (N,), got {A.shape} and {y.shape}")
    if not lam > 0:
        raise ValueError(f"`lam` must be positive for strong convexity, got {lam!r}")

    def f(x, theta):
        margins = y * (A @ x)
        return jnp.sum(theta * jnp.logaddexp(0.0, -margins)) + lam * jnp.sum(x[1:] ** 2)

    return f


def logistic_regression_hessian(A: ArrayLike, y: ArrayLike, lam: float) -> Callable:
    """∇²ₓf of :func:`logistic_regression_objective` in closed form, for ``newton_map(hessian=...)``:

        ∇²ₓf(x, θ) = Aᵀ diag(θᵢ σ(mᵢ)(1 - σ(mᵢ))) A + 2λ diag(0, 1, ..., 1),   mᵢ = yᵢ⟨aᵢ, x⟩

    (y² = 1).  Differentiating it in θ (one-step, reverse mode) costs one weighted Gram matrix,
    where differentiating ``jax.hessian`` would need third derivatives.
    """
    A = jnp.asarray(A)
    y = jnp.asarray(y)
    reg = 2.0 * lam * jnp.concatenate([jnp.zeros(1), jnp.ones(A.shape[1] - 1)])

    def hessian(x, theta):
        s = jax.nn.sigmoid(y * (A @ x))
        return (A.T * (theta * s * (1.0 - s))) @ A + jnp.diag(reg)

    return hessian


def newton_map(f: Callable, *, c: float = 1e-4, beta: float = 0.5, max_backtracks: int = 40,
               solve: str = "cholesky", hessian: Callable | None = None) -> Callable:
    """Newton's iteration map F(x, θ) = x + t d with Armijo backtracking (see module docstring).

    Args:
      f: objective f(x, θ), twice differentiable and strongly convex in x (x a pytree).
      c, beta: Armijo constant and backtracking factor (0 < c < 1/2, 0 < beta < 1).
      max_backtracks: cap on halvings (t ≥ beta**max_backtracks).
      solve: 'cholesky' (∇²f positive definite) or 'lu' for the Newton system.
      hessian: optional closed form ``hessian(x, θ)`` of ∇²ₓf as a matrix on the raveled x
        (default ``jax.hessian``); e.g. :func:`logistic_regression_hessian`.

    The Armijo test allows a slack of 100 ulps of |f(x)|: at convergence f(x + d) and f(x) agree
    to rounding, and without slack the search would reject the unit step and damp the map
    (which would ruin the one-step derivative, ∂_θF = t ∂_θd).
    """
    if not 0 < c < 0.5 or not 0 < beta < 1:
        raise ValueError(f"need 0 < c < 1/2 and 0 < beta < 1, got c={c!r}, beta={beta!r}")
    if solve not in DENSE_SOLVERS:
        raise ValueError(f"`solve` must be one of {DENSE_SOLVERS}, got {solve!r}")

    def F(x, theta):
        flat, unravel = ravel_pytree(x)
        fl = lambda v, th: f(unravel(v), th)  # noqa: E731
        g = jax.grad(fl)(flat, theta)
        H = jax.hessian(fl)(flat, theta) if hessian is None else hessian(unravel(flat), theta)
        if solve == "cholesky":
            d = -jsl.cho_solve(jsl.cho_factor(H, lower=True), g)
        else:
            d = -jnp.linalg.solve(H, g)
        t = _armijo(fl, *(lax.stop_gradient(v) for v in (flat, theta, g, d)), c, beta, max_backtracks)
        return unravel(flat + t * d)

    # the cheap root form for implicit differentiation (one-step paper, Remark 3): G = ∇₁f,
    # ∂₁G = ∇²f symmetric positive definite; iterate(mode="implicit") uses it by default
    F.optimality = stationarity(f)  # carries symmetric = True
    return F


def _armijo(fl, x, theta, g, d, c, beta, max_backtracks):
    f0 = fl(x, theta)
    slope = jnp.vdot(g, d)
    slack = 100 * jnp.finfo(x.dtype).eps * jnp.abs(f0)

    def cond(state):
        t, j = state
        return (fl(x + t * d, theta) > f0 + c * t * slope + slack) & (j < max_backtracks)

    t, _ = lax.while_loop(cond, lambda s: (s[0] * beta, s[1] + 1), (jnp.ones((), x.dtype), 0))
    return t


def newton_solve(f: Callable, x0: Any, theta: Any, *, tol: float = 1e-10, maxiter: int = 100, **kwargs: Any) -> Any:
    """Run :func:`newton_map` until ‖∇₁f(x, θ)‖ ≤ tol; returns x.

    Stopping at ``maxiter`` (or on a nan) with ‖∇₁f‖ > tol is reported: ``ValueError`` on
    concrete values, a ``RuntimeWarning`` under a trace.

    A plain solver ``solver(x0, theta)``; add implicit derivatives with
    ``custom_root(stationarity(f), solve='cholesky')(partial(newton_solve, f))``.
    """
    F = newton_map(f, **kwargs)
    grad = lambda x: ravel_pytree(jax.grad(f)(x, theta))[0]  # noqa: E731

    def cond(state):
        x, k = state
        return (jnp.linalg.norm(grad(x)) > tol) & (k < maxiter)

    x, k = lax.while_loop(cond, lambda s: (F(s[0], theta), s[1] + 1), (x0, 0))
    r = lax.stop_gradient(jnp.linalg.norm(grad(x)))
    return report(x, check_solver_converged("newton_solve", "‖∇₁f(x, θ)‖", tol, maxiter), r, k,
                  flag=~(r <= tol))

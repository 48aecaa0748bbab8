"""Ready-made problems: a θ, an iteration map, an initial state and a reference solver.

==================  =========================================================  =============  =====================
problem             objective                                                  algorithm      θ
==================  =========================================================  =============  =====================
``lasso``           ½‖Xw − y‖² + λ‖w‖₁                                          forward-back.  dict(X, y, lam)
``graphical_lasso`` −log det Θ + tr(SΘ) + λ Σ_{i≠j} |Θ_ij|                     Douglas-Rach.  dict(S, lam)
``tv_denoising``    ½‖x − y‖² + λ Σ_i |x_{i+1} − x_i|                          ADMM           dict(y, lam)
==================  =========================================================  =============  =====================

Each constructor returns a :class:`Problem` whose ``F`` is a pure map F(state, θ), ``x0`` an
initial state, and ``reference(theta)`` a high-accuracy solution computed by cvxpy (a NumPy array,
for tests and examples; not differentiable). ``F.primal(state, theta)`` maps a state to the
primal variable (w, Θ or x) that ``reference`` returns. Every map checks that θ has the keys
it reads and raises ``TypeError`` naming the missing ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax.typing import ArrayLike

from ._first_order import admm, douglas_rachford, forward_backward
from ._prox import _check_nonnegative, _concrete, prox_lasso
from ._run import IterationMap

__all__ = [
    "Problem",
    "lasso",
    "graphical_lasso",
    "tv_denoising",
    "lasso_reference",
    "graphical_lasso_reference",
    "tv_denoising_reference",
]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A problem instance: ``run(problem.F, problem.x0, problem.theta, K)`` solves it.

    Attributes:
      name: the problem's name.
      F: the iteration map (an :class:`IterationMap`; ``F.primal`` reads the solution off a state).
      theta: the parameters, a dict of arrays (differentiate with respect to them).
      x0: the initial state.
      reference: ``reference(theta)`` → cvxpy solution of the primal variable (NumPy array).
      objective: ``objective(x, theta)`` → the objective value at a primal point.
    """

    name: str
    F: IterationMap
    theta: dict
    x0: Any
    reference: Callable[[Mapping], np.ndarray]
    objective: Callable[[Any, Mapping], Any]


def _require(theta, keys, problem):
    if not isinstance(theta, Mapping):
        raise TypeError(f"theta for {problem} must be a dict with keys {sorted(keys)}, got {type(theta).__name__}")
    missing = sorted(set(keys) - set(theta))
    if missing:
        raise TypeError(f"theta for {problem} is missing the keys {missing} (it has {sorted(theta)})")


def _np(theta, key):
    return np.asarray(theta[key], dtype=float)


# ----------------------------------------------------------------------------- lasso
_LASSO_KEYS = ("X", "y", "lam")


def lasso(X: ArrayLike, y: ArrayLike, lam: ArrayLike, *, step: float | None = None) -> Problem:
    r"""The lasso min_w ½‖Xw − y‖² + λ‖w‖₁, solved by forward-backward:

        F(w, θ) = S_{sλ}(w − s Xᵀ(Xw − y)),   θ = dict(X=X, y=y, lam=λ),

    with S the soft-thresholding and s = 1/‖X‖₂² by default (a fixed constant computed
    from the X given here; it is not differentiated). Starts at w = 0.
    """
    X = jnp.asarray(X, dtype=float)
    y = jnp.asarray(y, dtype=float)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, p) and y (n,), got X {X.shape}, y {y.shape}")
    _check_nonnegative("lam", lam)
    if step is None:
        step = 1.0 / float(np.linalg.norm(np.asarray(X), 2) ** 2)

    def grad_f(w, theta):
        _require(theta, _LASSO_KEYS, "lasso")
        return theta["X"].T @ (theta["X"] @ w - theta["y"])

    def prox_g(v, theta, s):
        _require(theta, _LASSO_KEYS, "lasso")
        return prox_lasso(v, theta["lam"], s)

    def objective(w, theta):
        r = theta["X"] @ w - theta["y"]
        return 0.5 * jnp.sum(r * r) + jnp.sum(theta["lam"] * jnp.abs(w))

    theta = dict(X=X, y=y, lam=jnp.asarray(lam, dtype=float))
    F = forward_backward(grad_f, prox_g, step)
    # on the free coordinates S (rows of ∂ₓF not zero) I - ∂ₓF = s X_Sᵀ X_S: symmetric PSD, so
    # the support-restricted implicit system suits CG (Bertrand et al. 2020)
    F = dataclasses.replace(F, symmetric=True)
    return Problem("lasso", F, theta, jnp.zeros(X.shape[1]), lasso_reference, objective)


def lasso_reference(theta: dict) -> np.ndarray:
    """cvxpy solution of min_w ½‖Xw − y‖² + λ‖w‖₁."""
    import cvxpy as cp

    _require(theta, _LASSO_KEYS, "lasso")
    X, y, lam = _np(theta, "X"), _np(theta, "y"), _np(theta, "lam")
    w = cp.Variable(X.shape[1])
    obj = 0.5 * cp.sum_squares(X @ w - y) + cp.sum(cp.multiply(lam, cp.abs(w)))
    cp.Problem(cp.Minimize(obj)).solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return np.asarray(w.value)


# ----------------------------------------------------------------------------- graphical lasso
_GLASSO_KEYS = ("S", "lam")


def _offdiag(d):
    return 1.0 - jnp.eye(d)


def prox_neg_logdet_trace(V: ArrayLike, S: ArrayLike, step: ArrayLike) -> jax.Array:
    r"""prox of f(Θ) = −log det Θ + tr(SΘ) with step s, for symmetric V:

    Θ − sΘ⁻¹ = V − sS, so with V − sS = Q diag(e) Qᵀ, Θ = Q diag((e + √(e² + 4s))/2) Qᵀ
    (Boyd et al. 2011, §6.5). Always positive definite. Differentiated through ``eigh``,
    which is smooth where the eigenvalues of V − sS are distinct.
    """
    W = 0.5 * (V + V.T) - step * S
    e, Q = jnp.linalg.eigh(W)
    return (Q * ((e + jnp.sqrt(e * e + 4.0 * step)) / 2.0)) @ Q.T


def graphical_lasso(S: ArrayLike, lam: ArrayLike, *, step: float = 1.0) -> Problem:
    r"""Sparse inverse covariance (graphical lasso), min_{Θ ≻ 0} −log det Θ + tr(SΘ) + λΣ_{i≠j}|Θ_ij|,
    by Douglas-Rachford on the governing sequence Z (a d × d matrix):

        Θ = prox_{s f}(Z)  (eigenvalue formula, :func:`prox_neg_logdet_trace`),
        F(Z, θ) = Z + S_{sλ·offdiag}(2Θ − Z) − Θ,    θ = dict(S=S, lam=λ),

    the soft-thresholding acting on off-diagonal entries only. ``F.primal(Z, θ)`` is Θ.
    Starts at Z = I.
    """
    S = jnp.asarray(S, dtype=float)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"S must be a square matrix, got shape {S.shape}")
    S_c = _concrete(S)
    if S_c is not None and not np.allclose(S_c, S_c.T):
        raise ValueError("S must be symmetric")
    _check_nonnegative("lam", lam)
    d = S.shape[0]

    def prox_f(V, theta, s):
        _require(theta, _GLASSO_KEYS, "graphical_lasso")
        return prox_neg_logdet_trace(V, theta["S"], s)

    def prox_g(V, theta, s):
        _require(theta, _GLASSO_KEYS, "graphical_lasso")
        return prox_lasso(V, theta["lam"] * _offdiag(V.shape[0]), s)

    def objective(T, theta):
        _, logdet = jnp.linalg.slogdet(T)
        return -logdet + jnp.trace(theta["S"] @ T) + theta["lam"] * jnp.sum(jnp.abs(T * _offdiag(T.shape[0])))

    theta = dict(S=S, lam=jnp.asarray(lam, dtype=float))
    F = douglas_rachford(prox_f, prox_g, step)
    return Problem("graphical_lasso", F, theta, jnp.eye(d), graphical_lasso_reference, objective)


def graphical_lasso_reference(theta: dict) -> np.ndarray:
    """cvxpy solution of the graphical lasso (off-diagonal ℓ1 penalty)."""
    import cvxpy as cp

    _require(theta, _GLASSO_KEYS, "graphical_lasso")
    S, lam = _np(theta, "S"), float(_np(theta, "lam"))
    d = S.shape[0]
    T = cp.Variable((d, d), symmetric=True)
    off = np.ones((d, d)) - np.eye(d)
    obj = -cp.log_det(T) + cp.trace(S @ T) + lam * cp.sum(cp.abs(cp.multiply(off, T)))
    # SCS reaches ~1e-12 here; Clarabel stalls near 1e-6 on the log-det cone.
    cp.Problem(cp.Minimize(obj)).solve(solver=cp.SCS, eps_abs=1e-12, eps_rel=1e-12, max_iters=200_000)
    return np.asarray(T.value)


# ----------------------------------------------------------------------------- TV denoising
_TV_KEYS = ("y", "lam")


def difference_matrix(n: int) -> np.ndarray:
    """The (n − 1) × n forward-difference matrix D, (Dx)_i = x_{i+1} − x_i."""
    return np.eye(n, k=1)[:-1] - np.eye(n)[:-1]


def tv_denoising(y: ArrayLike, lam: ArrayLike, *, rho: float = 1.0) -> Problem:
    r"""1-D total-variation denoising min_x ½‖x − y‖² + λ‖Dx‖₁, by ADMM on Dx − z = 0:

        x⁺ = (I + ρDᵀD)⁻¹(y + ρDᵀ(z − u)),   z⁺ = S_{λ/ρ}(Dx⁺ + u),   u⁺ = u + Dx⁺ − z⁺,

    θ = dict(y=y, lam=λ); state [z; u] of size 2(n − 1), starting at 0; ``F.primal`` is x⁺.
    ρ > 0 is a fixed constant (the Cholesky factor of I + ρDᵀD is computed once).
    """
    y = jnp.asarray(y, dtype=float)
    if y.ndim != 1 or y.shape[0] < 2:
        raise ValueError(f"y must be a vector of length >= 2, got shape {y.shape}")
    _check_nonnegative("lam", lam)
    _check_nonnegative("rho", rho, strict=True)
    n = y.shape[0]
    D = jnp.asarray(difference_matrix(n))
    chol = jsl.cho_factor(jnp.eye(n) + rho * D.T @ D)

    def x_update(v, theta, r):
        _require(theta, _TV_KEYS, "tv_denoising")
        return jsl.cho_solve(chol, theta["y"] + r * (D.T @ v))

    def z_update(w, theta, r):
        _require(theta, _TV_KEYS, "tv_denoising")
        return prox_lasso(-w, theta["lam"] / r)

    def objective(x, theta):
        return 0.5 * jnp.sum((x - theta["y"]) ** 2) + theta["lam"] * jnp.sum(jnp.abs(D @ x))

    theta = dict(y=y, lam=jnp.asarray(lam, dtype=float))
    F = admm(x_update, z_update, A=D, B=None, rho=rho)
    return Problem("tv_denoising", F, theta, F.init(jnp.zeros(n - 1)), tv_denoising_reference, objective)


def tv_denoising_reference(theta: dict) -> np.ndarray:
    """cvxpy solution of 1-D TV denoising."""
    import cvxpy as cp

    _require(theta, _TV_KEYS, "tv_denoising")
    y, lam = _np(theta, "y"), float(_np(theta, "lam"))
    x = cp.Variable(y.shape[0])
    obj = 0.5 * cp.sum_squares(x - y) + lam * cp.norm1(cp.diff(x))
    cp.Problem(cp.Minimize(obj)).solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return np.asarray(x.value)

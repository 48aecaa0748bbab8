"""Implicit differentiation of a solver from its optimality map (jaxopt paper, §2.1).

A solver ``solver(init, *args) → x*(args)`` returns a root of a user optimality map G:

    G(x*(θ), θ) = 0                                   (jaxopt paper, eq. (1))
    ⇒ -∂₁G(x*, θ) ∂x*(θ) = ∂₂G(x*, θ)               (jaxopt paper, eq. (2))

:func:`custom_root` gives the solver a custom JVP that solves ``∂₁G (Jv) = -∂₂G v`` at the
returned point, without differentiating through the solver's iterations. The linear solve is a
``jax.lax.custom_linear_solve``, so JAX transposes it: reverse mode solves the adjoint system
``∂₁Gᵀ u = -w`` *once* and returns ``uᵀ ∂₂G`` for every argument in ``args`` (one solve reused
across all θ arguments), i.e. the implicit VJP. Both JVP and VJP therefore come from one rule,
``jax.jvp``/``jacfwd`` and ``jax.grad``/``jacrev``/``vjp`` all work, under ``jit`` and ``vmap``.

:func:`custom_fixed_point` does the same for x* = T(x*, θ) through the residual
G(x, θ) = x - T(x, θ) (jaxopt paper, eq. (3), sign chosen so that ∂₁G = I - ∂₁T, which is
positive definite for gradient-type maps and so suits ``solve='cholesky'`` and ``'cg'``).

The solver's own output is never differentiated: reverse-mode memory does not depend on how
many iterations the solver ran.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from ._linear_solve import _validate, report, solve_linear
from ._restricted import _support_mask, free_coordinates, prox_structure, restricted_solve
from ._strategies import _Solve

#: Default ``residual_rtol``: implicit differentiation warns when ‖G(x, θ)‖ at the returned point
#: exceeds this fraction of ‖G(init, θ)‖ (for fixed points, ‖T(x) − x‖ against ‖T(x_0) − x_0‖),
#: i.e. when the solver has not reduced the residual by five orders of magnitude.
RESIDUAL_RTOL = 1e-5

_ROUNDOFF = 1e3 * float(np.finfo(np.float64).eps)


class ResidualWarning(UserWarning):
    """Implicit differentiation at a point that is not a root (fixed point) to the stated tolerance."""


def _residual_ok(r, r0, floor, rtol):
    """The returned point counts as a solution: residual reduced by ``rtol`` or at round-off."""
    return (r <= rtol * r0) | (r <= floor)


def _check_residual(name: str, rtol: float):
    def check(r, r0, floor, traced):
        r, r0, floor = float(np.max(r)), float(np.max(r0)), float(np.min(floor))
        if _residual_ok(r, r0, floor, rtol):
            return
        rel = f" = {r / r0:.3e} × its value {r0:.3e} at the initial point" if r0 > 0 else \
            " (the initial point has residual 0)"
        warnings.warn(
            f"implicit differentiation at a point that is not a solution: the {name} is {r:.3e}{rel}, "
            f"above residual_rtol={rtol:.1e}; the implicit derivative is exact only at a solution "
            "and its error grows with the distance to it (jaxopt paper, Theorem 1): run more "
            "iterations (or raise `residual_rtol`)",
            ResidualWarning, stacklevel=2,
        )

    return check


def root_jvp(optimality_fun: Callable, x: Any, args: tuple, targs: tuple, *, solve: _Solve = "auto",
             tol: float = 1e-10, maxiter: int | None = None, what: str = "∂₁G", checks: bool = True,
             init: Any = None, residual_rtol: float | None = None,
             residual_name: str = "optimality residual ‖G(x, θ)‖", fixed_point_form: bool = False,
             symmetric: bool = False, support: str | Callable | None = None, prox: bool = False) -> Any:
    """Tangent of x*(θ) along ``targs``: solve ∂₁G(x, θ) ẋ = -∂₂G(x, θ)·θ̇ (jaxopt paper, eq. (2)).

    ``x`` is a pytree (the root), ``args`` the tuple of arguments of ``optimality_fun(x, *args)``.
    Linear in ``targs`` and transposable, so reverse mode obtains the implicit VJP from it.
    With ``init`` and ``residual_rtol``, a :class:`ResidualWarning` is issued (eagerly or from a
    host callback) when ‖G(x, θ)‖ > ``residual_rtol`` · ‖G(init, θ)‖ and ‖G(x, θ)‖ is above the
    round-off level 1e3·eps·‖∂₁G(x, θ)·x‖ (a solver started at a solution is not warned about).

    ``support`` restricts the solve to the free coordinates S (see :func:`restricted_solve`):
    ``'auto'`` (fixed-point form only) takes S = the rows of ∂ₓT(x, θ) that are not identically
    zero, a callable ``support(x, *args)`` returns a boolean pytree like x (True = free).
    """
    flat_x, unravel = ravel_pytree(x)

    def g_of_x(fx):
        return ravel_pytree(optimality_fun(unravel(fx), *args))[0]

    g_val, matvec = jax.linearize(g_of_x, flat_x)
    if g_val.shape != flat_x.shape:
        raise ValueError(
            f"the optimality map must return a pytree of the same size as x "
            f"({flat_x.size} entries), got {g_val.size} entries"
        )

    def g_of_args(*a):
        return ravel_pytree(optimality_fun(x, *a))[0]

    _, g_dot = jax.jvp(g_of_args, tuple(args), tuple(targs))
    if support is None:
        x_dot = solve_linear(matvec, -g_dot, solve=solve, tol=tol, maxiter=maxiter, what=what, checks=checks,
                             symmetric=symmetric)
    else:
        if support == "auto":
            free = free_coordinates(matvec, flat_x, fixed_point_form=fixed_point_form)
        else:
            free = _support_mask(support, x, args, flat_x)
        x_dot = restricted_solve(matvec, -g_dot, free, fixed_point_form=fixed_point_form, solve=solve, tol=tol,
                                 maxiter=maxiter, what=what, checks=checks, symmetric=symmetric,
                                 verify=checks and support != "auto", prox=prox)
    if init is not None and residual_rtol is not None:
        sg = lax.stop_gradient
        r = jnp.linalg.norm(sg(g_val))
        r0 = jnp.linalg.norm(sg(ravel_pytree(optimality_fun(init, *args))[0]))
        # round-off level of G at x: its first-order size ‖∂₁G(x)·x‖ (plus ‖x‖ for G = x - T(x))
        floor = _ROUNDOFF * (jnp.linalg.norm(sg(matvec(flat_x))) + jnp.linalg.norm(sg(flat_x)) * fixed_point_form)
        x_dot = report(x_dot, _check_residual(residual_name, residual_rtol), r, r0, floor,
                       flag=~_residual_ok(r, r0, floor, residual_rtol), scale=True)
    return unravel(x_dot)


def symmetry_hint(fun: Any) -> bool:
    """The ``symmetric`` attribute of a map (True: its implicit system is symmetric positive
    definite at a solution, restricted to the free coordinates for prox maps), else False."""
    return getattr(fun, "symmetric", False) is True


def _validate_residual_rtol(residual_rtol):
    if residual_rtol is not None and (isinstance(residual_rtol, bool) or not isinstance(residual_rtol, (int, float))
                                      or not residual_rtol > 0):
        raise ValueError(f"`residual_rtol` must be a positive number or None, got {residual_rtol!r}")


def _check_callable(fun, name: str):
    if not callable(fun):
        raise TypeError(f"`{name}` must be a callable, got {fun!r}")


def _validate_hints(symmetric, support, fixed_point_form: bool):
    if not isinstance(symmetric, bool):
        raise TypeError(f"`symmetric` must be a bool (True: the implicit system is symmetric positive "
                        f"definite), got {symmetric!r}")
    if support is None or callable(support):
        return
    if support == "auto":
        if not fixed_point_form:
            raise ValueError("support='auto' detects the zero rows of ∂ₓF and needs the fixed-point form "
                             "(custom_fixed_point); for a root form pass a callable support(x, *args) -> mask")
        return
    raise ValueError(f"`support` must be None, 'auto' or a callable support(x, *args) -> boolean mask, got {support!r}")


def _wrap(solver: Callable, optimality_fun: Callable, solve, tol: float, maxiter, what: str, checks: bool,
          residual_rtol: float | None, residual_name: str, fixed_point_form: bool = False,
          symmetric: bool = False, support=None, prox: bool = False):
    _check_callable(solver, "solver")
    if not isinstance(checks, bool):
        raise TypeError(f"`checks` must be a bool, got {checks!r}")

    @jax.custom_jvp
    def wrapped(init, *args):
        return solver(init, *args)

    @wrapped.defjvp
    def _jvp(primals, tangents):
        init, *args = primals
        _, *targs = tangents
        x = solver(init, *args)
        x_dot = root_jvp(optimality_fun, x, tuple(args), targs, solve=solve, tol=tol,
                         maxiter=maxiter, what=what, checks=checks, init=init,
                         residual_rtol=residual_rtol if checks else None, residual_name=residual_name,
                         fixed_point_form=fixed_point_form, symmetric=symmetric, support=support, prox=prox)
        return x, x_dot

    @functools.wraps(solver)
    def call(init, *args, **kwargs):
        if kwargs:
            raise TypeError(
                "solvers wrapped by custom_root/custom_fixed_point take positional arguments "
                f"(init, *args) only; got keyword arguments {sorted(kwargs)}"
            )
        return wrapped(init, *args)

    return call


def custom_root(optimality_fun: Callable, *, solve: _Solve = "auto", tol: float = 1e-10,
                maxiter: int | None = None, checks: bool = True, residual_rtol: float | None = RESIDUAL_RTOL,
                symmetric: bool | None = None,
                support: str | Callable | None = None) -> Callable[[Callable], Callable]:
    """Decorator adding implicit differentiation to ``solver(init, *args) → x*`` with G(x*, *args) = 0.

    Args:
      optimality_fun: ``G(x, *args)`` returning a pytree of the same size as ``x`` (e.g. from
        :mod:`the optimality catalog <algorithms._optimality>`).
      solve: linear solver for ∂₁G (see ``algorithms._strategies``). Default ``'auto'``
        (``Auto()``): dense LU for n ≤ ``DENSE_THRESHOLD`` unknowns, above it matrix-free CG
        when ∂₁G is known symmetric positive definite (``symmetric``), else GMRES(30).
        Also ``'lu'``, ``'cholesky'`` (∂₁G symmetric positive definite, e.g. a Hessian),
        ``'cg'`` (symmetric definite), ``'gmres'``, ``'bicgstab'``, ``'normal_cg'``, a strategy
        object (``LU()``, ``CG(tol, maxiter, preconditioner)``, ``GMRES(restart=...)``, ...)
        or a callable ``solver(matvec, b) -> x``. Dense solvers factor once per point and
        check κ(∂₁G); matrix-free ones report a solve that stops above 10·``tol``.
      tol, maxiter: relative residual and iteration cap of the matrix-free solvers.
      symmetric: ∂₁G is symmetric positive definite at the solution (selects CG under 'auto').
        None (default) reads a ``symmetric`` attribute of ``optimality_fun`` (``stationarity(f)``
        sets it: ∇²f is SPD at a strict minimum).
      support: None (default), or a callable ``support(x, *args)`` returning a boolean pytree
        like x, True on the free coordinates S: the system is solved on S only,
        P ∂₁G P u + (1 - P) u = -P ∂₂G θ̇ (see ``algorithms._restricted``; valid when the
        derivative vanishes off S, e.g. the proximal-gradient residual at a lasso solution).
      checks: report an ill-conditioned/singular ∂₁G, a Krylov solve that stopped before
        ``tol`` and a point that is not a root (``residual_rtol``) (default). ``False`` saves a fixed
        ≈ 20 µs per compiled call and reports nothing (see :func:`solve_linear`).
      residual_rtol: warn (:class:`ResidualWarning`, with the value) when the derivative is taken
        at a point with ‖G(x, θ)‖ > ``residual_rtol`` · ‖G(init, θ)‖, i.e. one that is not a root
        to that relative accuracy (default :data:`RESIDUAL_RTOL`); None disables the check.

    The derivative is the implicit one *at the point the solver returns*; its error is governed by
    how far that point is from a root (jaxopt paper, §3, Theorem 1). ``init`` gets a zero derivative.

    Example (ridge regression, jaxopt paper Fig. 1)::

        grad_f = jax.grad(lambda x, lam: 0.5 * jnp.sum((X @ x - y) ** 2) + 0.5 * lam * x @ x)

        @custom_root(grad_f, solve="cholesky")
        def ridge(init, lam):
            return jnp.linalg.solve(X.T @ X + lam * jnp.eye(X.shape[1]), X.T @ y)
    """
    _validate(solve, tol, maxiter)
    _validate_residual_rtol(residual_rtol)
    _check_callable(optimality_fun, "optimality_fun")
    symmetric = symmetry_hint(optimality_fun) if symmetric is None else symmetric
    _validate_hints(symmetric, support, False)

    def decorator(solver):
        return _wrap(solver, optimality_fun, solve, tol, maxiter, "∂₁G (the optimality map's Jacobian)", checks,
                     residual_rtol, "optimality residual ‖G(x, θ)‖", symmetric=symmetric, support=support)

    return decorator


def custom_fixed_point(fixed_point_fun: Callable, *, solve: _Solve = "auto", tol: float = 1e-10,
                       maxiter: int | None = None, checks: bool = True,
                       residual_rtol: float | None = RESIDUAL_RTOL, symmetric: bool | None = None,
                       support: str | Callable | None = "auto") -> Callable[[Callable], Callable]:
    """Decorator adding implicit differentiation to ``solver(init, *args) → x*`` with x* = T(x*, *args).

    Equivalent to :func:`custom_root` with the residual G(x, θ) = x - T(x, θ) (jaxopt paper,
    eq. (3)); the linear system is (I - ∂₁T) ẋ = ∂₂T θ̇, so a singular or ill-conditioned
    I - ∂₁T at the returned point is reported with its condition number, and a point that is not
    a fixed point (‖T(x) − x‖ > ``residual_rtol`` · ‖T(init) − init‖) with a :class:`ResidualWarning`.

    ``solve``, ``tol``, ``maxiter``: as in :func:`custom_root` (default ``'auto'``).
    ``symmetric``: the (restricted) system I - ∂₁T is symmetric positive definite at the fixed
    point; None reads a ``symmetric`` attribute of ``fixed_point_fun`` (set by
    ``gradient_descent`` and ``lasso``).
    ``support``: ``'auto'`` (default) solves only on the free coordinates S, the rows of ∂₁T
    that are not identically zero (found by two JVP probes): u_𝒜 = (∂₂T θ̇)_𝒜 and
    (I - ∂₁T)_SS u_S = (∂₂T θ̇)_S + (∂₁T)_S𝒜 u_𝒜, the full system exactly, but smaller and, for
    prox/projection fixed points, symmetric (Bertrand et al. 2020; see ``algorithms._restricted``).
    A callable ``support(x, *args)`` → boolean pytree gives S (checked against a probe);
    None solves the full system.
    """
    _validate(solve, tol, maxiter)
    _validate_residual_rtol(residual_rtol)
    _check_callable(fixed_point_fun, "fixed_point_fun")
    symmetric = symmetry_hint(fixed_point_fun) if symmetric is None else symmetric
    _validate_hints(symmetric, support, True)

    def residual(x, *args):
        return jax.tree_util.tree_map(jnp.subtract, x, fixed_point_fun(x, *args))

    def decorator(solver):
        return _wrap(solver, residual, solve, tol, maxiter, "I - ∂ₓF (at the last iterate)", checks,
                     residual_rtol, "fixed-point residual ‖F(x, θ) - x‖", fixed_point_form=True,
                     symmetric=symmetric, support=support, prox=prox_structure(fixed_point_fun))

    return decorator

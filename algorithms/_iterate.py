"""One entry point for the derivative of x_k = F(x_{k-1}, θ): autodiff, implicit, one-step, truncated.

For the iterates x_k(θ) = F(x_{k-1}(θ), θ) of an algorithm converging to x̄(θ) = F(x̄(θ), θ),
``iterate(F, x0, theta, steps, mode=...)`` returns x_steps and lets ``jax.grad``, ``jax.jacfwd``,
``jax.jacrev`` (under ``jit`` and ``vmap``) see one of four Jacobian estimators
(one-step paper, §2.1, Algorithms 1-3):

- ``"autodiff"``: J^AD x_k, differentiation through all k steps (piggyback recursion
  J_k = ∂ₓF(x_{k-1}, θ) J_{k-1} + ∂_θF(x_{k-1}, θ), one-step paper eq. (2)); x0 may depend on θ.
  Reverse mode stores the k iterates: memory grows linearly with ``steps``.
- ``"implicit"``: J^ID x_k = (I - ∂ₓF(x_k, θ))⁻¹ ∂_θF(x_k, θ) at the last iterate
  (one-step paper eq. (3); jaxopt paper eqs. (2)-(3)), through a custom JVP whose transpose is
  the implicit VJP. With ``optimality_fun=G`` the root form -∂₁G⁻¹∂₂G is used instead, which is
  much cheaper when F hides a linear solve (Newton: use G = ∇f, one-step paper Remark 3).
- ``"one_step"``: J^OS x_k = ∂_θF(x_{k-1}, θ): stop_gradient on all steps but the last
  (one-step paper eq. (4), Algorithm 3). Error ≤ ρL_F/(1-ρ) + L_J‖x_{k-1} - x̄‖ (Corollary 1),
  quadratic in ‖x_{k-1} - x̄‖ for Newton-type maps (Corollary 3).
- ``"truncated"``: differentiate the last ``truncate`` = K steps only, i.e. the one-step
  estimator of F^K (one-step paper, discussion after Corollary 1).

The non-differentiated part of the loop runs on ``stop_gradient``-ed inputs inside a ``lax``
loop, so reverse-mode memory does not grow with ``steps`` for implicit, one-step and truncated.

Divergence: every step is checked for non-finite values; the first offending step is reported
(``ValueError`` on concrete values, a ``RuntimeWarning`` from a host callback under ``jit``).
"""

from __future__ import annotations

import operator
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._implicit import custom_fixed_point, custom_root
from ._linear_solve import _validate, report

MODES = ("autodiff", "implicit", "one_step", "truncated")


class DivergenceWarning(RuntimeWarning):
    """An iteration produced non-finite values (reported under a trace, where raising is not possible)."""


def _check_pytree(tree, name: str, *, allow_int: bool = False):
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    if not leaves:
        raise ValueError(f"`{name}` must contain at least one array leaf")
    low = []
    for path, leaf in leaves:
        dtype = jnp.result_type(leaf)
        where = f"`{name}{jax.tree_util.keystr(path)}`"
        if not jnp.issubdtype(dtype, jnp.floating):
            if allow_int and jnp.issubdtype(dtype, jnp.integer):
                continue
            raise TypeError(
                f"{where} has dtype {dtype}; every leaf of `{name}` must be a real floating array "
                "(float64) because it is differentiated. Pass integer or boolean settings through "
                "a closure of F (or a static field), not as leaves of theta."
            )
        if jnp.finfo(dtype).bits < 64:
            low.append(f"{where} ({dtype})")
    if low:
        warnings.warn(
            f"{', '.join(low)} is not float64; derivative estimators and their error bounds "
            "assume float64 (enable it with jax.config.update('jax_enable_x64', True))",
            UserWarning, stacklevel=3,
        )


def _divergence_check(steps_total: int, offset: int):
    def check(first_bad, traced):
        fb = np.asarray(first_bad)
        if np.any(fb >= 0):
            step = int(fb[fb >= 0].min()) + offset
            msg = (f"the iteration diverged: iterate x_{step} (step {step} of steps={steps_total}) "
                   "contains non-finite values (inf/nan); reduce the step size or check F and x0")
            if traced:
                warnings.warn(msg, DivergenceWarning, stacklevel=2)
            else:
                raise ValueError(msg)

    return check


def _all_finite(x):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(x)]))


def _run(F, x, theta, n: int, *, check: bool, steps_total: int, offset: int):
    """x_{offset+n} from x_{offset} by n applications of F, in a lax loop, checking finiteness."""
    if n == 0:
        return x
    if not check:
        return lax.fori_loop(0, n, lambda _, x: F(x, theta), x)

    def body(i, carry):
        x, first_bad = carry
        x = F(x, theta)
        first_bad = jnp.where((first_bad < 0) & ~_all_finite(x), i + 1, first_bad)
        return x, first_bad

    x, first_bad = lax.fori_loop(0, n, body, (x, jnp.asarray(-1, jnp.int32)))
    first_bad = lax.stop_gradient(first_bad)
    return report(x, _divergence_check(steps_total, offset), first_bad, flag=first_bad >= 0)


def _validate_args(steps, mode, truncate, x0, theta):
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"`steps` must be a Python int (a static number of iterations), got {steps!r}")
    if steps <= 0:
        raise ValueError(f"`steps` must be a positive number of iterations, got {steps}")
    if mode == "truncated":
        if truncate is None:
            raise ValueError("mode='truncated' needs `truncate=K`, the number of last steps to differentiate")
        if isinstance(truncate, bool) or not isinstance(truncate, (int, np.integer)):
            raise TypeError(f"`truncate` must be a Python int, got {truncate!r}")
        if not 1 <= truncate <= steps:
            raise ValueError(f"`truncate` must satisfy 1 <= truncate <= steps={steps}, got {truncate}")
    elif truncate is not None:
        raise ValueError(f"`truncate` is only used with mode='truncated' (got mode={mode!r})")
    _check_pytree(theta, "theta")
    _check_pytree(x0, "x0")


def _check_map_signature(F, x0, theta):
    """F(x0, θ) must return a pytree with the structure, shapes and dtypes of x0 (abstractly)."""
    out = jax.eval_shape(F, x0, theta)
    want = jax.tree_util.tree_structure(x0)
    got = jax.tree_util.tree_structure(out)
    if got != want:
        raise TypeError(f"F(x, theta) must return a pytree with the structure of x0: x0 is {want}, F returned {got}")
    for path, a, b in zip((jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(x0)[0]),
                          jax.tree_util.tree_leaves(x0), jax.tree_util.tree_leaves(out)):
        if jnp.shape(a) != b.shape or jnp.result_type(a) != b.dtype:
            raise TypeError(
                f"F(x, theta) must return leaves with the shapes and dtypes of x0: x0{path} is "
                f"{jnp.result_type(a)}{list(jnp.shape(a))}, F returned {b.dtype}{list(b.shape)}"
            )


def iterate(F: Callable, x0, theta, steps: int, *, mode: str = "autodiff", truncate: int | None = None,
            optimality_fun: Callable | None = None, solve: str = "lu", tol: float = 1e-10,
            maxiter: int | None = None, check_finite: bool = True, checks: bool = True):
    """Run x_k = F(x_{k-1}, θ) for ``steps`` steps; derivatives in θ follow the chosen estimator.

    Args:
      F: iteration map ``F(x, theta) → x`` (pure JAX; same pytree structure as ``x0``).
      x0: initial point (pytree of float arrays). Differentiated through only in ``"autodiff"``.
      theta: parameters (pytree of float arrays; integer leaves are rejected).
      steps: number of iterations k ≥ 1 (a Python int).
      mode: ``"autodiff"`` | ``"implicit"`` | ``"one_step"`` | ``"truncated"`` (see module doc).
      truncate: K, the number of last steps differentiated in ``"truncated"`` mode (1 ≤ K ≤ steps);
        K = 1 is the one-step estimator.
      optimality_fun: for ``"implicit"`` only, an optional root form G(x, θ) = 0 of the fixed point
        (e.g. ``stationarity(f)`` for Newton's map) used instead of I - ∂ₓF.
      solve, tol, maxiter: linear solver of the implicit mode (see :func:`custom_root`).
      check_finite: check every iterate for inf/nan and report the first bad step.
      checks: for ``"implicit"``, report an ill-conditioned/singular linear system or a Krylov
        solve that did not converge (see :func:`custom_root`; ``False`` saves ≈ 20 µs per call).

    Returns:
      x_steps, with the pytree structure of ``x0``.
    """
    _validate_args(steps, mode, truncate, x0, theta)
    if optimality_fun is not None and mode != "implicit":
        raise ValueError(f"`optimality_fun` is only used with mode='implicit' (got mode={mode!r})")
    _validate(solve, tol, maxiter)
    _check_map_signature(F, x0, theta)
    steps = operator.index(steps)
    run = lambda x, th, n, offset: _run(F, x, th, n, check=check_finite,  # noqa: E731
                                        steps_total=steps, offset=offset)
    sg = lax.stop_gradient

    if mode == "autodiff":
        return run(x0, theta, steps, 0)
    if mode == "one_step":
        truncate = 1
    if mode in ("one_step", "truncated"):
        x_mid = run(sg(x0), sg(theta), steps - truncate, 0)
        return run(x_mid, theta, truncate, steps - truncate)

    def solver(init, th):
        return run(init, th, steps, 0)

    if optimality_fun is None:
        wrapped = custom_fixed_point(F, solve=solve, tol=tol, maxiter=maxiter, checks=checks)(solver)
    else:
        wrapped = custom_root(optimality_fun, solve=solve, tol=tol, maxiter=maxiter, checks=checks)(solver)
    return wrapped(sg(x0), theta)

"""Running an iteration map x_{k+1} = F(x_k, θ): trajectories, last iterates, residuals.

* :class:`IterationMap` wraps a pure JAX map F(state, θ) with what a runner needs to know about
  it: how to build the initial state from a primal point (``init``), how to read the primal
  estimate off the state (``primal``: identity for GD/FB, prox_f(z) for Douglas-Rachford, the
  x-update for ADMM, the first half of the phase-space state for momentum methods) and a way to
  explain divergence (``diagnose``, e.g. "step > 2/L"). Calling it is calling F.
* :func:`run` returns the whole trajectory (x_0, x_1, …, x_K) stacked by ``lax.scan``.
* :func:`solve` returns the last iterate and the fixed-point residual ‖F(x_K, θ) − x_K‖ without
  storing the trajectory.

Both are pure JAX (jit-, vmap- and grad-friendly; reverse mode works because ``scan`` is used
with a fixed number of steps). With ``tol`` the iteration is *frozen* once a step
‖x_{k+1} − x_k‖ is at most ``tol`` (x_{k+1} is kept, later rows repeat it), so shapes stay static.
Divergent iterates (an inf/nan entry, or growth beyond ``max_growth`` times the initial scale,
see ``conservative._divergence``) raise ``ValueError("iteration diverged at step k: …")`` on
concrete values and give a ``RuntimeWarning`` from a host callback under ``jit``.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from conservative._divergence import (
    FMAX,
    MAX_GROWTH,
    check_max_growth,
    describe_divergence,
    first_divergent_step,
    growth_limit,
    sup_norm,
)

from ._linear_solve import report

__all__ = ["IterationMap", "run", "solve", "Solution", "fixed_point_residual"]


def _identity(state, theta=None):
    return state


@dataclasses.dataclass(frozen=True)
class IterationMap:
    """An iteration map F(state, θ) and how to use it.

    Attributes:
      fn: the pure JAX map ``fn(state, theta) -> state``.
      name: short name used in messages.
      init: ``init(x0) -> state`` builds an initial state from a primal point.
      primal: ``primal(state, theta) -> x`` reads the primal estimate off a state.
      diagnose: optional ``diagnose(state, theta) -> str``; called (outside traces) when an
        iteration diverges, to say why (e.g. the step size against 2/L).
      optimality: optional root form ``G(state, theta)`` with G = 0 exactly at the fixed points;
        ``iterate(mode="implicit")`` differentiates through it instead of I - ∂ₓF.
      symmetric: the implicit system I - ∂ₓF (restricted to the coordinates whose rows of ∂ₓF
        are not zero) is symmetric positive definite at a solution (gradient descent on a convex
        f, forward-backward for the lasso), so ``solve='auto'`` may use CG.
    """

    fn: Callable[[Any, Any], Any]
    name: str = "F"
    init: Callable[[Any], Any] = _identity
    primal: Callable[[Any, Any], Any] = _identity
    diagnose: Callable[[Any, Any], str] | None = None
    optimality: Callable[[Any, Any], Any] | None = None
    symmetric: bool = False

    def __call__(self, state: Any, theta: Any) -> Any:
        return self.fn(state, theta)


# ----------------------------------------------------------------------------- helpers
def _tree_sub_norm(a, b):
    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda u, v: jnp.sum((u - v) ** 2), a, b))
    return jnp.sqrt(sum(leaves)) if leaves else jnp.asarray(0.0)


def fixed_point_residual(F: Callable, x: Any, theta: Any) -> jax.Array:
    """‖F(x, θ) − x‖ (Euclidean norm over all leaves of the state)."""
    return _tree_sub_norm(F(x, theta), x)


def _is_traced(tree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def _check_structure(F, x0, theta):
    """``F(x0, θ)`` must return a state of the same structure, shapes and dtypes as ``x0``."""
    try:
        out = jax.eval_shape(F, x0, theta)
    except KeyError as e:  # a θ dict without a key the map reads
        raise TypeError(f"theta is missing the key {e} read by the iteration map") from None
    except (TypeError, ValueError) as e:
        if getattr(F, "init", _identity) is _identity:
            raise
        shapes = jax.tree_util.tree_map(jnp.shape, x0)
        raise type(e)(
            f"{F.name}(x0, theta) failed for a state of shape {shapes}: {e}\n"
            f"(the state of {F.name} is not the primal point: build it with F.init(x0))"
        ) from e
    s_in = jax.tree_util.tree_structure(x0)
    s_out = jax.tree_util.tree_structure(out)
    if s_in != s_out:
        raise TypeError(f"F(x, theta) returned a state of structure {s_out}, but x0 has structure {s_in}")
    for a, b in zip(jax.tree_util.tree_leaves(x0), jax.tree_util.tree_leaves(out)):
        if jnp.shape(a) != b.shape:
            raise TypeError(
                f"F(x, theta) returned a state of shape {b.shape}, but x0 has shape {jnp.shape(a)}"
                " (for momentum methods and ADMM build the state with F.init(x0))"
            )


def _as_float_state(x0):
    def conv(a):
        a = jnp.asarray(a)
        return a if jnp.issubdtype(a.dtype, jnp.inexact) else a.astype(jnp.result_type(float))

    return jax.tree_util.tree_map(conv, x0)


def _sup_norms(trajectory):
    """‖x_k‖_∞ for every row k of a stacked trajectory (nan where a row has a nan entry)."""
    rows = [jnp.max(jnp.abs(leaf.reshape(leaf.shape[0], -1)), axis=1, initial=0.0)
            for leaf in jax.tree_util.tree_leaves(trajectory)]
    return jnp.max(jnp.stack(rows), axis=0)


def _divergence_check(F, trajectory, theta, max_growth):
    """The check of :func:`run` on ‖x_k‖_∞ (see ``conservative._divergence``): raises on concrete
    values, warns under a trace (message without the map's diagnosis, which needs values)."""

    def check(sup_norms, traced):
        k = first_divergent_step(sup_norms, max_growth)
        if k < 0:
            return
        name = getattr(F, "name", getattr(F, "__name__", "F"))
        if k == 0:
            msg = f"x0 is not finite (iteration map {name})"
        else:
            scale = float(np.max(sup_norms[:2])) if k > 1 else float(sup_norms[0])
            msg = (f"iteration diverged at step {k}: the iterate of {name} diverged: "
                   f"{describe_divergence(k, float(sup_norms[k]), scale, max_growth)} "
                   f"(the previous iterate has largest entry {float(sup_norms[k - 1]):.3g} in absolute value)")
            diagnose = getattr(F, "diagnose", None)
            if diagnose is not None and not traced and not _is_traced(theta):
                try:
                    x0 = jax.tree_util.tree_map(lambda leaf: leaf[0], trajectory)
                    why = diagnose(x0, theta)
                except Exception:  # the diagnosis is a courtesy: never hide the real error
                    why = None
                if why:
                    msg += f"; {why}"
        if traced:
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        else:
            raise ValueError(msg)

    return check


def _check_trajectory(F, trajectory, theta, max_growth):
    """Report the first divergent iterate of a stacked trajectory (returned, tied to the check)."""
    sup = lax.stop_gradient(_sup_norms(trajectory))
    flag = ~jnp.all(sup <= growth_limit(max_growth, jnp.max(sup[:2])))
    return report(trajectory, _divergence_check(F, trajectory, theta, max_growth), sup, flag=flag)


def _step_fn(F, theta, tol):
    """Scan body on the carry (x, done): once ‖x_{k+1} − x_k‖ ≤ tol, x stops changing."""

    def step(carry, _):
        x, done = carry
        x_new = F(x, theta)
        if tol is None:
            return (x_new, done), x_new
        x_new = jax.tree_util.tree_map(lambda a, b: jnp.where(done, b, a), x_new, x)
        done = done | (_tree_sub_norm(x_new, x) <= tol)
        return (x_new, done), x_new

    return step


def _check_steps(steps):
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be a nonnegative Python int, got {steps!r}")
    return int(steps)


def run(F: Callable, x0: Any, theta: Any, steps: int, *, tol: float | None = None,
        max_growth: float | None = MAX_GROWTH) -> Any:
    """The trajectory (x_0, x_1, …, x_steps) of x_{k+1} = F(x_k, θ), stacked on a leading axis.

    Args:
      F: iteration map ``F(state, theta) -> state`` (an :class:`IterationMap` or any function).
      x0: initial state (array or pytree; for momentum methods and ADMM use ``F.init(x)``).
      theta: parameters (any pytree); the trajectory is differentiable in it.
      steps: number of iterations K (a Python int).
      tol: if given, the iteration is frozen once ‖x_{k+1} − x_k‖ ≤ tol (later rows repeat
        the converged iterate; static shapes, still differentiable).
      max_growth: divergence factor: x_k is divergent when an entry is inf/nan or
        ‖x_k‖_∞ > max_growth · max(‖x_0‖_∞, ‖x_1‖_∞) (None: inf/nan only; see
        ``conservative._divergence``).

    Returns:
      The stacked trajectory, a pytree like ``x0`` whose leaves have a leading axis of size
      ``steps + 1`` (row 0 is x0).

    Raises:
      TypeError: ``F(x0, θ)`` does not return a state shaped like ``x0`` (or θ lacks a key).
      ValueError: outside a trace, an iterate diverged: "iteration diverged at step k".
        Under a trace the same message is a ``RuntimeWarning`` from a host callback.
    """
    steps = _check_steps(steps)
    check_max_growth(max_growth)
    x0 = _as_float_state(x0)
    _check_structure(F, x0, theta)
    _, xs = lax.scan(_step_fn(F, theta, tol), (x0, jnp.asarray(False)), None, length=steps)
    traj = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b], axis=0), x0, xs)
    return _check_trajectory(F, traj, theta, max_growth)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Solution:
    """Result of :func:`solve`: the last state, its fixed-point residual ‖F(x, θ) − x‖, and the
    primal estimate read off it (``F.primal``; equal to ``state`` for GD and FB)."""

    state: Any
    primal: Any
    residual: jax.Array


def solve(F: Callable, x0: Any, theta: Any, steps: int, *, tol: float | None = None,
          max_growth: float | None = MAX_GROWTH) -> Solution:
    """Run K = ``steps`` iterations of F from x0 and report the last iterate and its residual.

    Memory is O(1) in ``steps`` (the trajectory is not stored). Same conventions and errors
    as :func:`run`; the non-finite check is done on the last iterate (the step at which the
    iteration diverged is then found by re-running with the trajectory, outside traces only).
    """
    steps = _check_steps(steps)
    check_max_growth(max_growth)
    x0 = _as_float_state(x0)
    _check_structure(F, x0, theta)
    step = _step_fn(F, theta, tol)
    def body(c, _):
        (x, done), k, bad, limit = c
        x, done = step((x, done), None)[0]
        m = sup_norm(x)
        # the limit is fixed at step 1, from max(‖x_0‖_∞, ‖x_1‖_∞)
        limit = jnp.where(k == 0, growth_limit(max_growth, jnp.maximum(m0, m)), limit)
        return ((x, done), k + 1, bad | ~(m <= limit), limit), None

    m0 = sup_norm(x0)
    init = ((x0, jnp.asarray(False)), 0, ~(m0 <= FMAX), growth_limit(max_growth, m0))
    ((x, _), _, bad, _), _ = lax.scan(body, init, None, length=steps)
    if not _is_traced((x, bad)):
        if bool(bad):
            run(F, x0, theta, steps, tol=tol, max_growth=max_growth)  # raises with the divergent step
    else:
        name = getattr(F, "name", getattr(F, "__name__", "F"))

        def check(bad, traced):
            if bool(np.any(bad)):
                warnings.warn(f"iteration diverged within steps={steps}: an iterate of {name} has an inf/nan "
                              f"entry or ‖x_k‖_∞ > max_growth={max_growth} × max(‖x_0‖_∞, ‖x_1‖_∞) (run "
                              "`run` on concrete values to see the step)", RuntimeWarning, stacklevel=2)

        x = report(x, check, bad, flag=bad)
    primal = getattr(F, "primal", _identity)(x, theta)
    return Solution(state=x, primal=primal, residual=fixed_point_residual(F, x, theta))

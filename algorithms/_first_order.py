"""Iteration maps of first-order splitting methods: GD, forward-backward, Douglas-Rachford, ADMM.

Each constructor returns an :class:`~algorithms._run.IterationMap`, a pure JAX map
F(state, θ) with all parameters in one pytree θ (a dict, or a dataclass registered with
``jax.tree_util.register_dataclass``), to be run by :func:`algorithms.run` and differentiated
by the estimators and by ``conservative.jacobian``/``piggyback``.

Conventions (the same everywhere):

* ``grad_f(x, theta)`` returns ∇ₓf(x, θ);
* ``prox_g(v, theta, step)`` returns prox_{step·g(·, θ)}(v) = argmin_x ½‖x − v‖² + step·g(x, θ);
  wrap the operators of this package as ``lambda v, th, s: prox_lasso(v, th["lam"], s)``;
* step sizes and other scalars are either numbers (fixed algorithm constants, not
  differentiated) or callables ``theta -> value`` (e.g. ``lambda th: th["step"]``) when they are
  a parameter to differentiate: differentiable quantities live in θ, never in closures.

The *state* is what the recursion updates: x for GD and FB, the governing sequence z for DR,
the flat vector [z; u] (scaled form) for ADMM. ``F.init(x0)`` builds it and ``F.primal(state, θ)``
reads the primal estimate off it.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._prox import _check_nonnegative, _concrete
from ._run import IterationMap

__all__ = ["gradient_descent", "forward_backward", "douglas_rachford", "admm"]


# ----------------------------------------------------------------------------- helpers
def _param(p, theta):
    """A scalar algorithm parameter: a number, or a callable of θ (to differentiate in it)."""
    return p(theta) if callable(p) else p


def _check_param(name, p, *, strict=True):
    if not callable(p):
        _check_nonnegative(name, p, strict=strict)


def _describe(p, theta):
    v = _concrete(_param(p, theta))
    return f"{float(v):.4g}" if v is not None and np.ndim(v) == 0 else "?"


def _step_diagnosis(label, grad_f, step):
    """The divergence explanation of gradient-type maps: step < 2/L, with L estimated at x0."""

    def diagnose(x, theta):
        L = _curvature(grad_f, x, theta)
        s = _describe(step, theta)
        if L is None:
            return f"{label} needs step < 2/L, L the Lipschitz constant of grad_f (step = {s})"
        return (f"{label} needs step < 2/L; at x0 the curvature of f is L ≈ {L:.4g}, "
                f"so 2/L ≈ {2 / L:.4g}, and step = {s}")

    return diagnose


def _curvature(grad_f, x, theta, max_size: int = 2000):
    """Largest |eigenvalue| of ∇²f at x (a local Lipschitz constant of ∇f), or None if too big."""
    flat, unravel = jax.flatten_util.ravel_pytree(x)
    if flat.size > max_size:
        return None
    H = jax.jacfwd(lambda v: jax.flatten_util.ravel_pytree(grad_f(unravel(v), theta))[0])(flat)
    H = np.asarray(H)
    if not np.all(np.isfinite(H)):
        return None
    return float(np.max(np.abs(np.linalg.eigvals(0.5 * (H + H.T)))))


def _tree_axpy(a, x, y):
    """y + a·x over pytrees."""
    return jax.tree_util.tree_map(lambda u, v: v + a * u, x, y)


# ----------------------------------------------------------------------------- GD
def gradient_descent(grad_f: Callable[[Any, Any], Any], step: float | Callable[[Any], Any]) -> IterationMap:
    r"""Gradient descent, F(x, θ) = x − s·∇ₓf(x, θ).

    For f(·, θ) with L-Lipschitz gradient, the iteration converges (to a critical point, for
    f bounded below) when 0 < s < 2/L; on a quadratic with curvature above 2/s it diverges
    geometrically. If ∇f is only piecewise smooth (f ∈ C^{1,1}, as in the slides' examples),
    F is path differentiable and its conservative Jacobian is I − s·J_{∇f}.

    Args:
      grad_f: ``grad_f(x, theta)`` → ∇ₓf(x, θ) (pytree like x).
      step: s > 0, a number or a callable ``theta -> s``.
    """
    _check_param("step", step)

    def F(x, theta):
        return _tree_axpy(-_param(step, theta), grad_f(x, theta), x)

    # I - ∂ₓF = s∇²f: symmetric, positive definite at a strict minimum (CG under solve='auto')
    return IterationMap(F, name="gradient_descent", diagnose=_step_diagnosis("gradient descent", grad_f, step),
                        symmetric=True)


# ----------------------------------------------------------------------------- FB
def forward_backward(grad_f: Callable[[Any, Any], Any], prox_g: Callable[[Any, Any, Any], Any],
                     step: float | Callable[[Any], Any]) -> IterationMap:
    r"""Forward-backward (proximal gradient) for min_x f(x, θ) + g(x, θ):

        F(x, θ) = prox_{s g(·,θ)}(x − s·∇ₓf(x, θ), θ)          (jaxopt paper, eq. (7))

    converges for convex f with L-Lipschitz gradient, convex g, and 0 < s < 2/L; with g the
    indicator of a convex set, prox_g is a projection (projected gradient, eq. (9)).
    Its conservative Jacobian is [A, B] = J_prox · [I − s∇²f, −s∂_θ∇f] + [0, ∂_θ prox]; at a
    kink of the prox every active piece of J_prox appears.

    Args:
      grad_f: ``grad_f(x, theta)`` → ∇ₓf(x, θ).
      prox_g: ``prox_g(v, theta, step)`` → prox_{step·g(·,θ)}(v).
      step: s > 0, a number or a callable ``theta -> s``.
    """
    _check_param("step", step)

    def F(x, theta):
        s = _param(step, theta)
        return prox_g(_tree_axpy(-s, grad_f(x, theta), x), theta, s)

    return IterationMap(F, name="forward_backward", diagnose=_step_diagnosis("forward-backward", grad_f, step))


# ----------------------------------------------------------------------------- DR
def douglas_rachford(
    prox_f: Callable[[Any, Any, Any], Any], prox_g: Callable[[Any, Any, Any], Any], step: float | Callable[[Any], Any],
    relax: float | Callable[[Any], Any] = 1.0
) -> IterationMap:
    r"""Douglas-Rachford splitting for min_x f(x, θ) + g(x, θ), on the governing sequence z:

        x = prox_{s f}(z),   y = prox_{s g}(2x − z),   F(z, θ) = z + λ·(y − x).

    For convex f, g (with a solution) z_k converges for every s > 0 and relaxation
    λ ∈ (0, 2), and x̄ = prox_{s f}(z̄) solves the problem (``F.primal(z, θ)`` returns it).
    Note that z̄ itself is not the solution; differentiate ``F.primal`` of the limit.

    Args:
      prox_f, prox_g: ``prox(v, theta, step)`` → prox_{step·h(·,θ)}(v).
      step: s > 0, number or callable of θ.
      relax: λ ∈ (0, 2), number or callable of θ (λ = 1 is plain DR).
    """
    _check_param("step", step)
    if not callable(relax):
        r = _concrete(relax)
        if r is not None and not (0 < float(r) < 2):
            raise ValueError(f"relax must be in (0, 2), got {float(r)}")

    def F(z, theta):
        s = _param(step, theta)
        x = prox_f(z, theta, s)
        y = prox_g(jax.tree_util.tree_map(lambda a, b: 2 * a - b, x, z), theta, s)
        lam = _param(relax, theta)
        return jax.tree_util.tree_map(lambda zz, yy, xx: zz + lam * (yy - xx), z, y, x)

    def primal(z, theta):
        return prox_f(z, theta, _param(step, theta))

    def diagnose(z, theta):
        return (
            "Douglas-Rachford converges for every step > 0 when f and g are convex and the problem "
            "has a solution: check convexity, feasibility, and the prox operators"
        )

    return IterationMap(F, name="douglas_rachford", primal=primal, diagnose=diagnose)


# ----------------------------------------------------------------------------- ADMM
def _linear(M, theta):
    M = _param(M, theta)
    return None if M is None else jnp.asarray(M)


def admm(
    x_update: Callable[[Any, Any, Any], Any],
    z_update: Callable[[Any, Any, Any], Any],
    A: ArrayLike | Callable[[Any], Any] | None = None,
    B: ArrayLike | Callable[[Any], Any] | None = None,
    c: ArrayLike | Callable[[Any], Any] | None = None,
    rho: float | Callable[[Any], Any] = 1.0,
) -> IterationMap:
    r"""ADMM (scaled form) for min_{x,z} f(x, θ) + g(z, θ) subject to Ax + Bz = c:

        x⁺ = argmin_x f(x, θ) + (ρ/2)‖Ax − v‖²,   v = c − Bz − u       (``x_update(v, θ, ρ)``)
        z⁺ = argmin_z g(z, θ) + (ρ/2)‖Bz − w‖²,   w = c − Ax⁺ − u      (``z_update(w, θ, ρ)``)
        u⁺ = u + Ax⁺ + Bz⁺ − c

    (Boyd et al. 2011, §3.1.1). The state is the flat vector [z; u] (z of size m, u of size p,
    the number of constraints); x is not part of the state: it is a function of (z, u), which
    ``F.primal(state, θ)`` returns. ``F.init(z0, u0=None, theta=None)`` builds [z0; u0] (u0 = 0 by
    default; θ is needed only to size u0 when A, B and c are all functions of θ).
    For convex f, g with a solution, ADMM converges for every ρ > 0.

    Args:
      x_update: ``x_update(v, theta, rho)`` → argmin_x f(x, θ) + (ρ/2)‖Ax − v‖².
      z_update: ``z_update(w, theta, rho)`` → argmin_z g(z, θ) + (ρ/2)‖Bz − w‖².
      A: (p, n) matrix, callable ``theta -> matrix``, or None for the identity.
      B: (p, m) matrix, callable ``theta -> matrix``, or None for −I (the usual x − z = 0
         splitting, where then ``z_update(w, θ, ρ) = prox_{g/ρ}(−w)``).
      c: (p,) vector, callable of θ, or None for 0.
      rho: ρ > 0, number or callable of θ.
    """
    _check_param("rho", rho)

    def apply(M, v, sign_if_none):
        return sign_if_none * v if M is None else M @ v

    def split(state, theta):
        Bm = _linear(B, theta)
        if Bm is None:
            if state.shape[0] % 2:
                raise ValueError(f"ADMM state [z; u] with B = -I must have even length, got {state.shape[0]}")
            m = state.shape[0] // 2
        else:
            m = Bm.shape[1]
        return state[:m], state[m:], Bm

    def x_of(z, u, Bm, theta):
        cv = _linear(c, theta)
        v = -apply(Bm, z, -1.0) - u
        if cv is not None:
            v = v + cv
        return x_update(v, theta, _param(rho, theta))

    def F(state, theta):
        z, u, Bm = split(state, theta)
        Am, cv = _linear(A, theta), _linear(c, theta)
        r = _param(rho, theta)
        x = x_of(z, u, Bm, theta)
        Ax = apply(Am, x, 1.0)
        w = -Ax - u if cv is None else cv - Ax - u
        z_new = z_update(w, theta, r)
        res = Ax + apply(Bm, z_new, -1.0)
        if cv is not None:
            res = res - cv
        return jnp.concatenate([z_new, u + res])

    def init(z0, u0=None, theta=None):
        z0 = jnp.ravel(jnp.asarray(z0, dtype=float))
        if u0 is None:
            p = None
            for M, axis in ((B, 0), (A, 0), (c, 0)):
                if M is not None and (not callable(M) or theta is not None):
                    p = jnp.shape(_linear(M, theta))[axis]
                    break
            if p is None:
                if B is not None:  # callable B and no theta: the number of constraints is unknown
                    raise ValueError("admm init: pass u0 or theta (B is a function of theta)")
                p = z0.shape[0]
            u0 = jnp.zeros(p, dtype=z0.dtype)
        else:
            u0 = jnp.ravel(jnp.asarray(u0, dtype=float))
        return jnp.concatenate([z0, u0])

    def primal(state, theta):
        z, u, Bm = split(state, theta)
        return x_of(z, u, Bm, theta)

    def diagnose(state, theta):
        return (
            "ADMM converges for every rho > 0 when f and g are convex and the problem has a "
            "solution: check convexity, feasibility, and x_update/z_update"
        )

    return IterationMap(F, name="admm", init=init, primal=primal, diagnose=diagnose)

"""Momentum methods as iteration maps in phase space: heavy-ball (Polyak) and Nesterov.

A two-step recursion x_{k+1} = G(x_k, x_{k−1}, θ) is the one-step map F on the phase-space
state s = [x; y] = [x_k; x_{k−1}] (a flat vector of size 2n, x of size n):

    F([x; y], θ) = [G(x, y, θ); x].

``F.init(x0)`` returns [x0; x0] (zero initial velocity) and ``F.primal(s, θ)`` returns x = s[:n].
The conservative Jacobian of F is the 2n × 2n block matrix [[∂ₓG, ∂_yG], [I, 0]]: this is
the matrix whose products decide whether the derivatives of the iterates converge.

Heavy-ball on a C^{1,1} function can converge while its derivative recursion does not
(slides, "When nonsmoothness hurts: momentum methods" and "Example where heavy-ball fails":
f(x) = x²/2 for x ≥ 0, x²/8 for x < 0, α = 1, β = 3/4, J_F(0, 0) = conv{M1, M2} with
M1 M1 M2 M2 having the eigenvalue −9/8).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._first_order import _check_param, _curvature, _describe, _param
from ._prox import _concrete
from ._run import IterationMap

__all__ = ["heavy_ball", "nesterov", "phase_state"]


def phase_state(x: ArrayLike, x_prev: ArrayLike | None = None) -> jax.Array:
    """The phase-space state [x; x_prev] (flat, float); ``x_prev = x`` (zero velocity) by default."""
    x = jnp.ravel(jnp.asarray(x, dtype=float))
    x_prev = x if x_prev is None else jnp.ravel(jnp.asarray(x_prev, dtype=float))
    if x_prev.shape != x.shape:
        raise ValueError(f"x_prev must have the shape of x, got {x_prev.shape} and {x.shape}")
    return jnp.concatenate([x, x_prev])


def _split(state):
    if state.ndim != 1 or state.shape[0] % 2:
        raise ValueError(
            f"the phase-space state [x; y] must be a flat vector of even length, got shape {state.shape}"
            " (build it with F.init(x0))"
        )
    n = state.shape[0] // 2
    return state[:n], state[n:]


def _primal(state, theta=None):
    return _split(state)[0]


def _check_momentum(name, beta):
    if callable(beta):
        return
    b = _concrete(beta)
    if b is not None and not (0 <= float(b) < 1):
        raise ValueError(f"{name} must be in [0, 1), got {float(b)}")


def heavy_ball(grad_f: Callable[[Any, Any], Any], alpha: float | Callable[[Any], Any],
               beta: float | Callable[[Any], Any]) -> IterationMap:
    r"""Heavy-ball (Polyak 1964/1987) in phase space, s = [x; y] = [x_k; x_{k−1}]:

        F([x; y], θ) = [x − α∇ₓf(x, θ) + β(x − y);  x].

    On a quadratic with Hessian eigenvalues in [μ, L] it converges iff 0 ≤ β < 1 and
    0 < α < 2(1 + β)/L (fastest: α = 4/(√L + √μ)², β = ((√κ − 1)/(√κ + 1))²).

    Args:
      grad_f: ``grad_f(x, theta)`` → ∇ₓf(x, θ), x a flat vector.
      alpha: step α > 0, number or callable ``theta -> α``.
      beta: momentum β ∈ [0, 1), number or callable of θ.
    """
    _check_param("alpha", alpha)
    _check_momentum("beta", beta)

    def F(state, theta):
        x, y = _split(state)
        x_new = x - _param(alpha, theta) * grad_f(x, theta) + _param(beta, theta) * (x - y)
        return jnp.concatenate([x_new, x])

    def diagnose(state, theta):
        x = _primal(state)
        L = _curvature(grad_f, x, theta)
        a, b = _describe(alpha, theta), _describe(beta, theta)
        bound = "2(1 + beta)/L"
        if L is None or b == "?":
            return f"heavy-ball needs 0 < alpha < {bound} and 0 <= beta < 1 (alpha = {a}, beta = {b})"
        return (
            f"heavy-ball needs 0 < alpha < {bound}; at x0 the curvature of f is L ≈ {L:.4g}, so the "
            f"bound is ≈ {2 * (1 + float(b)) / L:.4g}, and alpha = {a} (beta = {b})"
        )

    return IterationMap(F, name="heavy_ball", init=phase_state, primal=_primal, diagnose=diagnose)


def nesterov(grad_f: Callable[[Any, Any], Any], step: float | Callable[[Any], Any],
             momentum: float | Callable[[Any], Any]) -> IterationMap:
    r"""Nesterov's accelerated gradient with constant momentum, in phase space s = [x_k; x_{k−1}]:

        v = x + β(x − y),   F([x; y], θ) = [v − s∇ₓf(v, θ);  x].

    With s = 1/L and β = (√κ − 1)/(√κ + 1) (κ = L/μ) this is the accelerated method for
    μ-strongly convex f. (The schedule β_k = (k − 1)/(k + 2) of the convex case depends on k,
    so it is not an autonomous map F(x, θ); put k in θ or in the state if you need it.) On a
    quadratic it converges iff 0 < s·L < 2(1 + β)/(1 + 2β) (for 0 ≤ β < 1).

    Args:
      grad_f: ``grad_f(x, theta)`` → ∇ₓf(x, θ), x a flat vector.
      step: s > 0, number or callable of θ.
      momentum: β ∈ [0, 1), number or callable of θ.
    """
    _check_param("step", step)
    _check_momentum("momentum", momentum)

    def F(state, theta):
        x, y = _split(state)
        v = x + _param(momentum, theta) * (x - y)
        x_new = v - _param(step, theta) * grad_f(v, theta)
        return jnp.concatenate([x_new, x])

    def diagnose(state, theta):
        x = _primal(state)
        L = _curvature(grad_f, x, theta)
        s, b = _describe(step, theta), _describe(momentum, theta)
        if L is None or b == "?":
            return f"Nesterov needs step*L < 2(1 + beta)/(1 + 2 beta) (step = {s}, momentum = {b})"
        bb = float(b)
        return (
            f"Nesterov needs step < 2(1 + beta)/((1 + 2 beta) L); at x0 the curvature of f is "
            f"L ≈ {L:.4g}, so the bound is ≈ {2 * (1 + bb) / ((1 + 2 * bb) * L):.4g}, and step = {s}"
        )

    return IterationMap(F, name="nesterov", init=phase_state, primal=_primal, diagnose=diagnose)

"""Mirror descent in the KL (entropic) geometry on the probability simplex, as a map F(x, θ).

    F(x, θ) = proj^φ_Δ(∇φ(x) - η∇₁f(x, θ)) = softmax(log x - η∇₁f(x, θ)),

the exponentiated-gradient step for φ(x) = ⟨x, log x - 1⟩ (jaxopt paper, eqs. (10)-(11)); its
fixed points are the minimizers of f(·, θ) over the simplex that lie in the relative interior.
The implicit derivative can use the same map in root form, ``optimality.mirror_descent(f)``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ._optimality import kl_projection_simplex


def mirror_descent_map(f: Callable, stepsize: float, *, bregman_projection: Callable = kl_projection_simplex,
                       mirror_map: Callable = jnp.log) -> Callable:
    """Mirror-descent iteration map F(x, θ) = proj^φ(∇φ(x) - η∇₁f(x, θ)); KL/simplex by default.

    ``x`` must be a positive vector (rows of a matrix for a product of simplices: the softmax acts
    on the last axis). ``bregman_projection(y, None)`` and ``mirror_map`` select another geometry.
    """
    if not (isinstance(stepsize, (int, float)) and stepsize > 0):
        raise ValueError(f"`stepsize` must be a positive float, got {stepsize!r}")

    def F(x, theta):
        return bregman_projection(mirror_map(x) - stepsize * jax.grad(f)(x, theta), None)

    return F


def entropic_objective(cost_weight: float = 1.0) -> Callable:
    """f(x, θ) = -⟨θ, x⟩ + w⟨x, log x⟩: its simplex minimizer is softmax(θ / w) in closed form.

    With stepsize η, mirror descent reads x⁺ = softmax((1 - ηw) log x + ηθ): a contraction of the
    logits with factor |1 - ηw|, handy for checking estimators against closed forms.
    """

    def f(x, theta):
        return -jnp.vdot(theta, x) + cost_weight * jnp.vdot(x, jnp.log(x))

    return f

"""Sinkhorn's algorithm in the log domain (entropic optimal transport) as a map F(g, θ).

For marginals a ∈ Δₙ, b ∈ Δₘ, cost C and temperature ε (θ = :class:`EntropicOT`), the dual
potentials are updated by the two soft-min half steps

    f(g)ᵢ = ε log aᵢ - ε LSEⱼ((gⱼ - Cᵢⱼ)/ε),     F(g, θ)ⱼ = ε log bⱼ - ε LSEᵢ((f(g)ᵢ - Cᵢⱼ)/ε),

and the plan is Pᵢⱼ = exp((fᵢ + gⱼ - Cᵢⱼ)/ε). F commutes with translations, F(g + c1) = F(g) + c1,
so ∂₁F has the eigenvalue 1 (eigenvector 1) and σ_max(∂₁F) = 1: Assumption 1 fails and I - ∂₁F is
singular, yet the autodiff derivative of the (translation invariant) plan converges (Pauwels &
Vaiter, 2023): the error lives in span(1), which the plan ignores. :func:`sinkhorn_anchored_map`
removes the invariance (g ↦ F(g) - F(g)ₘ·1); it has the same plan and a unique fixed point with
I - ∂₁F invertible, so it can be differentiated implicitly.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jax.typing import ArrayLike


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EntropicOT:
    """Entropic OT data: cost (n, m), marginals a (n,) and b (m,), temperature epsilon > 0 (all leaves)."""

    cost: jax.Array
    a: jax.Array
    b: jax.Array
    epsilon: jax.Array


def _f_from_g(g, ot: EntropicOT):
    return ot.epsilon * jnp.log(ot.a) - ot.epsilon * logsumexp((g[None, :] - ot.cost) / ot.epsilon, axis=1)


def sinkhorn_map(g: ArrayLike, ot: EntropicOT) -> jax.Array:
    """One log-domain Sinkhorn iteration on the column potential g (module docstring)."""
    f = _f_from_g(g, ot)
    return ot.epsilon * jnp.log(ot.b) - ot.epsilon * logsumexp((f[:, None] - ot.cost) / ot.epsilon, axis=0)


def sinkhorn_anchored_map(g: ArrayLike, ot: EntropicOT) -> jax.Array:
    """Sinkhorn step followed by the normalization g_m = 0 (same plan; contracting in practice)."""
    g_new = sinkhorn_map(g, ot)
    return g_new - g_new[-1]


def sinkhorn_potentials(g: ArrayLike, ot: EntropicOT) -> tuple[jax.Array, jax.Array]:
    """The pair (f(g), g) of dual potentials."""
    return _f_from_g(g, ot), g


def sinkhorn_plan(g: ArrayLike, ot: EntropicOT) -> jax.Array:
    """Transport plan Pᵢⱼ = exp((f(g)ᵢ + gⱼ - Cᵢⱼ)/ε): rows sum to a exactly, columns to b at convergence."""
    f = _f_from_g(g, ot)
    return jnp.exp((f[:, None] + g[None, :] - ot.cost) / ot.epsilon)

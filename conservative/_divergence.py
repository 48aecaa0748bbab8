"""When an iteration x_{k+1} = F(x_k, θ) has diverged: the one criterion every runner uses.

An iterate x_k is *divergent* when one of its entries is inf/nan, or when

    ‖x_k‖_∞ > max_growth · max(‖x_0‖_∞, ‖x_1‖_∞)          (default max_growth = 1e10).

A map that is nonexpansive in the 2-norm keeps ‖x_k‖_2 ≤ (2k + 1) max(‖x_0‖_2, ‖x_1‖_2), so for
such maps the criterion cannot fire before k ≈ max_growth / (2√n); a geometric blow-up
x_k ~ 2^k is caught after about 33 steps instead of running on to 1e90 or to inf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: Default growth factor of the divergence criterion (see the module docstring).
MAX_GROWTH = 1e10

FMAX = float(np.finfo(np.float64).max)


def sup_norm(tree):
    """‖x‖_∞ over all leaves of a pytree (traceable); nan when an entry is nan."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(leaf), initial=0.0).astype(jnp.float64)
                              for leaf in jax.tree_util.tree_leaves(tree)]))


def growth_limit(max_growth, scale):
    """max_growth · scale capped at the largest float (an infinite entry always exceeds it); the
    cap alone for max_growth = None, also at scale 0. ``scale`` a float or a traced scalar."""
    if max_growth is None:
        return FMAX if isinstance(scale, float) else jnp.full((), FMAX)
    if isinstance(scale, float):
        return min(float(max_growth) * scale, FMAX)
    return jnp.minimum(float(max_growth) * scale, FMAX)


def check_max_growth(max_growth, name: str = "max_growth"):
    """``max_growth`` must be a number > 1, or None (check only for inf/nan)."""
    if max_growth is not None and (isinstance(max_growth, bool) or not isinstance(max_growth, (int, float))
                                   or not max_growth > 1):
        raise ValueError(f"`{name}` must be a number > 1 (or None to check only for inf/nan), got {max_growth!r}")
    return max_growth


def first_divergent_step(sup_norms, max_growth: float | None = MAX_GROWTH) -> int:
    """First k with ‖x_k‖_∞ not finite or above max_growth · max(‖x_0‖_∞, ‖x_1‖_∞); -1 if none.

    ``sup_norms``: ‖x_0‖_∞, ‖x_1‖_∞, ... (NumPy, nan where an iterate has a nan entry).
    """
    m = np.asarray(sup_norms, dtype=np.float64).ravel()
    if m.size == 0:
        return -1
    bad = ~np.isfinite(m)
    if max_growth is not None and np.all(np.isfinite(m[:2])):
        bad |= ~(m <= growth_limit(max_growth, float(np.max(m[:2]))))
    return int(np.argmax(bad)) if bad.any() else -1


def describe_divergence(k: int, sup_norm: float, scale: float, max_growth: float | None) -> str:
    """What happened at the divergent step k (for error messages)."""
    if np.isfinite(sup_norm):
        return (f"‖x_{k}‖_∞ = {sup_norm:.3e} exceeds max_growth={max_growth:.1e} × the initial scale "
                f"max(‖x_0‖_∞, ‖x_1‖_∞) = {scale:.3e}")
    return f"iterate x_{k} contains non-finite values (inf/nan)"

"""Proximity operators of ℓ1 (lasso), elastic net and group lasso.

For a convex g and a step s > 0 the proximity operator is

    prox_{s g}(v) = argmin_x  ½‖x − v‖² + s·g(x)            (jaxopt paper, eq. (7) and App. B.2).

Every operator here is written with plain ``jnp`` primitives whose kinks are explicit
(``maximum``, ``minimum`` through ``jnp.clip``), with no ``custom_jvp``: ``jax.jacfwd`` returns
one element of the conservative Jacobian and ``conservative.jacobian`` sees every active piece.
The parameters (λ, the step) are ordinary arrays, so the operators are differentiable in them too.

Kinks and their active pieces (per coordinate, t = s·λ):

* soft-thresholding  S_t(v) = v − clip(v, −t, t):  at |v_i| = t both pieces, "zero" and
  "v_i ∓ t", are active, so ∂S_t(v)_i/∂v_i ∈ {0, 1} (convex hull [0, 1]);
* block soft-thresholding  v·(1 − t/max(‖v‖, t)):  at ‖v‖ = t the pieces "0" and
  "v − t v/‖v‖" are active, with Jacobians 0 and I − t(I − uuᵀ)/‖v‖, u = v/‖v‖.

Parameters are validated when they are concrete (not under a JAX trace): a negative λ raises
``ValueError`` naming the argument.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = ["prox_lasso", "prox_elastic_net", "prox_group_lasso", "soft_threshold"]


# ----------------------------------------------------------------------------- validation
def _concrete(value):
    """``value`` as a NumPy array if it is concrete, ``None`` under a trace."""
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value)
    except Exception:  # pragma: no cover - exotic array-likes
        return None


def _check_nonnegative(name: str, value, *, strict: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` when a concrete ``value`` is negative (or ≤ 0)."""
    arr = _concrete(value)
    if arr is None:
        return
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr!r}")
    bad = arr <= 0 if strict else arr < 0
    if np.any(bad):
        expected = "> 0" if strict else ">= 0"
        raise ValueError(f"{name} must be {expected}, got {arr!r}")


def _float(x):
    """``x`` as a floating-point array (integers are promoted to the default float dtype)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


# ----------------------------------------------------------------------------- operators
def soft_threshold(v: ArrayLike, t: ArrayLike) -> jax.Array:
    r"""Soft-thresholding S_t(v) = sign(v)·max(|v| − t, 0), written as ``v − clip(v, −t, t)``.

    The ``v − clip`` form is Lipschitz in (v, t) jointly and has no ``sign``: a program
    ``sign(v) * max(|v| − t, 0)`` is the same function for t > 0 but JAX differentiates the
    discontinuous ``sign`` as 0, which gives the wrong derivative 0 at v = 0 when t = 0.

    Active pieces at |v_i| = t: ∂/∂v_i ∈ {0, 1}, ∂/∂t ∈ {0, −sign(v_i)}.
    """
    v = _float(v)
    return v - jnp.clip(v, -t, t)


def prox_lasso(x: ArrayLike, lam: ArrayLike, step: ArrayLike = 1.0) -> jax.Array:
    r"""Proximity operator of g(x) = λ‖x‖₁ (soft-thresholding).

    prox_{s g}(x)_i = sign(x_i)·max(|x_i| − sλ_i, 0) = x_i − clip(x_i, −sλ_i, sλ_i).

    Args:
      x: array of any shape.
      lam: λ ≥ 0, scalar or broadcastable to ``x`` (a per-coordinate weight; a zero weight
        leaves that coordinate untouched, e.g. the diagonal in the graphical lasso).
      step: s > 0.

    Conservative Jacobian in x at a kink |x_i| = sλ_i: the diagonal entry i is any value in
    conv{0, 1}; elsewhere the Jacobian is diag(1[|x_i| > sλ_i]) (jaxopt paper, App. B.2).
    """
    _check_nonnegative("lam", lam)
    _check_nonnegative("step", step, strict=True)
    return soft_threshold(x, step * lam)


def prox_elastic_net(x: ArrayLike, lam: ArrayLike, gamma: ArrayLike, step: ArrayLike = 1.0) -> jax.Array:
    r"""Proximity operator of the elastic net g(x) = λ‖x‖₁ + (γ/2)‖x‖₂².

    prox_{s g}(x) = S_{sλ}(x) / (1 + sγ),

    with S the soft-thresholding of :func:`soft_threshold`; the kinks are those of S
    (|x_i| = sλ), where the diagonal entry of the Jacobian is in conv{0, 1/(1 + sγ)}.

    Args:
      x: array.
      lam: λ ≥ 0 (ℓ1 weight), scalar or broadcastable to ``x``.
      gamma: γ ≥ 0 (ridge weight), scalar or broadcastable to ``x``.
      step: s > 0.
    """
    _check_nonnegative("lam", lam)
    _check_nonnegative("gamma", gamma)
    _check_nonnegative("step", step, strict=True)
    return soft_threshold(x, step * lam) / (1.0 + step * gamma)


def prox_group_lasso(x: ArrayLike, lam: ArrayLike, step: ArrayLike = 1.0) -> jax.Array:
    r"""Proximity operator of the group lasso g(x) = λ Σ_g ‖x_g‖₂ (block soft-thresholding).

    prox_{s g}(x)_g = x_g · max(1 − sλ/‖x_g‖, 0) = x_g · (1 − t / max(‖x_g‖, t)),  t = sλ,

    i.e. x_g minus its projection onto the ℓ2 ball of radius t (Moreau's identity). The
    maximum is computed as sqrt(max(‖x_g‖², t²)), so it is one explicit ``max`` kink and the
    square root is never evaluated at 0 (no NaN derivative at x_g = 0 when t > 0).

    Groups: a 1-D ``x`` is a single group; for ``x`` of shape (..., d) each slice along the
    last axis is a group (reshape ragged groups by padding with zeros, which changes nothing).

    Active pieces at ‖x_g‖ = t: the block Jacobian is in conv{0, I − t(I − uuᵀ)/‖x_g‖} with
    u = x_g/‖x_g‖ (= conv{0, uuᵀ} on the sphere ‖x_g‖ = t).

    Args:
      x: array (..., d).
      lam: λ ≥ 0, scalar or shape broadcastable to ``x.shape[:-1]`` (one weight per group).
      step: s > 0.
    """
    _check_nonnegative("lam", lam)
    _check_nonnegative("step", step, strict=True)
    x = _float(x)
    t = jnp.asarray(step * lam, dtype=x.dtype)[..., None]
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    # The floor (smallest normal float) only matters when x_g = 0 and t = 0, where the
    # output is 0 either way; it keeps 0/0 and sqrt'(0) out of the program.
    tiny = jnp.finfo(x.dtype).tiny
    norm = jnp.sqrt(jnp.maximum(jnp.maximum(sq, t * t), tiny))
    return x - x * (t / norm)

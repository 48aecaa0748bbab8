"""Support-restricted implicit differentiation for prox / projection fixed points.

At a fixed point x̄ = T(x̄, θ) of a forward-backward (proximal-gradient) or projected-gradient
map, the prox or projection is locally constant in the coordinates it sets to a bound: the
conservative Jacobian [A, B] = [∂ₓT, ∂_θT](x̄, θ) has identically zero rows of A on that active
set 𝒜 (for the lasso: 𝒜 = {i : x̄_i = 0, |v_i| < sλ}, v = x̄ - s∇f(x̄)). With S the free
coordinates and P = diag(1_S), the implicit system (I - A) u = B θ̇ splits as

    u_𝒜 = (B θ̇)_𝒜,        (I - A_SS) u_S = (B θ̇)_S + A_S𝒜 u_𝒜,

which is the full system exactly (no approximation: the rows in 𝒜 are trivial). Only the free
block I - A_SS needs a solve (Bertrand et al. 2020, "Implicit differentiation of Lasso-type
models for hyperparameter optimization", §3, their eq. (8) and Algorithm 2; the sparse-ho
package). For the lasso with T(w) = S_{sλ}(w - sXᵀ(Xw - y)) the free block is
I - A_SS = s X_Sᵀ X_S: symmetric positive definite, so CG applies, whereas I - A on all
coordinates is not symmetric. Closed form: ∂w̄_S/∂λ = -(X_Sᵀ X_S)⁻¹ sign(w̄_S), ∂w̄_𝒜/∂λ = 0.

jit-compatible by masking rather than shape changes: the operator solved on R^n is

    M v = v - P A P v   (= blockdiag(I - A_SS, I)),    right-hand side P (b + A (1 - P) b),

and u = w + (1 - P) b. Matrix-free: M needs one JVP of T per application. Forward and reverse
mode both work: everything is linear in b, and ``lax.custom_linear_solve`` transposes M.

For a root form G(x, θ) = 0 and a given mask (``support`` a callable), the solve is
P ∂₁G P u + (1 - P) u = -P ∂₂G θ̇, valid when the derivative vanishes off S (u_𝒜 = 0), as for
the proximal-gradient residual G = prox(x - s∇f) - x at a lasso solution.

Where the probe says "zero row" it reads JAX's element of the conservative Jacobian: at an exact
kink (|v_i| = sλ) JAX's element is one of several; ``theory.implicit_set`` gives the whole set.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from ._linear_solve import report, solve_linear


def _probes(n: int, dtype):
    """Two fixed generic directions in R^n (no entry is 0: sin at irrational multiples)."""
    k = jnp.arange(1, n + 1, dtype=dtype)
    return jnp.stack([jnp.sin(2.399963229728653 * k + 0.5), jnp.cos(1.6180339887498949 * k + 0.25)])


def free_coordinates(matvec, flat_x, *, fixed_point_form: bool = True):
    """Boolean mask of the rows of A = ∂ₓT(x, θ) that are not identically zero (the free set S).

    ``matvec`` is v ↦ ∂₁G v with G = x - T (fixed-point form), so A v = v - matvec(v). A row is
    declared zero when A d vanishes in it for two fixed generic directions d (a nonzero row is
    orthogonal to both only on a set of measure zero). Only defined for the fixed-point form.
    """
    if not fixed_point_form:
        raise ValueError("support='auto' detects the zero rows of ∂ₓF and needs the fixed-point form "
                         "(custom_fixed_point, or iterate without optimality_fun); for a root form "
                         "pass a callable support(x, *args) -> boolean mask")
    D = _probes(flat_x.size, flat_x.dtype)
    AD = D - jax.vmap(matvec)(D)
    return lax.stop_gradient(jnp.any(AD != 0, axis=0))


def _support_mask(support, x, args, flat_x):
    mask = support(x, *args)
    flat = ravel_pytree(jax.tree_util.tree_map(lambda m: jnp.asarray(m).astype(flat_x.dtype), mask))[0]
    if flat.shape != flat_x.shape:
        raise ValueError(f"`support(x, *args)` must return a boolean pytree like x ({flat_x.size} entries), "
                         f"got {flat.size} entries")
    return lax.stop_gradient(flat != 0)


def _check_mask(rows):
    def check(worst, traced):
        w = float(np.max(worst))
        if w > 0:
            warnings.warn(
                f"`support` declares coordinates inactive whose rows of ∂ₓF are not zero (largest "
                f"|(∂ₓF d)_i| over them = {w:.3e} for a probe direction d); the restricted solve assumes "
                "u_i = (∂_θF θ̇)_i there and is wrong: pass support='auto' or a correct mask",
                RuntimeWarning, stacklevel=2)

    return check


def restricted_solve(matvec, b, free, *, fixed_point_form: bool = True, verify: bool = False, **solve_kw):
    """u with ∂₁G u = b, solved on the free coordinates only (see the module docstring).

    Fixed-point form (∂₁G = I - A, A = ∂ₓT with zero rows off ``free``): returns
    u = w + (1 - P) b with (v ↦ v - P A P v) w = P (b + A (1 - P) b), P = diag(free).
    Root form: (v ↦ P ∂₁G P v + (1 - P) v) u = P b. ``solve_kw`` go to :func:`solve_linear`
    (``symmetric`` there refers to the restricted block). ``verify`` (fixed-point form, a user
    mask) warns when a row declared inactive is not zero.
    """
    P = free.astype(b.dtype)
    Q = 1.0 - P

    def masked(v):
        return P * matvec(P * v) + Q * v

    if not fixed_point_form:
        return solve_linear(masked, P * b, **solve_kw)
    bq = Q * b
    rhs = P * (b + (bq - matvec(bq)))  # A (1-P) b = (1-P) b - ∂₁G (1-P) b
    w = solve_linear(masked, rhs, **solve_kw)
    u = w + bq
    if verify:
        D = _probes(b.size, b.dtype)
        worst = jnp.max(jnp.abs(Q * (D - jax.vmap(matvec)(D))))
        u = report(u, _check_mask(Q), worst, flag=worst > 0, scale=True)
    return u

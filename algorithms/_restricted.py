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

Solver on S. A black-box T gives the free block only through JVPs, and one JVP costs as much
as a step of T whatever the support of its tangent (for the lasso, two products with the full
X: nothing n-sized can be skipped per application). Under ``solve='auto'``, for maps with a
prox structure (``forward_backward``; see :func:`support_sizes`) and |S| ≤
``max(SUPPORT_DENSE_SIZES)``, the block M_SS is therefore built from batched JVPs along the
coordinate vectors of S (K ≥ |S| of them, K the smallest entry of ``SUPPORT_DENSE_SIZES``,
picked at run time by ``lax.switch``; padding replaced by a multiple of the identity), then
LU-factored with its condition number checked. Each batch of ``SUPPORT_BLOCK`` JVPs is one
matrix-matrix product (X read once per batch): measured on a 200 × 20 000 lasso, building
K = 128 columns costs about 8 single JVPs, where CG to tol = 1e-12 needs about 70. Larger
supports use the matrix-free Krylov method on M (CG for a symmetric block).

Where the probe says "zero row" it reads JAX's element of the conservative Jacobian: at an exact
kink (|v_i| = sλ) JAX's element is one of several; ``theory.implicit_set`` gives the whole set.
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

from ._linear_solve import factor, report, solve_linear
from ._strategies import Auto, as_strategy

#: supports of at most max(SUPPORT_DENSE_SIZES) coordinates are solved densely on S under
#: solve='auto' (block of the smallest listed size ≥ |S|, picked at run time)
SUPPORT_DENSE_SIZES = (32, 128, 256)
#: the dense block is built SUPPORT_BLOCK columns at a time (temporary memory SUPPORT_BLOCK · n)
SUPPORT_BLOCK = 32


def _probes(n: int, dtype):
    """Two fixed generic directions in R^n (no entry is 0: sin at irrational multiples)."""
    k = jnp.arange(1, n + 1, dtype=dtype)
    return jnp.stack([jnp.sin(2.399963229728653 * k + 0.5), jnp.cos(1.6180339887498949 * k + 0.25)])


def free_coordinates(matvec: Callable[[jax.Array], jax.Array], flat_x: jax.Array, *,
                     fixed_point_form: bool = True) -> jax.Array:
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


def restricted_solve(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, free: jax.Array, *,
                     fixed_point_form: bool = True,
                     verify: bool = False, prox: bool = False, **solve_kw: Any) -> jax.Array:
    """u with ∂₁G u = b, solved on the free coordinates only (see the module docstring).

    Fixed-point form (∂₁G = I - A, A = ∂ₓT with zero rows off ``free``): returns
    u = w + (1 - P) b with (v ↦ v - P A P v) w = P (b + A (1 - P) b), P = diag(free).
    Root form: (v ↦ P ∂₁G P v + (1 - P) v) u = P b. ``solve_kw`` go to :func:`solve_linear`
    (``symmetric`` there refers to the restricted block). ``verify`` (fixed-point form, a user
    mask) warns when a row declared inactive is not zero. ``prox``: the map declares a prox
    structure (see :func:`support_sizes`: dense blocks on a small S under ``solve='auto'``).
    """
    P = free.astype(b.dtype)
    Q = 1.0 - P

    def masked(v):
        return P * matvec(P * v) + Q * v

    if not fixed_point_form:
        return _solve_masked(masked, P * b, free, prox=prox, **solve_kw)
    bq = Q * b
    rhs = P * (b + (bq - matvec(bq)))  # A (1-P) b = (1-P) b - ∂₁G (1-P) b
    w = _solve_masked(masked, rhs, free, prox=prox, **solve_kw)
    u = w + bq
    if verify:
        D = _probes(b.size, b.dtype)
        worst = jnp.max(jnp.abs(Q * (D - jax.vmap(matvec)(D))))
        u = report(u, _check_mask(Q), worst, flag=worst > 0, scale=True)
    return u


def prox_structure(fun) -> bool:
    """Whether a fixed-point map declares a prox/projection structure (zero rows of ∂ₓF expected
    on an active set): a ``forward_backward`` iteration map or a ``sparse_support=True`` attribute."""
    return getattr(fun, "sparse_support", None) is True or getattr(fun, "name", None) == "forward_backward"


def support_sizes(n: int, solve="auto", prox: bool = False) -> tuple:
    """The dense block sizes K used for a restricted system of n unknowns under ``solve``:
    empty unless ``solve`` is ``Auto`` with n above its dense threshold (below it the whole
    system is factored anyway) and dense blocks on S are wanted (``Auto.support_dense``, or
    None and ``prox``: the map declares a prox structure, see :func:`prox_structure`)."""
    s = as_strategy(solve)
    if not isinstance(s, Auto) or n <= s.threshold:
        return ()
    if not (s.support_dense if s.support_dense is not None else prox):
        return ()
    return tuple(k for k in SUPPORT_DENSE_SIZES if k < n)


def _dense_on_support(masked, b, free, K: int, what: str, checks: bool):
    """Solve M x = b, M = P ∂₁G P + (1 - P) masked, through the dense K × K block on S (|S| ≤ K).

    idx lists S (padded by index 0, flagged invalid); M_SS[i, j] = (M e_{idx_j})_{idx_i} from one
    batched JVP; padding rows/columns hold d·I with d = max |diag M_SS| (d lies in the spectrum's
    range for an SPD block, so κ is that of M_SS); x = (1 - P) b + scatter_S(M_SS⁻¹ b_S).
    """
    n = b.size
    count = jnp.sum(free)
    idx = jnp.nonzero(free, size=K, fill_value=0)[0]
    valid = jnp.arange(K) < count
    B = min(K, SUPPORT_BLOCK)

    def block(j):  # columns j·B … j·B + B - 1 of M_SS: B JVPs batched (one matrix-matrix product)
        rows = jnp.arange(B) + j * B
        E = jnp.zeros((B, n), b.dtype).at[jnp.arange(B), idx[rows]].set(valid[rows].astype(b.dtype))
        return jax.vmap(masked)(E)[:, idx]  # row r: (M e_{idx_r})_S

    both = valid[:, None] & valid[None, :]
    M = jnp.where(both, lax.map(block, jnp.arange(K // B)).reshape(K, K).T, 0.0)
    d = jnp.max(jnp.where(valid, jnp.abs(jnp.diagonal(M)), 0.0))
    d = jnp.where(d > 0, d, 1.0)
    M = jnp.where(both, M, d * jnp.eye(K, dtype=b.dtype))
    fwd, bwd = factor(lax.stop_gradient(M), "lu", what, checks=checks)
    Q = 1.0 - free.astype(b.dtype)

    def full(solve_k):
        def apply(_, r):
            xs = jnp.where(valid, solve_k(jnp.where(valid, r[idx], 0.0)), 0.0)
            return Q * r + jnp.zeros_like(r).at[idx].add(xs)

        return apply

    return lax.custom_linear_solve(masked, b, full(fwd), full(bwd))


def _solve_masked(masked, b, free, *, solve="auto", what: str = "the linear system", checks: bool = True,
                  prox: bool = False, **solve_kw):
    """The masked system: dense on S when ``solve='auto'``, S is small and dense blocks are wanted
    (:func:`support_sizes`; see the module docstring), else ``solve_linear`` matrix-free on R^n."""
    sizes = support_sizes(b.size, solve, prox)
    if not sizes:
        return solve_linear(masked, b, solve=solve, what=what, checks=checks, **solve_kw)
    branches = [functools.partial(_dense_on_support, masked, free=free, K=k, what=what, checks=checks)
                for k in sizes]
    branches.append(lambda b: solve_linear(masked, b, solve=solve, what=what, checks=checks, **solve_kw))
    count = jnp.sum(free)
    if not isinstance(count, jax.core.Tracer):
        return branches[int(np.searchsorted(sizes, int(count)))](b)
    return lax.switch(jnp.searchsorted(jnp.asarray(sizes), count), branches, b)

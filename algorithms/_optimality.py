"""A catalog of optimality maps G(x, θ) = 0 for implicit differentiation (jaxopt paper, §2.2, Table 1).

Each function builds G from user pieces (an objective f(x, θ_f), a prox, a projection, ...), to be
passed to :func:`custom_root` or to ``iterate(..., mode="implicit", optimality_fun=G)``. Fixed-point
characterizations x = T(x, θ) are returned in root form G(x, θ) = T(x, θ) - x (jaxopt paper, eq. (3)).
Maps built from a smooth f and a nonsmooth prox/projection are differentiable almost everywhere;
at a kink JAX returns one element of the conservative Jacobian.

Conventions: x and θ are pytrees; when a map has two kinds of parameters they are passed as one
pair ``theta = (theta_f, theta_g)`` so that ``G(x, theta)`` has the two-argument signature of an
iteration map. Step sizes are static floats (G's root does not depend on them).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

_tmap = jax.tree_util.tree_map


def _check_stepsize(stepsize, name="stepsize"):
    if not (isinstance(stepsize, (int, float)) and stepsize > 0):
        raise ValueError(f"`{name}` must be a positive float, got {stepsize!r}")


def stationarity(f: Callable) -> Callable:
    """G(x, θ) = ∇₁f(x, θ): stationary points of an unconstrained smooth f (jaxopt paper, eq. (4)).

    ∂₁G = ∇²₁f is symmetric, positive definite at a strict local minimum: ``solve='cholesky'``
    or ``'cg'`` apply, and the returned map carries ``symmetric = True`` so that ``solve='auto'``
    picks CG for large systems (an auto-chosen CG that fails, at a saddle, is redone by GMRES).
    Equivalent to the gradient-descent fixed point x = x - η∇₁f (eq. (5)).
    """
    G = jax.grad(f, argnums=0)
    G.symmetric = True
    return G


def kkt(f: Callable, eq_fun: Callable | None = None, ineq_fun: Callable | None = None) -> Callable:
    """KKT conditions of min_z f(z, θ) s.t. H(z, θ) = 0, C(z, θ) ≤ 0 (jaxopt paper, eq. (6)).

    With x = (z, ν, λ) (ν: equality multipliers, λ ≥ 0: inequality multipliers; pass ``None`` for
    an absent block), G(x, θ) = (∇₁f + ∂₁Hᵀν + ∂₁Cᵀλ,  H(z, θ),  λ ∘ C(z, θ)).
    Primal and dual feasibility are ignored, as they hold as inequalities a.e. (strict
    complementarity). ∂₁G is indefinite: use ``solve='lu'``, ``'gmres'`` or ``'bicgstab'``.
    """

    def G(x, theta):
        z, nu, lam = x
        lagrangian_grad = jax.grad(f)(z, theta)
        if eq_fun is not None:
            _, vjp_h = jax.vjp(lambda z_: eq_fun(z_, theta), z)
            lagrangian_grad = _tmap(jnp.add, lagrangian_grad, vjp_h(nu)[0])
        if ineq_fun is not None:
            _, vjp_c = jax.vjp(lambda z_: ineq_fun(z_, theta), z)
            lagrangian_grad = _tmap(jnp.add, lagrangian_grad, vjp_c(lam)[0])
        primal_eq = None if eq_fun is None else eq_fun(z, theta)
        compl = None if ineq_fun is None else _tmap(jnp.multiply, lam, ineq_fun(z, theta))
        return lagrangian_grad, primal_eq, compl

    return G


def proximal_gradient(f: Callable, prox: Callable, stepsize: float = 1.0) -> Callable:
    """G(x, θ) = prox_{ηg}(x - η∇₁f(x, θ_f), θ_g, η) - x, θ = (θ_f, θ_g) (jaxopt paper, eq. (7)).

    ``prox(y, theta_g, scaling)`` is the proximity operator of ``scaling · g(·, θ_g)``. The root
    is a minimizer of f + g for any η > 0 (Parikh & Boyd, 2014, p. 150); the map is differentiable
    a.e. since prox is 1-Lipschitz (Rademacher).
    """
    _check_stepsize(stepsize)

    def G(x, theta):
        theta_f, theta_g = theta
        y = _tmap(lambda xi, gi: xi - stepsize * gi, x, jax.grad(f)(x, theta_f))
        return _tmap(jnp.subtract, prox(y, theta_g, stepsize), x)

    return G


def projected_gradient(f: Callable, proj: Callable, stepsize: float = 1.0) -> Callable:
    """G(x, θ) = proj_C(x - η∇₁f(x, θ_f), θ_C) - x, θ = (θ_f, θ_C) (jaxopt paper, eq. (9)).

    ``proj(y, theta_C)`` is the Euclidean projection onto C(θ_C); the root solves
    min_{x ∈ C(θ_C)} f(x, θ_f) (eq. (8)). Prox-gradient with g the indicator of C.
    """
    _check_stepsize(stepsize)

    def G(x, theta):
        theta_f, theta_c = theta
        y = _tmap(lambda xi, gi: xi - stepsize * gi, x, jax.grad(f)(x, theta_f))
        return _tmap(jnp.subtract, proj(y, theta_c), x)

    return G


def kl_projection_simplex(y: ArrayLike, theta_c: Any = None) -> jax.Array:
    """KL (Bregman) projection of exp(y) onto the probability simplex: softmax(y) (jaxopt paper, eq. (10)).

    With φ(x) = ⟨x, log x - 1⟩, ∇φ* = exp and proj^φ_Δ(y) = argmin_{x∈Δ} KL(x, e^y) = softmax(y).
    """
    del theta_c
    return jax.nn.softmax(y, axis=-1)


def mirror_descent(f: Callable, bregman_projection: Callable = kl_projection_simplex,
                   mirror_map: Callable = jnp.log, stepsize: float = 1.0) -> Callable:
    """Mirror-descent fixed point (jaxopt paper, eq. (11)), θ = (θ_f, θ_C):

        x̂ = ∇φ(x),   y = x̂ - η∇₁f(x, θ_f),   G(x, θ) = proj^φ_C(y, θ_C) - x.

    Defaults give the KL geometry on the simplex: ∇φ = log, proj^φ = softmax (the entropic /
    exponentiated-gradient step). The solution must lie in the relative interior of dom φ.
    """
    _check_stepsize(stepsize)

    def G(x, theta):
        theta_f, theta_c = theta
        y = _tmap(lambda xh, gi: xh - stepsize * gi, _tmap(mirror_map, x), jax.grad(f)(x, theta_f))
        return _tmap(jnp.subtract, bregman_projection(y, theta_c), x)

    return G


def newton_fixed_point(root_fun: Callable, stepsize: float = 1.0) -> Callable:
    """Newton fixed point for a root of R(·, θ): G(x, θ) = -η[∂₁R(x, θ)]⁻¹R(x, θ) (jaxopt paper, eq. (14)).

    T(x, θ) = x - η[∂₁R]⁻¹R; at a root ∂₁T = (1-η)I, so the implicit system is η I J = -η∂₁R⁻¹∂₂R,
    the same Jacobian as the root form of R. With R = ∇₁f this is Newton's method for optimization.
    ``root_fun(x, θ)`` must map x to a pytree of the same size (∂₁R is formed densely).
    """
    _check_stepsize(stepsize)

    def G(x, theta):
        flat, unravel = ravel_pytree(x)
        r = lambda v: ravel_pytree(root_fun(unravel(v), theta))[0]  # noqa: E731
        step = jnp.linalg.solve(jax.jacfwd(r)(flat), r(flat))
        return unravel(-stepsize * step)

    return G


def block_proximal_gradient(f: Callable, proxes: Sequence[Callable],
                            stepsizes: Sequence[float] | float = 1.0) -> Callable:
    """Block proximal-gradient fixed point (jaxopt paper, eq. (15)), x = (x_1, ..., x_m):

        G_i(x, θ) = prox_{η_i g_i}(x_i - η_i[∇₁f(x, θ_f)]_i, θ_g[i], η_i) - x_i,   θ = (θ_f, θ_g).

    ``proxes[i](y_i, theta_g[i], scaling)`` is the prox of block i; with shared step sizes this is
    the proximal-gradient fixed point (7) with g = Σ g_i.
    """
    proxes = tuple(proxes)
    etas = (stepsizes,) * len(proxes) if isinstance(stepsizes, (int, float)) else tuple(stepsizes)
    if len(etas) != len(proxes):
        raise ValueError(f"`stepsizes` has {len(etas)} entries but there are {len(proxes)} blocks")
    for eta in etas:
        _check_stepsize(eta, "stepsizes")

    def G(x, theta):
        theta_f, theta_g = theta
        if len(x) != len(proxes):
            raise ValueError(f"x has {len(x)} blocks but {len(proxes)} proxes were given")
        grads = jax.grad(f)(x, theta_f)
        return tuple(
            _tmap(jnp.subtract, p(_tmap(lambda a, g: a - eta * g, xi, gi), thg, eta), xi)
            for p, xi, gi, thg, eta in zip(proxes, x, grads, theta_g, etas)
        )

    return G

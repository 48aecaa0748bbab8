"""The set-valued piggyback recursion along the iterates of x_{k+1} = F(x_k, θ).

Forward mode (slides "Main result" and "Consequences for VJPs and JVPs", Vaiter 2023):

    𝒥_0 = J0 (default {0} = {∂_θ x_0}),
    𝒥_{k+1} = {A J + B : [A, B] ∈ J_F(x_k, θ), J ∈ 𝒥_k},

with J_F(x_k, θ) the joint conservative Jacobian of F (``jacobian(F, argnums=(0, 1))``).
(M, J) ↦ M [J; I] is bilinear, so 𝒥_{k+1} = conv{W [V; I]} over vertices W of J_F and V of
𝒥_k; when either factor is a singleton the update is a linear image of the other set and keeps
its Minkowski-sum structure (no vertex enumeration).  JAX's own derivative (``jax.jacfwd`` of
each step, chained: the forward-mode Jacobian of x_k) is carried alongside and checked to lie
in 𝒥_k at every step.

Reverse mode: the joint row vectors [w̄ᵀ, θ̄ᵀ] start at {[wᵀ, 0]} and go back through
[w̄ᵀ, θ̄ᵀ] ↦ [w̄ᵀ A, θ̄ᵀ + w̄ᵀ B]; the result is {θ̄ᵀ + w̄ᵀ J : J ∈ J0}, which equals {wᵀ J : J ∈ 𝒥_t}.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._divergence import MAX_GROWTH, describe_divergence, first_divergent_step
from ._jacobian import value_and_jacobian
from ._matrix_set import MatrixSet, SetTooLargeError

__all__ = ["piggyback", "piggyback_vjp", "PiggybackResult", "PiggybackVJPResult"]


@dataclass(frozen=True)
class PiggybackResult:
    """Per iteration k = 0..steps (flat arrays; pytrees are raveled with ``ravel_pytree``).

    iterates[k]     x_k                                       (steps+1, n)
    ad_jacobians[k] JAX's forward-mode Jacobian ∂x_k/∂θ       (steps+1, n, p)
    sets[k]         𝒥_k as a ``MatrixSet`` of shape (n, p)
    sizes[k]        number of stored generators of 𝒥_k (``len``)
    diameters[k]    Frobenius diameter of 𝒥_k (exact, or an upper bound where
                    ``diameter_exact[k]`` is False: Σ_g diam(conv G_g) for a Minkowski sum)
    ad_in_set[k]    whether JAX's element lies in 𝒥_k (within ``check_tol``·(1 + ‖J‖))
    gaps[k]         gap(𝒥_k, limit) = max_{J∈𝒥_k} dist(J, limit) when ``limit`` was given
    tied_steps      the iterations k whose map J_F(x_k, θ) was not a singleton
    """

    iterates: np.ndarray
    ad_jacobians: np.ndarray
    sets: tuple
    sizes: np.ndarray
    diameters: np.ndarray
    diameter_exact: np.ndarray
    ad_in_set: np.ndarray
    gaps: np.ndarray | None
    tied_steps: tuple

    def __repr__(self):
        return (f"PiggybackResult(steps={len(self.sets) - 1}, n×p={self.sets[0].shape}, "
                f"max size={int(self.sizes.max())}, final diameter={self.diameters[-1]:.3e}, "
                f"tied steps={len(self.tied_steps)}, AD element always in set={bool(self.ad_in_set.all())})")


@dataclass(frozen=True)
class PiggybackVJPResult:
    """The reverse-mode set {θ̄ᵀ} (a ``MatrixSet`` of shape (1, p)) and JAX's VJP wᵀ ∂x_t/∂θ."""

    set: MatrixSet
    ad_vjp: np.ndarray
    ad_in_set: bool
    final_iterate: np.ndarray


def _flat_map(F, x0, theta):
    x_flat, unravel_x = jax.flatten_util.ravel_pytree(x0)
    t_flat, unravel_t = jax.flatten_util.ravel_pytree(theta)
    for name, v in (("x0", x_flat), ("theta", t_flat)):
        if not jnp.issubdtype(v.dtype, jnp.floating):
            raise TypeError(f"{name}: expected floating-point leaves, got dtype {v.dtype}")
        if not bool(jnp.all(jnp.isfinite(v))):
            raise ValueError(f"{name}: contains non-finite values")

    def Ff(x, t):
        out = F(unravel_x(x), unravel_t(t))
        out_flat, _ = jax.flatten_util.ravel_pytree(out)
        if out_flat.shape != x.shape:
            raise ValueError(
                f"F: the iteration map must return a state with the structure of x0 "
                f"({x.shape[0]} numbers), got {out_flat.shape[0]}"
            )
        return out_flat

    return Ff, jnp.asarray(x_flat, jnp.float64), jnp.asarray(t_flat, jnp.float64)


def _step_set(JF: MatrixSet, S: MatrixSet, n: int, p: int, max_vertices) -> MatrixSet:
    """{A J + B : [A, B] ∈ JF, J ∈ S} (see module docstring)."""
    lift = lambda J: np.concatenate([J, np.broadcast_to(np.eye(p), J.shape[:-2] + (p, p))], axis=-2)  # noqa: E731
    if S.is_singleton:
        return JF.right_multiply(lift(S.center))
    if JF.is_singleton:
        W = JF.center
        A, B = W[:, :n], W[:, n:]
        return S.left_multiply(A).translate(B)
    V = S.enumerate_vertices(max_vertices)
    W = JF.enumerate_vertices(max_vertices)
    return MatrixSet(np.einsum("imk,jkp->ijmp", W, lift(V)).reshape(-1, n, p))


def _diameter(S: MatrixSet, max_vertices):
    if S.is_singleton:
        return 0.0, True
    if S.num_candidate_vertices <= (max_vertices or MatrixSet.max_vertices):
        try:
            return S.diameter(), True
        except SetTooLargeError:
            pass
    bound = 0.0
    for G in S.groups:
        Gf = G.reshape(len(G), -1)
        sq = np.sum(Gf**2, axis=1)
        bound += math.sqrt(max(0.0, float((sq[:, None] + sq[None, :] - 2 * Gf @ Gf.T).max())))
    return bound, False


def _initial_set(J0, n, p) -> MatrixSet:
    if J0 is None:
        return MatrixSet(np.zeros((n, p)))
    if isinstance(J0, MatrixSet):
        S = J0
    else:
        S = MatrixSet(np.asarray(J0, dtype=np.float64))
    if S.shape != (n, p):
        raise ValueError(f"J0: expected the Jacobian of x0 with respect to theta, of shape {(n, p)}, got {S.shape}")
    return S


def _check_divergence(iterates, who: str):
    """Raise at the newest iterate if it is divergent (criterion of ``_divergence``)."""
    k = len(iterates) - 1
    # ‖x_0‖_∞, ‖x_1‖_∞ (the scale) and ‖x_k‖_∞; a nan entry gives nan, which the criterion flags
    sup = [float(np.max(np.abs(x), initial=0.0)) for x in (iterates if k < 2 else (*iterates[:2], iterates[-1]))]
    if first_divergent_step(sup) >= 0:
        raise ValueError(f"{who}: iteration diverged at step {k}: "
                         f"{describe_divergence(k, sup[-1], max(sup[:2]), MAX_GROWTH)}")


def _check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps: expected a nonnegative int, got {steps!r}")
    if steps < 0:
        raise ValueError(f"steps: expected a nonnegative int, got {steps!r}")


def piggyback(F: Callable[[Any, Any], Any], x0: Any, theta: Any, steps: int, *, J0: MatrixSet | ArrayLike | None = None,
              limit: MatrixSet | None = None, tol: float = 0.0,
              max_vertices: int | None = None, check_tol: float = 1e-8) -> PiggybackResult:
    """Run x_{k+1} = F(x_k, θ) and the set-valued piggyback recursion next to JAX's derivative.

    ``F(x, theta)`` is a pure JAX map (pytrees allowed; the state keeps the structure of
    ``x0``).  ``J0`` is the initial Jacobian ∂_θ x_0 (a matrix or a ``MatrixSet`` of shape
    (n, p); default 0).  ``limit`` (a ``MatrixSet``, e.g. ``theory.fixed_set`` at the solution)
    adds ``gaps``.  ``tol`` is passed to ``jacobian`` (ties within tol are active).  Sets whose
    vertices must be enumerated are limited by ``max_vertices`` (``SetTooLargeError`` names
    the step).  A non-finite iterate raises ``ValueError`` naming the step.  If JAX's element
    ever falls outside 𝒥_k a ``RuntimeWarning`` is emitted (it signals a ``custom_jvp`` whose
    rule is not an element of the conservative Jacobian of its primal code).
    """
    _check_steps(steps)
    if limit is not None and not isinstance(limit, MatrixSet):
        raise TypeError(f"limit: expected a MatrixSet, got {type(limit).__name__}")
    Ff, x, t = _flat_map(F, x0, theta)
    n, p = x.shape[0], t.shape[0]
    S = _initial_set(J0, n, p)
    if limit is not None and limit.shape != (n, p):
        raise ValueError(f"limit: expected a set of shape {(n, p)}, got {limit.shape}")
    vj = value_and_jacobian(Ff, argnums=(0, 1), tol=tol, fast=True)
    jac_ad = jax.jit(jax.jacfwd(Ff, argnums=(0, 1)))
    J_ad = np.asarray(S.center)

    iterates, ads, sets = [np.asarray(x)], [J_ad], [S]
    tied = []
    for k in range(steps):
        try:
            x_next, JF = vj(x, t)
        except SetTooLargeError as exc:
            raise SetTooLargeError(f"piggyback, step {k}: {exc}") from exc
        A, B = (np.asarray(M) for M in jac_ad(x, t))
        if not JF.is_singleton:
            tied.append(k)
        try:
            S = _step_set(JF, S, n, p, max_vertices)
        except SetTooLargeError as exc:
            raise SetTooLargeError(f"piggyback, step {k}: {exc}") from exc
        J_ad = A @ J_ad + B
        x = jnp.asarray(x_next)
        iterates.append(np.asarray(x))
        _check_divergence(iterates, "piggyback")
        if not np.all(np.isfinite(J_ad)):
            raise ValueError(f"piggyback: the derivative recursion diverged at step {k + 1}: JAX's Jacobian "
                             "of the iterate is not finite")
        ads.append(J_ad)
        sets.append(S)

    diams = [_diameter(s, max_vertices) for s in sets]
    in_set = np.array([s.contains(J, tol=check_tol * (1.0 + float(np.linalg.norm(J)))) for s, J in zip(sets, ads)])
    if not in_set.all():
        warnings.warn(
            f"piggyback: JAX's derivative left the conservative set at iterations {np.flatnonzero(~in_set).tolist()}",
            RuntimeWarning,
            stacklevel=2,
        )
    gaps = None
    if limit is not None:
        gaps = np.array([_gap(s, limit, max_vertices) for s in sets])
    return PiggybackResult(
        iterates=np.stack(iterates),
        ad_jacobians=np.stack(ads),
        sets=tuple(sets),
        sizes=np.array([len(s) for s in sets]),
        diameters=np.array([d for d, _ in diams]),
        diameter_exact=np.array([e for _, e in diams]),
        ad_in_set=in_set,
        gaps=gaps,
        tied_steps=tuple(tied),
    )


def _gap(X: MatrixSet, Y: MatrixSet, max_vertices) -> float:
    """max_{x∈X} dist(x, Y): attained at a vertex of X (distance to a convex set is convex)."""
    return max(Y.distance(V) for V in X.enumerate_vertices(max_vertices))


def piggyback_vjp(F: Callable[[Any, Any], Any], x0: Any, theta: Any, steps: int, w: ArrayLike, *,
                  J0: MatrixSet | ArrayLike | None = None, tol: float = 0.0,
                  max_vertices: int | None = None, check_tol: float = 1e-8) -> PiggybackVJPResult:
    """Reverse-mode counterpart: the set of VJPs {wᵀ J : J ∈ 𝒥_t} by the backward recursion of the
    slides ("Consequences for VJPs and JVPs"), next to JAX's ``jax.vjp`` of the unrolled iterations."""
    _check_steps(steps)
    Ff, x, t = _flat_map(F, x0, theta)
    n, p = x.shape[0], t.shape[0]
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    if w.shape != (n,):
        raise ValueError(f"w: expected a cotangent of the final iterate with {n} entries, got shape {w.shape}")
    S0 = _initial_set(J0, n, p)
    vj = value_and_jacobian(Ff, argnums=(0, 1), tol=tol, fast=True)
    JFs, iterates = [], [np.asarray(x)]
    for k in range(steps):
        x_next, JF = vj(x, t)
        JFs.append(JF)
        x = jnp.asarray(x_next)
        iterates.append(np.asarray(x))
        _check_divergence(iterates, "piggyback_vjp")
    # joint row vectors [w̄ᵀ, θ̄ᵀ]
    R = MatrixSet(np.concatenate([w, np.zeros(p)])[None, :])
    for JF in reversed(JFs):
        if R.is_singleton:
            r = R.center
            R = JF.left_multiply(r[:, :n]).translate(np.concatenate([np.zeros((1, n)), r[:, n:]], axis=1))
        elif JF.is_singleton:
            W = JF.center
            M = np.block([[W[:, :n], W[:, n:]], [np.zeros((p, n)), np.eye(p)]])
            R = R.right_multiply(M)
        else:
            V = R.enumerate_vertices(max_vertices)
            Ws = JF.enumerate_vertices(max_vertices)
            rows = [np.concatenate([v[:, :n] @ W[:, :n], v[:, n:] + v[:, :n] @ W[:, n:]], axis=1)
                    for v in V for W in Ws]
            R = MatrixSet(np.stack(rows))
    # θ̄ᵀ + w̄ᵀ J, J ∈ J0 (bilinear in (R, J0): vertices when both are sets)
    if S0.is_singleton:
        M = np.concatenate([S0.center, np.eye(p)], axis=0)
        out = R.right_multiply(M)
    else:
        out = MatrixSet(np.stack([v[:, :n] @ J + v[:, n:] for v in R.enumerate_vertices(max_vertices)
                                  for J in S0.enumerate_vertices(max_vertices)]))

    J0m = np.asarray(S0.center)

    def unrolled(xx, tt):
        for _ in range(steps):
            xx = Ff(xx, tt)
        return xx

    _, pull = jax.vjp(unrolled, _flat_map(F, x0, theta)[1], t)
    x_bar, t_bar = pull(jnp.asarray(w))
    ad = np.asarray(t_bar) + np.asarray(x_bar) @ J0m
    ok = out.contains(ad[None, :], tol=check_tol * (1.0 + float(np.linalg.norm(ad))))
    if not ok:
        warnings.warn("piggyback_vjp: JAX's VJP is not in the conservative set", RuntimeWarning, stacklevel=2)
    return PiggybackVJPResult(set=out, ad_vjp=ad, ad_in_set=bool(ok), final_iterate=np.asarray(x))

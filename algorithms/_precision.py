"""Precision of the Jacobian estimators of :func:`iterate` against a reference Jacobian.

For k in ``steps`` and each estimator (autodiff, implicit, one-step, truncated) this measures

    e_k = ‖J^est x_k(θ) - J_θ x̄(θ)‖    and    ‖x_k(θ) - x̄(θ)‖,

where the reference J_θ x̄ is a closed form when one is supplied, else the implicit Jacobian
(I - ∂ₓF)⁻¹∂_θF at a very accurate fixed point (iterated until ‖F(x) - x‖ ≤ tol). These are the
quantities of the one-step paper's Figure 4 and of the jaxopt paper's Figure 2 (Theorem 1); the
theoretical bounds live in ``theory`` (which this package does not import).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from conservative._divergence import MAX_GROWTH, describe_divergence, first_divergent_step

from ._iterate import MODES
from ._linear_solve import DENSE_SOLVERS, factor


@dataclasses.dataclass(frozen=True)
class EstimatorErrors:
    """Errors of the estimators along the iterations (NumPy arrays indexed like ``steps``).

    ``iterate_error[i]`` = ‖x_k - x̄‖₂ and ``previous_iterate_error[i]`` = ‖x_{k-1} - x̄‖₂ for
    k = ``steps[i]`` (the distances the papers' bounds take: implicit at x_k, one-step at x_{k-1};
    see ``theory.estimator_error_bounds``); ``jacobian_error[mode][i]`` = ‖J^mode x_k - J_ref‖.
    """

    steps: np.ndarray
    iterate_error: np.ndarray
    jacobian_error: dict
    x_ref: np.ndarray
    jac_ref: np.ndarray
    previous_iterate_error: np.ndarray


def flat_jacobian(fun: Callable, theta: Any) -> jax.Array:
    """Jacobian of θ ↦ ravel(fun(θ)) w.r.t. ravel(θ) as a dense matrix (forward mode)."""
    flat, unravel = ravel_pytree(theta)
    return jax.jacfwd(lambda v: ravel_pytree(fun(unravel(v)))[0])(flat)


def _flat_problem(F: Callable, x0, theta, optimality_fun: Callable | None):
    """F (and G) on raveled x and θ, with a shape check of F's output and finite x0, θ."""
    fx0, unravel_x = ravel_pytree(x0)
    ft, unravel_t = ravel_pytree(theta)
    for name, tree in (("x0", x0), ("theta", theta)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            if not np.all(np.isfinite(np.asarray(leaf))):
                raise ValueError(f"`{name}{jax.tree_util.keystr(path)}` contains non-finite values (inf/nan)")

    def Ff(x, t):
        out = ravel_pytree(F(unravel_x(x), unravel_t(t)))[0]
        if out.shape != x.shape:
            raise ValueError(f"F(x, θ) must return a pytree of the size of x0 ({x.size}), got {out.size} entries")
        return out

    Gf = None if optimality_fun is None else (
        lambda x, t: ravel_pytree(optimality_fun(unravel_x(x), unravel_t(t)))[0])
    return Ff, Gf, fx0, ft, unravel_x


@functools.partial(jax.jit, static_argnames=("Ff", "tol", "maxiter"))
def _fixed_point(Ff, x0, t, tol: float, maxiter: int):
    """Iterate x ← F(x, θ) until ‖F(x) - x‖_∞ ≤ tol or ``maxiter`` steps; returns (x, gap)."""

    def cond(c):
        x, fx, k = c
        return (jnp.max(jnp.abs(fx - x)) > tol) & (k < maxiter)

    _, x, _ = lax.while_loop(cond, lambda c: (c[1], Ff(c[1], t), c[2] + 1), (x0, Ff(x0, t), 0))
    return x, jnp.max(jnp.abs(Ff(x, t) - x))


def _implicit_system(jac, Ff, Gf, x, t, AB=None):
    """(M, R) with J_θx = M⁻¹R: M = I - ∂ₓF, R = ∂_θF (``AB`` = [∂ₓF, ∂_θF] when already
    computed), or M = ∂₁G, R = -∂₂G (root form)."""
    if Gf is None:
        A, B = jac(Ff, (0, 1))(x, t) if AB is None else AB
        return jnp.eye(x.size, dtype=x.dtype) - A, B
    M, R = jac(Gf, (0, 1))(x, t)
    return M, -R


@functools.partial(jax.jit, static_argnames=("Ff", "Gf"))
def _reference_system(Ff, Gf, x, t):
    return _implicit_system(_jacobian_mode(x, t), Ff, Gf, x, t)


def _jacobian_mode(x, t):
    """Dense [∂ₓ, ∂_θ] Jacobians: n reverse passes when θ has more entries than x, else forward."""
    return jax.jacrev if t.size > x.size else jax.jacfwd


def reference_jacobian(F: Callable, x0: Any, theta: Any, *, tol: float = 1e-14, maxiter: int = 1_000_000,
                       optimality_fun: Callable | None = None, solve: str = "lu") -> tuple[Any, jax.Array]:
    """(x̄, J_θx̄): iterate F to ‖F(x) - x‖_∞ ≤ tol, then the implicit Jacobian there (dense).

    J_θx̄ = (I - ∂ₓF(x̄, θ))⁻¹ ∂_θF(x̄, θ), or -∂₁G⁻¹∂₂G with ``optimality_fun=G`` (jaxopt paper,
    eqs. (2)-(3)), by a dense factorization ``solve`` ('lu' or 'cholesky') whose condition number
    is checked. Returns x̄ (a pytree like ``x0``) and J_θx̄ as an (size of x) × (size of θ) matrix.

    Raises ``ValueError`` when the iteration stops at ``maxiter`` before reaching ``tol``, or
    when the system is numerically singular at x̄.
    """
    if solve not in DENSE_SOLVERS:
        raise ValueError(f"`solve` must be one of {DENSE_SOLVERS} for the reference Jacobian "
                         f"(a dense factorization), got {solve!r}")
    Ff, Gf, fx0, ft, unravel_x = _flat_problem(F, x0, theta, optimality_fun)
    x, gap = _fixed_point(Ff, fx0, ft, float(tol), int(maxiter))
    if not float(gap) <= 10 * tol:
        raise ValueError(
            f"reference_jacobian: the iteration did not reach ‖F(x) - x‖ ≤ tol={tol:.1e} within "
            f"maxiter={maxiter} steps (gap {float(gap):.3e}); raise `maxiter` or `tol`"
        )
    M, R = _reference_system(Ff, Gf, x, ft)
    what = "∂₁G (the optimality map's Jacobian)" if Gf is not None else "I - ∂ₓF at the reference fixed point"
    fwd, _ = factor(M, solve, what)
    return unravel_x(x), fwd(R)


@functools.partial(jax.jit, static_argnames=("Ff", "Gf", "K", "modes", "truncate", "ord"))
def _sweep(Ff, Gf, x0, t, J_ref, K: int, modes: tuple, truncate: int | None, trunc_at, ord):
    """One compiled pass over k = 1..K of the estimators' Jacobians (one-step paper, §2.1).

    With [A_k, B_k] = [∂ₓF, ∂_θF](x_{k-1}, θ) materialized once per step (reverse mode when θ is
    larger than x), the estimators at x_k are

        autodiff   J_k = A_k J_{k-1} + B_k, J_0 = 0          (piggyback recursion, eq. (2))
        one-step   B_k                                          (eq. (4))
        implicit   (I - A_{k+1})⁻¹ B_{k+1}, i.e. at x_k         (eq. (3)), or -∂₁G⁻¹∂₂G at x_k
        truncated  the recursion restarted from J = 0 at x_{k-K}

    and only their distances to ``J_ref`` (matrix norm ``ord``) leave the loop; estimators not in
    ``modes`` are not computed (their errors come back as nan).
    """
    n = x0.size
    jac = _jacobian_mode(x0, t)
    joint = jac(Ff, (0, 1))
    err = lambda M: jnp.linalg.norm(M - J_ref, ord=ord)  # noqa: E731

    def implicit(x, A, B):
        return jnp.linalg.solve(*_implicit_system(jac, Ff, Gf, x, t, (A, B)))

    nan = jnp.full((), jnp.nan, x0.dtype)

    def body(carry, _):
        x, J = carry
        A, B = joint(x, t)
        J = A @ J + B if "autodiff" in modes else J
        x_next = Ff(x, t)
        return (x_next, J), (x_next, err(J) if "autodiff" in modes else nan,
                             err(B) if "one_step" in modes else nan,
                             err(implicit(x, A, B)) if "implicit" in modes else nan)

    J0 = jnp.zeros((n, t.size), x0.dtype)
    (xK, _), (xs, e_ad, e_os, e_id_prev) = lax.scan(body, (x0, J0), None, length=K)
    last = err(implicit(xK, *joint(xK, t))) if "implicit" in modes else nan
    e_id = jnp.concatenate([e_id_prev[1:], last[None]])
    xs_all = jnp.concatenate([x0[None], xs])

    def truncated(k):  # J^TR at x_k: K steps of the recursion from J = 0 at x_{k-K} (fewer if k < K)
        start = jnp.maximum(k - truncate, 0)

        def step(_, c):
            x, J = c
            A, B = joint(x, t)
            return Ff(x, t), A @ J + B

        _, J = lax.fori_loop(0, k - start, step, (xs_all[start], J0))
        return err(J)

    e_tr = lax.map(truncated, trunc_at) if truncate is not None else None
    return xs, e_ad, e_os, e_id, e_tr


def estimator_errors(F: Callable, x0: Any, theta: Any, steps: Sequence[int], *,
                     modes: Sequence[str] = ("autodiff", "implicit", "one_step"),
                     truncate: int | None = None, x_ref: Any = None, jac_ref: ArrayLike | None = None,
                     ord: int | float | str = 2,
                     optimality_fun: Callable | None = None, solve: str = "lu") -> EstimatorErrors:
    """Errors ‖J^mode x_k - J_ref‖ (matrix norm ``ord``, default spectral) and ‖x_k - x̄‖₂ for k in steps.

    The Jacobians of :func:`iterate`'s estimators at every k ≤ max(steps) come from one compiled
    sweep (see ``_sweep``): the autodiff estimator by the piggyback recursion
    J_k = ∂ₓF J_{k-1} + ∂_θF, one-step by ∂_θF(x_{k-1}, θ), implicit by (I - ∂ₓF)⁻¹∂_θF at x_k
    (or -∂₁G⁻¹∂₂G with ``optimality_fun``), truncated by restarting the recursion K steps back.
    These are the derivatives that ``jax.jacfwd(lambda θ: iterate(F, x0, θ, k, mode=...))``
    returns (tested), at the cost of one dense [∂ₓF, ∂_θF] per step instead of one compiled
    program per (k, mode). Implicit Jacobians use a dense solve; ``solve`` ('lu' or
    'cholesky') is the factorization of the reference's system.

    ``x_ref``/``jac_ref``: reference fixed point (pytree like x0) and flat Jacobian (n × m),
    e.g. from a closed form; computed by :func:`reference_jacobian` when omitted. ``truncate``
    is the K of the truncated estimator (required if ``"truncated"`` is in ``modes``).

    Raises ``ValueError`` when an iterate is not finite; warns (``RuntimeWarning``) when an
    estimator's Jacobian is not finite at some requested step (e.g. I - ∂ₓF singular there),
    whose error is then reported as ``nan``.
    """
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"`modes` entries must be in {MODES}, got {mode!r}")
    if "truncated" in modes:
        if truncate is None:
            raise ValueError("`truncate` is required when 'truncated' is in `modes`")
        if isinstance(truncate, bool) or not isinstance(truncate, (int, np.integer)):
            raise TypeError(f"`truncate` must be a positive int, got {truncate!r}")
        if truncate < 1:
            raise ValueError(f"`truncate` must be a positive int, got {truncate!r}")
    if isinstance(steps, (str, bytes)) or not hasattr(steps, "__iter__"):
        raise TypeError(f"`steps` must be a sequence of positive ints, got {steps!r}")
    steps = list(steps)
    bad = [k for k in steps if isinstance(k, bool) or not isinstance(k, (int, np.integer))]
    if bad:
        raise TypeError(f"`steps` must contain ints (iteration counts), got {bad[0]!r} in {steps!r}")
    steps = [int(k) for k in steps]
    if not steps or min(steps) <= 0:
        raise ValueError(f"`steps` must be a non-empty list of positive ints, got {steps}")
    if x_ref is None or jac_ref is None:
        xr, jr = reference_jacobian(F, x0, theta, optimality_fun=optimality_fun, solve=solve)
        x_ref = xr if x_ref is None else x_ref
        jac_ref = jr if jac_ref is None else jac_ref
    x_ref_flat = np.asarray(ravel_pytree(x_ref)[0])
    jac_ref = np.asarray(jac_ref)
    Ff, Gf, fx0, ft, _ = _flat_problem(F, x0, theta, optimality_fun)
    if jac_ref.shape != (fx0.size, ft.size):
        raise ValueError(f"`jac_ref` must have shape (size of x, size of θ) = {(fx0.size, ft.size)}, "
                         f"got {jac_ref.shape}")

    trunc = int(truncate) if "truncated" in modes else None
    xs, e_ad, e_os, e_id, e_tr = _sweep(
        Ff, Gf, fx0, ft, jnp.asarray(jac_ref), max(steps), tuple(sorted(set(modes))), trunc, jnp.asarray(steps), ord)
    xs = np.asarray(jax.block_until_ready(xs))
    with np.errstate(invalid="ignore"):
        sup = np.concatenate([[np.max(np.abs(np.asarray(fx0)), initial=0.0)],
                              np.where(np.all(np.isfinite(xs), axis=1), np.max(np.abs(xs), axis=1, initial=0.0),
                                       np.inf)])
    first = first_divergent_step(sup)
    if first >= 0:
        raise ValueError(f"the iteration diverged at step {first}: "
                         f"{describe_divergence(first, float(sup[first]), float(np.max(sup[:2])), MAX_GROWTH)}")
    idx = np.asarray(steps) - 1
    curves = {"autodiff": np.asarray(e_ad)[idx], "one_step": np.asarray(e_os)[idx],
              "implicit": np.asarray(e_id)[idx], "truncated": None if e_tr is None else np.asarray(e_tr)}
    jac_err = {mode: curves[mode] for mode in modes}
    for mode, e in jac_err.items():
        bad = [k for k, v in zip(steps, e) if not np.isfinite(v)]
        if bad:
            warnings.warn(f"estimator_errors: the {mode} Jacobian is not finite at k = {bad}"
                          + (" (I - ∂ₓF or ∂₁G singular there)" if mode == "implicit" else ""),
                          RuntimeWarning, stacklevel=2)
    xs_all = np.concatenate([np.asarray(fx0)[None], xs])
    it_err = np.linalg.norm(xs_all - x_ref_flat, axis=1)
    return EstimatorErrors(np.asarray(steps), it_err[idx + 1], jac_err, x_ref_flat, jac_ref, it_err[idx])

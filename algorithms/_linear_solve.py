"""Linear solvers for implicit differentiation: dense LU / Cholesky and matrix-free Krylov methods.

Implicit differentiation reduces to one linear system per derivative (jaxopt paper, eq. (2)):

    A J = B,   A = -∂₁G(x*, θ),   B = ∂₂G(x*, θ),

solved for J v (forward mode, ``A (Jv) = B v``) or for ``u`` with ``Aᵀ u = v`` (reverse mode,
then ``vᵀ J = uᵀ B``). Small problems materialize A and factor it once (LU, or Cholesky when A
is symmetric positive definite); large ones use matrix-free Krylov methods that only need
``v ↦ A v``: conjugate gradient (A symmetric definite), GMRES and BiCGSTAB (general A), or CG
on the normal equation ``AᵀA x = Aᵀ b`` with ``Aᵀ`` obtained by ``jax.linear_transpose``
(jaxopt paper, §2.1, "Computing JVPs and VJPs").

The Krylov methods are written here (not ``jax.scipy.sparse.linalg``) so that they report their
final relative residual and iteration count: a solve whose true relative residual exceeds 10·``tol``
(slack for the drift between recursive and true residuals) triggers a :class:`LinearSolveWarning`
naming the solver, the residual and the iterations, both eagerly
and under ``jit`` (through a host callback, see :func:`report`). A numerically singular dense system raises
a ``ValueError`` with the condition number when values are concrete, and warns under a trace.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax import lax

from ._strategies import GMRES, STRINGS, Auto, _Solve, as_strategy, choose_solver

DENSE_SOLVERS = ("lu", "cholesky")
ITERATIVE_SOLVERS = ("cg", "gmres", "bicgstab", "normal_cg")
#: the strings ``solve=`` accepts (strategy objects and callables too, see ``_strategies``)
SOLVERS = DENSE_SOLVERS + ITERATIVE_SOLVERS
SOLVE_STRINGS = STRINGS

#: condition numbers above this trigger an :class:`IllConditionedWarning`.
COND_WARN = 1e10
#: condition numbers above this (about 1/(eps·10)) mean the system is numerically singular.
COND_SINGULAR = 0.1 / float(np.finfo(np.float64).eps)


class LinearSolveWarning(UserWarning):
    """A matrix-free linear solve stopped before reaching its tolerance."""


class IllConditionedWarning(UserWarning):
    """The linear system of implicit differentiation is ill-conditioned (or singular under a trace)."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SolveInfo:
    """Diagnostics of one linear solve: final relative residual ‖Ax - b‖/‖b‖ and iterations."""

    residual: jax.Array
    iterations: jax.Array


# ----------------------------------------------------------------------------------------------
# reporting: raise eagerly, warn from a host callback under a trace


def _is_traced(values) -> bool:
    return any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(values))


def host_values(*values):
    """The concrete JAX arrays ``values`` as NumPy arrays, raising if their computation failed.

    ``jax.block_until_ready`` comes first: it raises the error of a failed asynchronous
    computation (e.g. out of memory), whereas converting such an array with ``np.asarray``
    directly can block forever.
    """
    values = jax.block_until_ready(values)
    return tuple(np.asarray(v) for v in values)


@jax.custom_jvp
def _tie(leaf, zero):
    """``leaf + zero`` whose tangent is ``leaf_dot * (1 + zero)``: keeps ``zero`` (a host check's
    result, exactly 0) alive in the primal and in the tangent computation, hence also in the
    transpose, without changing any value."""
    return leaf + zero


@_tie.defjvp
def _tie_jvp(primals, tangents):
    leaf, zero = primals
    leaf_dot, _ = tangents
    return leaf + zero, leaf_dot * (1 + zero)


def report(attach, check: Callable[..., None], *values, flag=None, scale: bool = False):
    """Run ``check(*values, traced=...)`` on concrete values now, else at run time; return ``attach``.

    ``check`` receives NumPy arrays and raises (``traced=False``) or warns (``traced=True``:
    an exception inside a compiled computation would surface as an opaque runtime error).

    Under a trace the check runs in a host callback whose (zero) result is added to the first
    floating leaf of the pytree ``attach``, which is returned: the data dependency keeps the
    callback alive and orders it before whatever uses ``attach``. The callback is a
    ``jax.pure_callback`` (no side effect declared), not ``jax.debug.callback``: a computation
    with effects loses JAX's fast C++ dispatch path (≈ 80 µs per call on CPU, measured), which
    dominates small problems. ``flag`` (a boolean scalar, True when something is wrong) guards
    the callback with ``lax.cond`` so that a healthy run pays no host round trip; under ``vmap``
    both branches may run, so ``check`` must itself decide whether to warn.

    The zero is tied to the primal *and* to the tangent of ``attach`` (``_tie``): under
    ``jit(grad(...))`` the primal output is often unused and dead-code elimination would drop a
    callback attached to it alone. ``scale=True`` attaches by ``leaf * (1 + zero)``: use it
    when ``attach`` is itself a tangent computed inside a JVP rule (the transpose of a product
    needs the factor, so reverse mode keeps the callback; an added constant would be dropped).
    """
    if not _is_traced(values):
        check(*host_values(*values), traced=False)
        return attach
    leaves, treedef = jax.tree_util.tree_flatten(attach)
    i = next((i for i, leaf in enumerate(leaves) if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)), None)
    if i is None:
        raise TypeError("report(attach, ...) needs a floating leaf in `attach` to carry the check")
    dtype = jnp.result_type(leaves[i])
    values = [lax.stop_gradient(v) for v in values]  # diagnostics are not differentiated
    ndim0 = jnp.ndim(values[0])

    def host(*v):
        check(*v, traced=True)
        # under vmap (vmap_method='broadcast_all') every argument gains the same leading batch axes
        return np.zeros(np.shape(v[0])[: np.ndim(v[0]) - ndim0], dtype)

    def call():
        return jax.pure_callback(host, jax.ShapeDtypeStruct((), dtype), *values,
                                 vmap_method="broadcast_all")

    zero = call() if flag is None else lax.cond(flag, call, lambda: jnp.zeros((), dtype))
    leaves[i] = leaves[i] * (1 + zero) if scale else _tie(leaves[i], zero)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _check_converged(name: str, tol: float, detail: str = ""):
    def check(residual, iterations, traced):
        residual, iterations = np.asarray(residual), np.asarray(iterations)
        bad = ~(residual <= 10 * tol)  # 10x slack: recurrence vs. true residual drift
        if np.any(bad):
            res = float(np.max(np.where(np.isnan(residual), np.inf, residual)))
            its = int(np.max(iterations))
            after = f" after {its} iterations" if its >= 0 else ""
            warnings.warn(
                f"linear solver {name!r}{detail} did not converge: relative residual {res:.3e} > "
                f"tol={tol:.1e}{after}; the derivative is inaccurate: increase `maxiter`, "
                "or choose another `solve=` (e.g. 'lu' for small systems, a preconditioner)",
                LinearSolveWarning,
                stacklevel=2,
            )

    return check


def check_solver_converged(who: str, what: str, tol: float, maxiter: int):
    """A check for :func:`report`: a solver loop that stopped with ``residual`` above ``tol`` (at
    ``maxiter``, or on a nan) raises ``ValueError`` on concrete values and warns under a trace."""

    def check(residual, iterations, traced):
        r = np.asarray(residual)
        if np.all(r <= tol):
            return
        worst = float(np.max(np.where(np.isnan(r), np.inf, r)))
        msg = (f"{who} did not converge: {what} = {worst:.3e} > tol={tol:.1e} after "
               f"{int(np.max(iterations))} iterations (maxiter={maxiter}); the returned point is not a "
               "solution: raise `maxiter`, check the data, or start closer")
        if traced:
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        else:
            raise ValueError(msg)

    return check


# ----------------------------------------------------------------------------------------------
# Krylov methods (flat float vectors; matvec is linear)


def _default_maxiter(n: int, maxiter: int | None) -> int:
    return int(maxiter) if maxiter is not None else max(10 * n, 100)


def _identity(v):
    return v


def cg(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, *, tol: float = 1e-10, maxiter: int | None = None,
       x0: jax.Array | None = None,
       preconditioner: Callable[[jax.Array], jax.Array] | None = None) -> tuple[jax.Array, SolveInfo]:
    """Preconditioned conjugate gradient for a symmetric definite A (positive or negative).

    ``preconditioner``: a linear v ↦ P v with P ≈ A⁻¹ symmetric definite of the same sign (or
    None). Stops when ‖b - A x‖ ≤ tol·‖b‖ (recursive residual) or after ``maxiter`` iterations.
    Returns (x, SolveInfo) with the true relative residual.
    """
    maxiter = _default_maxiter(b.size, maxiter)
    prec = _identity if preconditioner is None else preconditioner
    bnorm = jnp.linalg.norm(b)
    atol2 = (tol * bnorm) ** 2
    x = jnp.zeros_like(b) if x0 is None else x0
    r = b - matvec(x) if x0 is not None else b
    z = prec(r)
    rz = jnp.vdot(r, z)
    rr = jnp.vdot(r, r)

    def cond(c):
        *_, rr, k = c
        return (rr > atol2) & (k < maxiter)

    def body(c):
        x, r, p, rz, _, k = c
        ap = matvec(p)
        alpha = rz / jnp.vdot(p, ap)
        x = x + alpha * p
        r = r - alpha * ap
        z = r if preconditioner is None else prec(r)
        rz_new = jnp.vdot(r, z)
        rr = rz_new if preconditioner is None else jnp.vdot(r, r)
        p = z + (rz_new / rz) * p
        return x, r, p, rz_new, rr, k + 1

    x, *_, k = lax.while_loop(cond, body, (x, r, z, rz, rr, 0))
    return x, _info(matvec, x, b, k)


def bicgstab(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, *, tol: float = 1e-10, maxiter: int | None = None,
             preconditioner: Callable[[jax.Array], jax.Array] | None = None) -> tuple[jax.Array, SolveInfo]:
    """Right-preconditioned BiCGSTAB (van der Vorst, 1992) for a general nonsingular A.

    With P ≈ A⁻¹ it runs on A P y = b and returns x = P y. Returns (x, SolveInfo).
    """
    maxiter = _default_maxiter(b.size, maxiter)
    prec = _identity if preconditioner is None else preconditioner
    bnorm = jnp.linalg.norm(b)
    atol = tol * bnorm
    tiny = jnp.finfo(b.dtype).tiny
    x = jnp.zeros_like(b)
    r = b
    rhat = b
    one = jnp.ones((), b.dtype)
    init = (x, r, jnp.zeros_like(b), jnp.zeros_like(b), one, one, one, 0, False)

    def cond(c):
        _, r, _, _, _, _, _, k, broke = c
        return (jnp.linalg.norm(r) > atol) & (k < maxiter) & ~broke

    def body(c):
        x, r, p, v, rho, alpha, omega, k, _ = c
        rho_new = jnp.vdot(rhat, r)
        beta = (rho_new / rho) * (alpha / omega)
        p = r + beta * (p - omega * v)
        phat = prec(p)
        v = matvec(phat)
        alpha = rho_new / jnp.vdot(rhat, v)
        s = r - alpha * v
        shat = prec(s)
        t = matvec(shat)
        tt = jnp.vdot(t, t)
        omega = jnp.where(tt > tiny, jnp.vdot(t, s) / jnp.where(tt > tiny, tt, 1.0), 0.0)
        x_new = x + alpha * phat + omega * shat
        r_new = s - omega * t
        broke = (jnp.abs(rho_new) <= tiny) | (jnp.abs(omega) <= tiny) | ~jnp.isfinite(alpha)
        # on breakdown keep the half step if it is finite, else the previous iterate
        half = x + alpha * phat
        ok_half = jnp.all(jnp.isfinite(half))
        x_new = jnp.where(broke, jnp.where(ok_half, half, x), x_new)
        r_new = jnp.where(broke, jnp.where(ok_half, s, r), r_new)
        return x_new, r_new, p, v, rho_new, alpha, omega, k + 1, broke

    x, *_, k, _ = lax.while_loop(cond, body, init)
    return x, _info(matvec, x, b, k)


def gmres(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, *, tol: float = 1e-10, maxiter: int | None = None,
          restart: int = 30,
          preconditioner: Callable[[jax.Array], jax.Array] | None = None) -> tuple[jax.Array, SolveInfo]:
    """Restarted, right-preconditioned GMRES(m) (Saad & Schultz, 1986), m = ``restart``.

    A cycle builds the Arnoldi basis V of the Krylov space of A P from the current residual
    (classical Gram-Schmidt applied twice, two matrix-vector products with V per step) and
    reduces the Hessenberg matrix H by Givens rotations as it grows, so that the least-squares
    residual min_y ‖β e₁ - H y‖ is known at every step: the cycle stops at the first step where
    it is ≤ tol·‖b‖ (not after all m steps), solves the triangular system and updates
    x ← x + P V y. Cycles repeat from the true residual until it is ≤ tol·‖b‖ or ``maxiter``
    Arnoldi steps (over all cycles) are spent. Returns (x, SolveInfo) with the Arnoldi steps.
    """
    n = b.size
    maxiter = _default_maxiter(n, maxiter)
    m = int(min(restart, n, maxiter))
    prec = _identity if preconditioner is None else preconditioner
    bnorm = jnp.linalg.norm(b)
    atol = tol * bnorm
    tiny = jnp.finfo(b.dtype).tiny
    rows = jnp.arange(m + 1)

    def cycle(x, r, beta, budget):
        V = jnp.zeros((m + 1, n), b.dtype).at[0].set(r / jnp.where(beta > tiny, beta, 1.0))
        R = jnp.zeros((m + 1, m), b.dtype)
        g = jnp.zeros(m + 1, b.dtype).at[0].set(beta)
        cs = jnp.zeros(m, b.dtype)
        sn = jnp.zeros(m, b.dtype)

        def cond(c):
            j, *_, res = c
            return (j < m) & (j < budget) & (res > atol)

        def body(c):
            j, V, R, g, cs, sn, _ = c
            w = matvec(prec(V[j]))
            keep = rows <= j
            h = jnp.where(keep, V @ w, 0.0)
            w = w - h @ V
            h2 = jnp.where(keep, V @ w, 0.0)  # re-orthogonalization (CGS2)
            w = w - h2 @ V
            h = h + h2
            hn = jnp.linalg.norm(w)
            h = h.at[j + 1].set(hn)
            V = V.at[j + 1].set(jnp.where(hn > tiny, w / jnp.where(hn > tiny, hn, 1.0), 0.0))

            def rotate(i, h):  # the earlier rotations, applied to the new column
                hi, hi1 = h[i], h[i + 1]
                ci, si = cs[i], sn[i]
                new = jnp.where(i < j, jnp.stack([ci * hi + si * hi1, -si * hi + ci * hi1]), jnp.stack([hi, hi1]))
                return lax.dynamic_update_slice(h, new, (i,))

            h = lax.fori_loop(0, m, rotate, jnp.concatenate([h, jnp.zeros(1, b.dtype)]))[: m + 1]
            a, bb = h[j], h[j + 1]
            d = jnp.hypot(a, bb)
            c_j = jnp.where(d > tiny, a / jnp.where(d > tiny, d, 1.0), 1.0)
            s_j = jnp.where(d > tiny, bb / jnp.where(d > tiny, d, 1.0), 0.0)
            h = h.at[j].set(d).at[j + 1].set(0.0)
            gj = g[j]
            g = g.at[j].set(c_j * gj).at[j + 1].set(-s_j * gj)
            return j + 1, V, R.at[:, j].set(h), g, cs.at[j].set(c_j), sn.at[j].set(s_j), jnp.abs(g[j + 1])

        j, V, R, g, *_ = lax.while_loop(cond, body, (0, V, R, g, cs, sn, beta))
        used = rows[:m] < j
        Rm = jnp.where(used[:, None] & used[None, :], R[:m], 0.0) + jnp.diag(jnp.where(used, 0.0, 1.0))
        y = jsl.solve_triangular(Rm, jnp.where(used, g[:m], 0.0), lower=False)
        x = x + prec(y @ V[:m])
        r = b - matvec(x)
        return x, r, jnp.linalg.norm(r), j

    def cond(c):
        _, _, res, k, stalled = c
        return (res > atol) & (k < maxiter) & ~stalled

    def body(c):
        x, r, res, k, _ = c
        x, r, res_new, j = cycle(x, r, res, maxiter - k)
        # a cycle that did not reduce the true residual (rounding floor, singular A) ends the solve
        return x, r, res_new, k + j, ~(res_new < res)

    x, _, _, k, _ = lax.while_loop(cond, body, (jnp.zeros_like(b), b, bnorm, 0, False))
    return x, _info(matvec, x, b, k)


def normal_cg(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, *, tol: float = 1e-10,
              maxiter: int | None = None) -> tuple[jax.Array, SolveInfo]:
    """CG on the normal equation AᵀA x = Aᵀb, Aᵀ from ``jax.linear_transpose`` (jaxopt paper, §2.1).

    Squares the condition number but needs no symmetry; the reported residual is ‖Ax - b‖/‖b‖.
    """
    rmatvec = _transpose(matvec, b)
    x, inner = cg(lambda v: rmatvec(matvec(v)), rmatvec(b), tol=max(tol * 1e-2, 1e-15),
                  maxiter=maxiter)
    return x, SolveInfo(_info(matvec, x, b, 0).residual, inner.iterations)


def _transpose(matvec, b):
    t = jax.linear_transpose(matvec, b)
    return lambda v: t(v)[0]


def _info(matvec, x, b, k):
    bnorm = jnp.linalg.norm(b)
    res = jnp.linalg.norm(matvec(x) - b) / jnp.where(bnorm > 0, bnorm, 1.0)
    return SolveInfo(res, jnp.asarray(k))


_KRYLOV = {"cg": cg, "gmres": gmres, "bicgstab": bicgstab, "normal_cg": normal_cg}


# ----------------------------------------------------------------------------------------------
# dense factorizations with a condition-number check


def condition_estimate(M, solve, solve_t, iters: int = 12, *, screen: int | None = None,
                       threshold: float | None = None):
    """Estimate κ₂(M) = σ_max/σ_min by power iteration on MᵀM and on (MᵀM)⁻¹ (uses the factors).

    The power method approaches each extreme singular value from inside, so the estimate is a
    lower bound of κ₂(M) (tight after a few iterations in practice); O(n²) per iteration instead
    of the O(n³) of an SVD. Returns +inf when the factors are non-finite (an exactly singular M).

    Screening (``screen`` and ``threshold``): after ``screen`` iterations, stop if the estimate is
    at most ``threshold``, else go on to ``iters``. After j ≥ 1 iterations from a fixed generic start the
    estimate is typically within a factor √n of κ₂ (a generic start's component along each extreme
    singular vector is ~1/√n), so a threshold of (warning level)/n rarely stops a system that
    deserves a warning, while well-conditioned systems, the common case, pay ``screen``
    iterations instead of ``iters``: the iterations cost about 3× the LU factorization itself.
    """
    n = M.shape[0]
    v0 = jnp.sin(2.399963229728653 * jnp.arange(1, n + 1, dtype=M.dtype) + 0.5)  # generic, fixed start
    v0 = v0 / jnp.linalg.norm(v0)
    screen = iters if screen is None else max(1, min(screen, iters))
    threshold = jnp.inf if threshold is None else threshold

    def step(v, op):
        w = op(v)
        norm = jnp.linalg.norm(w)  # ≤ the largest eigenvalue of the SPD operator
        return w / norm, norm

    def body(c):
        v, u, _, _ = c
        v, smax2 = step(v, lambda v: M.T @ (M @ v))
        u, sinv2 = step(u, lambda u: solve(solve_t(u)))
        return v, u, smax2, sinv2

    def estimate(c):
        return jnp.sqrt(c[2] * c[3])

    one = jnp.ones((), M.dtype)
    c = (v0, v0, one, one)
    for _ in range(screen):  # unrolled: no loop overhead on the common, well-conditioned path
        c = body(c)
    if iters > screen:
        refine = lambda c: lax.fori_loop(0, iters - screen, lambda _, c: body(c), c)  # noqa: E731
        c = lax.cond(estimate(c) > threshold, refine, lambda c: c, c)
    kappa = estimate(c)
    return jnp.where(jnp.isfinite(kappa), kappa, jnp.inf)


def _check_conditioning(what: str):
    def check(kappa, traced):
        k = float(np.max(kappa))
        singular = not (k < COND_SINGULAR)
        msg = (
            f"{what} is {'numerically singular' if singular else 'ill-conditioned'} at the point of "
            f"differentiation: condition number ≈ {k:.3e}"
        )
        if singular:
            msg += (
                f" (> {COND_SINGULAR:.1e}); the implicit derivative does not exist there or the "
                "iterate is not a (regular) solution"
            )
            if not traced:
                raise ValueError(msg)
            warnings.warn(msg, IllConditionedWarning, stacklevel=2)
        elif k > COND_WARN:
            warnings.warn(msg + "; expect derivative errors up to κ·eps", IllConditionedWarning,
                          stacklevel=2)

    return check


def _check_spd(what: str):
    def check(ok, traced):
        if not bool(np.all(ok)):
            msg = (f"solve='cholesky' needs {what} to be symmetric positive definite but the "
                   "Cholesky factorization failed or the matrix is not symmetric; use solve='lu'")
            if not traced:
                raise ValueError(msg)
            warnings.warn(msg, IllConditionedWarning, stacklevel=2)

    return check


def _solvers(fac, kind):
    if kind == "cholesky":
        fwd = lambda r: jsl.cho_solve((fac[0], True), r)  # noqa: E731
        return fwd, fwd
    return (lambda r: jsl.lu_solve(fac, r)), (lambda r: jsl.lu_solve(fac, r, trans=1))


@functools.partial(jax.jit, static_argnames=("kind", "checks"))
def _factor_jit(M, kind, checks=True):
    """Factor M, estimate κ₂(M) and (Cholesky) check symmetry/definiteness: one compiled call."""
    if kind == "cholesky":
        L = jnp.linalg.cholesky(M)
        fac = (L,)
        sym = jnp.max(jnp.abs(M - M.T)) <= 1e-8 * (1.0 + jnp.max(jnp.abs(M)))
        ok = jnp.all(jnp.isfinite(L)) & sym
    else:
        fac = jsl.lu_factor(M)
        ok = jnp.asarray(True)
    if not checks:
        return fac, None, None
    fwd, bwd = _solvers(fac, kind)
    return fac, condition_estimate(M, fwd, bwd, screen=2, threshold=COND_WARN / M.shape[0]), ok


def factor(M, solve: str, what: str = "the linear system", *, checks: bool = True):
    """Factor a dense square M once ('lu' or 'cholesky') and check its conditioning.

    Raises ``ValueError`` (concrete values) or warns (under a trace) when M is numerically
    singular, warns with κ when it is ill-conditioned. Returns ``(solve_fn, solve_transpose_fn)``.
    ``checks=False`` skips the condition estimate and the checks (see :func:`solve_linear`).
    """
    if solve not in DENSE_SOLVERS:
        raise ValueError(f"`solve` must be one of {DENSE_SOLVERS} for a dense factorization, got {solve!r}")
    fac, kappa, ok = _factor_jit(M, solve, checks)
    if not checks:
        return _solvers(fac, solve)
    if solve == "cholesky":
        fac = report(fac, _check_spd(what), ok, flag=~ok)
    fac = report(fac, _check_conditioning(what), kappa, flag=~(kappa <= COND_WARN))
    return _solvers(fac, solve)


# ----------------------------------------------------------------------------------------------
# the public entry point and the differentiable solve used by implicit differentiation


def _validate(solve, tol, maxiter):
    """Validate the ``solve``/``tol``/``maxiter`` triple; returns the strategy object."""
    strategy = as_strategy(solve)
    if isinstance(tol, bool) or not (isinstance(tol, (int, float)) and tol > 0 and np.isfinite(tol)):
        raise ValueError(f"`tol` must be a positive float, got {tol!r}")
    if maxiter is not None and (isinstance(maxiter, bool) or not isinstance(maxiter, int) or maxiter <= 0):
        raise ValueError(f"`maxiter` must be a positive int or None, got {maxiter!r}")
    return strategy


def _krylov_call(s, mv, r, tol, maxiter, transpose: bool):
    """Run the Krylov strategy ``s`` on mv(x) = r. For the transposed system (``transpose``) a
    preconditioner P of A is replaced by Pᵀ, a preconditioner of Aᵀ."""
    prec = getattr(s, "preconditioner", None)
    if prec is not None and transpose:
        prec = _transpose(prec, r)
    kw = dict(tol=s.tol or tol, maxiter=s.maxiter or maxiter)
    if s.name == "gmres":
        return gmres(mv, r, restart=s.restart, preconditioner=prec, **kw)
    if s.name == "normal_cg":
        return normal_cg(mv, r, **kw)
    return _KRYLOV[s.name](mv, r, preconditioner=prec, **kw)


def solve_linear(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, *, solve: _Solve = "auto",
                 tol: float = 1e-10, maxiter: int | None = None, what: str = "the linear system",
                 checks: bool = True, symmetric: bool = False) -> jax.Array:
    """Solve A x = b for a linear ``matvec: v ↦ A v`` on flat vectors, differentiably.

    ``solve``: a strategy (see ``algorithms._strategies``: ``Auto``, ``LU``, ``Cholesky``,
    ``CG``, ``GMRES``, ``BiCGSTAB``, ``NormalCG``, ``Custom``), one of the strings
    'auto' | 'lu' | 'cholesky' | 'cg' | 'gmres' | 'bicgstab' | 'normal_cg', or a callable
    ``solver(matvec, b) -> x``. The default 'auto' is dense LU for n ≤ ``DENSE_THRESHOLD``
    unknowns, else CG when ``symmetric`` (the caller knows A is symmetric positive definite)
    and GMRES(30) otherwise; an auto-chosen CG that does not converge is redone by GMRES
    (:func:`choose_solver` returns the choice for a given n).

    The solve is wrapped in ``jax.lax.custom_linear_solve`` so that its derivatives (and its
    transpose, which reverse-mode implicit differentiation needs: ``Aᵀ u = v``) are linear solves
    with the same method rather than differentiation through the solver's iterations. Dense
    methods ('lu', 'cholesky') materialize A once (n matvecs), check κ(A), factor once and reuse
    the factors for the transpose solve; Krylov methods and custom solvers warn
    (:class:`LinearSolveWarning`) when their relative residual ‖A x - b‖/‖b‖ is above 10·``tol``.

    ``checks=False`` drops these diagnostics (no condition estimate, no residual report): a
    compiled program that contains a run-time check pays a fixed ≈ 20 µs per call on CPU even
    when nothing is wrong (measured; the host-callback machinery), which matters only for
    problems solved in well under a millisecond. Without checks a singular system or a stalled
    Krylov method is NOT reported: the result may be inaccurate, inf or nan.
    """
    strategy = _validate(solve, tol, maxiter)
    if not isinstance(checks, bool):
        raise TypeError(f"`checks` must be a bool, got {checks!r}")
    if not isinstance(symmetric, bool):
        raise TypeError(f"`symmetric` must be a bool, got {symmetric!r}")
    b = jnp.asarray(b)
    if b.ndim != 1:
        raise ValueError(f"`b` must be a flat vector, got shape {b.shape}")
    auto = isinstance(strategy, Auto)
    s = choose_solver(strategy, b.size, symmetric)
    if s.name in DENSE_SOLVERS:
        M = jax.vmap(matvec, out_axes=1)(jnp.eye(b.size, dtype=b.dtype))
        fwd, bwd = factor(M, s.name, what, checks=checks)
        return lax.custom_linear_solve(matvec, b, lambda _, r: fwd(r), lambda _, r: bwd(r),
                                       symmetric=(s.name == "cholesky"))
    detail = f" (chosen by solve='auto' for n={b.size}, symmetric={symmetric})" if auto else ""

    if s.name == "custom":
        ctol = s.tol or tol

        def custom(mv, r):
            x = s.solver(mv, r)
            x = jnp.asarray(x)
            if x.shape != r.shape:
                raise ValueError(f"the custom solver returned shape {x.shape}, expected {r.shape} "
                                 "(solver(matvec, b) -> x)")
            if not checks:
                return x
            info = _info(mv, x, r, -1)
            return report(x, _check_converged(getattr(s.solver, "__name__", "custom"), ctol),
                          info.residual, info.iterations, flag=~(info.residual <= 10 * ctol))

        return lax.custom_linear_solve(matvec, b, custom, custom, symmetric=symmetric)

    ktol = s.tol or tol

    def krylov(mv, r, transpose=False):
        x, info = _krylov_call(s, mv, r, tol, maxiter, transpose)
        if auto and s.name == "cg":
            # the SPD hint was wrong (CG stalls or breaks down): GMRES on the same system
            g = GMRES(tol=s.tol, maxiter=s.maxiter, restart=strategy.restart,
                      preconditioner=s.preconditioner)
            x, info = lax.cond(info.residual <= 10 * ktol, lambda: (x, info),
                               lambda: _krylov_call(g, mv, r, tol, maxiter, transpose))
        if not checks:
            return x
        return report(x, _check_converged(s.name, ktol, detail), info.residual, info.iterations,
                      flag=~(info.residual <= 10 * ktol))

    return lax.custom_linear_solve(matvec, b, krylov, lambda mv, r: krylov(mv, r, True),
                                   symmetric=(s.name == "cg"))

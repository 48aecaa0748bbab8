"""One entry point for the derivative of x_k = F(x_{k-1}, θ): autodiff, implicit, one-step, truncated.

For the iterates x_k(θ) = F(x_{k-1}(θ), θ) of an algorithm converging to x̄(θ) = F(x̄(θ), θ),
``iterate(F, x0, theta, steps, mode=...)`` returns x_steps and lets ``jax.grad``, ``jax.jacfwd``,
``jax.jacrev`` (under ``jit`` and ``vmap``) see one of four Jacobian estimators
(one-step paper, §2.1, Algorithms 1-3):

- ``"autodiff"``: J^AD x_k, differentiation through all k steps (piggyback recursion
  J_k = ∂ₓF(x_{k-1}, θ) J_{k-1} + ∂_θF(x_{k-1}, θ), one-step paper eq. (2)); x0 may depend on θ.
  Reverse mode stores the k iterates: memory grows linearly with ``steps``.
- ``"implicit"``: J^ID x_k = (I - ∂ₓF(x_k, θ))⁻¹ ∂_θF(x_k, θ) at the last iterate
  (one-step paper eq. (3); jaxopt paper eqs. (2)-(3)), through a custom JVP whose transpose is
  the implicit VJP. With ``optimality_fun=G`` the root form -∂₁G⁻¹∂₂G is used instead, which is
  much cheaper when F hides a linear solve (Newton: use G = ∇f, one-step paper Remark 3).
- ``"one_step"``: J^OS x_k = ∂_θF(x_{k-1}, θ): stop_gradient on all steps but the last
  (one-step paper eq. (4), Algorithm 3). Error ≤ ρL_F/(1-ρ) + L_J‖x_{k-1} - x̄‖ (Corollary 1),
  quadratic in ‖x_{k-1} - x̄‖ for Newton-type maps (Corollary 3).
- ``"truncated"``: differentiate the last ``truncate`` = K steps only, i.e. the one-step
  estimator of F^K (one-step paper, discussion after Corollary 1).

The non-differentiated part of the loop runs on ``stop_gradient``-ed inputs inside a ``lax``
loop, so reverse-mode memory does not grow with ``steps`` for implicit, one-step and truncated.

Divergence: every step is checked for non-finite values and for growth beyond ``max_growth``
times the initial scale; the first offending step is reported (``ValueError`` on concrete
values, a :class:`DivergenceWarning` from a host callback under ``jit``). Implicit modes warn when
the derivative is taken at a point that is not (yet) a fixed point (``residual_rtol``).
"""

from __future__ import annotations

import contextlib
import math
import operator
import signal
import threading
import time
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from conservative._divergence import FMAX, MAX_GROWTH, check_max_growth, describe_divergence, growth_limit, sup_norm

from ._implicit import RESIDUAL_RTOL, custom_fixed_point, custom_root
from ._linear_solve import _is_traced, _validate, report
from ._strategies import _Solve

MODES = ("autodiff", "implicit", "one_step", "truncated")


class DivergenceWarning(RuntimeWarning):
    """An iteration diverged: non-finite values or growth beyond ``max_growth`` (reported under a
    trace, where raising is not possible)."""


def _check_pytree(tree, name: str, *, allow_int: bool = False):
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    if not leaves:
        raise ValueError(f"`{name}` must contain at least one array leaf")
    low = []
    for path, leaf in leaves:
        dtype = jnp.result_type(leaf)
        where = f"`{name}{jax.tree_util.keystr(path)}`"
        if not jnp.issubdtype(dtype, jnp.floating):
            if allow_int and jnp.issubdtype(dtype, jnp.integer):
                continue
            raise TypeError(
                f"{where} has dtype {dtype}; every leaf of `{name}` must be a real floating array "
                "(float64) because it is differentiated. Pass integer or boolean settings through "
                "a closure of F (or a static field), not as leaves of theta."
            )
        if jnp.finfo(dtype).bits < 64:
            low.append(f"{where} ({dtype})")
    if low:
        warnings.warn(
            f"{', '.join(low)} is not float64; derivative estimators and their error bounds "
            "assume float64 (enable it with jax.config.update('jax_enable_x64', True))",
            UserWarning, stacklevel=3,
        )


#: Eager (untraced) loops run in compiled chunks of about this many seconds, so that Ctrl-C
#: (KeyboardInterrupt) and a divergence stop the loop between chunks.
CHUNK_SECONDS = 0.25



def _divergence_check(steps_total: int, max_growth: float | None):
    def check(first_bad, value, scale, theta_finite, traced):
        fb = np.asarray(first_bad)
        if not np.any(fb >= 0):
            return
        i = np.unravel_index(np.argmin(np.where(fb >= 0, fb, np.iinfo(fb.dtype).max)), fb.shape)
        step, v, s = int(fb[i]), float(np.asarray(value)[i]), float(np.asarray(scale)[i])
        what = describe_divergence(step, v, s, max_growth)
        msg = f"the iteration diverged at step {step} of steps={steps_total}: {what}; "
        if not bool(np.all(theta_finite)):
            msg += "`theta` itself contains non-finite values (inf/nan): check the parameters"
        else:
            msg += "reduce the step size or check F and x0"
        if traced:
            warnings.warn(msg, DivergenceWarning, stacklevel=2)
        else:
            raise ValueError(msg)

    return check


def _all_finite(x):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(x)]))


#: Under a trace the peak of ‖x_k‖_∞ is taken every CHECK_EVERY steps (and at the last step):
#: a per-step reduction would cost as much as the step itself for small maps. A divergent run is
#: then re-run step by step (:func:`_locate`), so the reported step is exact.
CHECK_EVERY = 16


def _checked_blocks(F, theta, x, peak, count: int):
    """``count`` steps from x; ``peak`` updated with ‖x‖_∞ every CHECK_EVERY steps and at the end."""
    blocks, rest = divmod(count, CHECK_EVERY)
    step = lambda _, x: F(x, theta)  # noqa: E731

    def block(_, carry):
        x, peak = carry
        x = lax.fori_loop(0, CHECK_EVERY, step, x)
        return x, jnp.maximum(peak, sup_norm(lax.stop_gradient(x)))

    if blocks:
        x, peak = lax.fori_loop(0, blocks, block, (x, peak))
    if rest:
        x = lax.fori_loop(0, rest, step, x)
        peak = jnp.maximum(peak, sup_norm(lax.stop_gradient(x)))
    return x, peak


def _locate(F, x, theta, count, limit, peak):
    """(k, value): the first of ``count`` steps from x whose iterate has ‖·‖_∞ not ≤ ``limit``
    (1-based) and its ‖·‖_∞, by re-running them with per-step bookkeeping; called only once the
    peak check failed. Falls back to (count, peak) should the re-run not reproduce it."""

    def body(_, carry):
        x, k, first_bad, value = carry
        x = F(x, theta)
        k = k + 1
        m = sup_norm(x)
        new_bad = (first_bad < 0) & ~(m <= limit)
        return x, k, jnp.where(new_bad, k, first_bad), jnp.where(new_bad, m, value)

    init = (x, jnp.asarray(0, jnp.int32), jnp.asarray(-1, jnp.int32), jnp.zeros((), jnp.float64))
    _, _, first_bad, value = lax.fori_loop(0, count, body, init)
    found = first_bad >= 0
    return jnp.where(found, first_bad, count), jnp.where(found, value, peak)


def _eager_chunk(F, state, theta, count):
    """``count`` (a run-time int) steps from state = (x, peak), peak = running max of ‖x_k‖_∞
    taken every CHECK_EVERY steps and after the last step (as under a trace)."""
    x, peak = state
    peak = jnp.maximum(peak, sup_norm(x))  # the chunk's start (x_0 in the first chunk)
    blocks, rest = count // CHECK_EVERY, count % CHECK_EVERY
    step = lambda _, x: F(x, theta)  # noqa: E731

    def block(_, carry):
        x, peak = carry
        x = lax.fori_loop(0, CHECK_EVERY, step, x)
        return x, jnp.maximum(peak, sup_norm(x))

    x, peak = lax.fori_loop(0, blocks, block, (x, peak))
    x = lax.fori_loop(0, rest, step, x)
    return x, jnp.maximum(peak, sup_norm(x))


def _eager_start(F, x, theta, count):
    """The first chunk: ``count`` ≥ 1 steps from x_0; returns ((x_count, peak), scale) with the
    initial scale max(‖x_0‖_∞, ‖x_1‖_∞) of the divergence check and peak as in :func:`_eager_chunk`."""
    x1 = F(x, theta)
    scale = jnp.maximum(sup_norm(x), sup_norm(x1))
    return _eager_chunk(F, (x1, scale), theta, count - 1), scale


# compiled once per map F (static) and shapes, not once per call: an eager call of iterate on
# the same F reuses the compiled chunk
_eager_chunk_jit = jax.jit(_eager_chunk, static_argnums=0)
_eager_start_jit = jax.jit(_eager_start, static_argnums=0)

#: seconds per step of the last eager run, per (map, argument structure and shapes): sizes the
#: first chunk of the next run, so that a cheap map runs in one compiled call (bounded size)
_STEP_SECONDS: dict = {}


def _remember_rate(key, seconds: float):
    if key not in _STEP_SECONDS and len(_STEP_SECONDS) >= 64:
        _STEP_SECONDS.pop(next(iter(_STEP_SECONDS)))
    _STEP_SECONDS[key] = seconds
_locate_jit = jax.jit(lambda F, *a: _locate(F, *a), static_argnums=0)


_plain_jit = jax.jit(lambda F, x, theta, n: lax.fori_loop(0, n, lambda _, x: F(x, theta), x), static_argnums=0)


def _hashable(F) -> bool:
    try:
        hash(F)
    except TypeError:
        return False
    return True


#: the check of the SIGINT-recording handler of the outermost eager call (nested calls share it)
_ACTIVE_INTERRUPT_CHECK: list = []


@contextlib.contextmanager
def _interrupts_between_chunks():
    """Ctrl-C (SIGINT) is recorded and raised as KeyboardInterrupt between chunks.

    Python raises a KeyboardInterrupt wherever the main thread is when the signal lands; inside
    JAX's compilation or dispatch machinery it can be swallowed (a callback that ignores
    exceptions), and the loop would run on.  While an eager call runs (tracing, compiling, the loop), the default
    handler is replaced by one that only records the signal; the loop checks it after every chunk and
    the call at its end.  Left
    as is outside the main thread or when the program installed its own handler."""
    if _ACTIVE_INTERRUPT_CHECK:  # an enclosing eager call installed the handler: share its record
        yield _ACTIVE_INTERRUPT_CHECK[-1]
        return
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield lambda: None
        return
    hit = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))

    def check():
        if hit:
            hit.clear()
            raise KeyboardInterrupt

    _ACTIVE_INTERRUPT_CHECK.append(check)
    try:
        yield check
    finally:
        _ACTIVE_INTERRUPT_CHECK.pop()
        signal.signal(signal.SIGINT, old)
    check()  # a Ctrl-C that landed after the last check is raised here, not lost


def _run_eager(F, x, theta, n: int, max_growth: float | None):
    with _interrupts_between_chunks() as check_interrupt:
        return _run_eager_chunks(F, x, theta, n, max_growth, check_interrupt)


def _run_eager_chunks(F, x, theta, n: int, max_growth: float | None, check_interrupt):
    """n steps on concrete values in compiled chunks whose length adapts to CHUNK_SECONDS.

    One compiled program (the chunk length is a run-time argument, F a static argument, so
    repeated calls with the same F reuse it); between chunks Python runs, so a KeyboardInterrupt
    arrives within about a chunk, and a divergent chunk stops the loop (it is then re-run with
    per-step bookkeeping to locate the divergent iterate). Within a chunk ‖x_k‖_∞ is read every
    CHECK_EVERY steps: the divergence check costs one reduction per CHECK_EVERY steps.
    Returns (x_n, first_bad (-1 if none), value, scale).
    """
    key = None
    if _hashable(F):
        chunk = lambda state, count: _eager_chunk_jit(F, state, theta, count)  # noqa: E731
        first = lambda count: _eager_start_jit(F, x, theta, count)  # noqa: E731
        locate = _locate_jit
        key = _shape_key(F, x, theta)
    else:
        chunk = jax.jit(lambda state, count: _eager_chunk(F, state, theta, count))
        first = jax.jit(lambda count: _eager_start(F, x, theta, count))
        locate = jax.jit(_locate, static_argnums=0)

    # the first chunk: 1 step on a first call with this map and these shapes (its time, which
    # includes dispatch and compilation, bounds the cost of a step), else as many steps as the
    # per-step time measured on the previous call fits in CHUNK_SECONDS
    rate = _STEP_SECONDS.get(key) if key is not None else None
    count = 1 if rate is None else int(min(n, max(1, CHUNK_SECONDS / max(rate, 1e-9))))
    t0 = time.perf_counter()
    state, scale = jax.block_until_ready(first(np.int32(count)))
    check_interrupt()
    dt = time.perf_counter() - t0
    done = count
    count = int(max(1, min(4 * count, count * CHUNK_SECONDS / max(dt, 1e-6)))) if rate is None else count
    scale = float(scale)  # max(‖x_0‖_∞, ‖x_1‖_∞), nan if x_0 is not finite
    limit = growth_limit(max_growth, scale) if np.isfinite(scale) else math.nan
    start = (x, 0)
    while True:
        if not float(state[1]) <= limit:  # nan or above the limit within the last chunk
            (x_start, k0), c = start, done - start[1]
            k, value = locate(F, x_start, theta, jnp.asarray(c, jnp.int32), jnp.asarray(limit), state[1])
            return state[0], k0 + int(k), float(value), scale
        if done >= n:
            if key is not None and done > 1:
                _remember_rate(key, dt / max(done - start[1], 1))
            return state[0], -1, 0.0, scale
        count = min(count, n - done)
        start = (state[0], done)
        t0 = time.perf_counter()
        state = jax.block_until_ready(chunk(state, np.int32(count)))
        check_interrupt()
        dt = time.perf_counter() - t0
        done += count
        count = int(max(1, min(4 * count, count * CHUNK_SECONDS / max(dt, 1e-6))))


def _run(F, x, theta, n: int, *, max_growth: float | None, offset: int):
    """x_{offset+n} from x_{offset} by n applications of F, with the divergence diagnostics.

    Returns ``(x, (first_bad, value, scale))``: the first divergent step (-1 if none; counted
    from x_0 of the whole run), ‖x‖_∞ there, and the initial scale max(‖x_0‖_∞, ‖x_1‖_∞).
    Per step only the running max of ‖x_k‖_∞ is kept; the divergent step is located afterwards,
    by a second pass that runs only when the check failed.
    """
    if n == 0:
        return x, (jnp.asarray(-1, jnp.int32), jnp.zeros(()), sup_norm(x))
    if not _is_traced((x, theta)):
        x, first_bad, value, scale = _run_eager(F, x, theta, n, max_growth)
        first_bad = first_bad + offset if first_bad >= 0 else -1
        return x, (jnp.asarray(first_bad, jnp.int32), jnp.asarray(value), jnp.asarray(scale))
    sg = lax.stop_gradient
    x0 = x
    m0 = sup_norm(sg(x0))
    x1 = F(x0, theta)
    m1 = sup_norm(sg(x1))
    x, peak = _checked_blocks(F, theta, x1, m1, n - 1)
    peak = sg(peak)
    scale = jnp.maximum(m0, m1)
    limit = growth_limit(max_growth, scale)
    bad = ~(peak <= limit) | ~(m0 <= FMAX)
    first_bad, value = lax.cond(bad, lambda: _locate(F, sg(x0), sg(theta), n, limit, peak),
                                lambda: (jnp.asarray(-1, jnp.int32), jnp.zeros((), jnp.float64)))
    first_bad = jnp.where(first_bad >= 0, first_bad + offset, first_bad)
    return x, (first_bad, value, scale)


def _first_of(d1, d2):
    """Diagnostics of two consecutive runs: the first divergent step of either."""
    bad1 = d1[0] >= 0
    return tuple(jnp.where(bad1, u, v) for u, v in zip(d1, d2))


def _report_divergence(x, diag, theta, steps_total: int, max_growth: float | None):
    first_bad, value, scale = diag
    if not _is_traced((first_bad, x)) and int(first_bad) < 0:
        return x  # concrete and healthy: nothing to report (saves the host round trips)
    theta_finite = _all_finite(lax.stop_gradient(theta))
    return report(x, _divergence_check(steps_total, max_growth), first_bad, value, scale, theta_finite,
                  flag=first_bad >= 0)


def _validate_args(steps, mode, truncate, x0, theta):
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"`steps` must be a Python int (a static number of iterations), got {steps!r}")
    if steps <= 0:
        raise ValueError(f"`steps` must be a positive number of iterations, got {steps}")
    if mode == "truncated":
        if truncate is None:
            raise ValueError("mode='truncated' needs `truncate=K`, the number of last steps to differentiate")
        if isinstance(truncate, bool) or not isinstance(truncate, (int, np.integer)):
            raise TypeError(f"`truncate` must be a Python int, got {truncate!r}")
        if not 1 <= truncate <= steps:
            raise ValueError(f"`truncate` must satisfy 1 <= truncate <= steps={steps}, got {truncate}")
    elif truncate is not None:
        raise ValueError(f"`truncate` is only used with mode='truncated' (got mode={mode!r})")
    _check_pytree(theta, "theta")
    _check_pytree(x0, "x0")
    for name, tree in (("theta", theta), ("x0", x0)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            if not _is_traced(leaf) and not np.all(np.isfinite(np.asarray(leaf))):
                raise ValueError(f"`{name}{jax.tree_util.keystr(path)}` contains non-finite values (inf/nan)")


#: (map, argument structure and shapes) whose signature check passed: ``jax.eval_shape`` traces F
#: (≈ 1 ms), more than a whole run of a cheap map; bounded size
_SIGNATURE_OK: dict = {}


def _shape_key(F, *trees):
    """A hashable key of F and the structure, shapes and dtypes of ``trees`` (None if F is unhashable)."""
    if not _hashable(F):
        return None
    leaves = jax.tree_util.tree_leaves(trees)
    return (F, jax.tree_util.tree_structure(trees), tuple((jnp.shape(v), jnp.result_type(v)) for v in leaves))


def _check_map_signature(F, x0, theta):
    """F(x0, θ) must return a pytree with the structure, shapes and dtypes of x0 (abstractly)."""
    key = _shape_key(F, x0, theta)
    if key is not None and key in _SIGNATURE_OK:
        return
    _check_map_signature_traced(F, x0, theta)
    if key is not None:
        if len(_SIGNATURE_OK) >= 256:
            _SIGNATURE_OK.pop(next(iter(_SIGNATURE_OK)))
        _SIGNATURE_OK[key] = True


def _check_map_signature_traced(F, x0, theta):
    out = jax.eval_shape(F, x0, theta)
    want = jax.tree_util.tree_structure(x0)
    got = jax.tree_util.tree_structure(out)
    if got != want:
        raise TypeError(f"F(x, theta) must return a pytree with the structure of x0: x0 is {want}, F returned {got}")
    for path, a, b in zip((jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(x0)[0]),
                          jax.tree_util.tree_leaves(x0), jax.tree_util.tree_leaves(out)):
        if jnp.shape(a) != b.shape or jnp.result_type(a) != b.dtype:
            raise TypeError(
                f"F(x, theta) must return leaves with the shapes and dtypes of x0: x0{path} is "
                f"{jnp.result_type(a)}{list(jnp.shape(a))}, F returned {b.dtype}{list(b.shape)}"
            )


def iterate(F: Callable, x0: Any, theta: Any, steps: int, *, mode: str = "autodiff", truncate: int | None = None,
            optimality_fun: Callable | None = None, solve: _Solve = "auto", tol: float = 1e-10,
            maxiter: int | None = None, check_finite: bool = True, checks: bool = True,
            max_growth: float | None = MAX_GROWTH, residual_rtol: float | None = RESIDUAL_RTOL,
            symmetric: bool | None = None, support: str | Callable | None = "auto") -> Any:
    """Run x_k = F(x_{k-1}, θ) for ``steps`` steps; derivatives in θ follow the chosen estimator.

    Args:
      F: iteration map ``F(x, theta) → x`` (pure JAX; same pytree structure as ``x0``).
      x0: initial point (pytree of float arrays). Differentiated through only in ``"autodiff"``.
      theta: parameters (pytree of float arrays; integer leaves are rejected).
      steps: number of iterations k ≥ 1 (a Python int).
      mode: ``"autodiff"`` | ``"implicit"`` | ``"one_step"`` | ``"truncated"`` (see module doc).
      truncate: K, the number of last steps differentiated in ``"truncated"`` mode (1 ≤ K ≤ steps);
        K = 1 is the one-step estimator.
      optimality_fun: for ``"implicit"`` only, an optional root form G(x, θ) = 0 of the fixed point
        (e.g. ``stationarity(f)`` for Newton's map) used instead of I - ∂ₓF. When it is None and
        F has an ``optimality`` attribute (``newton_map``: ∇₁f; ``interior_point_map``: the
        KKT residual), that root form is used: it avoids differentiating the linear solve
        inside F (:func:`implicit_plan` says which system and solver a call uses).
      solve, tol, maxiter: linear solver of the implicit mode (see :func:`custom_root`). The
        default ``'auto'`` is dense LU for at most ``DENSE_THRESHOLD`` unknowns, matrix-free
        above: CG when the system is symmetric positive definite (``symmetric``), else GMRES.
      symmetric: the implicit system (restricted to the support, see ``support``) is symmetric
        positive definite; None reads a ``symmetric`` attribute of the root form or of F
        (``gradient_descent``, ``lasso``, ``newton_map`` set it).
      support: fixed-point form only: ``'auto'`` (default) solves only on the coordinates
        whose rows of ∂ₓF are not identically zero (prox/projection fixed points, Bertrand et
        al. 2020; the same solution as the full system), a callable ``support(x, theta)``
        gives them as a boolean pytree, None solves the full system. In the root form a
        callable restricts ∂₁G to S (see :func:`custom_root`); ``'auto'`` solves it in full.
      check_finite: check every iterate for divergence and report the first bad step: an entry
        that is inf/nan, or ‖x_k‖_∞ > ``max_growth`` · max(‖x_0‖_∞, ‖x_1‖_∞) (see
        ``conservative._divergence``). ``ValueError`` on concrete values, a :class:`DivergenceWarning`
        under a trace. ``False`` drops the check (and the chunked eager loop).
      checks: for ``"implicit"``, report an ill-conditioned/singular linear system or a Krylov
        solve that did not converge (see :func:`custom_root`; ``False`` saves ≈ 20 µs per call).
      max_growth: growth factor of the divergence check (> 1), or None for non-finite only.
      residual_rtol: for ``"implicit"``, warn (:class:`ResidualWarning`) when the derivative is
        taken at an iterate whose fixed-point residual ‖F(x_k, θ) - x_k‖ (or ‖G(x_k, θ)‖) exceeds
        ``residual_rtol`` times its value at x_0 (see :func:`custom_root`); None disables.

    Divergence and Ctrl-C: on concrete (untraced) inputs the loop runs in compiled chunks of about
    :data:`CHUNK_SECONDS`, so it stops at the first divergent chunk and a KeyboardInterrupt is
    honoured within about a chunk. Under ``jit``/``grad`` tracing it is one ``lax`` loop.

    Returns:
      x_steps, with the pytree structure of ``x0``.
    """
    if not callable(F):
        raise TypeError(f"`F` must be a callable iteration map F(x, theta) -> x, got {F!r}")
    if optimality_fun is not None and not callable(optimality_fun):
        raise TypeError(f"`optimality_fun` must be a callable G(x, theta) or None, got {optimality_fun!r}")
    _validate_args(steps, mode, truncate, x0, theta)
    if optimality_fun is not None and mode != "implicit":
        raise ValueError(f"`optimality_fun` is only used with mode='implicit' (got mode={mode!r})")
    _validate(solve, tol, maxiter)
    if not isinstance(check_finite, bool):
        raise TypeError(f"`check_finite` must be a bool, got {check_finite!r}")
    check_max_growth(max_growth)
    # on concrete inputs a Ctrl-C anywhere in the call (tracing, compiling, the loop) is recorded and
    # raised between chunks or at the end, never lost inside JAX's machinery
    with _interrupts_between_chunks() if not _is_traced((x0, theta)) else contextlib.nullcontext():
        _check_map_signature(F, x0, theta)
        steps = operator.index(steps)
        sg = lax.stop_gradient

        def run(x, th, n, offset=0, upstream=None):
            """n steps from x; divergence (here or ``upstream``) reported on the result."""
            if not check_finite:
                if not _is_traced((x, th)) and _hashable(F):
                    return _plain_jit(F, x, th, n)
                return lax.fori_loop(0, n, lambda _, x: F(x, th), x)
            if upstream is None and n > 0 and not _is_traced((x, th)):
                x, first_bad, value, scale = _run_eager(F, x, th, n, max_growth)
                if first_bad < 0:
                    return x  # concrete and healthy: nothing to convert or report
                diag = (jnp.asarray(first_bad + offset, jnp.int32), jnp.asarray(value), jnp.asarray(scale))
                return _report_divergence(x, diag, th, steps, max_growth)
            x, diag = _run(F, x, th, n, max_growth=max_growth, offset=offset)
            if upstream is not None:
                diag = _first_of(upstream, diag)
            return _report_divergence(x, diag, th, steps, max_growth)

        if mode == "autodiff":
            return run(x0, theta, steps)
        if mode == "one_step":
            truncate = 1
        if mode in ("one_step", "truncated"):
            # the undifferentiated steps' diagnostics travel to the report on the differentiated
            # output, so that they survive dead-code elimination under jit(grad(...))
            if not check_finite:
                x_mid = lax.fori_loop(0, steps - truncate, lambda _, x: F(x, sg(theta)), sg(x0))
                return run(x_mid, theta, truncate)
            x_mid, diag = _run(F, sg(x0), sg(theta), steps - truncate, max_growth=max_growth, offset=0)
            return run(x_mid, theta, truncate, steps - truncate, upstream=diag)

        def solver(init, th):
            return run(init, th, steps)

        G = _root_form(F, optimality_fun)
        if G is None:
            wrapped = custom_fixed_point(F, solve=solve, tol=tol, maxiter=maxiter, checks=checks,
                                         residual_rtol=residual_rtol, symmetric=symmetric, support=support)(solver)
        else:
            wrapped = custom_root(G, solve=solve, tol=tol, maxiter=maxiter, checks=checks,
                                  residual_rtol=residual_rtol, symmetric=symmetric,
                                  support=None if support == "auto" else support)(solver)
        return wrapped(sg(x0), theta)


def _root_form(F, optimality_fun):
    """The root form used by mode='implicit': ``optimality_fun``, else F's own ``optimality``."""
    if optimality_fun is not None:
        return optimality_fun
    G = getattr(F, "optimality", None)
    return G if callable(G) else None


def implicit_plan(F: Callable, x0: Any, theta: Any = None, *, optimality_fun: Callable | None = None,
                  solve: _Solve = "auto", symmetric: bool | None = None,
                  support: str | Callable | None = "auto") -> dict:
    """Which linear system and which solver ``iterate(F, x0, theta, k, mode="implicit", ...)`` uses.

    Returns a dict: ``system`` ('root form ∂₁G(x, θ) u = -∂₂G θ̇' with its source, or
    'fixed point (I - ∂ₓF) u = ∂_θF θ̇'), ``n`` (unknowns), ``symmetric`` (the hint in force),
    ``support`` ('auto': restricted to the nonzero rows of ∂ₓF, 'callable', or 'full'),
    ``solver`` (the strategy chosen, e.g. ``'LU()'``, ``'CG()'``, ``'GMRES(restart=30)'``; for a
    restricted system under ``'auto'`` the dense-on-support rule first, see ``algorithms._restricted``).
    """
    from jax.flatten_util import ravel_pytree

    from ._implicit import symmetry_hint
    from ._restricted import prox_structure, support_sizes
    from ._strategies import choose_solver

    n = ravel_pytree(x0)[0].size
    G = _root_form(F, optimality_fun)
    if G is None:
        system = "fixed point (I - ∂ₓF) u = ∂_θF θ̇"
        sym = symmetry_hint(F) if symmetric is None else symmetric
        sup = "full" if support is None else ("auto" if support == "auto" else "callable")
    else:
        source = "optimality_fun" if optimality_fun is not None else "F.optimality"
        system = f"root form ∂₁G u = -∂₂G θ̇ (G = {source})"
        sym = symmetry_hint(G) if symmetric is None else symmetric
        sup = "callable" if callable(support) else "full"
    solver = choose_solver(solve, n, sym).describe()
    sizes = support_sizes(n, solve, G is None and prox_structure(F)) if sup != "full" else ()
    if sizes:
        solver = f"dense LU on S for |S| ≤ {max(sizes)} (batched JVPs), else {solver}"
    return dict(system=system, n=n, symmetric=sym, support=sup, solver=solver)

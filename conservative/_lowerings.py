"""Primitives interpreted through an equivalent program of primitives that have rules.

``LOWERINGS[name](**params)`` returns a JAX function with the primitive's operands and results,
written with primitives whose conservative rules exist (``sort``, ``max``, ``floor``, ...).
``jacobian`` and its fast path interpret that program in place of the primitive, so its set is
the conservative Jacobian of the equivalent program (the same calculus as everywhere else:
each nonsmooth primitive of the program is an independent choice).  The lowered primitives:

* ``top_k`` (values and int32 indices along ``axis``): a stable ascending ``sort`` of the
  reversed operand, carrying an iota, reversed back and sliced to ``k``.  Values and indices
  are those of ``lax.top_k``, tie order included (equal values by increasing index), except
  that ``0.0`` and ``-0.0`` are equal for ``lax.sort`` (a tie, kept in index order) where
  ``lax.top_k`` puts ``0.0`` first.  Tied values get the ``sort`` rule: one choice per tie
  block among its orderings, shared by the values and the indices (so ``x[top_k(x, k)[1]]``
  has the set of the values); the set is the hull of the limiting Jacobians.  A tie block of
  b equal keys has b! orderings; more than ``max_selections`` raises ``SetTooLargeError``
  naming the limit (also when the block lies below the k-th value).  ``k = 1`` is
  ``reduce_max`` and ``argmax`` instead (b tied entries cost b options, not b!): the values'
  set is the same simplex, ``x[top_k(x, 1)[1]]`` shares the argmax choice, and a program using
  both outputs together treats them as two independent choices (a larger, still conservative
  set).
* ``cummax`` / ``cummin`` (``axis``, ``reverse``): the running extremum y_i = max(y_{i-1}, x_i)
  as a ``lax.scan`` (unrolled by the interpreter).  At a running tie every sequence of choices
  is the limit of the Jacobians at some perturbation, so the set is the hull of the limiting
  Jacobians (the Clarke Jacobian of cummax); JAX's own element (the JVP of a log-depth tree
  with ½-½ at tied ``max``) was found inside it on every tested tie pattern.
* ``reduce_window_max`` / ``reduce_window_min`` (max/min pooling), and the generic
  ``reduce_window`` (any init value, any computation: ``lax.reduce_window(x, 0., lax.max, ...)``,
  and ``-inf`` init with explicit padding pairs, as flax-style pooling writes it): the operand
  is padded (``padding``, and ``base_dilation`` holes) with the identity (-inf/+inf, or the
  init value), the windows are gathered on a new last axis (by reshapes when they tile the
  operand, otherwise one strided ``slice`` per window offset, with ``window_dilation``), and
  reduced there by ``reduce_max``/``reduce_min`` (a tie inside one window is one choice among
  the tied entries: a simplex) or, for the generic primitive, folded with its computation from
  the init value.  A padded entry never ties with a finite value.  Each window is an
  independent choice: for non-overlapping windows this is the hull of the limiting Jacobians;
  overlapping windows that share tied entries get the product of the windows' simplices
  (which contains it).
* ``rem`` (C ``fmod``, ``jnp.fmod``; ``jnp.mod``/``remainder`` add a sign fix-up whose
  comparisons are tie-aware): for floats x - y·q with q = trunc(x/y) written as
  ``clamp(t, -1, 1) * floor(max(|t|, 1/2))``, t = x/y.  q is 0 for |t| < 1 with no tie (fmod is
  x there, smooth also at x = 0), and ``floor`` sees an integer exactly where t is a nonzero
  integer: there fmod jumps (from y to 0) and ``jacobian`` raises ``JumpError``.  Values agree
  with ``lax.rem`` to an ulp, and the trunc is exact except where x/y rounds to an integer,
  which is reported as a jump.  Integers: x - y·div(x, y), exact (C semantics).

``SPECTRAL`` holds the spectral primitives ``eigh`` and ``svd``.  Their JVP is smooth only where
the spectrum is simple: at a repeated eigenvalue (``eigh``) or a repeated or zero singular value
(``svd``) the eigen/singular values have a kink (λ_max at A = I, σ(A) = ‖A‖₂ at A = 0) whose
conservative Jacobian is a spectraplex or a nuclear-norm ball: not a polytope of finitely many
selections, so not representable as a ``MatrixSet``.  ``spectrum_degenerate`` tests for such
points (two values within max(tol, 64·n·eps·scale), scale = the largest |value|, or a singular
value within that of 0), the interpreter then raises ``NoRuleError(degenerate_message(...))``
and the fast path sends the point to the interpreter.  The test is made on the whole spectrum
whatever outputs the program uses (also for ``subset_by_index`` and ``trace`` of the
eigenvalues, which is smooth): a conservative refusal, never a singleton at a kink.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["LOWERINGS", "SPECTRAL", "degenerate_message", "lower", "spectrum_degenerate"]

#: primitive name -> (params -> function of the operands returning the results)
LOWERINGS: dict[str, Callable[..., Callable]] = {}

#: spectral primitives checked for degenerate spectra
SPECTRAL: set[str] = {"eigh", "svd"}

_CACHE: dict = {}


def lower(eqn, vals):
    """The closed jaxpr of the lowering of ``eqn`` at the operand shapes of ``vals`` (cached)."""
    name = eqn.primitive.name
    shapes = tuple((tuple(jnp.shape(v)), str(jnp.result_type(v))) for v in vals)
    key = (name, repr(sorted(eqn.params.items(), key=lambda kv: kv[0])), shapes)
    closed = _CACHE.get(key)
    if closed is None:
        fun = LOWERINGS[name](**eqn.params)
        multiple = eqn.primitive.multiple_results

        def flat(*ops):
            out = fun(*ops)
            return tuple(out) if multiple else (out,)

        closed = jax.make_jaxpr(flat)(*[jax.ShapeDtypeStruct(s, d) for s, d in shapes])
        _CACHE[key] = closed
    return closed


def _register(name):
    def deco(f):
        LOWERINGS[name] = f
        return f

    return deco


# ------------------------------------------------------------------ top_k
@_register("top_k")
def _top_k(k, axis=-1, **params):
    if params:
        raise NotImplementedError(f"jacobian: top_k with parameters {sorted(params)} is not supported")

    def fun(x):
        ax = axis % x.ndim
        if k == 1 and x.shape[ax] > 0:
            # the largest entry: reduce_max (a tie of b entries is one choice among them, a
            # simplex, instead of b! orderings) and argmax (the first largest, as lax.top_k);
            # they are two independent choices, tied to each other only through the values
            vals = lax.expand_dims(lax.reduce_max(x, (ax,)), (ax,))
            return vals, lax.expand_dims(lax.argmax(x, ax, jnp.int32), (ax,))
        iota = lax.broadcasted_iota(jnp.int32, x.shape, ax)
        # a stable ascending sort of the reversed line puts equal keys in decreasing index order;
        # reversing its result gives descending values with ties by increasing index (lax.top_k)
        keys, idx = lax.sort((lax.rev(x, (ax,)), lax.rev(iota, (ax,))), dimension=ax, is_stable=True, num_keys=1)
        vals, idx = lax.rev(keys, (ax,)), lax.rev(idx, (ax,))
        return lax.slice_in_dim(vals, 0, k, axis=ax), lax.slice_in_dim(idx, 0, k, axis=ax)

    return fun


# ------------------------------------------------------------------ cummax / cummin
def _cumulative(op):
    def make(axis, reverse, **params):
        if params:
            raise NotImplementedError(f"jacobian: cumulative reduction with parameters {sorted(params)} "
                                      "is not supported")

        def fun(x):
            ax = axis % x.ndim
            n = x.shape[ax]
            if n < 2:
                return x
            # the running extremum y_i = op(y_{i-1}, x_i), one op per step along the axis: at a
            # running tie every sequence of choices is the limit from some perturbation, so
            # the set is the hull of the limiting Jacobians (a log-depth tree would compare
            # the same entries in several independent occurrences and give a larger set)
            y = jnp.moveaxis(x, ax, 0)
            if reverse:
                y = lax.rev(y, (0,))

            def step(carry, xi):
                c = op(carry, xi)
                return c, c

            _, rest = lax.scan(step, y[0], y[1:])
            y = lax.concatenate([y[:1], rest], 0)
            if reverse:
                y = lax.rev(y, (0,))
            return jnp.moveaxis(y, 0, ax)

        return fun

    return make


LOWERINGS["cummax"] = _cumulative(lax.max)
LOWERINGS["cummin"] = _cumulative(lax.min)


# ------------------------------------------------------------------ reduce_window (pooling)
def _identity(kind, dtype):
    dtype = jnp.dtype(dtype)
    if dtype == jnp.bool_:
        return kind == "min"
    if jnp.issubdtype(dtype, jnp.floating):
        return np.inf if kind == "min" else -np.inf
    if jnp.issubdtype(dtype, jnp.integer):
        info = jnp.iinfo(dtype)
        return info.max if kind == "min" else info.min
    raise NotImplementedError(f"jacobian: reduce_window_{kind} of dtype {dtype} is not supported")


def _window_slices(x, fill, window_dimensions, window_strides, padding, base_dilation, window_dilation):
    """The entries of every window as a stack (..., W) with W = prod(window_dimensions): the
    operand padded with ``fill`` (edges and base-dilation holes, as XLA's reduce_window does),
    one strided slice per window offset."""
    nd = x.ndim
    for arg, val in (("window_dimensions", window_dimensions), ("window_strides", window_strides),
                     ("padding", padding), ("base_dilation", base_dilation), ("window_dilation", window_dilation)):
        if val is None or len(val) != nd:
            raise NotImplementedError(f"jacobian: reduce_window with {arg}={val!r} for a rank-{nd} operand "
                                      "is not supported")
    if any(int(d) < 1
           for d in tuple(base_dilation) + tuple(window_dilation) + tuple(window_strides) + tuple(window_dimensions)):
        raise NotImplementedError("jacobian: reduce_window with non-positive window sizes, strides or dilations "
                                  "is not supported")
    config = [(int(lo), int(hi), int(b) - 1) for (lo, hi), b in zip(padding, base_dilation)]
    fill = jnp.asarray(fill, x.dtype)
    xp = lax.pad(x, fill, config) if any(c != (0, 0, 0) for c in config) else x
    out_shape = []
    for n, w, s, wd in zip(xp.shape, window_dimensions, window_strides, window_dilation):
        span = (int(w) - 1) * int(wd) + 1
        out_shape.append(max(0, (n - span) // int(s) + 1))
    wdims = tuple(int(w) for w in window_dimensions)
    if all(int(s) == w for s, w in zip(window_strides, wdims)) and all(int(d) == 1 for d in window_dilation):
        # non-overlapping windows tiling the operand (the usual pooling): a few reshapes instead
        # of one slice per window offset; the same (row-major) order of the window entries
        tiled = lax.slice(xp, (0,) * nd, tuple(m * w for m, w in zip(out_shape, wdims)))
        tiled = tiled.reshape(tuple(d for m, w in zip(out_shape, wdims) for d in (m, w)))
        tiled = tiled.transpose(tuple(range(0, 2 * nd, 2)) + tuple(range(1, 2 * nd, 2)))
        return tiled.reshape(tuple(out_shape) + (int(np.prod(wdims, dtype=np.int64)),))
    slices = []
    for offset in itertools.product(*[range(int(w)) for w in window_dimensions]):
        start = [o * int(wd) if m > 0 else 0 for o, wd, m in zip(offset, window_dilation, out_shape)]
        limit = [st + (m - 1) * int(s) + 1 if m > 0 else 0 for st, m, s in zip(start, out_shape, window_strides)]
        slices.append(lax.slice(xp, start, limit, tuple(int(s) for s in window_strides)))
    return jnp.stack(slices, axis=-1)


def _reduce_window_extremum(kind):
    def make(window_dimensions, window_strides, padding, base_dilation, window_dilation, **params):
        if params:
            raise NotImplementedError(f"jacobian: reduce_window_{kind} with parameters {sorted(params)} "
                                      "is not supported")

        def fun(x):
            stack = _window_slices(x, _identity(kind, x.dtype), window_dimensions, window_strides, padding,
                                   base_dilation, window_dilation)
            return jnp.max(stack, axis=-1) if kind == "max" else jnp.min(stack, axis=-1)

        return fun

    return make


LOWERINGS["reduce_window_max"] = _reduce_window_extremum("max")
LOWERINGS["reduce_window_min"] = _reduce_window_extremum("min")


@_register("reduce_window")
def _reduce_window(jaxpr, consts, window_dimensions, window_strides, padding, base_dilation, window_dilation, **params):
    if params:
        raise NotImplementedError(f"jacobian: reduce_window with parameters {sorted(params)} is not supported")

    def fun(*args):
        k = len(args) // 2
        operands, inits = args[:k], args[k:]
        stacks = [_window_slices(x, i, window_dimensions, window_strides, padding, base_dilation, window_dilation)
                  for x, i in zip(operands, inits)]
        shape = stacks[0].shape[:-1]
        acc = [jnp.broadcast_to(i, shape) for i in inits]
        # XLA folds each window with the computation from the init value (in an unspecified
        # order: the computation is assumed associative and commutative)
        for j in range(stacks[0].shape[-1]):
            acc = jax.core.eval_jaxpr(jaxpr, consts, *acc, *[s[..., j] for s in stacks])
        return acc

    return fun


# ------------------------------------------------------------------ rem (fmod)
@_register("rem")
def _rem(**params):
    if params:
        raise NotImplementedError(f"jacobian: rem with parameters {sorted(params)} is not supported")

    def fun(x, y):
        if not (jnp.issubdtype(x.dtype, jnp.floating) and jnp.issubdtype(y.dtype, jnp.floating)):
            # integer division truncates toward zero: x - y·div(x, y) is C's % exactly
            return x - y * lax.div(x, y)
        t = x / y
        # trunc(t) = sign(t)·floor(|t|); for |t| < 1 it is 0, so floor is taken of max(|t|, 1/2)
        # (no integer, hence no spurious jump, near t = 0) and sign(t) is clamp(t, -1, 1)
        # (equal to it where |t| >= 1; multiplied by 0 elsewhere)
        one = jnp.asarray(1, t.dtype)
        q = lax.clamp(-one, t, one) * jnp.floor(jnp.maximum(jnp.abs(t), jnp.asarray(0.5, t.dtype)))
        return x - y * q

    return fun


# ------------------------------------------------------------------ spectral primitives
_SPECTRAL_FACTOR = 64


def _degenerate_values(vals, n, tol, zero):
    """Sorted values along the last axis (ascending or descending): two of them within
    max(tol, 64·n·eps·scale), or (``zero``) one within that of 0?"""
    vals = jnp.asarray(vals)
    eps = jnp.finfo(vals.dtype).eps
    scale = (jnp.max(jnp.abs(vals), axis=-1, keepdims=True) if vals.shape[-1]
             else jnp.zeros(vals.shape[:-1] + (1,), vals.dtype))
    thr = jnp.maximum(jnp.asarray(tol, vals.dtype), _SPECTRAL_FACTOR * max(n, 1) * eps * scale)
    flag = jnp.asarray(False)
    if vals.shape[-1] > 1:
        flag = flag | jnp.any(jnp.abs(jnp.diff(vals, axis=-1)) <= thr)
    if zero and vals.shape[-1]:
        flag = flag | jnp.any(jnp.abs(vals) <= thr)
    return flag


def spectrum_degenerate(name, params, vals, tol):
    """Traceable boolean: is the spectrum of this ``SPECTRAL`` primitive degenerate at ``vals``?

    ``eigh``: two eigenvalues (of the whole spectrum) within max(tol, 64·n·eps·max|λ|);
    ``svd``: two singular values within max(tol, 64·n·eps·σ_max), or one within that of 0
    (σ_min = 0 is a kink of the singular values, also for a non-square or rank-deficient A).
    """
    a = lax.stop_gradient(jnp.asarray(vals[0]))
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise NotImplementedError(f"jacobian: {name} of a {a.dtype} matrix is not supported (real floating point only)")
    if name == "eigh":
        n = a.shape[-1]
        _, w = lax.linalg.eigh(a, lower=params.get("lower", True), symmetrize_input=False, sort_eigenvalues=True)
        return _degenerate_values(w, n, tol, zero=False)
    if name == "svd":
        n = max(a.shape[-2:]) if a.ndim >= 2 else 1
        s = lax.linalg.svd(a, full_matrices=False, compute_uv=False)
        return _degenerate_values(s, n, tol, zero=True)
    raise KeyError(name)


def degenerate_message(name, params) -> str:
    """The error raised by ``jacobian`` at a degenerate spectrum of ``name``."""
    if name == "eigh":
        what, example = "repeated eigenvalues", "λ_max at A = I"
    elif name == "svd":
        what, example = "repeated or zero singular values", "σ(A) = ‖A‖₂ at A = 0"
    else:
        raise KeyError(name)
    return (
        f"jacobian: the spectrum of primitive '{name}' is degenerate at this point ({what}, within "
        f"max(tol, {_SPECTRAL_FACTOR}·n·eps·scale)): the spectral decomposition is not differentiable there and "
        f"its conservative Jacobian (e.g. of {example}, a spectraplex or a norm ball) is not a polytope of "
        "finitely many selections, so it cannot be represented as a MatrixSet. Move the point (perturb the "
        "matrix so that its eigen/singular values are distinct and nonzero), or write the spectral function "
        "in closed form with max/abs where it is piecewise smooth"
    )

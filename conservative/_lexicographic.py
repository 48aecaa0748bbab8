"""Directional derivatives and lexicographic (LD-)derivatives of piecewise-smooth JAX programs.

A jaxpr interpreter that carries, for every intermediate value u of the program, its value
and the matrix U̇ = [u′(x; m₁), u^{(1)}(x; m₂), ...] of *lexicographic directional derivatives*
along the columns m₁, ..., m_k of a direction matrix M (Khan & Barton 2015, "A vector forward
mode of automatic differentiation for generalized derivative evaluation", Optim. Methods
Softw. 30(6); Nesterov 2005, "Lexicographic differentiation of nonsmooth functions", Math.
Program. 104).  Smooth primitives push U̇ through JAX's own JVP (one column per direction);
nonsmooth ones use the lexicographic rules, which decide every tie by the perturbation
x + ε₁m₁ + ε₁ε₂m₂ + ... (ε's ↓ 0):

* **abs**: at u = 0, |u|˙ = fsign(U̇) · U̇ where fsign is the sign of the first nonzero entry of
  the row (0 for a zero row, where the result is the zero row either way);
* **max / min / clamp / reduce_max / reduce_min**: a tied pair is decided by comparing the rows
  of the tangents lexicographically; **sort** orders tied keys by their rows, **argmax /
  argmin** pick the lexicographically extreme tied entry (gathers that read that index follow);
* **comparisons** (hence ``where``/``select_n``, ``lax.cond``, while-loop predicates): a pair
  tied in value is decided by the lexicographic sign of the row of the tangent difference;
* **sign / floor / ceil / round** and float→int casts: locally constant; at a jump the
  one-sided value selected by the sign of the tangent.

Discrete values (booleans, indices, sign at 0) therefore carry their *one-sided* value (the
value on the perturbed side), and floats their one-sided limit: a program output whose limit
differs from the value at the point jumps along the directions (``JumpError``).

A pair tied in value *and* in every column is decided as "equal" when both sides are affine
functions of the inputs on the current piece (then they are equal along the whole perturbation:
exact).  Otherwise its outcome is not determined at first order (``x²`` at 0 has a zero
derivative and is positive nearby): a ``where`` whose branches agree in value and tangent there
is fine; any use that depends on it raises ``AmbiguousTieError``.  Rows are compared up to
rounding: an entry of a tangent difference within 64·eps of the magnitude of the two tangents
counts as 0 (the next column decides).

Each occurrence of a nonsmooth primitive is decided by the same perturbation, so the result is
a derivative of the *function*, not of the program's choices: for ``relu(x) - relu(-x)`` it is
1 at 0 along every direction, for ``|x| - |x|`` it is 0 (compare ``conservative.jacobian``,
whose sets [0, 2] and [-2, 2] contain the elements every selection gives).

``custom_jvp``/``custom_vjp`` functions are interpreted through their primal implementation,
``jit``/``checkpoint`` inlined, ``cond``/``scan``/``while`` interpreted at the point (loops
unrolled for their trip count there), the ``_lowerings`` primitives through their lowering.
Every other primitive is either in ``_rules.SMOOTH`` or raises ``NoRuleError``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from . import _lowerings as L
from . import _rules as R
from ._jacobian import JumpError, NoRuleError

__all__ = ["directional_derivative", "ld_derivative", "lexicographic_jacobian", "AmbiguousTieError"]

#: an entry of a tangent difference within RTOL·(|a| + |b|) of zero is a rounding residue
RTOL = 64 * np.finfo(np.float64).eps


class AmbiguousTieError(NotImplementedError, ValueError):
    """A tie that the given directions (to first order) do not decide changes the result."""


# ------------------------------------------------------------------ values
class _T:
    """One value of the interpreted program: ``val`` (its one-sided value/limit), ``tan`` (None:
    constant along the directions; else float64 array (k,) + shape, column j = derivative along
    direction j), ``lin`` (affine in the inputs on the current piece), ``und`` (booleans and
    indices: mask of positions whose outcome is not decided at first order)."""

    __slots__ = ("val", "tan", "lin", "und")

    def __init__(self, val, tan=None, lin=True, und=None):
        self.val = val
        self.tan = tan
        self.lin = bool(lin) or tan is None
        self.und = und if (und is not None and np.any(und)) else None


class _Ctx:
    """Interpretation state. ``decider`` decides ties: ``side(row, lin)`` → ±1 for a nonzero row
    of a tangent difference, ``pick_max(rows, lin)`` → the index of the greatest of pairwise
    distinct rows."""

    def __init__(self, k, decider):
        self.k = k
        self.decider = decider
        self.nonfinite = None


class _LexDecider:
    """The lexicographic decisions of Khan & Barton: the first nonzero entry of a row decides."""

    @staticmethod
    def side(row, lin=True):
        nz = np.flatnonzero(row)
        return int(np.sign(row[nz[0]]))

    def pick_max(self, rows, lin=True):
        best = 0
        for i in range(1, len(rows)):
            if self.side(_clean(rows[i] - rows[best], np.abs(rows[i]) + np.abs(rows[best]))) > 0:
                best = i
        return best


def _clean(c, scale):
    c = np.array(c, dtype=np.float64)
    c[np.abs(c) <= RTOL * scale] = 0.0
    return c


def _size(x):
    return int(np.prod(np.shape(x), dtype=np.int64))


def _is_float(x):
    return R.is_float(x)


def _rows(ctx, v, shape):
    """The tangent of ``v`` broadcast to ``shape``, as rows (size, k) (zeros if constant)."""
    s = int(np.prod(shape, dtype=np.int64))
    if v.tan is None:
        return np.zeros((s, ctx.k))
    t = np.broadcast_to(v.tan, (ctx.k,) + tuple(shape))
    return t.reshape(ctx.k, s).T


def _from_rows(ctx, rows, shape):
    return np.ascontiguousarray(rows.T).reshape((ctx.k,) + tuple(shape))


def _flat(v, shape):
    return np.broadcast_to(np.asarray(v.val), shape).ravel()


def _ambiguous(what):
    return AmbiguousTieError(
        f"{what}: the tie is not decided by the values and the derivatives along the given directions "
        "(a pair tied in value and in every column of the tangent, of a non-affine quantity), and the "
        "result depends on it: its outcome is decided by higher-order terms, which this first-order "
        "method does not compute. Give further directions (a full-rank M) or move the point."
    )


# ------------------------------------------------------------------ interpreter
def _read(env, v):
    if isinstance(v, jcore.Literal):
        return _T(np.asarray(v.val))
    return env[v]


def _eval_jaxpr(ctx, jaxpr, consts, args):
    env = {}
    for var, c in zip(jaxpr.constvars, consts):
        env[var] = c if isinstance(c, _T) else _T(np.asarray(c))
    for var, a in zip(jaxpr.invars, args):
        env[var] = a
    for eqn in jaxpr.eqns:
        outs = _eval_eqn(ctx, eqn, [_read(env, v) for v in eqn.invars])
        for var, o in zip(eqn.outvars, outs):
            if not isinstance(var, jcore.DropVar):
                env[var] = o
    return [_read(env, v) for v in jaxpr.outvars]


def _eval_closed(ctx, closed, args):
    return _eval_jaxpr(ctx, closed.jaxpr, closed.consts, args)


def _bind(eqn, vals):
    out = eqn.primitive.bind(*vals, **eqn.params)
    return list(out) if eqn.primitive.multiple_results else [out]


#: primitives that are affine in each float operand (mul/div/dot: affine if one factor varies)
_AFFINE = {"add", "sub", "neg", "reshape", "broadcast_in_dim", "transpose", "squeeze", "expand_dims",
           "reduce_sum", "concatenate", "slice", "dynamic_slice", "dynamic_update_slice", "gather",
           "scatter-add", "scatter_add", "pad", "rev", "convert_element_type", "copy", "copy_p", "cumsum",
           "real", "imag", "conj", "split", "optimization_barrier", "stack", "unstack", "tile", "scatter",
           "reduce_window_sum", "add_any", "reduce_precision", "select_n"}
_BILINEAR = {"mul", "dot_general", "conv_general_dilated"}

_STRUCTURAL = R.STRUCTURAL | {"convert_element_type"}


def _eval_eqn(ctx, eqn, ins):
    name, p = eqn.primitive.name, eqn.params
    if name in ("jit", "pjit", "closed_call", "core_call"):
        inner = p.get("jaxpr", p.get("call_jaxpr"))
        return _eval_closed(ctx, inner, ins) if hasattr(inner, "consts") else _eval_jaxpr(ctx, inner, [], ins)
    if name in ("remat2", "checkpoint", "remat"):
        return _eval_jaxpr(ctx, p["jaxpr"], [], ins)
    if name in ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"):
        return _eval_closed(ctx, p.get("call_jaxpr", p.get("fun_jaxpr")), ins)
    if name in L.LOWERINGS:
        return _eval_closed(ctx, L.lower(eqn, [v.val for v in ins]), ins)
    if name == "cond":
        return _cond(ctx, eqn, ins)
    if name == "scan":
        return _scan(ctx, eqn, ins)
    if name == "while":
        return _while(ctx, eqn, ins)
    vals = [v.val for v in ins]
    if name == "select_n":
        return [_select_n(ctx, eqn, ins)]
    if any(v.und is not None for v in ins):
        return [_undecided_op(ctx, eqn, ins)]
    if name in R.COMPARISONS:
        return [_compare(ctx, eqn, ins)]
    if all(v.tan is None for v in ins):
        return [_T(o) for o in _bind(eqn, vals)]
    if name in ("max", "min"):
        return [_maxmin(ctx, name, ins[0], ins[1])]
    if name == "abs":
        return [_abs(ctx, ins[0])]
    if name == "clamp":  # clamp(lo, x, hi) = min(max(x, lo), hi)
        return [_maxmin(ctx, "min", _maxmin(ctx, "max", ins[1], ins[0]), ins[2])]
    if name in ("reduce_max", "reduce_min", "argmax", "argmin"):
        return [_reduce(ctx, eqn, ins[0])]
    if name == "sort":
        return _sort(ctx, eqn, ins)
    if name in R.JUMPS and _is_float(vals[0]):
        return [_jump(ctx, name, ins[0], _bind(eqn, vals)[0])]
    outs = _bind(eqn, vals)
    if name in R.LOCALLY_CONSTANT:
        return [_T(o) for o in outs]
    if not any(_is_float(o) for o in outs):
        if name == "convert_element_type" and _is_float(vals[0]):
            return [_discrete_cast(ctx, ins[0], outs[0])]
        raise NoRuleError(
            f"lexicographic: no rule for primitive '{name}' with a {jnp.result_type(outs[0])} result computed "
            "from values that depend on the differentiated input (its result may jump)"
        )
    if name not in R.SMOOTH:
        raise NoRuleError(
            f"lexicographic: no rule for primitive '{name}'. If it is smooth, declare it with "
            f"conservative.register_smooth('{name}')"
        )
    if name in L.SPECTRAL and bool(L.spectrum_degenerate(name, p, vals, 0.0)):
        raise NoRuleError(L.degenerate_message(name, p))
    return _smooth(ctx, eqn, ins, outs)


_JVP_CACHE: dict = {}


def _smooth(ctx, eqn, ins, outs):
    name, p = eqn.primitive.name, eqn.params
    vals = [jnp.asarray(v.val) for v in ins]
    diff = tuple(i for i, v in enumerate(ins) if v.tan is not None and _is_float(v.val))
    multiple = eqn.primitive.multiple_results

    def fun(*a):
        out = eqn.primitive.bind(*a, **p)
        return tuple(out) if multiple else (out,)

    tangents = tuple(jnp.asarray(ins[i].tan, dtype=jnp.result_type(vals[i])) for i in diff)
    pkey = R._params_key(p)
    if pkey is None:
        touts = R._column_jvp(fun, diff, vals, tangents)
    else:
        key = (name, pkey, diff)
        fn = _JVP_CACHE.get(key)
        if fn is None:
            fn = jax.jit(lambda ps, ts: R._column_jvp(fun, diff, ps, ts))
            _JVP_CACHE[key] = fn
        touts = fn(tuple(vals), tangents)
    varying = [i for i in diff]
    if name in _AFFINE or (name == "integer_pow" and p.get("y") == 1):
        lin = all(ins[i].lin for i in varying)
    elif name in _BILINEAR or name == "div":
        lin = all(ins[i].lin for i in varying) and (varying == [0] if name == "div" else len(varying) <= 1)
    elif name in ("triangular_solve",):
        lin = varying == [1] and ins[1].lin
    else:
        lin = False
    res = []
    for o, t in zip(outs, touts):
        if not _is_float(o):
            res.append(_T(o))
            continue
        t = np.asarray(t, dtype=np.float64)
        if ctx.nonfinite is None and not np.all(np.isfinite(t)):
            ctx.nonfinite = name
        res.append(_T(o, t, lin))
    return res


# ------------------------------------------------------------------ nonsmooth rules
def _diff_rows(ctx, a, b, shape, P):
    """Rows (len(P), k) of the tangent difference a - b at flat positions P, rounding cleaned."""
    ta, tb = _rows(ctx, a, shape)[P], _rows(ctx, b, shape)[P]
    return _clean(ta - tb, np.abs(ta) + np.abs(tb))


def _maxmin(ctx, name, a, b):
    shape = np.broadcast_shapes(np.shape(a.val), np.shape(b.val))
    out = np.asarray(jnp.maximum(a.val, b.val) if name == "max" else jnp.minimum(a.val, b.val))
    if a.tan is None and b.tan is None:
        return _T(out)
    va, vb = (np.asarray(_flat(v, shape), np.float64) for v in (a, b))
    take_a = va > vb if name == "max" else va < vb
    tied = np.flatnonzero(R.tie(va - vb, 0.0))
    lin = a.lin and b.lin
    if len(tied):
        C = _diff_rows(ctx, a, b, shape, tied)
        for j, p in enumerate(tied):
            if np.any(C[j]):
                s = ctx.decider.side(C[j], lin)
                take_a[p] = s > 0 if name == "max" else s < 0
            else:
                take_a[p] = True  # equal rows: either piece gives the same tangent
    ra, rb = _rows(ctx, a, shape), _rows(ctx, b, shape)
    rows = np.where(take_a[:, None], ra, rb)
    return _T(out.reshape(shape), _from_rows(ctx, rows, shape), lin)


def _abs(ctx, x):
    shape = np.shape(x.val)
    v = np.asarray(x.val, np.float64).ravel()
    rows = _rows(ctx, x, shape)
    s = np.sign(v)
    for p in np.flatnonzero(R.tie(v, 0.0)):
        c = _clean(rows[p], np.abs(rows[p]))
        s[p] = ctx.decider.side(c, x.lin) if np.any(c) else 0.0
    return _T(np.abs(np.asarray(x.val)), _from_rows(ctx, rows * s[:, None], shape), x.lin)


def _classes(rows):
    """Group pairwise-equal rows (up to rounding): list of index arrays, in first-index order."""
    out = []
    for i in range(len(rows)):
        for cl in out:
            r = rows[cl[0]]
            if not np.any(_clean(rows[i] - r, np.abs(rows[i]) + np.abs(r))):
                cl.append(i)
                break
        else:
            out.append([i])
    return [np.asarray(c) for c in out]


def _pick_extreme(ctx, rows, lin, largest):
    """Among tied entries with tangent rows ``rows``: the class of entries (indices into rows)
    whose row is the lexicographic max (``largest``) or min."""
    classes = _classes(rows)
    if len(classes) == 1:
        return classes[0]
    reps = np.stack([rows[c[0]] for c in classes])
    return classes[ctx.decider.pick_max(reps if largest else -reps, lin)]


def _reduce(ctx, eqn, x):
    name, p = eqn.primitive.name, eqn.params
    out = np.asarray(_bind(eqn, [x.val])[0])
    axes = tuple(p["axes"])
    xv = np.asarray(x.val, np.float64)
    keep = [a for a in range(xv.ndim) if a not in axes]
    perm = keep + list(axes)
    m = _size(out)
    xm = np.transpose(xv, perm).reshape(m, -1)
    tm = np.transpose(x.tan, [0] + [a + 1 for a in perm]).reshape(ctx.k, m, -1)
    largest = name in ("reduce_max", "argmax")
    ext = xm.max(axis=1) if largest else xm.min(axis=1)
    pick = np.argmax(xm, axis=1) if largest else np.argmin(xm, axis=1)
    for o in range(m):
        tied = np.flatnonzero(R.tie(xm[o] - ext[o], 0.0))
        if len(tied) < 2:
            continue
        cl = tied[_pick_extreme(ctx, tm[:, o, tied].T, x.lin, largest)]
        if len(cl) > 1 and name in ("argmax", "argmin") and not x.lin:
            raise _ambiguous(f"{name}: entries {cl.tolist()} are tied")
        pick[o] = cl[0]  # affine entries equal along the perturbation: the first index, as lax does
    if name in ("argmax", "argmin"):
        return _T(pick.reshape(out.shape).astype(out.dtype))
    tan = tm[:, np.arange(m), pick].reshape((ctx.k,) + out.shape)
    return _T(out, tan, x.lin)


def _sort(ctx, eqn, ins):
    p = eqn.params
    dim, nk = p["dimension"], p["num_keys"]
    outs = _bind(eqn, [v.val for v in ins])
    if nk > 1 and any(v.tan is not None for v in ins[:nk]):
        raise NoRuleError("lexicographic: sort with several keys (num_keys > 1) that depend on the input "
                          "is not supported")
    shape = np.shape(ins[0].val)
    size = _size(ins[0].val)
    index = np.moveaxis(np.arange(size).reshape(shape), dim, -1)
    key = np.moveaxis(np.asarray(ins[0].val, np.float64), dim, -1)
    krows = _rows(ctx, ins[0], shape)
    src = np.empty(size, dtype=np.int64)
    for line in np.ndindex(index.shape[:-1]):
        order = list(np.argsort(key[line], kind="stable"))
        idx = index[line]
        if ins[0].tan is not None:
            d = np.diff(key[line][order])
            for a, b in R.tie_runs(R.tie(d, 0.0)):
                block = [order[j] for j in range(a, b)]  # positions along the line, index order
                new = []
                while block:
                    cl = _pick_extreme(ctx, krows[idx[block]], ins[0].lin, largest=False)
                    chosen = [block[c] for c in cl]
                    if len(chosen) > 1 and not ins[0].lin and any(
                            _is_float(v.val) and not _same(ctx, v, idx[chosen]) or
                            not _is_float(v.val) and len(set(np.asarray(v.val).ravel()[idx[chosen]].tolist())) > 1
                            for v in ins[1:]):
                        raise _ambiguous("sort: keys tied")
                    new += chosen
                    block = [b_ for b_ in block if b_ not in chosen]
                order[a:b] = new
        src[idx] = idx[np.asarray(order)]
    res = []
    for v, o in zip(ins, outs):
        val = np.asarray(v.val).ravel()[src].reshape(shape)
        if v.tan is None or not _is_float(o):
            res.append(_T(val))
        else:
            res.append(_T(val, _from_rows(ctx, _rows(ctx, v, shape)[src], shape), v.lin))
    return res


def _same(ctx, v, P):
    vals = np.asarray(v.val, np.float64).ravel()[P]
    rows = _rows(ctx, v, np.shape(v.val))[P]
    return bool(np.all(R.values_agree(vals[:, None], 0.0))) and len(_classes(rows)) == 1


def _side_of(ctx, a, b, shape, sided=True):
    """Per flat position: the side of the tie a vs b (+1: a above, -1: below, 0: equal, np.nan:
    undecided) where tied in value; None where not tied."""
    va, vb = (np.asarray(_flat(v, shape), np.float64) for v in (a, b))
    tied = np.flatnonzero(R.tie(va - vb, 0.0))
    lin = a.lin and b.lin
    sides = {}
    if len(tied):
        C = _diff_rows(ctx, a, b, shape, tied)
        for j, pos in enumerate(tied):
            if np.any(C[j]):
                # ==/!= only ask whether the pair separates (it does on both sides): no decision
                sides[pos] = ctx.decider.side(C[j], lin) if sided else 1
            else:
                sides[pos] = 0 if lin else np.nan
    return sides


_OUTCOME = {"lt": lambda s: s < 0, "le": lambda s: s <= 0, "gt": lambda s: s > 0, "ge": lambda s: s >= 0,
            "eq": lambda s: s == 0, "ne": lambda s: s != 0, "lt_to": lambda s: s < 0,
            "le_to": lambda s: s <= 0, "eq_to": lambda s: s == 0}


def _compare(ctx, eqn, ins):
    name = eqn.primitive.name
    out = np.array(_bind(eqn, [v.val for v in ins])[0])
    if eqn.invars[0] is eqn.invars[1] or all(v.tan is None for v in ins) or not _is_float(ins[0].val):
        return _T(out)  # x != x (the NaN test) is never tied; constants are constant
    shape = out.shape
    flat = out.reshape(-1)
    und = np.zeros(flat.size, bool)
    for pos, s in _side_of(ctx, ins[0], ins[1], shape, sided=name not in ("eq", "ne", "eq_to")).items():
        if np.isnan(s):
            und[pos] = True
        else:
            flat[pos] = _OUTCOME[name](s)
    return _T(out, None, True, und.reshape(shape))


def _select_n(ctx, eqn, ins):
    pred, cases = ins[0], ins[1:]
    out = np.asarray(_bind(eqn, [v.val for v in ins])[0])
    shape = out.shape
    idx = np.broadcast_to(np.asarray(pred.val).astype(np.int64), shape).ravel()
    if pred.und is not None:
        und = np.flatnonzero(np.broadcast_to(pred.und, shape).ravel())
        if len(cases) != 2 or any(c.und is not None for c in cases):
            raise _ambiguous("select_n: an undecided predicate")
        vals = np.stack([np.asarray(_flat(c, shape), np.float64)[und] for c in cases])
        ok = R.values_agree(vals, 0.0) if _is_float(out) else np.all(vals == vals[0], axis=0)
        if _is_float(out) and np.all(ok):
            ok = np.array([not np.any(r) for r in _diff_rows(ctx, cases[0], cases[1], shape, und)])
        if not np.all(ok):
            raise _ambiguous("where/select_n: the condition is tied and its branches differ there")
    if any(c.und is not None for c in cases):
        mask = np.zeros(idx.size, bool)
        for a, c in enumerate(cases):
            if c.und is not None:
                mask |= (idx == a) & np.broadcast_to(c.und, shape).ravel()
        return _T(out, None, True, mask.reshape(shape))
    if not _is_float(out) or all(c.tan is None for c in cases):
        return _T(out)
    rows = np.stack([_rows(ctx, c, shape) for c in cases])
    sel = rows[idx, np.arange(idx.size)]
    return _T(out, _from_rows(ctx, sel, shape), all(c.lin for c in cases))


def _undecided_op(ctx, eqn, ins):
    """A primitive reading booleans/indices that are undecided at some positions: logical
    operators use three-valued logic, data movement and bool↔int casts move the mask; anything
    else depends on the undecided outcome."""
    name = eqn.primitive.name
    vals = [v.val for v in ins]
    out = np.asarray(_bind(eqn, vals)[0])
    if name in R.LOGICAL and all(jnp.result_type(v) == jnp.bool_ for v in vals):
        ambs = [np.zeros(out.shape, bool) if v.und is None else np.broadcast_to(v.und, out.shape) for v in ins]
        return _T(out, None, True, R.logical(name, vals, ambs))
    if name in _STRUCTURAL and not _is_float(out) and not any(_is_float(v) for v in vals):
        data = [name == "concatenate" or i == 0 for i in range(len(ins))]
        mask = np.asarray(eqn.primitive.bind(
            *[jnp.asarray(np.zeros(np.shape(v.val), bool) if v.und is None else v.und) if d else v.val
              for v, d in zip(ins, data)], **eqn.params))
        return _T(out, None, True, mask)
    raise _ambiguous(f"primitive '{name}' reads a tied comparison (or index)")


def _jump(ctx, name, v, out):
    """sign at 0: -1 | 1; floor at an integer k: k-1 | k; ceil at k: k | k+1; round at k + ½:
    k | k+1 (below | above): the one-sided value on the side the tangent points to."""
    x = np.asarray(v.val, np.float64).ravel()
    o = np.array(out, dtype=np.float64).ravel()
    if name == "sign":
        at, lo, hi = R.tie(x, 0.0), -np.ones_like(x), np.ones_like(x)
    elif name in ("floor", "ceil"):
        k = np.round(x)
        at = R.tie(x - k, 0.0)
        lo, hi = (k - 1, k) if name == "floor" else (k, k + 1)
    else:
        f = np.floor(x)
        at, lo, hi = R.tie(x - (f + 0.5), 0.0), f, f + 1
    rows = _rows(ctx, v, np.shape(v.val))
    for p in np.flatnonzero(at):
        c = _clean(rows[p], np.abs(rows[p]))
        if np.any(c):
            o[p] = hi[p] if ctx.decider.side(c, v.lin) > 0 else lo[p]
        elif not v.lin:
            raise _ambiguous(f"{name} at its jump")
    return _T(o.reshape(np.shape(out)).astype(np.asarray(out).dtype))


def _discrete_cast(ctx, v, out):
    """float → bool is x ≠ 0; float → int truncates toward zero (jumps at nonzero integers)."""
    x = np.asarray(v.val, np.float64).ravel()
    o = np.array(out).ravel()
    rows = _rows(ctx, v, np.shape(v.val))
    if jnp.result_type(out) == jnp.bool_:
        und = np.zeros(o.size, bool)
        for p in np.flatnonzero(R.tie(x, 0.0)):
            c = _clean(rows[p], np.abs(rows[p]))
            if np.any(c):
                o[p] = True  # nonzero on both sides: no decision to make
            elif not v.lin:
                und[p] = True
        return _T(o.reshape(np.shape(out)), None, True, und.reshape(np.shape(out)))
    k = np.round(x)
    for p in np.flatnonzero(R.tie(x - k, 0.0) & (k != 0)):
        c = _clean(rows[p], np.abs(rows[p]))
        if np.any(c):
            s = ctx.decider.side(c, v.lin)
            o[p] = (k[p] - 1 if s < 0 else k[p]) if k[p] > 0 else (k[p] if s < 0 else k[p] + 1)
        elif not v.lin:
            raise _ambiguous("float to integer conversion at an integer")
    return _T(o.reshape(np.shape(out)))


# ------------------------------------------------------------------ control flow
def _agree(ctx, a, b):
    if a.und is not None or b.und is not None:
        return False
    va, vb = np.asarray(a.val, np.float64).ravel(), np.asarray(b.val, np.float64).ravel()
    if not _is_float(a.val):
        return bool(np.all(va == vb))
    if not np.all(R.values_agree(np.stack([va, vb]), 0.0)):
        return False
    shape = np.shape(a.val)
    return not np.any(_diff_rows(ctx, a, b, shape, np.arange(_size(a.val))))


def _cond(ctx, eqn, ins):
    index, ops = ins[0], ins[1:]
    branches = eqn.params["branches"]
    if index.und is None:
        return _eval_closed(ctx, branches[int(np.asarray(index.val))], ops)
    results = [_eval_closed(ctx, branches[b], ops) for b in range(min(2, len(branches)))]
    if not all(_agree(ctx, a, b) for a, b in zip(*results)):
        raise _ambiguous("lax.cond: the predicate is tied and the branches differ")
    return results[0]


def _scan(ctx, eqn, ins):
    p = eqn.params
    nc, ncar, n = p["num_consts"], p["num_carry"], p["length"]
    consts, carry, xs = ins[:nc], list(ins[nc:nc + ncar]), ins[nc + ncar:]
    ys = [None] * n
    for t in (range(n - 1, -1, -1) if p["reverse"] else range(n)):
        x_t = [_T(np.asarray(x.val)[t], None if x.tan is None else x.tan[:, t], x.lin,
                  None if x.und is None else x.und[t]) for x in xs]
        out = _eval_closed(ctx, p["jaxpr"], consts + carry + x_t)
        carry, ys[t] = out[:ncar], out[ncar:]
    stacked = []
    for j, var in enumerate(eqn.outvars[ncar:]):
        if n == 0:
            stacked.append(_T(np.zeros(var.aval.shape, var.aval.dtype)))
            continue
        per = [ys[t][j] for t in range(n)]
        if any(y.und is not None for y in per):
            raise _ambiguous("scan: an output that depends on an undecided tie")
        val = np.stack([np.asarray(y.val) for y in per])
        tan = None
        if any(y.tan is not None for y in per):
            tan = np.stack([np.zeros((ctx.k,) + np.shape(y.val)) if y.tan is None else y.tan for y in per], axis=1)
        stacked.append(_T(val, tan, all(y.lin for y in per)))
    return carry + stacked


def _while(ctx, eqn, ins):
    p = eqn.params
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    cconsts, bconsts, carry = ins[:cn], ins[cn:cn + bn], list(ins[cn + bn:])
    while True:
        (pred,) = _eval_closed(ctx, p["cond_jaxpr"], cconsts + carry)
        if pred.und is not None:
            raise _ambiguous("while_loop: the loop condition")
        if not bool(np.asarray(pred.val)):
            return carry
        carry = _eval_closed(ctx, p["body_jaxpr"], bconsts + carry)


# ------------------------------------------------------------------ driver
def _argnums(argnums, nargs, who):
    if isinstance(argnums, int) and not isinstance(argnums, bool):
        t, single = (argnums,), True
    elif (isinstance(argnums, (tuple, list)) and argnums
          and all(isinstance(a, int) and not isinstance(a, bool) for a in argnums)):
        t, single = tuple(argnums), False
    else:
        raise TypeError(f"argnums: expected an int or a non-empty tuple of ints, got {argnums!r}")
    for a in t:
        if not -nargs <= a < nargs:
            raise ValueError(f"argnums: {a} is out of range for {nargs} positional arguments of fun ({who})")
    t = tuple(a % nargs for a in t)
    if len(set(t)) != len(t):
        raise ValueError(f"argnums: repeated argument indices in {argnums!r}")
    return t, single


class _Program:
    """The traced program of ``fun`` at ``args``: flattened leaves, the differentiated ones and
    the jaxpr (cached per structure and shapes by the callers)."""

    def __init__(self, fun, argnums, args, kwargs, who):
        if not callable(fun):
            raise TypeError(f"fun: expected a callable, got {type(fun).__name__}")
        if not args:
            raise TypeError(f"{who}: fun needs at least one positional argument")
        self.argnums, self.single = _argnums(argnums, len(args), who)
        leaves, self.treedef = jax.tree_util.tree_flatten(args)
        if any(isinstance(l, jax.core.Tracer) for l in leaves):
            raise TypeError(f"{who}: arguments are JAX tracers; ties are decided on concrete values, so it cannot "
                            "run under jax.jit, jax.vmap or jax.grad")
        self.leaves = [jnp.asarray(l) for l in leaves]
        counts = [len(jax.tree_util.tree_leaves(a)) for a in args]
        starts = np.cumsum([0] + counts)
        self.diff = [i for a in self.argnums for i in range(starts[a], starts[a + 1])]
        self.diff_trees = [jax.tree_util.tree_structure(args[a]) for a in self.argnums]
        for i in self.diff:
            x = self.leaves[i]
            if not R.is_float(x):
                raise TypeError(f"{who}: differentiated arguments must be floating point, "
                                f"got dtype {x.dtype} (leaf {i})")
            if x.dtype != jnp.float64:
                warnings.warn(f"{who}: argument leaf {i} is {x.dtype}; ties are decided reliably only in float64 "
                              "(jax.config.update('jax_enable_x64', True))", UserWarning, stacklevel=4)
            if not bool(jnp.all(jnp.isfinite(x))):
                raise ValueError(f"{who}: argument leaf {i} contains non-finite values")
        self.sizes = [_size(self.leaves[i]) for i in self.diff]
        self.n = int(sum(self.sizes))
        treedef = self.treedef

        def flat_fun(*ls):
            return fun(*jax.tree_util.tree_unflatten(treedef, ls), **kwargs)

        self.closed, out_shape = jax.make_jaxpr(flat_fun, return_shape=True)(*self.leaves)
        self.out_tree = jax.tree_util.tree_structure(out_shape)
        for o in jax.tree_util.tree_leaves(out_shape):
            if not jnp.issubdtype(o.dtype, jnp.floating):
                raise TypeError(f"{who}: outputs must be floating point, got dtype {o.dtype}")
        self.out_shapes = [o.shape for o in jax.tree_util.tree_leaves(out_shape)]
        self._actual = None
        self.who = who

    def actual(self):
        """The outputs at the point, evaluated primitive by primitive."""
        if self._actual is None:
            outs = jax.core.eval_jaxpr(self.closed.jaxpr, self.closed.consts, *self.leaves)
            self._actual = [np.asarray(o, np.float64) for o in outs]
        return self._actual

    def run(self, decider, M):
        """Interpret at the point with direction matrix M (n × k): the outputs' tangent rows
        stacked (m × k), after checking that the outputs are decided, finite and continuous."""
        k = M.shape[1]
        ctx = _Ctx(k, decider)
        offsets = np.cumsum([0] + self.sizes)
        inputs = [_T(l) for l in self.leaves]
        for j, i in enumerate(self.diff):
            shape = self.leaves[i].shape
            inputs[i] = _T(self.leaves[i], np.ascontiguousarray(M[offsets[j]:offsets[j + 1]].T).reshape((k,) + shape),
                           True)
        outs = _eval_closed(ctx, self.closed, inputs)
        return self.finish(ctx, outs)

    def finish(self, ctx, outs):
        rows = []
        for j, (o, a) in enumerate(zip(outs, self.actual())):
            lim = np.asarray(o.val, np.float64).ravel()
            a = a.ravel()
            if not np.all(np.isfinite(lim)) and np.all(np.isfinite(a)):
                pos = int(np.flatnonzero(~np.isfinite(lim))[0])
                raise ValueError(
                    f"{self.who}: output {j} (flat position {pos}) is not finite on the piece selected by the "
                    f"directions (value {lim[pos]!r}) while the program's value at the point is {a[pos]!r}: a "
                    "removable singularity (0/0) written with where; not supported"
                )
            bad = ~R.values_agree(np.stack([lim, a]), 0.0)
            if np.any(bad):
                pos = int(np.flatnonzero(bad)[0])
                raise JumpError(
                    f"{self.who}: output {j} (flat position {pos}) jumps at the point: its one-sided limit "
                    f"along the directions is {lim[pos]!r}, its value there {a[pos]!r}, so it has no "
                    "directional derivative"
                )
            r = _rows(ctx, o, np.shape(o.val))
            if not np.all(np.isfinite(r)):
                raise ValueError(
                    f"{self.who}: the derivative of output {j} is not finite (primitive "
                    f"'{ctx.nonfinite}', e.g. sqrt or log at 0): the program is not locally Lipschitz here"
                )
            rows.append(r)
        return np.concatenate(rows) if rows else np.zeros((0, ctx.k))

    def direction_matrix(self, d, name):
        """Flatten a pytree of directions like the differentiated arguments to a vector (n,)."""
        trees = d if not self.single else (d,)
        if not self.single and not isinstance(d, (tuple, list)) or len(trees) != len(self.argnums):
            raise TypeError(f"{name}: expected a tuple of {len(self.argnums)} pytrees (one per argnum)")
        parts, j = [], 0
        for tree, ref in zip(trees, self.diff_trees):
            leaves, td = jax.tree_util.tree_flatten(tree)
            if td != ref:
                raise TypeError(f"{name}: expected the pytree structure {ref} of the differentiated argument, got {td}")
            for leaf in leaves:
                arr = np.asarray(leaf)
                shape = self.leaves[self.diff[j]].shape
                if arr.shape != shape:
                    raise ValueError(f"{name}: leaf {j} has shape {arr.shape}, expected {shape}")
                if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
                    raise TypeError(f"{name}: leaf {j} must be real numbers, got dtype {arr.dtype}")
                arr = arr.astype(np.float64)
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"{name}: leaf {j} contains non-finite values")
                parts.append(arr.ravel())
                j += 1
        return np.concatenate(parts) if parts else np.zeros(0)

    def unflatten_outputs(self, flat):
        out, off = [], 0
        for s in self.out_shapes:
            size = int(np.prod(s, dtype=np.int64))
            out.append(jnp.asarray(flat[off:off + size].reshape(s)))
            off += size
        return jax.tree_util.tree_unflatten(self.out_tree, out)


def directional_derivative(fun: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """The directional derivative f′(x; d) = lim_{t↓0} (f(x + t d) - f(x)) / t of a
    piecewise-smooth program.

    ``directional_derivative(fun, argnums)(*args, d)``: ``d`` (the last positional argument) has
    the pytree structure and shapes of ``args[argnums]`` (a tuple of such pytrees for a tuple
    ``argnums``), like the tangents of ``jax.jvp``; the result is a pytree like ``fun``'s output.

    Math: one forward pass carrying (value, tangent) with the directional rules of piecewise
    differentiation (Griewank 1994, "Automatic directional differentiation of nonsmooth
    composite functions"; Griewank 2013): |u|′ = sign(u)·u̇ off 0 and |u̇| at 0, max′ the tangent of
    the larger value, at a tie max(u̇, v̇), ties of comparisons decided by the sign of u̇ - v̇,
    sign/floor/ceil/round one-sided (see the module docstring).  It is the first column of the
    LD-derivative (``ld_derivative``) with M = [d].

    Errors: ``JumpError`` when the output jumps along d, ``AmbiguousTieError`` when a tie in value
    and in the derivative along d (of a non-affine quantity) changes the result, ``NoRuleError``
    for primitives without a rule.

    Examples:
        >>> import jax, jax.numpy as jnp; jax.config.update("jax_enable_x64", True)
        >>> f = lambda x: jax.nn.relu(x) - jax.nn.relu(-x)      # the identity
        >>> float(directional_derivative(f)(0.0, -2.0))
        -2.0
        >>> g = lambda x: jnp.max(jnp.abs(x))
        >>> directional_derivative(g)(jnp.zeros(2), jnp.array([1.0, -3.0])).item()
        3.0
    """
    def wrapped(*args, **kwargs):
        if len(args) < 2:
            raise TypeError("directional_derivative: call it as (*args, d), the direction d last")
        prog = _Program(fun, argnums, args[:-1], kwargs, "directional_derivative")
        d = prog.direction_matrix(args[-1], "d")
        if not np.any(d):
            return prog.unflatten_outputs(np.zeros(sum(int(np.prod(s, dtype=np.int64)) for s in prog.out_shapes)))
        rows = prog.run(_LexDecider(), d[:, None])
        return prog.unflatten_outputs(rows[:, 0] + 0.0)

    return wrapped


def ld_derivative(fun: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., np.ndarray]:
    """The LD-derivative f′(x; M) = [f⁽⁰⁾′(x; m₁), f⁽¹⁾′(x; m₂), ..., f⁽ᵏ⁻¹⁾′(x; m_k)] (m × k) of
    Khan & Barton (2015), for any direction matrix M (n × k, columns are directions, in the
    flattening order of ``conservative.jacobian``): f⁽⁰⁾ = f, f⁽ʲ⁾ = (f⁽ʲ⁻¹⁾)′(x; m_j).

    ``ld_derivative(fun, argnums)(*args, M)``.  Its first column is f′(x; m₁); for M square and
    nonsingular, f′(x; M) M⁻¹ is the lexicographic derivative (``lexicographic_jacobian``).

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np; jax.config.update("jax_enable_x64", True)
        >>> ld_derivative(lambda x: jnp.abs(x[0] - x[1]))(jnp.zeros(2), np.eye(2)).tolist()
        [[1.0, -1.0]]
    """
    def wrapped(*args, **kwargs):
        if len(args) < 2:
            raise TypeError("ld_derivative: call it as (*args, M), the direction matrix M last")
        prog = _Program(fun, argnums, args[:-1], kwargs, "ld_derivative")
        M = _check_M(args[-1], prog.n, square=False)
        return prog.run(_LexDecider(), M) + 0.0

    return wrapped


def _check_M(M, n, square):
    try:
        M = np.asarray(M)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"M: expected a 2-D array of numbers, got {type(M).__name__}") from exc
    if M.dtype == object or not np.issubdtype(M.dtype, np.number) or np.iscomplexobj(M):
        raise TypeError(f"M: expected a real 2-D array, got dtype {M.dtype}")
    M = M.astype(np.float64)
    if M.ndim != 2 or M.shape[0] != n or M.shape[1] < 1 or (square and M.shape[1] != n):
        want = f"({n}, {n})" if square else f"({n}, k) with k >= 1"
        raise ValueError(f"M: expected shape {want} (rows: the {n} flattened differentiated inputs), got {M.shape}")
    if not np.all(np.isfinite(M)):
        raise ValueError("M: contains non-finite values")
    if square and n:
        c = np.linalg.cond(M)
        if not c < 1e12:
            raise ValueError(f"M: must be nonsingular (its condition number is {c:.3g} ≥ 1e12)")
    return M


def lexicographic_jacobian(fun: Callable[..., Any], argnums: int | Sequence[int] = 0
                           ) -> Callable[..., np.ndarray]:
    """The lexicographic derivative J_L f(x; M) = f′(x; M) M⁻¹ (Khan & Barton 2015, Nesterov 2005),
    computed in one vector forward pass.

    ``lexicographic_jacobian(fun, argnums)(*args, M=None)``: an (output size) × (input size)
    array, rows and columns flattened as in ``conservative.jacobian`` (argnums order, pytree
    leaves, C order).  ``M`` (n × n, nonsingular; default the identity) holds the directions
    as columns; the LD-derivative f′(x; M) is ``ld_derivative``.

    Math: the pass carries (u, U̇) with U̇ = u′(x; M) for every intermediate u and the lexicographic
    rules (module docstring): abs(u)˙ = fsign(u, U̇)·U̇, max/min by the lexicographic order of the
    rows (value first), comparisons by the lexicographic sign.  J_L is an element of the
    lexicographic subdifferential ∂_L f(x) (Nesterov 2005), and for programs that are
    piecewise differentiable in the sense of Scholtes (PC¹: abs, max, min, clamp, sort, ReLU,
    where on comparisons composed with smooth maps) it lies in the Clarke Jacobian ∂ᶜf(x) (Khan &
    Barton 2015, Thm. 2.6 and Prop. 2.7).  That inclusion needs every nonsmooth primitive to be
    PC¹; with a multivariate Euclidean norm (‖·‖₂ = sqrt(Σu²), not PC¹ at 0) the program is not
    locally Lipschitz-differentiable there and the method stops (non-finite derivative error).
    Unlike ``conservative.jacobian`` (a set of program selections) the ties of all occurrences are
    decided by one perturbation, so J_L is a derivative of the *function*: relu(x) - relu(-x) gives
    1 at 0, |x| - |x| gives 0, softplus 1/2.

    Examples:
        >>> import jax, jax.numpy as jnp; jax.config.update("jax_enable_x64", True)
        >>> f = lambda x: jnp.abs(x) - jnp.abs(x)
        >>> lexicographic_jacobian(f)(jnp.zeros(1)).tolist()
        [[0.0]]
        >>> lexicographic_jacobian(jnp.max)(jnp.zeros(2)).tolist()
        [[1.0, 0.0]]
        >>> lexicographic_jacobian(jnp.max)(jnp.zeros(2), M=-jnp.eye(2)).tolist()
        [[0.0, 1.0]]
    """
    def wrapped(*args, M=None, **kwargs):
        prog = _Program(fun, argnums, args, kwargs, "lexicographic_jacobian")
        n = prog.n
        M = np.eye(n) if M is None else _check_M(M, n, square=True)
        Y = prog.run(_LexDecider(), M)
        # + 0.0: no negative zeros in the result
        return (np.linalg.solve(M.T, Y.T).T if n else Y) + 0.0

    return wrapped


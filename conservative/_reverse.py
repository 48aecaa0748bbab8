"""Reverse mode (VJP form) for the conservative Jacobian of programs with few outputs.

``jacobian_reverse(fun)(x)`` returns the same ``MatrixSet`` as ``conservative.jacobian(fun)(x)``
(same semantics: module docstring of ``_jacobian``), at the cost of a few VJPs instead of one JVP
per input column.  The program's jaxpr is evaluated op by op at the point (so ties are decided on
the values the forward interpreter sees), recording each primitive and, at each nonsmooth one, its
active pieces.  The sweep back carries, for each value v, the transposed adjoint

    A_v(σ)ᵀ = C_v + Σ_g T_{v,g}[σ_g]        (rows: positions of v, columns: the m outputs)

the transpose of the forward representation (★) of ``_selections``: C_v is ∂out/∂v at the
untied pieces, T_{v,g} a table over the options of the base choice g stored on the rows of v it
touches.  Smooth primitives pull C_v and every table back through their (linear) VJP; a tied
position of a nonsmooth primitive (``max``/``min``/``abs``/``clamp``, ``reduce_max``/``reduce_min``,
``select_n`` on a tied comparison whose branch values agree) turns its adjoint row into a new base
choice, one option per active piece, merged with the groups that row already depends on.  A
comparison read by several ``select_n`` gives one base choice per position, shared by all of them
(correlated: one axis); comparisons asking about the same tie (``a < b``, ``b >= a``, ...) share it
as in forward mode.  Groups are disjoint, so the result is C + Σ_g conv{T_g[a]} (a Minkowski sum of
hulls), the forward set conv{J_σ} (Bolte & Pauwels 2021: sum and chain rule of conservative
calculus, one independent choice per occurrence of a nonsmooth primitive).

Supported subset (anything else raises ``_Unsupported`` and the entry falls back to the exact forward
``conservative.jacobian``; ``jac.last_mode`` / ``jac.last_reason`` say which ran and why):

* smooth primitives of ``_rules.SMOOTH`` except spectral ones, with elementwise, data-movement and
  ``reduce_sum`` fast paths, any other through ``jax.vjp`` batched with ``vmap``;
* ``jit``/``pjit``/``closed_call``/``remat``/``custom_jvp_call``/``custom_vjp_call`` inlined to the
  primal (their custom rules ignored, as in forward mode);
* the nonsmooth primitives above, ``sign``/``floor``/``ceil``/``round`` away from their jumps,
  ``argmax``/``argmin`` without ties, comparisons (a tied one only as a ``select_n`` predicate of
  the same shape, its operands inputs-dependent values or literals, keyed like ``_ties._comparison_tie``);
* interacting ties: a tie whose adjoint row already depends on other ties (a ReLU of a sum of tied
  ReLUs, read after them in the sweep back) merges its base choice with their groups, as the forward
  ``choose`` does (``_selections.Choices``: union-find, tables lifted to the joint options), so the
  product of choices is kept exactly; the joint options are bounded by ``max_selections`` (above it,
  forward mode decides).

Falls back as well on control flow reading the inputs, sort, lowered primitives, jump points,
non-finite values or derivatives anywhere (the forward interpreter decides removable singularities
and whether a non-finite derivative reaches an output).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import _rules as R
from ._jacobian import _prepare, value_and_jacobian
from ._matrix_set import MatrixSet, SetTooLargeError, _Group
from ._selections import Choices, _add_table
from ._ties import comparison_kind

__all__ = ["jacobian_reverse", "value_and_jacobian_reverse"]

#: a fallback to forward mode warns when the forward call has at least this many input columns
FALLBACK_WARN_COLUMNS = 20_000
#: entries of one batched VJP call's cotangents (memory bound of the generic rule)
VJP_BATCH_ENTRIES = 20_000_000

_CALLS = ("jit", "pjit", "closed_call", "core_call", "remat2", "checkpoint", "remat", "custom_jvp_call",
          "custom_vjp_call", "custom_vjp_call_jaxpr")
_ELEMENTWISE = {
    "add", "sub", "mul", "div", "neg", "exp", "exp2", "log", "log1p", "expm1", "sin", "cos", "tan", "asin", "acos",
    "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "logistic", "sqrt", "rsqrt", "cbrt",
    "integer_pow", "pow", "square", "erf", "erfc", "erf_inv", "lgamma", "digamma", "convert_element_type", "copy",
    "copy_p", "reduce_precision", "logaddexp",
}
_MOVES = {"broadcast_in_dim", "reshape", "squeeze", "expand_dims", "transpose", "slice", "concatenate", "rev",
          "dynamic_slice", "gather", "pad"}
_SPECTRAL = {"eigh", "svd", "qr", "lu", "householder_product", "cholesky_update"}


class _Unsupported(Exception):
    """The program leaves the subset reverse mode handles; forward mode gives the answer."""


def _size(x) -> int:
    return int(np.prod(np.shape(x), dtype=np.int64))


class _State:
    def __init__(self, tol):
        self.tol = tol
        self.next_id = 0
        self.tape = []  # (kind, eqn, vals, in_ids, out_ids, extra)
        self.tied_cmp = {}  # id of a tied comparison result -> its tie mask (flat)
        self.shape = {}  # id -> shape of the value

    def new(self, val):
        i = self.next_id
        self.next_id += 1
        self.shape[i] = np.shape(val)
        return i


def _is_literal(x) -> bool:
    return type(x).__name__ == "Literal"


def _bind(eqn, vals):
    out = eqn.primitive.bind(*vals, **eqn.params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _run(st, jaxpr, consts, args):
    """Evaluate ``jaxpr`` at concrete values; ``args`` are (id or None, value) pairs."""
    env = {}
    for v, c in zip(jaxpr.constvars, consts):
        env[v] = (None, c)
    for v, a in zip(jaxpr.invars, args):
        env[v] = a

    def read(x):
        return (None, x.val) if _is_literal(x) else env[x]

    for eqn in jaxpr.eqns:
        ins = [read(x) for x in eqn.invars]
        name = eqn.primitive.name
        if name in _CALLS:
            p = eqn.params
            inner = p.get("jaxpr", p.get("call_jaxpr", p.get("fun_jaxpr")))
            if hasattr(inner, "consts"):
                outs = _run(st, inner.jaxpr, inner.consts, ins)
            else:
                outs = _run(st, inner, [], ins)
        else:
            outs = _eqn(st, eqn, ins)
        for v, o in zip(eqn.outvars, outs):
            env[v] = o
    return [read(v) for v in jaxpr.outvars]


def _tie_key(name, eqn, ids, shape):
    """The tie a comparison asks about and whether it is True under option 0, as the forward
    interpreter keys it (``_ties._comparison_tie``): ``a < b``, ``a <= b``, ``b > a``, ``b >= a``
    share one choice (option 0: a below b); ``==``/``!=`` share one (option 1: equal)."""
    refs = []
    for var, i in zip(eqn.invars, ids):
        if _is_literal(var):
            refs.append(("lit", repr(np.asarray(var.val).tolist()), str(np.asarray(var.val).dtype)))
        elif i is None:
            raise _Unsupported("a tied comparison with a constant operand")
        else:
            refs.append(("var", i))
    kind, refs, flip = comparison_kind(name, refs)
    return (kind, refs, shape), bool(flip)


def _eqn(st, eqn, ins):
    name, p = eqn.primitive.name, eqn.params
    ids = [i for i, _ in ins]
    vals = [v for _, v in ins]
    for k, i in enumerate(ids):
        if i in st.tied_cmp and not (name == "select_n" and k == 0):
            raise _Unsupported(f"a tied comparison read by '{name}'")
    dep = [i is not None and i not in st.tied_cmp for i in ids]
    outs = _bind(eqn, vals)
    if not any(dep):
        if name == "select_n" and ids[0] in st.tied_cmp:
            raise _Unsupported("a tied comparison selecting between constants")
        return [(None, o) for o in outs]
    if name in R.COMPARISONS:
        if R.is_float(vals[0]) and eqn.invars[0] is not eqn.invars[1]:
            amb = np.asarray(R.ambiguous_compare(name, vals[0], vals[1], st.tol)).ravel()
            if amb.any():
                i = st.new(outs[0])
                st.tied_cmp[i] = (amb, *_tie_key(name, eqn, ids, np.shape(outs[0])))
                return [(i, outs[0])]
        return [(None, outs[0])]
    if name in R.JUMPS:
        x = np.asarray(vals[0], np.float64)
        if name == "sign":
            d = x
        elif name == "round":
            d = np.abs(x - np.floor(x)) - 0.5
        else:
            d = x - np.round(x)
        if R.tie(d, st.tol).any():
            raise _Unsupported(f"'{name}' at a jump point")
        return [(None, o) for o in outs]
    if name in R.LOCALLY_CONSTANT:
        return [(None, o) for o in outs]
    if name in ("argmax", "argmin"):
        x = np.asarray(vals[0], np.float64)
        ax = p["axes"][0]
        ext = x.max(axis=ax, keepdims=True) if name == "argmax" else x.min(axis=ax, keepdims=True)
        if np.any(R.tie(x - ext, st.tol).sum(axis=ax) > 1):
            raise _Unsupported(f"'{name}' at a tie")
        return [(None, o) for o in outs]
    if eqn.primitive.multiple_results or not all(R.is_float(o) for o in outs):
        raise _Unsupported(f"primitive '{name}' with a discrete or multiple result")
    out = outs[0]
    for o in [out] + [v for v, d in zip(vals, dep) if d]:
        if not np.all(np.isfinite(np.asarray(o))):
            raise _Unsupported("a non-finite value")
    shape = np.shape(out)
    extra = None
    if name in ("max", "min", "abs", "clamp"):
        xs = [np.broadcast_to(np.asarray(v, np.float64), shape).ravel() for v in vals]
        tol = st.tol
        if name == "max":
            t = R.tie(xs[0] - xs[1], tol)
            active = np.stack([(xs[0] > xs[1]) | t, (xs[1] > xs[0]) | t])
            branches = [(0, 1.0), (1, 1.0)]
        elif name == "min":
            t = R.tie(xs[0] - xs[1], tol)
            active = np.stack([(xs[0] < xs[1]) | t, (xs[1] < xs[0]) | t])
            branches = [(0, 1.0), (1, 1.0)]
        elif name == "abs":
            t = R.tie(xs[0], tol)
            active = np.stack([(xs[0] > 0) | t, (xs[0] < 0) | t])
            branches = [(0, 1.0), (0, -1.0)]
        else:
            lo, x, hi = xs
            tlo, thi = R.tie(x - lo, tol), R.tie(x - hi, tol)
            active = np.stack([(x < lo) | tlo, ((x > lo) & (x < hi)) | tlo | thi, (x > hi) | thi])
            branches = [(0, 1.0), (1, 1.0), (2, 1.0)]
        kind, extra = "select", (branches, active, None)
    elif name == "select_n":
        pred = np.asarray(vals[0]).ravel()
        cases = len(vals) - 1
        if ids[0] in st.tied_cmp:
            if np.shape(vals[0]) != shape:
                raise _Unsupported("a tied scalar predicate")
            tied = st.tied_cmp[ids[0]][0]
            cv = np.stack([np.broadcast_to(np.asarray(v, np.float64), shape).ravel()[tied] for v in vals[1:]])
            if not np.all(R.values_agree(cv, st.tol)):
                raise _Unsupported("a tied select whose branch values differ (a jump or a resolved option)")
        else:
            tied = np.zeros(_size(out), bool)
        pred = np.broadcast_to(pred.astype(np.int64), (_size(out),))
        active = np.stack([(pred == a) | tied for a in range(cases)])
        kind, extra = "select", ([(a + 1, 1.0) for a in range(cases)], active, ids[0] if tied.any() else None)
    elif name in ("reduce_max", "reduce_min"):
        axes = tuple(p["axes"])
        x = np.asarray(vals[0], np.float64)
        keep = [a for a in range(x.ndim) if a not in axes]
        xm = np.transpose(x, keep + list(axes)).reshape(_size(out), -1)
        src = np.transpose(np.arange(x.size).reshape(x.shape), keep + list(axes)).reshape(_size(out), -1)
        ext = xm.max(axis=1, keepdims=True) if name == "reduce_max" else xm.min(axis=1, keepdims=True)
        kind, extra = "reduce_ext", (src, R.tie(xm - ext, st.tol))
    elif name in R.SMOOTH and name not in _SPECTRAL:
        if name in _ELEMENTWISE and all(np.broadcast_shapes(np.shape(v), shape) == shape
                                        for v, d in zip(vals, dep) if d):
            kind = "elementwise"
        elif name in _MOVES:
            kind = "move"
        elif name == "reduce_sum":
            kind = "reduce_sum"
        else:
            kind = "generic"
    else:
        raise _Unsupported(f"primitive '{name}'")
    oid = st.new(out)
    st.tape.append((kind, eqn, vals, [i if d else None for i, d in zip(ids, dep)], oid, extra))
    return [(oid, out)]


# ------------------------------------------------------------------ adjoints
class _Adj:
    """Transposed adjoint (s_v, m): center plus tables {gid: (rows, vals (K, len(rows), m))}."""

    __slots__ = ("center", "tables")

    def __init__(self, center, tables=None):
        self.center = center
        self.tables = tables if tables is not None else {}


def _accumulate(adj, i, a, st=None):
    if a is None:
        return
    if st is not None:
        a = _canonical(st, a)
    if i not in adj:
        adj[i] = a
        return
    if st is not None:
        adj[i] = _canonical(st, adj[i])
    b = adj[i]
    b.center = b.center + a.center
    for g, (rows, vals) in a.tables.items():
        _add_table(b.tables, g, rows, vals)


def _scale(a, d, drop=False):
    """Rows of the adjoint times d (elementwise local derivative); ``drop``: leave out the tables
    on whose rows d vanishes."""
    tables = a.tables
    if drop and tables:
        lens = np.array([len(r) for r, _ in tables.values()])
        hit = np.asarray(d[np.concatenate([r for r, _ in tables.values()])] != 0, np.int64)
        keep = np.add.reduceat(hit, np.concatenate([[0], np.cumsum(lens)[:-1]])) > 0
        tables = {g: t for (g, t), kp in zip(tables.items(), keep) if kp}
    return _Adj(a.center * d[:, None], {g: (r, v * d[r][:, None]) for g, (r, v) in tables.items()})


def _pull_index(a, src, s_u):
    """v[p] = u[src[p]] (src = -1: not read): A_u[j] = Σ_{src[p]=j} A_v[p]."""
    m = a.center.shape[1]
    valid = src >= 0
    c = np.zeros((s_u, m))
    np.add.at(c, src[valid], a.center[valid])
    tables = {}
    for g, (rows, vals) in a.tables.items():
        r2 = src[rows]
        keep = r2 >= 0
        if not keep.any():
            continue
        r2, vals = r2[keep], vals[..., keep, :]
        uniq, inv = np.unique(r2, return_inverse=True)
        acc = np.zeros((len(uniq),) + vals.shape[:-2] + (m,))
        np.add.at(acc, inv, np.moveaxis(vals, -2, 0))
        tables[g] = (uniq, np.moveaxis(acc, 0, -2))
    return _Adj(c, tables)


def _pull_gather(a, dst):
    """v[q] = Σ_{dst[j]=q} u[j]: A_u[j] = A_v[dst[j]]."""
    order = np.argsort(dst, kind="stable")
    sd = dst[order]
    tables = {}
    for g, (rows, vals) in a.tables.items():
        lo, hi = np.searchsorted(sd, rows, "left"), np.searchsorted(sd, rows, "right")
        counts = hi - lo
        if counts.sum() == 0:
            continue
        u_rows = np.concatenate([order[s:e] for s, e in zip(lo, hi)])
        which = np.repeat(np.arange(len(rows)), counts)
        srt = np.argsort(u_rows)
        tables[g] = (u_rows[srt], vals[..., which[srt], :])
    return _Adj(a.center[dst], tables)


def _to_operand(a, shape_u, shape_v):
    """Adjoint of an operand of shape ``shape_u`` broadcast (size-1 or missing dimensions) to the
    output's shape ``shape_v``: the rows of the positions reading one operand entry are summed."""
    shape_u, shape_v = tuple(shape_u), tuple(shape_v)
    if shape_u == shape_v:
        return a
    src = np.broadcast_to(np.arange(math.prod(shape_u)).reshape(shape_u), shape_v).ravel()
    return _pull_index(a, src, math.prod(shape_u))


def _np_partial(name, p, vals, k, shape):
    """∂out/∂operand_k of common elementwise primitives in numpy (saves a JVP compilation)."""
    xs = [np.asarray(v, np.float64) for v in vals]
    if name in ("add", "convert_element_type", "copy", "copy_p"):
        return np.ones(shape)
    if name == "sub":
        return np.full(shape, 1.0 if k == 0 else -1.0)
    if name == "neg":
        return np.full(shape, -1.0)
    if name == "mul":
        return np.broadcast_to(xs[1 - k], shape)
    if name == "integer_pow":
        n = p["y"]
        return n * xs[0] ** (n - 1) if n != 0 else np.zeros(shape)
    if name == "square":
        return 2 * xs[0]
    return None


def _np_move(name, p, vals, k):
    """Input position read by each output position (-1: none) of a data-movement primitive, in numpy."""
    shape = np.shape(vals[k])
    ix = np.arange(_size(vals[k])).reshape(shape)
    if name == "reshape":
        return ix.ravel()
    if name == "broadcast_in_dim":
        out_shape, bd = tuple(p["shape"]), list(p["broadcast_dimensions"])
        view = ix.reshape([shape[bd.index(d)] if d in bd else 1 for d in range(len(out_shape))])
        return np.broadcast_to(view, out_shape).ravel()
    if name == "transpose":
        return np.transpose(ix, p["permutation"]).ravel()
    if name == "squeeze":
        return ix.ravel()
    if name == "expand_dims":
        return ix.ravel()
    if name == "slice":
        strides = p["strides"] or (1,) * len(shape)
        sl = tuple(slice(a, b, c) for a, b, c in zip(p["start_indices"], p["limit_indices"], strides))
        return ix[sl].ravel()
    if name == "rev":
        return np.flip(ix, tuple(p["dimensions"])).ravel() if p["dimensions"] else ix.ravel()
    if name == "concatenate":
        parts = [ix if j == k else np.full(np.shape(v), -1, np.int64) for j, v in enumerate(vals)]
        return np.concatenate(parts, axis=p["dimension"]).ravel()
    return None


def _backward(st, entry, a):
    kind, eqn, vals, in_ids, oid, extra = entry
    p = eqn.params
    out = {}
    dep = [k for k, i in enumerate(in_ids) if i is not None]
    if kind == "elementwise":
        shape = st.shape[oid]
        for k in dep:
            def f(x, k=k):
                vs = list(vals)
                vs[k] = x
                return eqn.primitive.bind(*vs, **p)
            d = _np_partial(eqn.primitive.name, p, vals, k, shape)
            if d is None:
                x = jnp.asarray(vals[k])
                d = jax.jvp(f, (x,), (jnp.ones_like(x),))[1]
            d = np.broadcast_to(np.asarray(d, np.float64), shape).ravel()
            out[k] = _to_operand(_scale(a, d), np.shape(vals[k]), shape)
    elif kind == "move":
        for k in dep:
            src = _np_move(eqn.primitive.name, p, vals, k)
            if src is not None:
                out[k] = _pull_index(a, src, _size(vals[k]))
                continue
            probe = []
            for j, v in enumerate(vals):
                if j == k:
                    probe.append(jnp.arange(1, _size(v) + 1, dtype=jnp.float64).reshape(np.shape(v)))
                elif R.is_float(v):
                    probe.append(jnp.zeros(np.shape(v), jnp.float64))
                else:
                    probe.append(v)
            moved = np.asarray(eqn.primitive.bind(*probe, **p), np.float64).ravel()
            # positions filled rather than read (a gather's fill value, NaN by default) read nothing
            src = np.where(np.isfinite(moved), np.rint(np.nan_to_num(moved)), 0).astype(np.int64) - 1
            out[k] = _pull_index(a, src, _size(vals[k]))
    elif kind == "reduce_sum":
        shape_u = np.shape(vals[0])
        axes = tuple(p["axes"])
        keep = [d for d in range(len(shape_u)) if d not in axes]
        coords = np.indices(shape_u).reshape(len(shape_u), -1)
        kept_shape = tuple(shape_u[d] for d in keep)
        dst = np.ravel_multi_index(tuple(coords[d] for d in keep), kept_shape) if keep else np.zeros(
            coords.shape[1] if coords.ndim == 2 else 1, np.int64)
        out[0] = _pull_gather(a, np.asarray(dst, np.int64).ravel())
    elif kind == "generic":
        out.update(_pull_vjp(st, eqn, vals, dep, oid, a))
    elif kind == "select":
        branches, active, cmp_id = extra
        out.update(_pull_select(st, vals, dep, branches, active, cmp_id, a, st.shape[oid]))
    elif kind == "reduce_ext":
        src, active = extra
        out[0] = _pull_extremum(st, src, active, _size(vals[0]), a)
    return {k: out[k] for k in out if k in dep}


def _pull_vjp(st, eqn, vals, dep, oid, a):
    def f(*xs):
        vs = list(vals)
        for k, x in zip(dep, xs):
            vs[k] = x
        return eqn.primitive.bind(*vs, **eqn.params)

    _, vjp_fn = jax.vjp(f, *[jnp.asarray(vals[k]) for k in dep])
    shape_v = st.shape[oid]
    s_v, m = a.center.shape
    cts = [a.center.T]
    spans = []
    for g, (rows, v) in a.tables.items():
        lead = v.shape[:-2]
        K = math.prod(lead)
        dense = np.zeros((K, m, s_v))
        dense[:, :, rows] = np.transpose(v.reshape((K,) + v.shape[-2:]), (0, 2, 1))
        spans.append((g, lead))
        cts.append(dense.reshape(K * m, s_v))
    cts = np.concatenate(cts)
    s_in = sum(_size(vals[k]) for k in dep)
    step = max(1, VJP_BATCH_ENTRIES // max(s_v, s_in, 1))
    vm = jax.vmap(vjp_fn)
    parts = []
    for s in range(0, len(cts), step):
        res = vm(jnp.asarray(cts[s:s + step]).reshape((-1,) + tuple(shape_v)))
        parts.append([np.asarray(r, np.float64).reshape(r.shape[0], -1) for r in res])
    res = [np.concatenate([pt[j] for pt in parts]) for j in range(len(dep))]
    out = {}
    for j, k in enumerate(dep):
        r = res[j]
        adj = _Adj(np.ascontiguousarray(r[:m].T))
        pos = m
        for g, lead in spans:
            K = math.prod(lead)
            blk = r[pos:pos + K * m].reshape(K, m, -1)
            pos += K * m
            rows = np.flatnonzero(np.any(blk != 0, axis=(0, 1)))
            if len(rows):
                adj.tables[g] = (rows, np.transpose(blk[:, :, rows], (0, 2, 1)).reshape(lead + (len(rows), m)))
        out[k] = adj
    return out


def _touched(a, positions):
    """Mask of ``positions`` whose rows some table of ``a`` touches (a tie there interacts)."""
    if not a.tables or not len(positions):
        return np.zeros(len(positions), bool)
    rows = np.concatenate([r for r, _ in a.tables.values()])
    return np.isin(positions, rows)


def _pull_select(st, vals, dep, branches, active, cmp_id, a, shape):
    """y[p] = branch_{σ_p}[p] among the active branches; tied positions become base choices."""
    K, s = active.shape
    m = a.center.shape[1]
    count = active.sum(axis=0)
    first = np.argmax(active, axis=0)
    single = count == 1
    tied = np.flatnonzero(~single)
    a = _Adj(a.center, dict(a.tables))
    touched = _touched(a, tied)
    joint = {}  # tied position whose row depends on earlier ties -> (root, R, base)
    for q in tied[touched].tolist():
        if cmp_id is not None:
            _, key, flip = st.tied_cmp[cmp_id]
            if (key, q) not in st.cmp_groups:
                st.cmp_groups[(key, q)] = st.new_gid(2)
            b = st.cmp_groups[(key, q)]
        else:
            b = st.new_gid(int(active[:, q].sum()))
        joint[q] = (*_joint_row(st, a, q, b), b)
    tied = tied[~touched]
    full = {}
    for opt, (k, fac) in enumerate(branches):
        if k not in dep:
            continue
        mask = (single & (first == opt)) * fac
        part = _scale(a, mask, drop=True)
        _accumulate(full, k, part)
    if len(tied):
        if cmp_id is not None:
            _, key, flip = st.tied_cmp[cmp_id]
            gids = []
            for q in tied.tolist():
                if (key, q) not in st.cmp_groups:
                    st.cmp_groups[(key, q)] = st.new_gid(2)
                gids.append(st.cmp_groups[(key, q)])
        else:
            gids = [st.new_gid(int(active[:, q].sum())) for q in tied]
        if cmp_id is not None:
            opts = np.tile(np.array([int(flip), int(not flip)]), (len(tied), 1))
        else:
            opts = None
            sub = active[:, tied]
            if np.all(sub == sub[:, :1]):  # the same active branches at every tied position
                opts = np.tile(np.flatnonzero(sub[:, 0]), (len(tied), 1))
        if opts is not None:
            # vectorized: position t, option o gives branch opts[t, o] the row fac · A_v[tied[t]]
            rows_c = a.center[tied]
            for k in {branches[b][0] for b in np.unique(opts)} & set(dep):
                V = np.zeros((len(tied), opts.shape[1], 1, m))
                for o in range(opts.shape[1]):
                    bk, fac = zip(*[branches[b] for b in opts[:, o]])
                    sel = (np.array(bk) == k)
                    V[sel, o, 0] += np.array(fac)[sel, None] * rows_c[sel]
                tabs = full[k].tables
                for t, (q, g) in enumerate(zip(tied.tolist(), gids)):
                    if g in tabs:
                        _add_table(tabs, g, np.array([q]), V[t])
                    else:
                        tabs[g] = (np.array([q]), V[t])
        else:
            for q, g in zip(tied, gids):
                opts_q = np.flatnonzero(active[:, q])
                row = a.center[q]
                for o, b in enumerate(opts_q):
                    k, fac = branches[b]
                    if k not in dep:
                        continue
                    v = np.zeros((len(opts_q), 1, m))
                    v[o, 0] = fac * row
                    _add_table(full[k].tables, g, np.array([q]), v)
    for q, (root, row_q, b) in joint.items():
        opts_q = ([int(st.tied_cmp[cmp_id][2]), int(not st.tied_cmp[cmp_id][2])] if cmp_id is not None
                  else np.flatnonzero(active[:, q]).tolist())
        for o, br in enumerate(opts_q):
            k, fac = branches[br]
            if k in dep:
                v = (fac * row_q * _indicator(st, b, o, root))[..., None, :]
                _add_table(full[k].tables, root, np.array([q]), v)
    return {k: _to_operand(_canonical(st, full[k]), np.shape(vals[k]), shape) for k in full}


def _pull_extremum(st, src, active, s_u, a):
    m = a.center.shape[1]
    count = active.sum(axis=1)
    single = count == 1
    first = src[np.arange(len(src)), np.argmax(active, axis=1)]
    lines = np.flatnonzero(~single)
    a = _Adj(a.center, dict(a.tables))
    joint = {}
    for o in lines[_touched(a, lines)].tolist():
        b = st.new_gid(int(active[o].sum()))
        joint[o] = (*_joint_row(st, a, o, b), b)
    res = _pull_index(a, np.where(single, first, -1), s_u)
    for o in lines:
        rows = np.sort(src[o][active[o]])
        n = len(rows)
        if o in joint:
            root, row_o, b = joint[o]
            v = np.stack([row_o * _indicator(st, b, k, root) for k in range(n)], axis=-2)  # (..., n, m)
            _add_table(res.tables, root, rows, v)
            continue
        v = np.zeros((n, n, m))
        v[np.arange(n), np.arange(n)] = a.center[o]
        _add_table(res.tables, st.new_gid(n), rows, v)
    return _canonical(st, res)


def _gids(st, max_selections):
    st.cmp_groups = {}
    st.merged = False  # no group merged yet: tables are keyed by their roots
    st.ch = Choices(max_selections)
    st.new_gid = st.ch.new_group


def _canonical(st, a):
    """Re-key the tables of ``a`` by their current root group (lifted to its joint options)."""
    ch = st.ch
    if not st.merged or all(ch.find(g) == g for g in a.tables):
        return a
    out: dict = {}
    for g, (rows, vals) in a.tables.items():
        root = ch.find(g)
        _add_table(out, root, rows, np.array(ch.lift(vals, g, root)))
    return _Adj(a.center, out)


def _joint_row(st, a, q, b):
    """Merge the new base choice ``b`` with the groups the row ``q`` of ``a`` depends on, remove row q
    from their tables and return (root, R) with R (root options..., m) the row under each joint option."""
    ch = st.ch
    touching = [g for g, (rows, _) in a.tables.items() if np.any(rows == q)]
    root = ch.merge([b] + touching)
    st.merged = True
    R = np.broadcast_to(a.center[q], ch.shape(root) + a.center[q].shape).copy()
    for g in touching:
        rows, vals = a.tables.pop(g)
        at = int(np.flatnonzero(rows == q)[0])
        R = R + ch.lift(vals[..., at, :], g, root)
        keep = rows != q
        if keep.any():
            a.tables[g] = (rows[keep], vals[..., keep, :])
    return root, R


def _indicator(st, b, o, root):
    """[σ_b = o] on the joint options of ``root`` ⊇ b, shape (root options..., 1)."""
    e = np.zeros((st.ch.size[b], 1))
    e[o] = 1.0
    return st.ch.lift(e, b, root)


def _reverse(closed, leaves, diff, tol, max_selections):
    st = _State(tol)
    _gids(st, max_selections)
    args = []
    in_ids = {}
    for i, leaf in enumerate(leaves):
        if i in diff:
            in_ids[i] = st.new(leaf)
            args.append((in_ids[i], leaf))
        else:
            args.append((None, leaf))
    outs = _run(st, closed.jaxpr, closed.consts, args)
    for _, o in outs:
        if not R.is_float(o):
            raise TypeError(f"jacobian: outputs must be floating point, got dtype {jnp.result_type(o)}")
        if not np.all(np.isfinite(np.asarray(o))):
            raise _Unsupported("a non-finite output")
    out_sizes = [_size(o) for _, o in outs]
    m = int(sum(out_sizes))
    adj = {}
    off = 0
    for (i, _), s in zip(outs, out_sizes):
        if i is not None and i not in st.tied_cmp:
            c = np.zeros((s, m))
            c[np.arange(s), off + np.arange(s)] = 1.0
            _accumulate(adj, i, _Adj(c))
        off += s
    for entry in reversed(st.tape):
        a = adj.pop(entry[4], None)
        if a is None:
            continue
        for k, b in _backward(st, entry, _canonical(st, a)).items():
            _accumulate(adj, entry[3][k], b, st)
    sizes = [_size(leaves[i]) for i in diff]
    N = int(sum(sizes))
    center = np.zeros((N, m))
    tables: dict = {}
    off = 0
    for i, s in zip(diff, sizes):
        a = adj.get(in_ids[i])
        if a is not None:
            a = _canonical(st, a)
            center[off:off + s] += a.center
            for g, (rows, vals) in a.tables.items():
                _add_table(tables, g, rows + off, vals)
        off += s
    flat = np.concatenate([v.ravel() for _, v in tables.values()]) if tables else np.zeros(0)
    if not np.all(np.isfinite(center)) or not np.all(np.isfinite(flat)):
        raise _Unsupported("a non-finite derivative")
    return outs, _assemble(center, tables, m, N)


def _assemble(center_t, tables, m, N):
    """MatrixSet (m, N) of C + Σ_g conv{T_g[a]} from transposed center and tables."""
    center = np.ascontiguousarray(center_t.T).reshape(-1)
    groups = []
    # two-option tables on one row (independent kinks of elementwise primitives): vectorized
    simple = [(r, v) for r, v in tables.values() if v.ndim == 3 and v.shape[0] == 2 and len(r) == 1]
    rest = [(r, v) for r, v in tables.values() if not (v.ndim == 3 and v.shape[0] == 2 and len(r) == 1)]
    if simple:
        rows = np.array([r[0] for r, _ in simple])
        V = np.stack([v[:, 0, :] for _, v in simple])  # (G, 2, m)
        idx = np.arange(m)[None, :] * N + rows[:, None]  # (G, m)
        np.add.at(center, idx.ravel(), V[:, 0, :].ravel())
        diff = V[:, 1, :] - V[:, 0, :]
        if m == 1:  # one entry per group: the points 0 and diff, as views of one array
            P = np.zeros((len(rows), 2, 1))
            P[:, 1, 0] = diff[:, 0]
            groups.extend(_Group(idx[g], P[g]) for g in np.flatnonzero(diff[:, 0] != 0).tolist())
        else:
            for g in np.flatnonzero(np.any(diff != 0, axis=1)):
                live = np.flatnonzero(diff[g] != 0)
                groups.append(_Group(idx[g, live], np.stack([np.zeros(len(live)), diff[g, live]])))
    for rows, vals in rest:
        K = math.prod(vals.shape[:-2])
        pts = np.ascontiguousarray(np.swapaxes(vals.reshape((K,) + vals.shape[-2:]), 1, 2)).reshape(K, -1)
        idx = (np.arange(m)[:, None] * N + rows[None, :]).ravel()
        np.add.at(center, idx, pts[0])
        pts = pts - pts[0]
        live = np.flatnonzero(np.any(pts != 0, axis=0))
        if len(live):
            pts = np.unique(pts[:, live], axis=0)
            if len(pts) > 1:
                groups.append(_Group(idx[live], pts))
    return MatrixSet._from_sparse((m, N), center, tuple(groups))


def value_and_jacobian_reverse(fun: Callable, argnums: int | tuple[int, ...] = 0, *, tol: float = 0.0,
                               max_selections: int = 4096) -> Callable[..., tuple[Any, MatrixSet]]:
    """Like ``jacobian_reverse`` but the returned function gives ``(fun(*args), J)``.

    The returned function's attributes ``last_mode`` ("reverse" or "forward") and ``last_reason``
    say what the last call did (see ``jacobian_reverse``)."""
    forward = value_and_jacobian(fun, argnums, tol=tol, max_selections=max_selections, mode="forward")
    cache: dict = {}

    def vj(*args, **kwargs):
        leaves, treedef, diff = _prepare(fun, argnums, args)

        def flat_fun(*ls):
            return fun(*jax.tree_util.tree_unflatten(treedef, ls), **kwargs)

        key = None if kwargs else (treedef, tuple((l.shape, str(l.dtype)) for l in leaves))
        entry = cache.get(key) if key is not None else None
        if entry is None:
            closed, out_shape = jax.make_jaxpr(flat_fun, return_shape=True)(*leaves)
            entry = (closed, jax.tree_util.tree_structure(out_shape))
            if key is not None:
                cache[key] = entry
        closed, out_tree = entry
        try:
            outs, J = _reverse(closed, leaves, diff, tol, max_selections)
        except (_Unsupported, SetTooLargeError) as e:
            vj.last_mode, vj.last_reason = "forward", str(e)
            N = sum(_size(leaves[i]) for i in diff)
            if N >= FALLBACK_WARN_COLUMNS:
                warnings.warn(f"jacobian_reverse: {e}; falling back to forward mode with {N} input columns",
                              UserWarning, stacklevel=2)
            return forward(*args, **kwargs)
        vj.last_mode, vj.last_reason = "reverse", None
        return jax.tree_util.tree_unflatten(out_tree, [o for _, o in outs]), J

    vj.last_mode, vj.last_reason = None, None
    return vj


def jacobian_reverse(fun: Callable, argnums: int | tuple[int, ...] = 0, *, tol: float = 0.0,
                     max_selections: int = 4096) -> Callable[..., MatrixSet]:
    """The conservative Jacobian of ``fun`` in reverse mode (VJP form), for programs with few outputs.

    Same arguments, semantics, result and errors as ``conservative.jacobian`` (the set
    conv{J_σ : σ a selection of the active pieces}, module docstring of ``_jacobian``), computed with
    O(outputs) VJP sweeps instead of O(inputs) JVPs: the conservative gradient set of a scalar loss
    costs a few VJPs plus the bookkeeping of its ties.  Programs outside the supported subset (module
    docstring) are handed to the forward ``conservative.jacobian``, which is exact; the returned
    function's attributes ``last_mode`` ("reverse" or "forward") and ``last_reason`` say what the last
    call did, and a ``UserWarning`` is issued when such a fallback has at least
    ``FALLBACK_WARN_COLUMNS`` input columns (forward mode may then be slow).
    ``conservative.jacobian(fun, mode="reverse")`` is this function.
    """
    vj = value_and_jacobian_reverse(fun, argnums, tol=tol, max_selections=max_selections)

    def jac(*args, **kwargs):
        try:
            return vj(*args, **kwargs)[1]
        finally:
            jac.last_mode, jac.last_reason = vj.last_mode, vj.last_reason

    jac.last_mode, jac.last_reason = None, None
    return jac

"""Sparse Jacobian representations for large inputs: the representation (★) of ``_selections``
with a ``scipy.sparse`` center and vectorized batches of independent ties.

For an intermediate value v (size s) and N input columns,

    J_v(σ) = C_v + Σ_e opts_e[σ_{g(e)}]  placed on row r(e),                       (★★)

where C_v is a sparse (s, N) matrix and each *entry* e of a ``Batch`` is one row r(e) of one
base choice g(e) (a tie with K options), with its option rows opts_e[a] (sparse, 1×N).  A
base choice may own several entries (a broadcast condition, a value read twice); base choices
of ``SRep`` never interact (they are created only where the option rows do not depend on
earlier ties), so the conservative Jacobian is C + Σ_g conv{Σ_{e∈g} opts_e[a] : a < K_g}:
a Minkowski sum of hulls stored with O(nnz(C) + Σ nnz(opts)) numbers, never n×N.

Primitives map (★★) through their linearization L (s_out × s_in), which is sparse for the
programs this is for: elementwise primitives (L diagonal, from one JVP with a tangent of
ones), sums (``reduce_sum``), data movement (row selections found by moving an iota), and any
primitive with a small Jacobian (L dense, computed by JAX).  Everything else converts the rep to
the dense ``JRep`` (``densify``), which raises a clear error above ``MAX_DENSE_ENTRIES``
entries.  ``jacobian`` uses this representation when the input Jacobian would have at least
``SPARSE_MIN_ENTRIES`` entries; the two give the same set (tests compare them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from . import _rules as R
from ._matrix_set import MatrixSet, SetTooLargeError, _Group
from ._selections import JRep, _add_table
from ._sparse_flat import Pack

__all__ = ["SRep", "Batch", "SPARSE_MIN_ENTRIES", "MAX_DENSE_ENTRIES", "identity", "densify"]

#: ``jacobian`` interprets with sparse reps when size(inputs) × N reaches this many entries
SPARSE_MIN_ENTRIES = 2**20
#: a sparse rep is converted to a dense one (for a primitive without a sparse rule) only up to
#: this many entries (size × N); above, a ``SetTooLargeError`` names the primitive
MAX_DENSE_ENTRIES = 2**25
#: a primitive without a structured linearization gets a dense L (s_out × s_in) up to this size
MAX_DENSE_LINEAR = 2**22
#: a value whose Jacobian has more than this fraction of nonzeros continues in the dense
#: representation (when it fits under ``MAX_DENSE_ENTRIES``): dense products are faster there
DENSE_FRACTION = 0.1
#: a dense linearization is computed (by reverse mode) for at most this many outputs, unless the
#: dense representation of the input does not fit
SMALL_OUTPUT = 64

_ELEMENTWISE = {
    "add", "sub", "mul", "div", "neg", "exp", "exp2", "log", "log1p", "expm1", "sin", "cos", "tan", "asin",
    "acos", "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "logistic", "sqrt", "rsqrt",
    "cbrt", "integer_pow", "pow", "square", "erf", "erfc", "erf_inv", "lgamma", "digamma", "convert_element_type",
    "copy", "copy_p",
}
#: data movement: the linearization selects (or zeroes) rows of each data operand
_MOVES = {"reshape", "broadcast_in_dim", "squeeze", "expand_dims", "transpose", "slice", "rev",
          "dynamic_slice", "gather", "concatenate", "pad"}


def _csr(x, shape=None):
    return sp.csr_array(x, shape=shape)


class Batch:
    """Entries of independent base choices: ``gids`` (t,), ``rows`` (t,), ``opts`` K sparse (t, N)."""

    __slots__ = ("gids", "rows", "opts")

    def __init__(self, gids, rows, opts):
        self.gids, self.rows, self.opts = gids, rows, opts

    @property
    def t(self):
        return len(self.gids)


class SRep:
    """(★★): sparse ``center`` (s, N) and a list of ``Batch``."""

    __slots__ = ("center", "batches")

    def __init__(self, center, batches=()):
        self.center = center
        self.batches = [b for b in batches if b.t]

    @property
    def size(self) -> int:
        return self.center.shape[0]

    @property
    def ncols(self) -> int:
        return self.center.shape[1]

    @property
    def tables(self) -> dict:
        """The base choices this value depends on (what ``_free_groups`` reads)."""
        return dict.fromkeys(int(g) for b in self.batches for g in b.gids)

    def rows_with_ties(self) -> np.ndarray:
        return np.unique(np.concatenate([b.rows for b in self.batches])) if self.batches else np.zeros(0, np.int64)

    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.center.data))
                    and all(np.all(np.isfinite(o.data)) for b in self.batches for o in b.opts))

    def to_matrix_set(self, ch, shape) -> MatrixSet:
        if any(ch.find(int(g)) != int(g) for b in self.batches for g in b.gids):
            # a base choice was merged with others in the dense representation: use it
            return densify(ch, self, "the output").to_matrix_set(ch, shape)
        return _to_matrix_set(self, shape)


def identity(size: int, N: int, offset: int) -> SRep:
    return SRep(_csr((np.ones(size), (np.arange(size), offset + np.arange(size))), shape=(size, N)))


def is_sparse(rep) -> bool:
    return isinstance(rep, SRep)


# ------------------------------------------------------------------ linear maps
def _rows_scale(M, coef):
    """diag(coef) @ M for a csr M (coef per row)."""
    M = M.copy()
    M.data = M.data * np.repeat(coef, np.diff(M.indptr))
    return M


def apply_linear(rep: SRep, L) -> SRep:
    """L @ J for a sparse L (s_out × s_in): the center maps to L C, an entry on row r to the entries
    (o, L[o, r]·opts) for the nonzeros of column r of L."""
    L = sp.csc_array(L)
    L.eliminate_zeros()
    center = _csr(L @ rep.center)
    batches = []
    for b in rep.batches:
        start, stop = L.indptr[b.rows], L.indptr[b.rows + 1]
        counts = stop - start
        src = np.repeat(np.arange(b.t), counts)
        pos = np.repeat(start - np.cumsum(np.concatenate([[0], counts[:-1]])), counts) + np.arange(counts.sum())
        rows, coef = L.indices[pos].astype(np.int64), L.data[pos]
        batches.append(Batch(b.gids[src], rows, [_rows_scale(o[src], coef) for o in b.opts]))
    return SRep(center, batches)


def add(reps) -> SRep | None:
    """J_1 + J_2 + ... (same selections): centers add, batches are concatenated (equal batches add)."""
    reps = [r for r in reps if r is not None]
    if not reps:
        return None
    center = reps[0].center
    for r in reps[1:]:
        center = center + r.center
    batches: list = []
    for r in reps:
        for b in r.batches:
            for i, c in enumerate(batches):
                if (c.t == b.t and len(c.opts) == len(b.opts) and np.array_equal(c.gids, b.gids)
                        and np.array_equal(c.rows, b.rows)):
                    batches[i] = Batch(c.gids, c.rows, [x + y for x, y in zip(c.opts, b.opts)])
                    break
            else:
                batches.append(b)
    return SRep(_csr(center), batches)


def restrict(rep: SRep, mask: np.ndarray) -> SRep:
    """Keep the rows where ``mask`` is true."""
    center = _rows_scale(rep.center, mask.astype(np.float64))
    center.eliminate_zeros()
    batches = []
    for b in rep.batches:
        keep = mask[b.rows]
        if keep.any():
            batches.append(Batch(b.gids[keep], b.rows[keep], [o[np.flatnonzero(keep)] for o in b.opts]))
    return SRep(center, batches)


def _dense_entries(rep: SRep) -> int:
    """Numbers stored by the dense ``JRep`` of ``rep``: the center and one (K, 1, N) table per entry."""
    s, N = rep.center.shape
    return s * N + sum(len(b.opts) * b.t * N for b in rep.batches)


def densify(ch, rep, what: str) -> JRep:
    """The dense ``JRep`` of a sparse rep (for rules without a sparse form); a ``SetTooLargeError``
    above ``MAX_DENSE_ENTRIES`` entries."""
    if not isinstance(rep, SRep):
        return rep
    s, N = rep.center.shape
    if _dense_entries(rep) > MAX_DENSE_ENTRIES:
        raise SetTooLargeError(
            f"jacobian: {what} needs the dense Jacobian of a value of size {s} with respect to {N} inputs "
            f"and {sum(b.t for b in rep.batches)} tie rows ({_dense_entries(rep)} entries, above "
            f"conservative._sparse_reps.MAX_DENSE_ENTRIES={MAX_DENSE_ENTRIES}): it has "
            "no sparse rule (sparse rules: elementwise primitives, sums, data movement, small linearizations, "
            "max/min/abs/clamp/where with independent ties). Raise the limit if the memory is there."
        )
    tables: dict = {}
    for b in rep.batches:
        dense = np.stack([o.toarray() for o in b.opts])  # (K, t, N)
        for e in range(b.t):
            g = int(b.gids[e])
            root = ch.find(g)
            _add_table(tables, root, np.array([b.rows[e]]), ch.lift(dense[:, e : e + 1, :], g, root))
    return JRep(rep.center.toarray(), tables)


# ------------------------------------------------------------------ primitives
def _jvp_ones(eqn, vals, diff):
    """Row j: the JVP of the primitive with a tangent of ones in input diff[j] (zeros elsewhere)."""
    p = eqn.params
    fun = ((lambda *a: eqn.primitive.bind(*a, **p)) if eqn.primitive.multiple_results
           else (lambda *a: (eqn.primitive.bind(*a, **p),)))
    B = len(diff)
    shapes = [np.shape(vals[i]) for i in diff]
    dtypes = [jnp.result_type(vals[i]) for i in diff]
    tang = [np.zeros((B,) + s) for s in shapes]
    for j in range(B):
        tang[j][j] = 1.0
    pkey = R._params_key(p)
    primals = [jnp.asarray(v) for v in vals]
    tangents = [jnp.asarray(t, d) for t, d in zip(tang, dtypes)]
    if pkey is None:
        out = R._column_jvp(fun, diff, primals, tangents)
    else:
        key = ("sparse-ones", eqn.primitive.name, pkey, tuple(diff))
        fn = R._COMPILED.get(key)
        if fn is None:
            fn = jax.jit(lambda ps, ts: R._column_jvp(fun, diff, ps, ts))
            R._COMPILED[key] = fn
        out = fn(tuple(primals), tuple(tangents))
    return np.asarray(out[0], np.float64).reshape(B, -1)


def _move_map(eqn, vals, i, s_in, s_out):
    """L for data movement of operand i: the primitive applied to 1 + iota (others zero)."""
    args = []
    for j, v in enumerate(vals):
        if j == i:
            args.append(jnp.asarray(np.arange(1, s_in + 1, dtype=np.float64).reshape(np.shape(v))))
        elif R.is_float(v):
            args.append(jnp.zeros(np.shape(v), jnp.float64))
        else:
            args.append(jnp.asarray(v))
    params = dict(eqn.params)
    if "new_dtype" in params:
        return None
    out = np.asarray(eqn.primitive.bind(*args, **params), np.float64).ravel()
    if out.size != s_out or not np.all(np.isfinite(out)) or np.any(out != np.round(out)) or np.any(out < 0) \
            or np.any(out > s_in):
        return None
    o = np.flatnonzero(out)
    return sp.csr_array((np.ones(len(o)), (o, out[o].astype(np.int64) - 1)), shape=(s_out, s_in))


def _sum_map(eqn, x_shape, s_out):
    axes = tuple(eqn.params["axes"])
    keep = [a for a in range(len(x_shape)) if a not in axes]
    out_idx = np.arange(s_out).reshape([x_shape[a] for a in keep])
    out_idx = np.expand_dims(out_idx, axes) if axes else out_idx
    out_idx = np.broadcast_to(out_idx, x_shape).ravel()
    s_in = out_idx.size
    return sp.csr_array((np.ones(s_in), (out_idx, np.arange(s_in))), shape=(s_out, s_in))


def _dense_map(eqn, vals, i, s_out):
    p = eqn.params

    def f(a):
        args = list(vals)
        args[i] = a
        out = eqn.primitive.bind(*args, **p)
        return jnp.ravel(out[0] if eqn.primitive.multiple_results else out)

    x = jnp.asarray(vals[i])
    J = jax.jacrev(f)(x) if s_out <= x.size else jax.jacfwd(f)(x)
    return sp.csr_array(np.asarray(J, np.float64).reshape(s_out, -1))


def push(ctx, eqn, vals, reps, outs):
    """The reps of the outputs of a smooth primitive from sparse input reps, or None where there is
    no sparse form (the caller densifies)."""
    if len(outs) != 1 or not R.is_float(outs[0]):
        return None
    diff = [i for i, r in enumerate(reps) if r is not None and R.is_float(vals[i])]
    reps = list(reps)
    for i in diff:
        if isinstance(reps[i], JRep) and not reps[i].tables:
            reps[i] = SRep(_csr(reps[i].center))  # a dense value without ties joins the sparse ones
    if any(not isinstance(reps[i], SRep) for i in diff):
        return None
    name = eqn.primitive.name
    out_shape = np.shape(outs[0])
    s_out = int(np.prod(out_shape, dtype=np.int64))
    maps = []
    if name in _ELEMENTWISE and all(np.shape(vals[i]) in (out_shape, ()) for i in diff):
        coefs = _jvp_ones(eqn, vals, diff)
        for j, i in enumerate(diff):
            d = coefs[j]
            if np.shape(vals[i]) == out_shape:
                maps.append(sp.diags_array(d, format="csr"))
            else:
                maps.append(sp.csr_array(d.reshape(-1, 1)))
    else:
        for i in diff:
            s_in = reps[i].size
            L = None
            if name == "reduce_sum":
                L = _sum_map(eqn, np.shape(vals[i]), s_out)
            elif name in _MOVES:
                L = _move_map(eqn, vals, i, s_in, s_out)
            if L is None and s_out * s_in <= MAX_DENSE_LINEAR:
                full = s_in * reps[i].ncols
                if full <= MAX_DENSE_ENTRIES and (s_out > SMALL_OUTPUT or reps[i].center.nnz > DENSE_FRACTION * full):
                    return None  # a dense map of many outputs: the dense (compiled JVP) representation is faster
                L = _dense_map(eqn, vals, i, s_out)
            if L is None:
                return None
            maps.append(L)
    if not all(np.all(np.isfinite(L.data)) for L in maps):
        return None  # the dense rules record where a derivative is not finite
    out = add([apply_linear(reps[i], L) for i, L in zip(diff, maps)])
    if out.center.nnz > DENSE_FRACTION * s_out * out.ncols and _dense_entries(out) <= MAX_DENSE_ENTRIES:
        return [densify(ctx.choices, out, f"primitive '{name}'")]  # the Jacobian became dense
    return [out]


def broadcast_to(rep: SRep, val, shape) -> SRep:
    shape = tuple(shape)
    s_in = int(np.prod(np.shape(val), dtype=np.int64))
    idx = np.broadcast_to(np.arange(s_in).reshape(np.shape(val)), shape).ravel()
    return apply_linear(rep, sp.csr_array((np.ones(idx.size), (np.arange(idx.size), idx)), shape=(idx.size, s_in)))


def negate(rep: SRep) -> SRep:
    return apply_linear(rep, sp.diags_array(-np.ones(rep.size), format="csr"))


def select(ctx, branches, active, owner=None):
    """``select_elementwise`` on sparse branches: rows of the single active branch, and at tied
    positions one new base choice (per position, or per ``owner``) among the active branches in
    order.  None when an active branch's row at a tied position already depends on a tie (the
    dense rule merges those choices)."""
    K, s = active.shape
    N = ctx.ncols
    if any(b is not None and not isinstance(b, SRep) for b in branches):
        return None
    count = active.sum(axis=0)
    first = np.argmax(active, axis=0)
    single = count == 1
    tied = np.flatnonzero(~single)
    for a, b in enumerate(branches):
        if b is not None and b.batches and np.isin(tied[active[a, tied]], b.rows_with_ties()).any():
            return None
    zero = SRep(_csr((s, N)))
    br = [zero if b is None else b for b in branches]
    base = add([restrict(b, single & (first == a)) for a, b in enumerate(br) if (single & (first == a)).any()])
    base = base or zero
    if len(tied) == 0:
        return base
    batches = list(base.batches)
    if owner is not None:
        own = owner[tied]
        uniq, inv = np.unique(own, return_inverse=True)
        # one choice per owner needs the same active branches at each of its positions
        pattern = active[:, tied]
        ref = np.zeros((K, len(uniq)), bool)
        ref[:, inv] = pattern
        if np.any(ref[:, inv] != pattern):
            return None
        gid_of = ctx.choices.new_groups(count[tied][np.unique(inv, return_index=True)[1]])
        gids = gid_of[inv]
    else:
        gids = ctx.choices.new_groups(count[tied])
    for k in np.unique(count[tied]):
        sel = count[tied] == k
        P = tied[sel]
        order = np.argsort(~active[:, P], axis=0, kind="stable")[:k]  # (k, |P|): the j-th active branch
        opts = []
        for j in range(k):
            o = None
            for a in range(K):
                m = order[j] == a
                if m.any():
                    part = _rows_scale(br[a].center[P], m.astype(np.float64))
                    o = part if o is None else o + part
            o.eliminate_zeros()
            opts.append(_csr(o))
        batches.append(Batch(gids[sel], P, opts))
    return SRep(base.center, batches)


def vstack(reps, sizes, N) -> SRep:
    centers, batches, off = [], [], 0
    for r, s in zip(reps, sizes):
        if r is None:
            centers.append(_csr((s, N)))
        else:
            centers.append(r.center)
            batches += [Batch(b.gids, b.rows + off, b.opts) for b in r.batches]
        off += s
    return SRep(_csr(sp.vstack(centers, format="csr")), batches)


# ------------------------------------------------------------------ to MatrixSet
def _flat(M, n):
    C = sp.coo_array(M)
    C.sum_duplicates()
    return np.asarray(C.row, np.int64) * n + np.asarray(C.col, np.int64), np.asarray(C.data, np.float64)


def _to_matrix_set(rep: SRep, shape) -> MatrixSet:
    """C + Σ_g conv{points of g}: each base choice's first point is folded into the center, its
    points are kept on the entries where they differ (exact deduplication)."""
    m, n = shape
    cidx, cval = [], []
    ci, cv = _flat(rep.center, n)
    cidx.append(ci)
    cval.append(cv)
    all_gids = np.concatenate([b.gids for b in rep.batches]) if rep.batches else np.zeros(0, np.int64)
    unique_gids = len(np.unique(all_gids)) == len(all_gids)
    packs, groups = [], []
    for b in rep.batches:
        ri, rv = _flat(b.opts[0], n)
        # entry e's row of opts is row e of the (t, N) matrix: flat index on the output is rows[e]*n + col
        cidx.append(b.rows[ri // n] * n + ri % n)
        cval.append(rv)
    if unique_gids:
        for b in rep.batches:
            if len(b.opts) == 2:
                D = _csr(b.opts[1] - b.opts[0])
                D.eliminate_zeros()
                w = np.diff(D.indptr)
                for width in np.unique(w[w > 0]):
                    sel = np.flatnonzero(w == width)
                    sub = D[sel]
                    cols = sub.indices.reshape(len(sel), width).astype(np.int64)
                    idx = b.rows[sel][:, None] * n + cols
                    vals = np.zeros((len(sel), 2, width))
                    vals[:, 1, :] = sub.data.reshape(len(sel), width)
                    packs.append(Pack(idx, vals))
            else:
                for e in range(b.t):
                    pts = sp.vstack([o[[e]] for o in b.opts]).toarray()
                    _group_from_points(groups, pts - pts[0], b.rows[e] * n + np.arange(n))
    else:
        by_gid: dict = {}
        for b in rep.batches:
            for e in range(b.t):
                by_gid.setdefault(int(b.gids[e]), []).append((b, e))
        for entries in by_gid.values():
            K = len(entries[0][0].opts)
            parts = [sp.vstack([o[[e]] for o in b.opts]).toarray() for b, e in entries]  # (K, N) each
            rows = [int(b.rows[e]) for b, e in entries]
            flat = np.concatenate([r * n + np.arange(n) for r in rows])
            pts = np.concatenate([p - p[0] for p in parts], axis=1).reshape(K, -1)
            u, inv = np.unique(flat, return_inverse=True)
            acc = np.zeros((K, len(u)))
            np.add.at(acc.T, inv, pts.T)
            _group_from_points(groups, acc, u)
    packs += [Pack(np.stack([g.idx for g in gs]), np.stack([g.vals for g in gs]))
              for gs in _by_shape(groups).values()]
    center = (np.concatenate(cidx), np.concatenate(cval))
    return MatrixSet._from_packs((m, n), center, packs)


def _group_from_points(groups, pts, flat):
    """A group from points (K, w) on flat entries (the first point is zero: folded into the center)."""
    live = np.flatnonzero(np.any(pts != 0, axis=0))
    if len(live) == 0:
        return
    P = np.unique(pts[:, live], axis=0)  # contains the zero point (the first, in the center)
    if len(P) > 1:
        groups.append(_Group(flat[live], P))


def _by_shape(groups):
    out: dict = {}
    for g in groups:
        out.setdefault((g.k, len(g.idx)), []).append(g)
    return out

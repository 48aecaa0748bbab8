"""Extrema and orderings: ``max``/``min``/``abs``/``clamp``, ``reduce_max``/``reduce_min``,
``argmax``/``argmin`` indices and ``sort`` with tie blocks."""

from __future__ import annotations

import itertools
import math

import numpy as np

from . import _rules as R
from ._interpreter import _V, JumpError, _bind, _concat, _size, _split
from ._selections import choose
from ._ties import _as_options, _branch_reps, _eval_options


def _nonsmooth(ctx, eqn, invals):
    name, p = eqn.primitive.name, eqn.params
    if any(v.amb is not None for v in invals):
        return _eval_options(ctx, eqn, [_as_options(ctx, v) for v in invals])
    vals = [v.val for v in invals]
    outs = _bind(eqn, vals)
    tol = ctx.tol
    if name in ("argmax", "argmin") and not R.is_float(vals[0]):
        return [_V(o) for o in outs]
    if name in ("argmax", "argmin"):
        return [_arg_extremum(ctx, name, p, invals[0], outs[0])]
    out = outs[0]
    if name == "sort":
        return _sort(ctx, eqn, invals, outs)
    if all(v.rep is None for v in invals):
        return [_V(o) for o in outs]
    shape = np.shape(out)
    if name in ("max", "min", "abs", "clamp"):
        xs = [np.broadcast_to(np.asarray(v, np.float64), shape).ravel() for v in vals]
        if name == "max":
            t = R.tie(xs[0] - xs[1], tol)
            active = np.stack([(xs[0] > xs[1]) | t, (xs[1] > xs[0]) | t])
            branches = _branch_reps(ctx, invals, shape)
        elif name == "min":
            t = R.tie(xs[0] - xs[1], tol)
            active = np.stack([(xs[0] < xs[1]) | t, (xs[1] < xs[0]) | t])
            branches = _branch_reps(ctx, invals, shape)
        elif name == "abs":
            t = R.tie(xs[0], tol)
            active = np.stack([(xs[0] > 0) | t, (xs[0] < 0) | t])
            rep = invals[0].rep
            branches = [rep, R.negate(ctx, vals[0], rep)]
        else:  # clamp(lo, x, hi)
            lo, x, hi = xs
            tlo, thi = R.tie(x - lo, tol), R.tie(x - hi, tol)
            active = np.stack([(x < lo) | tlo, ((x > lo) & (x < hi)) | tlo | thi, (x > hi) | thi])
            branches = _branch_reps(ctx, invals, shape)
        return [_V(out, R.select_elementwise(ctx, branches, active))]
    # reduce_max / reduce_min
    axes = tuple(p["axes"])
    x = np.asarray(vals[0], np.float64)
    keep = [a for a in range(x.ndim) if a not in axes]
    xm = np.transpose(x, keep + list(axes)).reshape(_size(out), -1)
    src = np.transpose(np.arange(x.size).reshape(x.shape), keep + list(axes)).reshape(_size(out), -1)
    ext = xm.max(axis=1, keepdims=True) if name == "reduce_max" else xm.min(axis=1, keepdims=True)
    active = R.tie(xm - ext, tol)
    rep = invals[0].rep
    first = src[np.arange(len(src)), np.argmax(active, axis=1)]
    single = active.sum(axis=1) == 1
    base = rep.take_rows(first).restrict(single)
    blocks = [(np.array([o]), [rep.take_rows(np.array([j])) for j in src[o][active[o]]])
              for o in np.flatnonzero(~single)]
    return [_V(out, choose(ctx.choices, base, blocks) if blocks else base)]


def _arg_extremum(ctx, name, p, v, out):
    """``argmax``/``argmin`` along one axis.  Where several entries of a line are tied for the
    extremum (and depend on the inputs) the index is not locally constant: each tied index is an
    option of a new base choice (one per tied line), and the index carries its value under every
    option (``_V.alts``).  Computations that use it are evaluated option by option
    (``_eval_options``), so every use of one ``argmax`` shares its choice."""
    if v.rep is None:
        return _V(out)
    x = np.moveaxis(np.asarray(v.val, np.float64), p["axes"][0], -1)
    ext = x.max(axis=-1, keepdims=True) if name == "argmax" else x.min(axis=-1, keepdims=True)
    tied = R.tie(x - ext, ctx.tol)
    lines = [line for line in np.ndindex(tied.shape[:-1]) if tied[line].sum() > 1]
    if not lines:
        return _V(out)
    candidates = [np.flatnonzero(tied[line]) for line in lines]
    count = math.prod(len(c) for c in candidates)
    ctx.choices.check_limit(count, f"{name} has {len(lines)} tied lines with {count} joint index selections")
    bases = tuple(ctx.choices.new_group(len(c)) for c in candidates)
    base_val = np.asarray(out)
    table = np.empty(tuple(len(c) for c in candidates) + base_val.shape, dtype=base_val.dtype)
    for a in np.ndindex(table.shape[: len(bases)]):
        val = base_val.copy()
        for line, c, ai in zip(lines, candidates, a):
            val[line] = c[ai]
        table[a] = val
    return _V(out, None, None, (bases, table, None))


def _sort(ctx, eqn, invals, outs):
    """``lax.sort``: every operand is permuted by the stable lexicographic order of the first
    ``num_keys`` operands (``jnp.sort``, ``lax.sort_key_val``, ``jnp.argsort``...).

    Where the keys depend on the inputs and are tied (all keys equal within ``tol``), every
    ordering of the tie block is a selection, applied jointly to all operands (one choice per
    block).  A non-key float operand whose values differ inside a tie block makes the output
    jump there (``JumpError``).  Integer operands (argsort's indices) take every ordering too,
    with the same choices (``_permuted_options``).
    """
    p = eqn.params
    dim, nk = p["dimension"], p["num_keys"]
    if all(v.rep is None for v in invals):
        return [_V(o) for o in outs]
    shape = np.shape(invals[0].val)
    size = _size(invals[0].val)
    index = np.moveaxis(np.arange(size).reshape(shape), dim, -1)  # flat index of (line, j)
    keys = [np.moveaxis(np.asarray(v.val), dim, -1) for v in invals[:nk]]
    keys_vary = any(v.rep is not None for v in invals[:nk])
    src = np.empty(size, dtype=np.int64)  # output flat position -> input flat index
    blocks = []  # (output positions, input indices in stable order)
    for line in np.ndindex(index.shape[:-1]):
        order = np.lexsort([k[line] for k in reversed(keys)])
        src[index[line]] = index[line][order]
        if not keys_vary or len(order) < 2:
            continue
        tied = np.ones(len(order) - 1, dtype=bool)
        for k, v in zip(keys, invals):
            d = np.diff(np.asarray(k[line][order], np.float64))
            tied &= R.tie(d, ctx.tol) if R.is_float(v.val) else (d == 0)
        for a, b in R.tie_runs(tied):
            blocks.append((index[line][a:b], index[line][order][a:b]))
    for i, v in enumerate(invals[nk:], start=nk):
        if not R.is_float(v.val):
            continue
        vals = np.asarray(v.val, np.float64).ravel()
        for _, S in blocks:
            if not np.all(R.values_agree(vals[S][:, None], ctx.tol)):
                raise JumpError(
                    f"jacobian: sort with tied keys permutes operand {i}, whose values differ inside the "
                    "tie block: the output jumps here and is not path differentiable"
                )
    ops = [i for i, v in enumerate(invals) if v.rep is not None]
    bases = {i: invals[i].rep.take_rows(src) for i in ops}
    res = [_V(o, bases.get(i)) if R.is_float(o) else _V(o) for i, o in enumerate(outs)]
    if not blocks:
        return res
    mask = np.ones(size, dtype=bool)
    joint_blocks = []
    for P, S in blocks:
        ctx.choices.check_limit(math.factorial(len(S)), f"sort has a tie block of {len(S)} equal keys "
                                f"({math.factorial(len(S))} orderings)")
        mask[P] = False
        rows = np.concatenate([P + k * size for k in range(len(ops))])
        options = [_concat(ctx, [invals[i].rep.take_rows(S[list(pi)]) for i in ops], [len(S)] * len(ops))
                   for pi in itertools.permutations(range(len(S)))]
        joint_blocks.append((rows, options))
    gids = [ctx.choices.new_group(len(options)) for _, options in joint_blocks]
    base = _concat(ctx, [bases[i].restrict(mask) for i in ops], [size] * len(ops))
    joint = choose(ctx.choices, base, joint_blocks, gids)
    for i, rep in zip(ops, _split(joint, [size] * len(ops))):
        res[i] = _V(outs[i], rep)
    for i, v in enumerate(invals):  # integer operands (argsort's indices): one value per ordering
        if not R.is_float(v.val):
            res[i] = _permuted_options(ctx, np.asarray(v.val).ravel(), outs[i], blocks, gids)
    return res


def _permuted_options(ctx, flat_in, out, blocks, gids):
    """An integer operand of a sort with tie blocks: its output under every joint ordering of the
    blocks (``_V.alts``, sharing the blocks' base choices with the sorted floats), so that
    ``x[argsort(x)]`` gets every ordering, like ``jnp.sort(x)``."""
    live = [(P, S, g) for (P, S), g in zip(blocks, gids) if np.any(flat_in[S] != flat_in[S][0])]
    if not live:
        return _V(out)
    count = math.prod(math.factorial(len(S)) for _, S, _ in live)
    ctx.choices.check_limit(count, f"sort permutes an integer operand (argsort indices) over {len(live)} "
                            f"tie blocks: {count} joint orderings")
    perms = [list(itertools.permutations(range(len(S)))) for _, S, _ in live]
    stable = np.asarray(out).ravel()
    table = np.empty(tuple(len(p) for p in perms) + (stable.size,), dtype=stable.dtype)
    for a in np.ndindex(table.shape[:-1]):
        val = stable.copy()
        for (P, S, _), ps, ai in zip(live, perms, a):
            val[P] = flat_in[S[list(ps[ai])]]
        table[a] = val
    return _V(out, None, None, (tuple(g for _, _, g in live), table.reshape(table.shape[:-1] + np.shape(out)), None))

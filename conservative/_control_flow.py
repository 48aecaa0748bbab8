"""Control flow at the point: ``lax.cond`` (a tied predicate evaluates both branches), ``scan``
(unrolled for its length) and ``while_loop`` (unrolled for the trip count it has there)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import _rules as R
from ._interpreter import _V, JumpError, _concat, _eval_closed, _holding, _size, _split
from ._selections import JRep, choose
from ._ties import _as_options, _eval_options


@_holding
def _cond(ctx, eqn, invals):
    index, ops = invals[0], invals[1:]
    branches = eqn.params["branches"]
    i = int(np.asarray(index.val))
    if index.amb is None:
        return _eval_closed(ctx, branches[i], ops)
    candidates = sorted({0, 1} & set(range(len(branches))))
    results = [_eval_closed(ctx, branches[b], ops) for b in candidates]
    if any(o.amb is not None or o.alts is not None for r in results for o in r):
        raise ValueError("jacobian: lax.cond with a tied predicate whose branches return values that "
                         "themselves depend on a tie is not supported")
    for k in range(len(results[0])):
        vs = np.stack([np.asarray(r[k].val, np.float64).ravel() for r in results])
        if not np.all(R.values_agree(vs, ctx.tol)):
            # the outputs depend on the predicate's choice: carried option by option, like where
            return _eval_options(ctx, eqn, [_as_options(ctx, index)] + list(ops))
    outs = results[0]
    float_out = [k for k, o in enumerate(outs) if R.is_float(o.val)]
    sizes = [_size(outs[k].val) for k in float_out]
    if not float_out or all(r[k].rep is None for r in results for k in float_out):
        return outs
    options = [_concat(ctx, [r[k].rep for k in float_out], sizes) for r in results]
    total = sum(sizes)
    joint = choose(ctx.choices, JRep(np.zeros((total, ctx.ncols))), [(np.arange(total), options)])
    parts = _split(joint, sizes)
    new = list(outs)
    for k, rep in zip(float_out, parts):
        new[k] = _V(outs[k].val, rep)
    return new


def _slice_v(v, t, inner):
    val = v.val[t]
    rep = None if v.rep is None else v.rep.take_rows(np.arange(t * inner, (t + 1) * inner))
    amb = None if v.amb is None else v.amb[t]
    return _V(val, rep, amb)


@_holding
def _scan(ctx, eqn, invals):
    p = eqn.params
    nc, ncar, L = p["num_consts"], p["num_carry"], p["length"]
    consts, carry, xs = invals[:nc], list(invals[nc : nc + ncar]), invals[nc + ncar :]
    inner = [_size(x.val) // max(L, 1) for x in xs]
    ys = [None] * L
    order = range(L - 1, -1, -1) if p["reverse"] else range(L)
    for t in order:
        x_t = [_slice_v(x, t, s) for x, s in zip(xs, inner)]
        out = _eval_closed(ctx, p["jaxpr"], consts + carry + x_t)
        carry, ys[t] = out[:ncar], out[ncar:]
    n_y = len(eqn.outvars) - ncar
    stacked = []
    for k in range(n_y):
        per = [ys[t][k] for t in range(L)]
        val = (jnp.stack([y.val for y in per]) if L
               else jnp.zeros(eqn.outvars[ncar + k].aval.shape, eqn.outvars[ncar + k].aval.dtype))
        if any(y.amb is not None or y.alts is not None for y in per):
            raise ValueError("jacobian: scan outputs that depend on a tie (a tied comparison, argmax or "
                             "argsort index) are not supported")
        rep = None
        if any(y.rep is not None for y in per):
            rep = _concat(ctx, [y.rep for y in per], [_size(y.val) for y in per])
        stacked.append(_V(val, rep))
    return carry + stacked


@_holding
def _while(ctx, eqn, invals):
    p = eqn.params
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    cconsts, bconsts, carry = invals[:cn], invals[cn : cn + bn], list(invals[cn + bn :])
    step = 0
    while True:
        (pred,) = _eval_closed(ctx, p["cond_jaxpr"], cconsts + carry)
        if pred.amb is not None:
            raise JumpError(
                f"jacobian: while_loop condition is tied at iteration {step}: the trip count is not "
                "locally constant here"
            )
        if not bool(pred.val):
            return carry
        carry = _eval_closed(ctx, p["body_jaxpr"], bconsts + carry)
        step += 1

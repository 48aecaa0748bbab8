"""Tied comparisons and what reads them: ``where``/``select_n``, indicators, jumps, options.

A tied comparison is a boolean whose value is ambiguous (``_V.amb``).  ``where`` with agreeing
branches selects elementwise; with differing branches, and for any other primitive, the tie
becomes base choices and values are carried option by option (``_as_options``,
``_eval_options``) until they agree again (resolved) or reach an output (``_resolve_output``).
"""

from __future__ import annotations

import math

import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from . import _rules as R
from . import _sparse_reps as S
from ._interpreter import _V, JumpError, _bind, _eval_eqn, _holding, _size
from ._selections import JRep, add_reps, choose_joint


def _branch_reps(ctx, invals, shape):
    return [R.broadcast_to(ctx, v.val, v.rep, shape) for v in invals]


def _select_n(ctx, eqn, invals, out):
    pred, cases = invals[0], invals[1:]
    shape = np.shape(out)
    idx = np.broadcast_to(np.asarray(pred.val).astype(np.int64), shape).ravel()
    K, s = len(cases), _size(out)
    active = np.zeros((K, s), dtype=bool)
    active[idx, np.arange(s)] = True
    if pred.amb is not None:
        amb = np.broadcast_to(pred.amb, shape).ravel()
        active[0, amb] = True
        active[1, amb] = True
        tied = np.flatnonzero(amb)
        case_vals = np.stack([np.broadcast_to(np.asarray(c.val, np.float64), shape).ravel()[tied] for c in cases[:2]])
        ok = R.values_agree(case_vals, ctx.tol) if R.is_float(out) else np.all(case_vals == case_vals[0], axis=0)
        if not np.all(ok):
            # the branches differ where the condition is tied: the value depends on the condition's
            # choice, which later uses of the same condition share (a second where on the same
            # test, as in the double-where idiom, or a factor vanishing there may resolve it)
            return _eval_options(ctx, eqn, [_as_options(ctx, pred)] + list(cases))[0]
    if not R.is_float(out) or all(c.rep is None for c in cases):
        return _V(out)
    owner = None
    if pred.amb is not None and np.shape(pred.val) != shape:
        # one comparison controls several positions (broadcast): they share one selection
        pshape = np.shape(pred.val)
        owner = np.broadcast_to(np.arange(int(np.prod(pshape, dtype=np.int64))).reshape(pshape), shape).ravel()
    return _V(out, R.select_elementwise(ctx, _branch_reps(ctx, cases, shape), active, owner))


def _compare_ambiguous(ctx, eqn, invals, out):
    """A comparison reading values that are ambiguous at some positions (a 0/1 indicator, sign at 0,
    ...): it is evaluated with each operand's two values there, elementwise; where the outcomes
    differ, or where the actual values tie, the result is itself a tied boolean (an independent
    choice per position, as for any comparison) instead of a joint enumeration of all positions."""
    shape = np.shape(out)

    def candidates(v):
        val = np.broadcast_to(np.asarray(v.val, np.float64), shape)
        if v.amb is None:
            return [val]
        amb = np.broadcast_to(v.amb, shape)
        lo, hi = (0.0, 1.0) if v.opts is None else (np.broadcast_to(np.asarray(o, np.float64), shape) for o in v.opts)
        return [np.where(amb, lo, val), np.where(amb, hi, val)]

    outcomes = [np.asarray(eqn.primitive.bind(jnp.asarray(a), jnp.asarray(b), **eqn.params))
                for a in candidates(invals[0]) for b in candidates(invals[1])]
    amb = np.any([o != outcomes[0] for o in outcomes[1:]], axis=0)
    if any(v.rep is not None for v in invals) and R.is_float(invals[0].val):
        amb = amb | R.ambiguous_compare(eqn.primitive.name, invals[0].val, invals[1].val, ctx.tol)
    return _V(out, None, amb)


_ELEMENTWISE = {"add", "sub", "mul", "div", "neg", "convert_element_type", "max", "min", "integer_pow",
                "square", "exp", "log", "sin", "cos", "tanh", "abs", "sign", "floor", "ceil", "round"}


@_holding
def _ambiguous_elementwise(ctx, eqn, invals):
    """An elementwise primitive reading one value that is ambiguous at some positions (two values
    there: a 0/1 indicator, sign at 0, ...), evaluated with each of the two values.  Where the two
    results agree the output is resolved, position by position (a choice between the two
    Jacobian rows, as for ``where``): ``x * (x > 0)`` and ``x * sign(x)`` at 0 this way.  Where
    they differ the output stays ambiguous with the two results as its values (``2 * sign(x)``),
    which needs a constant output (no Jacobian).  Returns None when neither applies (the caller
    enumerates the options jointly, e.g. ``(x + 1) * sign(x)``, which jumps unless a later factor
    vanishes)."""
    out_shape = np.shape(_bind(eqn, [v.val for v in invals])[0])
    if any(np.shape(v.val) not in (out_shape, ()) for v in invals):
        return None
    m = next(v for v in invals if v.amb is not None)
    amb = np.broadcast_to(m.amb, out_shape).ravel()
    mval = np.broadcast_to(np.asarray(m.val), out_shape).ravel()
    two = (np.zeros(mval.size), np.ones(mval.size)) if m.opts is None else \
        tuple(np.broadcast_to(np.asarray(o), out_shape).ravel() for o in m.opts)
    results = []
    for vals in two:
        arr = jnp.asarray(np.where(amb, vals, mval).reshape(out_shape), jnp.result_type(m.val))
        ins = [_V(arr) if v is m else v for v in invals]
        (o,) = _eval_eqn(ctx, eqn, ins)
        if o.amb is not None or o.alts is not None:
            return None
        results.append(o)
    out = _bind(eqn, [v.val for v in invals])[0]
    v0, v1 = (np.asarray(o.val, np.float64).ravel() for o in results)
    differ = amb & ~R.values_agree(np.stack([v0, v1]), ctx.tol)
    if np.any(differ):
        if any(o.rep is not None for o in results):
            return None
        return _V(out, None, differ.reshape(out_shape),
                  opts=tuple(np.asarray(o.val).reshape(out_shape) for o in results))
    if not R.is_float(out) or all(o.rep is None for o in results):
        return _V(out)
    return _V(out, R.select_elementwise(ctx, [o.rep for o in results], np.stack([np.ones(amb.size, dtype=bool), amb])))


def _jump(ctx, name, v, out):
    """``sign``, ``floor``, ``ceil``, ``round``: locally constant (derivative 0) except at their
    jumps, where the value is ambiguous between the two constant pieces that meet there:
    sign at 0: -1 | 1;  floor at an integer k: k-1 | k;  ceil at k: k | k+1;  round at k + ½: k | k+1.
    Such a value is resolved only by a factor vanishing there (``x * sign(x)`` = |x|, set [-1, 1]);
    any other use that depends on it jumps (``JumpError``)."""
    x = np.asarray(v.val, np.float64)
    if name == "sign":
        tied, lo, hi = R.tie(x, ctx.tol), -np.ones_like(x), np.ones_like(x)
    elif name in ("floor", "ceil"):
        k = np.round(x)
        tied = R.tie(x - k, ctx.tol)
        lo, hi = (k - 1, k) if name == "floor" else (k, k + 1)
    else:  # round: every rounding method jumps at the half-integers
        f = np.floor(x)
        tied, lo, hi = R.tie(x - (f + 0.5), ctx.tol), f, f + 1
    if not np.any(tied):
        return _V(out)
    o = np.asarray(out, np.float64)
    return _V(out, None, tied, opts=(np.where(tied, lo, o), np.where(tied, hi, o)))


def _discrete_cast(ctx, v, out):
    """A float → bool/int cast of an input-dependent value (``x.astype(bool)``, ``x.astype(int)``).

    To bool it is the comparison x ≠ 0, tied at 0 (the value there, False, differs from both
    sides, True): a tied boolean like any tied comparison, so ``x * x.astype(bool)`` at 0 has the
    set [0, 1] of the two pieces. To an integer it truncates toward zero, which jumps at every
    nonzero integer k: the pieces meeting there are k-1 | k (k > 0) and k | k+1 (k < 0); such a
    value is ambiguous like ``floor`` at an integer (``JumpError`` where the output depends on it).
    """
    x = np.asarray(v.val, np.float64)
    if jnp.result_type(out) == jnp.bool_:
        return _V(out, None, R.tie(x, ctx.tol))
    k = np.round(x)
    tied = R.tie(x - k, ctx.tol) & (k != 0)
    if not np.any(tied):
        return _V(out)
    o = np.asarray(out)
    lo = np.where(k > 0, k - 1, k).astype(o.dtype)
    hi = np.where(k > 0, k, k + 1).astype(o.dtype)
    return _V(out, None, tied, opts=(np.where(tied, lo, o), np.where(tied, hi, o)))


def _sign_bits(ctx, eqn, v, out):
    """``bitcast_convert_type`` of an input-dependent float to an integer of the same width: the
    bit pattern as used by ``jnp.signbit``/``jnp.copysign``, i.e. for its sign bit. The sign bit is
    locally constant except at 0, where the two pieces are the negative and the positive side:
    an ambiguous value with the options bits(-0.0) | bits(+0.0) (so ``copysign(1, y) * y`` at 0
    has the set [-1, 1] of |y|). Other bit-level uses (mantissa bits) are outside the semantics."""
    x = np.asarray(v.val, np.float64)
    tied = R.tie(x, ctx.tol)
    if not np.any(tied):
        return _V(out)
    zeros = np.zeros(np.shape(x), dtype=np.asarray(v.val).dtype)
    bits = lambda z: np.asarray(eqn.primitive.bind(jnp.asarray(z), **eqn.params))  # noqa: E731
    o = np.asarray(out)
    return _V(out, None, tied, opts=(np.where(tied, bits(-zeros), o), np.where(tied, bits(zeros), o)))


def _as_options(ctx, v):
    """A tied comparison result (or a 0/1 indicator made from one) as a value with options:
    every tied position is a base choice between False/0 and True/1 (``_V.alts``), so that any
    primitive can consume it option by option (e.g. ``jnp.piecewise``'s cumsum of conditions).
    The choices are made once per value: every use of one tied comparison shares them."""
    if v.amb is None:
        return v
    if v.options is None:
        v.options = _new_options(ctx, v)
    return v.options


_SIDE_BELOW = {"lt", "le", "lt_to", "le_to"}  # True on the side a < b of a tie a = b
_SIDE_ABOVE = {"gt", "ge"}


def comparison_kind(name, refs):
    """(kind, ordered operand refs, flip) of a comparison ``name`` on operands ``refs``: the two
    orders of the same operands give one key; ``flip`` says whether the comparison is True under
    option 0 of the shared choice ("side": a below b; "eq": not equal)."""
    swap = refs[1] < refs[0]
    if swap:
        refs = refs[::-1]
    if name in _SIDE_BELOW or name in _SIDE_ABOVE:
        return "side", tuple(refs), (name in _SIDE_BELOW) != swap
    return "eq", tuple(refs), name == "ne"


def _comparison_tie(ctx, name, eqn, invals, amb):
    """Per position of a tied comparison: the id of the choice it shares, and whether it is True
    under option 0 (``_V.tie``).  ``a < b``, ``a <= b``, ``b > a``, ``b >= a`` at a tie a = b all
    ask on which side of the tie the point lies: one choice (option 0: a below b, option 1:
    above), so that ``jnp.piecewise(x, [x < 1, x >= 1], ...)`` or a repeated ``where(x > 0, ...)``
    read the same side.  ``==``/``!=`` share a choice between "equal" (option 1) and "not equal"."""
    if amb is None:
        return None
    refs = []
    for var, v in zip(eqn.invars, invals):
        if isinstance(var, jcore.Literal):
            refs.append(("lit", repr(np.asarray(var.val).tolist()), str(np.asarray(var.val).dtype)))
        else:
            refs.append(("var", id(v)))
            ctx.keep.append(v)  # the id stays unique while the interpreter runs
    kind, refs, flip = comparison_kind(name, refs)
    shape = np.shape(amb)
    ids = np.full(shape, -1, dtype=np.int64)
    flat = ids.reshape(-1)
    for p in np.flatnonzero(np.asarray(amb).ravel()):
        flat[p] = ctx.tie_ids.setdefault((kind, refs, shape, int(p)), len(ctx.tie_ids))
    return ids, np.full(shape, flip)


def _new_options(ctx, v):
    positions = np.flatnonzero(np.asarray(v.amb).ravel())
    val = np.asarray(v.val)
    lo, hi = ((np.zeros(val.size), np.ones(val.size)) if v.opts is None
              else (np.broadcast_to(np.asarray(o), val.shape).ravel() for o in v.opts))
    if v.tie is None:
        ids, flips = np.full(len(positions), -1), np.zeros(len(positions), bool)
    else:
        ids, flips = (np.broadcast_to(t, val.shape).ravel()[positions] for t in v.tie)
    owner = []
    for i in ids:
        if i < 0:
            owner.append(ctx.choices.new_group(2))
        else:
            if i not in ctx.tie_bases:
                ctx.tie_bases[i] = ctx.choices.new_group(2)
            owner.append(ctx.tie_bases[i])
    bases = tuple(dict.fromkeys(owner))
    ctx.choices.check_limit(2 ** len(bases), f"{len(bases)} tied comparisons used together need "
                            f"{2 ** len(bases)} joint selections")
    axis = np.array([bases.index(b) for b in owner], dtype=np.int64)
    table = np.empty((2,) * len(bases) + val.shape, dtype=val.dtype)
    for a in np.ndindex((2,) * len(bases)):
        use_hi = (np.asarray(a, dtype=bool)[axis] if len(axis) else np.zeros(0, bool)) != flips
        t = val.copy().ravel()
        t[positions] = np.where(use_hi, hi[positions], lo[positions]).astype(val.dtype)
        table[a] = t.reshape(val.shape)
    return _V(v.val, None, None, (bases, table, None))


def _option_input(v, world):
    """The value (and rep) of ``v`` under the joint option ``world`` {base: option}."""
    if v.alts is None:
        return v
    bases, table, reps = v.alts
    a = tuple(world[b] for b in bases)
    val = jnp.asarray(table[a], v.val.dtype)
    return _V(val, None if reps is None else reps[int(np.ravel_multi_index(a, table.shape[: len(bases)]))])


@_holding
def _eval_options(ctx, eqn, invals):
    """Evaluate ``eqn`` once per joint option of the ties it reads (``argmax``/``argmin`` indices,
    tied comparisons: ``_V.alts``).

    An output that takes the same value under every option is resolved: a float's Jacobian is
    then the option's, a selection indexed by the same base choices (``choose_joint``).  An
    output whose value depends on the option keeps its value (and, for floats, its Jacobian)
    per option (``alts``): e.g. ``one_hot(argmax(x))`` is resolved only by ``@ x``.  A program
    output that still depends on the option jumps there (``JumpError``, raised at the end)."""
    for v in invals:
        v.rep = S.densify(ctx.choices, v.rep, f"primitive '{eqn.primitive.name}' under tied options")
    bases = tuple(dict.fromkeys(b for v in invals if v.alts is not None for b in v.alts[0]))
    shape = tuple(ctx.choices.size[b] for b in bases)
    ctx.choices.check_limit(math.prod(shape), f"{math.prod(shape)} joint selections of tied argmax/argmin indices")
    per_option, extra = [], []
    for a in np.ndindex(shape):
        world = dict(zip(bases, a))
        outs = [_as_options(ctx, o) for o in _eval_eqn(ctx, eqn, [_option_input(v, world) for v in invals])]
        extra += [b for o in outs if o.alts is not None for b in o.alts[0] if b not in extra]
        per_option.append(outs)
    if extra:
        # under some options the primitive meets a further tie (a binary search that goes on
        # comparing): its choices join the joint options; options without it ignore them
        eshape = tuple(ctx.choices.size[b] for b in extra)
        ctx.choices.check_limit(math.prod(shape + eshape), f"{math.prod(shape + eshape)} joint selections of "
                                "ties met under other ties")
        per_option = [[_option_input(o, dict(zip(extra, e))) for o in outs]
                      for outs in per_option for e in np.ndindex(eshape)]
        bases, shape = bases + tuple(extra), shape + eshape
    actual = _bind(eqn, [v.val for v in invals])
    results = []
    for j, out in enumerate(actual):
        opts = [outs[j] for outs in per_option]
        table = np.stack([np.asarray(o.val) for o in opts]).reshape(shape + np.shape(out))
        if not R.is_float(out):
            same = np.all(table == table.reshape((-1,) + np.shape(out))[0])
            results.append(_V(out) if same else _V(out, None, None, (bases, table, None)))
            continue
        if not np.all(R.values_agree(table.reshape(len(opts), -1).astype(np.float64), ctx.tol)):
            results.append(_V(out, None, None, (bases, table, [o.rep for o in opts])))
            continue
        if all(o.rep is None for o in opts):
            results.append(_V(out))
            continue
        results.append(_V(out, choose_joint(ctx.choices, bases, [o.rep for o in opts], _size(out), ctx.ncols)))
    return results


def _resolve_output(ctx, j, o):
    """A program output that still depends on tied choices (``_V.alts``).

    Options under which the output is not finite at a position are not pieces of the function
    there (``where(x == 0, 1, sin(x) / x)`` at 0: the unselected branch is 0/0): the output
    is resolved if the finite options agree, and its Jacobian is the hull over those options.
    Otherwise the function jumps (``JumpError``)."""
    bases, table, reps = o.alts
    flat = np.asarray(table, np.float64).reshape(-1, _size(o.val))
    finite = np.isfinite(flat)
    if not np.all(finite.any(axis=0)):
        k = int(np.flatnonzero(~finite.any(axis=0))[0])
        raise ValueError(f"jacobian: output {j} (flat position {k}) is not finite under any selection of the ties")
    # compare only finite values: a non-finite option takes the value of a finite one
    ctx.dropped |= not finite.all()
    donor = np.argmax(finite, axis=0)
    filled = np.where(finite, flat, flat[donor, np.arange(flat.shape[1])])
    bad = ~R.values_agree(filled, ctx.tol)
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise JumpError(
            f"jacobian: output {j} (flat position {k}) depends on a tie (a tied argmax/argmin/"
            f"argsort index, a tied comparison, or sign/floor/ceil/round at a jump): it takes "
            f"the values {filled[:, k].min()!r} and {filled[:, k].max()!r}, so the function jumps "
            "here and is not path differentiable"
        )
    val = jnp.asarray(filled[0].reshape(np.shape(o.val)), jnp.result_type(o.val))
    if reps is None or all(r is None for r in reps):
        return _V(val)
    size = _size(o.val)
    if not finite.all():
        # rows of a non-finite option are those of the finite option at that position
        reps = [JRep(np.zeros((size, ctx.ncols))) if r is None else r.canonical(ctx.choices) for r in reps]
        fixed = []
        for a, r in enumerate(reps):
            rows = np.flatnonzero(~finite[a])
            if len(rows) == 0:
                fixed.append(r)
                continue
            keep = finite[a]
            parts = [r.restrict(keep)]
            for d in np.unique(donor[rows]):
                parts.append(reps[d].restrict(~keep & (donor == d)))
            fixed.append(add_reps(ctx.choices, parts))
        reps = fixed
    return _V(val, choose_joint(ctx.choices, bases, reps, size, ctx.ncols))

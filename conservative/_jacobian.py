"""``conservative.jacobian``: the whole conservative Jacobian of a JAX program at a point.

The program is traced to a jaxpr and interpreted at the point; every intermediate value
carries its value and the representation (★) of ``_selections`` of its Jacobian with respect
to the differentiated inputs.  Smooth primitives use JAX's JVP, nonsmooth ones enumerate
their active selections (``_rules``).  The result is

    J(x) = conv{ J_σ(x) : σ a selection of the active pieces of every nonsmooth primitive }

returned as a ``MatrixSet``.  For a program built from Lipschitz gradient selections this is a
conservative Jacobian in the sense of Bolte & Pauwels (slides "Conservative gradients",
Vaiter 2023); JAX's ``jacfwd``/``jacrev`` return one element of it.

Semantics (DESIGN.md §4):

* **Active pieces** are those tied within ``tol`` (default 0: exact ties).  ``tol > 0`` gives an
  *enlargement* of the conservative Jacobian (pieces active in a ``tol``-neighbourhood), useful
  at points that are ties only up to rounding.
* ``where(cond, a, b)`` / ``select_n`` with a tied comparison keeps both branches (an independent
  choice per position) when their values agree within ``tol``.  When they differ, the value
  depends on the comparison's choice and is carried option by option: later computations may
  resolve it (``jnp.heaviside(x, 0.5) * x`` at 0, the index ``jnp.interp`` reads at a knot, a
  second ``where`` on the same test), and a program output that still depends on it jumps
  (``JumpError``).  The same holds for ``lax.cond`` with a tied predicate.
* **One tie, one choice**: comparisons asking on which side of the same tie the point lies
  (``a < b``, ``a <= b``, ``b > a``, ``b >= a``, their negations, moved by reshapes, slices and
  concatenations) share one choice, so ``jnp.piecewise(x, [x < 1, x >= 1], ...)`` never selects
  "neither"; ``a == b`` / ``a != b`` share one choice between "equal" and "not equal".
* **Removable singularities**: an option under which a program output is not finite (the branch
  ``sin(x) / x`` of ``where(x == 0, 1, sin(x) / x)`` at 0) is not a piece of the function there
  and is left out, the finite options giving the set.  This is right only if the program's branch
  at the point continues the function to first order; it is checked at x ± h·d
  (``_check_continuation``: nearby Jacobians must approach the set) and a ``ValueError`` is raised
  otherwise (``where(x == 0, 1, expm1(x) / x)``: slope 0 for the function's 1/2; ``x log x``).
  A derivative that is not finite (sqrt at 0) is an error only where it reaches an output: the
  unselected branch of an untied ``where`` (the group soft-threshold at 0) does not count.
* **Each occurrence** of a nonsmooth primitive is an independent choice: this is the chain and
  sum rule of conservative calculus, so ``relu(x) - relu(-x)`` at 0 has the set [0, 2], not {1}.
* ``custom_jvp`` / ``custom_vjp`` functions (``jax.nn.relu`` is one) are differentiated through
  their *primal implementation*; their custom rule is ignored, and the element it returns is
  (and is tested to be, for ``jax.nn``) a member of the set obtained.
* ``jit``-compiled inner functions, ``checkpoint``, ``lax.cond``, ``lax.scan`` / ``fori_loop``
  and ``while_loop`` are interpreted at the point (loops are unrolled for the trip count they
  have there).
* ``sign``, ``floor``, ``ceil``, ``round`` are locally constant (derivative 0).  At their jump
  points (sign at 0, floor/ceil at integers, round at half-integers) the value is ambiguous
  between the two constant pieces that meet there: a factor vanishing there resolves it
  (``x * sign(x)`` at 0 is |x|, with set [-1, 1]), any other use jumps (``JumpError``).  ``argmax``/``argmin`` at a tie
  return an index that is not locally constant: each tied index is an option of one choice
  (per tied line), shared by every use of that index; computations reading it are evaluated for
  each option, a float result must not depend on the option (``y[argmax(x)]`` with y differing
  at the tied positions jumps: ``JumpError``) and its Jacobian is the option's selection, so
  ``x[argmax(x)]`` has the set of ``max(x)``; control flow reading it runs once per option.
  A tied comparison reaching a primitive without a dedicated rule (e.g. ``jnp.piecewise``'s
  cumsum of conditions) is handled the same way, each tied position being a True/False choice.
  ``lax.sort`` (``jnp.sort``, ``argsort``, ``sort_key_val``) with tied keys has one choice per
  tie block among its orderings, applied jointly to all operands; integer operands (argsort's
  indices) carry their value under every ordering, so ``x[argsort(x)]`` has the set of
  ``jnp.sort(x)``.  A tied comparison converted to a number is a 0/1 indicator: ``x * (x > 0)`` at 0 is
  resolved like ``where(x > 0, x, 0)`` (a product whose other factor is nonzero there jumps:
  ``JumpError``); any other use of such an indicator raises an error.
* Values, and therefore ties, are those XLA computes primitive by primitive (op-by-op, as
  ``jax.disable_jit`` would): on CPU it flushes subnormal numbers to zero, so a coordinate of
  1e-310 is tied with 0.  The compiled fast path fuses arithmetic (``a / sqrt(b)`` becomes
  ``a * rsqrt(b)``, ``a * b + c`` an FMA) and rounds differently, so it decides nothing itself:
  it flags every point within ``SLACK_ULPS`` ulps of a tie (relative to the magnitude of the
  terms that cancelled) and hands it to the interpreter.  The set is therefore a function of
  ``(fun, x)`` alone: first call, later calls, ``fast=True`` and ``piggyback`` agree.
* Pytrees: the columns are the leaves of the differentiated arguments (in ``argnums`` order,
  each pytree flattened by ``jax.tree_util.tree_leaves``, each leaf raveled in C order); the
  rows are the output leaves, flattened the same way.  With ``argnums=(0, 1)`` the set is the
  *joint* set of [∂ₓF, ∂_θF] blocks: the two blocks of one selection stay together.
"""

from __future__ import annotations

import itertools
import math
import warnings

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from . import _lowerings as L
from . import _rules as R
from ._fast import FastJacobian
from ._matrix_set import MatrixSet
from ._selections import Choices, JRep, _add_table, add_reps, choose, choose_joint

__all__ = ["jacobian", "value_and_jacobian", "register_smooth", "JumpError", "NoRuleError"]

register_smooth = R.register_smooth


class JumpError(ValueError):
    """The program is discontinuous at the point (a tied branch whose values differ)."""


class NoRuleError(NotImplementedError, TypeError):
    """The program uses a primitive that has no rule (see ``register_smooth``)."""


class _V:
    """One value of the interpreted program: its value ``val``, the representation ``rep`` of
    its Jacobian (floats), ``amb`` (booleans/0-1 indicators: where a tied comparison makes the
    value ambiguous; ``opts`` the two values there when they are not 0/1, e.g. sign at 0:
    -1 and 1) and ``alts`` (values that depend on a tie of ``argmax``/``argmin``:
    ``(bases, table, reps)`` with ``table[a₁, ..., a_m]`` the value under the options aᵢ of the
    base choices ``bases`` and, for floats, ``reps`` the Jacobian reps per joint option in
    ``np.ndindex`` order; ``None`` for integers)."""

    __slots__ = ("val", "rep", "amb", "alts", "opts", "options", "tie")

    def __init__(self, val, rep=None, amb=None, alts=None, opts=None, tie=None):
        self.val = val
        self.options = None  # this tied value as base choices (``_as_options``), made once
        self.rep = rep
        self.amb = amb if (amb is not None and np.any(amb)) else None
        self.alts = alts
        # the two values of an ambiguous position (arrays like val): None means False/0 and True/1
        self.opts = opts if self.amb is not None else None
        # (ids, flips) arrays like val: the shared tie of each tied position (-1: its own
        # choice) and whether the value there is True under option 0 (``_comparison_tie``)
        self.tie = tie if self.amb is not None else None


class _Ctx:
    def __init__(self, ncols, tol, max_selections):
        self.ncols = ncols
        self.tol = float(tol)
        self.choices = Choices(max_selections)
        self.nonfinite = None  # the first primitive whose derivative was not finite at the point
        self.tie_ids: dict = {}  # (comparison key, position) -> id of a shared tie
        self.tie_bases: dict = {}  # id of a shared tie -> its base choice
        self.keep: list = []
        self.dropped = False  # some option was not finite at an output (``_resolve_output``)
        self.levels: list = []  # the jaxprs being interpreted (``_Level``), outermost first
        self.hold = 0  # > 0 while values are held outside the environments (loops, options)
        self.choices.free = lambda roots: _free_groups(self, roots)


def _size(x):
    return int(np.prod(np.shape(x), dtype=np.int64))


def _finite_rep(rep):
    return rep is None or (np.all(np.isfinite(rep.center)) and all(np.all(np.isfinite(v)) for _, v in rep.tables.values()))


def _note_finite(ctx, name, rep):
    """Record the first primitive whose derivative is not finite at the point. It is an error
    only if it reaches an output (``_raise_nonfinite``): a branch that a ``where`` does not
    select (``jnp.where(n > lam, x / n, 0)`` at n = 0, the prox of the group lasso at 0) is not
    part of the function there."""
    if ctx.nonfinite is None and not _finite_rep(rep):
        ctx.nonfinite = name


def _raise_nonfinite(name):
    raise ValueError(
        f"jacobian: the derivative of primitive '{name}' is not finite at this point "
        "(e.g. sqrt or log at 0) and reaches the output: the program is not locally Lipschitz there. "
        "If the function is (the Euclidean norm sqrt(Σx²) at 0), its conservative Jacobian is not a "
        "polytope (a ball) and cannot be represented: move the point, or write the kink with abs/max"
    )


# ------------------------------------------------------------------ rep helpers
def _concat(ctx, reps, sizes):
    N = ctx.ncols
    center = np.concatenate([np.zeros((s, N)) if r is None else r.center for r, s in zip(reps, sizes)])
    tables: dict = {}
    off = 0
    for r, s in zip(reps, sizes):
        if r is not None:
            for gid, (rows, vals) in r.canonical(ctx.choices).tables.items():
                _add_table(tables, gid, rows + off, vals)
        off += s
    return JRep(center, tables)


def _split(rep, sizes):
    out, off = [], 0
    for s in sizes:
        out.append(None if rep is None else rep.take_rows(np.arange(off, off + s)))
        off += s
    return out


# ------------------------------------------------------------------ interpreter
def _read(env, v):
    if isinstance(v, jcore.Literal):
        return _V(jnp.asarray(v.val))
    return env[v]


class _Level:
    """One jaxpr being interpreted: its environment and, per variable, the index of the last
    equation that reads it (outputs: never dead), so that ``_free_groups`` knows which values are
    still in use."""

    __slots__ = ("env", "last", "at")

    def __init__(self, jaxpr, env):
        self.env, self.at = env, -1
        n = len(jaxpr.eqns)
        self.last = {}
        for i, eqn in enumerate(jaxpr.eqns):
            for v in eqn.invars:
                if not isinstance(v, jcore.Literal):
                    self.last[v] = i
        for v in jaxpr.outvars:
            if not isinstance(v, jcore.Literal):
                self.last[v] = n


def _eval_jaxpr(ctx, jaxpr, consts, args):
    env = {}
    for var, c in zip(jaxpr.constvars, consts):
        env[var] = c if isinstance(c, _V) else _V(jnp.asarray(c))
    for var, a in zip(jaxpr.invars, args):
        env[var] = a
    level = _Level(jaxpr, env)
    ctx.levels.append(level)
    try:
        for i, eqn in enumerate(jaxpr.eqns):
            level.at = i
            invals = [_read(env, v) for v in eqn.invars]
            outs = _eval_eqn(ctx, eqn, invals)
            for var, o in zip(eqn.outvars, outs):
                if not isinstance(var, jcore.DropVar):
                    env[var] = o
        level.at = len(jaxpr.eqns)
        return [_read(env, v) for v in jaxpr.outvars]
    finally:
        ctx.levels.pop()


def _holding(fn):
    """Run ``fn(ctx, ...)`` with ``ctx.hold`` raised: it keeps values in Python lists (loop
    carries, per-option results) where ``_free_groups`` cannot see them."""
    def wrapped(ctx, *args):
        ctx.hold += 1
        try:
            return fn(ctx, *args)
        finally:
            ctx.hold -= 1
    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


def _free_groups(ctx, roots):
    """The groups among ``roots`` that no value still in use depends on: none of the values of
    the jaxprs being interpreted that are read after the current equation (or are outputs).
    Inside loops, option-by-option evaluation and tied conds values are also held outside the
    environments: nothing is free there."""
    if ctx.hold or not ctx.levels:
        return set()
    free = set(roots)
    find = ctx.choices.find
    for level in ctx.levels:
        for var, v in level.env.items():
            if level.last.get(var, -1) <= level.at:
                continue  # read for the last time by the current equation (or never)
            reps = [v.rep] + (list(v.alts[2]) if v.alts is not None and v.alts[2] is not None else [])
            for r in reps:
                if r is not None:
                    free -= {find(g) for g in r.tables}
            if not free:
                return free
    return free


def _eval_closed(ctx, closed, args):
    return _eval_jaxpr(ctx, closed.jaxpr, closed.consts, args)


def _bind(eqn, vals):
    out = eqn.primitive.bind(*vals, **eqn.params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _eval_eqn(ctx, eqn, invals):
    name = eqn.primitive.name
    p = eqn.params
    if name in ("jit", "pjit", "closed_call", "core_call"):
        inner = p.get("jaxpr", p.get("call_jaxpr"))
        return _eval_closed(ctx, inner, invals) if hasattr(inner, "consts") else _eval_jaxpr(ctx, inner, [], invals)
    if name in ("remat2", "checkpoint", "remat"):
        return _eval_jaxpr(ctx, p["jaxpr"], [], invals)
    if name in ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"):
        inner = p.get("call_jaxpr", p.get("fun_jaxpr"))
        return _eval_closed(ctx, inner, invals)
    if name in L.LOWERINGS:
        return _eval_closed(ctx, L.lower(eqn, [v.val for v in invals]), invals)
    if any(v.alts is not None for v in invals):
        return _eval_options(ctx, eqn, [_as_options(ctx, v) for v in invals])
    if name == "cond":
        return _cond(ctx, eqn, invals)
    if name == "scan":
        return _scan(ctx, eqn, invals)
    if name == "while":
        return _while(ctx, eqn, invals)

    vals = [v.val for v in invals]
    if name in R.COMPARISONS:
        out = _bind(eqn, vals)[0]
        if any(v.amb is not None for v in invals):
            return [_compare_ambiguous(ctx, eqn, invals, out)]
        same = eqn.invars[0] is eqn.invars[1]  # e.g. the NaN test x != x: never tied
        # values that do not depend on the differentiated inputs are locally constant: no tie
        depends = any(v.rep is not None for v in invals)
        amb = (R.ambiguous_compare(name, vals[0], vals[1], ctx.tol)
               if R.is_float(vals[0]) and not same and depends else None)
        return [_V(out, None, amb, tie=_comparison_tie(ctx, name, eqn, invals, amb))]
    if name in R.LOGICAL and all(jnp.result_type(v) == jnp.bool_ for v in vals):
        out = _bind(eqn, vals)[0]
        ambs = [np.zeros(np.shape(out), bool) if v.amb is None else np.broadcast_to(v.amb, np.shape(out)) for v in invals]
        tie = (invals[0].tie[0], ~invals[0].tie[1]) if name == "not" and invals[0].tie is not None else None
        return [_V(out, None, R.logical(name, vals, ambs), tie=tie)]
    if name == "convert_element_type" and invals[0].amb is not None and invals[0].opts is None:
        # a tied comparison used as a number: a 0/1 indicator whose value is ambiguous where tied
        # (only a product with a factor that vanishes there can resolve it, see _ambiguous_elementwise)
        return [_V(_bind(eqn, vals)[0], None, invals[0].amb, tie=invals[0].tie)]
    if name == "select_n" and all(v.amb is None for v in invals[1:]):
        return [_select_n(ctx, eqn, invals, _bind(eqn, vals)[0])]
    if name in R.STRUCTURAL and any(v.amb is not None for v in invals) and not any(R.is_float(v) for v in vals):
        # data movement of tied booleans/indicators: move the ambiguity masks and the shared
        # ties the same way (index operands of slices and gathers move nothing)
        data = [name == "concatenate" or i == 0 for i in range(len(invals))]

        def moved(per_value):
            return np.asarray(eqn.primitive.bind(
                *[jnp.asarray(per_value(v) if d else v.val) for v, d in zip(invals, data)], **p))

        out = _bind(eqn, vals)[0]
        amb = moved(lambda v: np.zeros(np.shape(v.val), bool) if v.amb is None else v.amb)
        tie = None
        if any(v.tie is not None for v, d in zip(invals, data) if d):
            tie = (moved(lambda v: np.full(np.shape(v.val), -1, np.int64) if v.tie is None else v.tie[0]),
                   moved(lambda v: np.zeros(np.shape(v.val), bool) if v.tie is None else v.tie[1]))
        return [_V(out, None, amb, tie=tie)]
    if name in ("max", "min", "abs", "clamp", "reduce_max", "reduce_min", "argmax", "argmin", "sort"):
        return _nonsmooth(ctx, eqn, invals)

    if any(v.amb is not None for v in invals):
        if name in _ELEMENTWISE and sum(v.amb is not None for v in invals) == 1:
            res = _ambiguous_elementwise(ctx, eqn, invals)
            if res is not None:
                return [res]
        # no dedicated rule: each tied position becomes a two-option choice, enumerated jointly
        return _eval_options(ctx, eqn, [_as_options(ctx, v) for v in invals])
    if name in R.JUMPS and invals[0].rep is not None and R.is_float(vals[0]):
        return [_jump(ctx, name, invals[0], _bind(eqn, vals)[0])]
    outs = _bind(eqn, vals)
    if name in R.LOCALLY_CONSTANT or all(v.rep is None for v in invals):
        return [_V(o) for o in outs]
    if not any(R.is_float(o) for o in outs):
        # a discrete (integer/boolean) result of values that vary with the input: never assumed
        # locally constant, since a kink or jump hides there (x.astype(bool) at 0, int casts at
        # integers); casts get their jump rule, other primitives have none
        if name == "convert_element_type" and R.is_float(vals[0]) and not jnp.issubdtype(outs[0].dtype, jnp.inexact):
            return [_discrete_cast(ctx, invals[0], outs[0])]
        if name == "bitcast_convert_type" and R.is_float(vals[0]) and np.shape(outs[0]) == np.shape(vals[0]):
            return [_sign_bits(ctx, eqn, invals[0], outs[0])]
        raise NoRuleError(
            f"jacobian: no rule for primitive '{name}' with a {jnp.result_type(outs[0])} result computed from "
            "values that depend on the differentiated input: its result may jump (the program would look "
            "smooth where it is not). Rewrite it with comparisons, floor/round/sign or where, whose "
            "kinks and jumps are tracked."
        )
    if name not in R.SMOOTH:
        raise NoRuleError(
            f"jacobian: no rule for primitive '{name}'. If it is smooth (differentiable with a "
            f"continuous JVP), declare it with conservative.register_smooth('{name}'); otherwise "
            "rewrite the program with supported nonsmooth primitives (max, min, abs, clamp, where, sort)."
        )
    if name in L.SPECTRAL and bool(L.spectrum_degenerate(name, p, vals, ctx.tol)):
        raise NoRuleError(L.degenerate_message(name, p))
    fun = (lambda *a: eqn.primitive.bind(*a, **p)) if eqn.primitive.multiple_results else (lambda *a: (eqn.primitive.bind(*a, **p),))
    pkey = R._params_key(p)
    reps = R.push_linear(fun, vals, [v.rep for v in invals], len(outs),
                         key=None if pkey is None else (name, pkey))
    for r in reps:
        _note_finite(ctx, name, r)
    return [_V(o, r if R.is_float(o) else None) for o, r in zip(outs, reps)]


# ------------------------------------------------------------------ nonsmooth rules
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
        return _V(out, None, differ.reshape(out_shape), opts=tuple(np.asarray(o.val).reshape(out_shape) for o in results))
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
    swap = refs[1] < refs[0]
    if swap:
        refs.reverse()
    if name in _SIDE_BELOW or name in _SIDE_ABOVE:
        flip, kind = (name in _SIDE_BELOW) != swap, "side"
    else:
        flip, kind = name == "ne", "eq"
    shape = np.shape(amb)
    ids = np.full(shape, -1, dtype=np.int64)
    flat = ids.reshape(-1)
    for p in np.flatnonzero(np.asarray(amb).ravel()):
        flat[p] = ctx.tie_ids.setdefault((kind, tuple(refs), shape, int(p)), len(ctx.tie_ids))
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


# ------------------------------------------------------------------ control flow
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
        val = jnp.stack([y.val for y in per]) if L else jnp.zeros(eqn.outvars[ncar + k].aval.shape, eqn.outvars[ncar + k].aval.dtype)
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


#: relative step and relative tolerance of the first-order check of removable singularities
CONTINUATION_STEP = 1e-6
CONTINUATION_RTOL = 1e-2


def _check_continuation(flat_fun, leaves, diff, J):
    """A branch that is not finite at the point (``sin(x) / x`` at 0) was left out of the set,
    the program's own branch there (``where(x == 0, 1, ...)``) taken instead.  That is right only
    if that branch continues the function to first order.  Check it: the Jacobians at two nearby
    points x ± h·d (d a fixed random direction, h = ``CONTINUATION_STEP``·(1 + ‖x‖∞)) must lie
    within ``CONTINUATION_RTOL``·(1 + ‖J‖) of the set (a conservative Jacobian is outer
    semicontinuous: nearby Jacobians approach it), else raise (``(exp(x) - 1) / x`` with the
    branch 1 at 0 has derivative 1/2, not 0)."""
    x = [np.asarray(leaves[i], np.float64) for i in diff]
    flat = np.concatenate([v.ravel() for v in x])
    h = CONTINUATION_STEP * (1.0 + np.max(np.abs(flat), initial=0.0))
    d = np.random.default_rng(0).standard_normal(flat.size)
    d /= np.max(np.abs(d))
    sizes = [v.size for v in x]

    def g(z):
        ls = list(leaves)
        for i, part, v in zip(diff, jnp.split(z, np.cumsum(sizes)[:-1]), x):
            ls[i] = part.reshape(v.shape).astype(leaves[i].dtype)
        outs = jax.tree_util.tree_leaves(flat_fun(*ls))
        return jnp.concatenate([jnp.ravel(jnp.asarray(o, jnp.float64)) for o in outs])

    # a bound on the entries of the set's matrices, without enumerating its vertices
    scale = 1.0 + np.max(np.abs(J.center), initial=0.0) + sum(np.max(np.abs(g), initial=0.0) for g in J.groups)
    for sgn in (1.0, -1.0):
        Jn = np.asarray(jax.jacfwd(g)(jnp.asarray(flat + sgn * h * d)), np.float64).reshape(J.shape)
        dist = J.distance(Jn) if np.all(np.isfinite(Jn)) else np.inf
        if not dist <= CONTINUATION_RTOL * scale:
            raise ValueError(
                "jacobian: a branch of the program is not finite at this point (0/0, log 0, ...) and was left "
                "out, the program's own branch there taken instead, but the Jacobian at the nearby point "
                f"x {'+' if sgn > 0 else '-'} {h:.1e}·d is {dist:.3g} away from the resulting set: that branch "
                "does not continue the function to first order (a removable singularity written without its "
                "derivative). Give the branch at the singular point the right derivative (a Taylor expansion "
                "or a custom_jvp, as jnp.sinc does), or move the point."
            )


# ------------------------------------------------------------------ public API
def _prepare(fun, argnums, args):
    if isinstance(argnums, int):
        argnums_t = (argnums,)
    elif isinstance(argnums, (tuple, list)) and all(isinstance(a, int) for a in argnums) and argnums:
        argnums_t = tuple(argnums)
    else:
        raise TypeError(f"argnums: expected an int or a non-empty tuple of ints, got {argnums!r}")
    for a in argnums_t:
        if not -len(args) <= a < len(args):
            raise ValueError(f"argnums: {a} is out of range for {len(args)} positional arguments")
    argnums_t = tuple(a % len(args) for a in argnums_t)
    if len(set(argnums_t)) != len(argnums_t):
        raise ValueError(f"argnums: repeated argument indices in {argnums!r}")
    leaves, treedef = jax.tree_util.tree_flatten(args)
    traced = [i for i, l in enumerate(leaves) if isinstance(l, jax.core.Tracer)]
    if traced:
        raise TypeError(
            f"jacobian: argument leaf {traced[0]} is a JAX tracer: conservative.jacobian decides ties on "
            "concrete values and cannot run under jax.jit, jax.vmap or jax.grad; call it outside the "
            "transformation (it compiles its own fast path for repeated calls)"
        )
    leaves = [jnp.asarray(l) for l in leaves]
    counts = [len(jax.tree_util.tree_leaves(a)) for a in args]
    starts = np.cumsum([0] + counts)
    diff_leaves = [i for a in argnums_t for i in range(starts[a], starts[a + 1])]
    for i in diff_leaves:
        x = leaves[i]
        if not R.is_float(x):
            raise TypeError(
                f"jacobian: differentiated arguments must be floating point, got dtype {x.dtype} "
                f"(leaf {i} of the arguments)"
            )
        if x.dtype in (jnp.float32, jnp.float16, jnp.bfloat16):
            warnings.warn(
                f"jacobian: argument leaf {i} is {x.dtype}; set-valued computations need float64 "
                "(jax.config.update('jax_enable_x64', True)) to decide ties reliably",
                UserWarning,
                stacklevel=3,
            )
        if not bool(jnp.all(jnp.isfinite(x))):
            raise ValueError(f"jacobian: argument leaf {i} contains non-finite values")
    return leaves, treedef, diff_leaves


def value_and_jacobian(fun, argnums=0, *, tol: float = 0.0, max_selections: int = 4096, fast=None):
    """Like ``jacobian`` but the returned function gives ``(fun(*args), J)``.

    ``fast``: ``True`` compiles a tie detector and the forward-mode Jacobian (``_fast``) and
    runs the interpreter only at points where some nonsmooth primitive is tied; ``False``
    always interprets; ``None`` (default) interprets on the first call and compiles from the
    second call with the same argument shapes on (for repeated use along trajectories).
    Jaxprs are cached per argument structure and shapes, like ``jax.jit``: a function whose
    behaviour depends on mutable Python state must not be reused.
    """
    if not callable(fun):
        raise TypeError(f"fun: expected a callable, got {type(fun).__name__}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol: expected a finite nonnegative number, got {tol!r}")
    if isinstance(max_selections, bool) or not isinstance(max_selections, (int, np.integer)):
        raise TypeError(f"max_selections: expected a positive int, got {max_selections!r}")
    if max_selections < 1:
        raise ValueError(f"max_selections: expected a positive int, got {max_selections!r}")
    if fast not in (None, True, False):
        raise ValueError(f"fast: expected None, True or False, got {fast!r}")
    cache: dict = {}

    def wrapped(*args, **kwargs):
        leaves, treedef, diff = _prepare(fun, argnums, args)

        def flat_fun(*ls):
            return fun(*jax.tree_util.tree_unflatten(treedef, ls), **kwargs)

        key = None if kwargs else (treedef, tuple((l.shape, str(l.dtype)) for l in leaves))
        entry = cache.get(key) if key is not None else None
        if entry is None:
            closed, out_shape = jax.make_jaxpr(flat_fun, return_shape=True)(*leaves)
            entry = {"closed": closed, "out_tree": jax.tree_util.tree_structure(out_shape), "calls": 0, "fast": None}
            if key is not None:
                cache[key] = entry
        entry["calls"] += 1
        closed, out_tree = entry["closed"], entry["out_tree"]
        sizes = [_size(leaves[i]) for i in diff]
        N = int(sum(sizes))
        use_fast = fast if fast is not None else entry["calls"] > 1
        if use_fast and key is not None:
            if entry["fast"] is None:
                entry["fast"] = FastJacobian(closed, diff, tol)
            outs, tied, Jm = entry["fast"](leaves)
            if not bool(tied):
                Jm = np.asarray(Jm, dtype=np.float64)
                if not np.all(np.isfinite(Jm)):
                    raise ValueError("jacobian: the derivative is not finite at this point (e.g. sqrt or log at 0)")
                for o in outs:
                    if not R.is_float(o):
                        raise TypeError(f"jacobian: outputs must be floating point, got dtype {jnp.result_type(o)}")
                return jax.tree_util.tree_unflatten(out_tree, list(outs)), MatrixSet._from_sparse(Jm.shape, Jm.ravel(), ())
        ctx = _Ctx(N, tol, max_selections)
        offsets = np.cumsum([0] + sizes)
        inputs = [_V(l) for l in leaves]
        for k, i in enumerate(diff):
            center = np.zeros((sizes[k], N))
            center[np.arange(sizes[k]), offsets[k] + np.arange(sizes[k])] = 1.0
            inputs[i] = _V(leaves[i], JRep(center))
        outs = _eval_closed(ctx, closed, inputs)
        for j, o in enumerate(outs):
            if not R.is_float(o.val):
                raise TypeError(f"jacobian: outputs must be floating point, got dtype {jnp.result_type(o.val)}")
            if o.amb is not None:
                o = _as_options(ctx, o)
            if o.alts is not None:
                outs[j] = _resolve_output(ctx, j, o)
        out_sizes = [_size(o.val) for o in outs]
        rep = _concat(ctx, [o.rep for o in outs], out_sizes)
        if ctx.nonfinite is not None and not _finite_rep(rep):
            _raise_nonfinite(ctx.nonfinite)
        J = rep.to_matrix_set(ctx.choices, (int(sum(out_sizes)), N))
        if ctx.dropped:
            _check_continuation(flat_fun, leaves, diff, J)
        return jax.tree_util.tree_unflatten(out_tree, [o.val for o in outs]), J

    return wrapped


def jacobian(fun, argnums=0, *, tol: float = 0.0, max_selections: int = 4096, fast=None):
    """The conservative Jacobian of ``fun`` as a function returning a ``MatrixSet``.

    Like ``jax.jacfwd(fun, argnums)``, but ``jacobian(fun)(*args)`` is the *set*
    conv{J_σ : σ a selection of the pieces active at args} of shape (output size, input size)
    (see the module docstring for the semantics: ties within ``tol``, independent choices per
    occurrence, pytree flattening order, ``custom_jvp`` handling).

    ``max_selections`` bounds the joint selections of interacting ties (and tie-block orderings
    of ``sort``); independent ties cost nothing against it.  Exceeding it raises
    ``SetTooLargeError`` naming the limit.
    """
    vj = value_and_jacobian(fun, argnums, tol=tol, max_selections=max_selections, fast=fast)

    def jac(*args, **kwargs):
        return vj(*args, **kwargs)[1]

    return jac

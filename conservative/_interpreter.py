"""The interpreter behind ``jacobian``: values with set-valued Jacobians, and the dispatch.

Every value of the interpreted jaxpr is a ``_V``: its value, the representation (★) of
``_selections`` of its Jacobian, and what makes it depend on a tie (``amb``/``opts`` for tied
booleans and jump values, ``alts`` for values that differ option by option, ``tie`` for shared
comparison choices).  ``_eval_eqn`` sends each equation to its rule family: smooth primitives
through JAX's JVP (here), tied comparisons and selections (``_ties``), orderings and extrema
(``_orderings``), control flow (``_control_flow``), lowered primitives (``_lowerings``).
"""

from __future__ import annotations

import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from . import _lowerings as L
from . import _rules as R
from . import _sparse_reps as S
from ._selections import Choices, JRep, _add_table


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
    if isinstance(rep, S.SRep):
        return rep.finite()
    return rep is None or (np.all(np.isfinite(rep.center))
                           and all(np.all(np.isfinite(v)) for _, v in rep.tables.values()))


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
    if any(isinstance(r, S.SRep) for r in reps):
        reps = [S.SRep(sp.csr_array(r.center)) if isinstance(r, JRep) and not r.tables else r for r in reps]
        if all(r is None or isinstance(r, S.SRep) for r in reps):
            return S.vstack(reps, sizes, N)
        reps = [S.densify(ctx.choices, r, "concatenating outputs") for r in reps]
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
    if any(isinstance(v.rep, S.SRep) for v in invals) and _needs_dense(eqn, invals):
        for v in invals:
            v.rep = S.densify(ctx.choices, v.rep, f"primitive '{name}'")
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
        ambs = [np.zeros(np.shape(out), bool) if v.amb is None else np.broadcast_to(v.amb, np.shape(out))
                for v in invals]
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
    fun = ((lambda *a: eqn.primitive.bind(*a, **p)) if eqn.primitive.multiple_results
           else (lambda *a: (eqn.primitive.bind(*a, **p),)))
    pkey = R._params_key(p)
    reps = None
    if any(isinstance(v.rep, S.SRep) for v in invals):
        reps = S.push(ctx, eqn, vals, [v.rep for v in invals], outs)
        if reps is None:
            for v in invals:
                v.rep = S.densify(ctx.choices, v.rep, f"primitive '{name}'")
    if reps is None:
        reps = R.push_linear(fun, vals, [v.rep for v in invals], len(outs),
                             key=None if pkey is None else (name, pkey))
    for r in reps:
        _note_finite(ctx, name, r)
    return [_V(o, r if R.is_float(o) else None) for o, r in zip(outs, reps)]


#: rules that read sparse reps themselves (through ``_rules``' broadcast/negate/select and the
#: smooth push); discrete results do not read reps at all
_SPARSE_AWARE = {"max", "min", "abs", "clamp", "select_n"}


def _needs_dense(eqn, invals):
    """Does the rule for ``eqn`` need the dense representation of its inputs' Jacobians?"""
    name = eqn.primitive.name
    if name in ("cond", "scan", "while") or any(v.alts is not None for v in invals):
        return True
    if name in _SPARSE_AWARE or name in R.SMOOTH or name in R.JUMPS or name in R.LOCALLY_CONSTANT \
            or name in R.COMPARISONS or name in R.LOGICAL:
        return False
    return any(jnp.issubdtype(v.aval.dtype, jnp.floating) for v in eqn.outvars)


# the rule families call back into the dispatch above
from ._control_flow import _cond, _scan, _while  # noqa: E402
from ._orderings import _nonsmooth  # noqa: E402
from ._ties import (  # noqa: E402
    _ELEMENTWISE,
    _ambiguous_elementwise,
    _as_options,
    _compare_ambiguous,
    _comparison_tie,
    _discrete_cast,
    _eval_options,
    _jump,
    _select_n,
    _sign_bits,
)

"""Compiled fast path of ``jacobian``: detect ties, and skip the interpreter where there are none.

Along a trajectory most points are smooth: no nonsmooth primitive is tied, the conservative
Jacobian is a singleton, and it equals the derivative of the active selection.  ``FastJacobian``
compiles (``jax.jit``), for fixed argument shapes, one function returning

* the value of the program,
* a flag "some nonsmooth primitive is tied within ``tol``" (the same test the interpreter of
  ``_jacobian`` applies: ``max``/``min``/``abs``/``clamp``/``reduce_max``/``reduce_min``/
  ``sort``/``argmax`` ties, ``sign``/``floor``/``ceil``/``round`` at their jumps, tied comparisons
  reaching ``select_n``/``cond``/conversions), and
* the forward-mode Jacobian of the program with ``custom_jvp``/``custom_vjp`` functions inlined
  to their primal implementation (the interpreter's semantics).

When the flag is down the set is {that Jacobian}; otherwise the caller runs the interpreter.
"""

from __future__ import annotations

import jax
import jax.extend.core as jcore
import jax.flatten_util
import jax.numpy as jnp
from jax import lax

from . import _lowerings as L
from . import _rules as R

_TIE_PRIMS = {"max", "min", "abs", "clamp", "reduce_max", "reduce_min", "argmax", "argmin", "sort"} | R.JUMPS
#: primitives with discrete results whose ties the fast path checks itself
_DISCRETE_HANDLED = R.COMPARISONS | {"argmax", "argmin", "sort", "convert_element_type"}


#: the fast path flags a tie within this many ulps of the operands' magnitude (see ``_near``)
SLACK_ULPS = 64


def _near(d, scale, tol):
    """Traced: |d| within ``tol`` plus ``SLACK_ULPS`` ulps of ``scale``.

    The compiled program rounds differently from the interpreter's op-by-op evaluation (XLA
    fuses ``a / sqrt(b)`` into ``a * rsqrt(b)``, contracts ``a * b + c`` into an FMA), so a tie
    that is exact in the interpreter can be a few ulps off here, and the reverse.  Flagging
    near-ties hands those points to the interpreter, which decides on its own values: the set is
    the same whichever path runs."""
    return jnp.abs(d) <= tol + SLACK_ULPS * jnp.finfo(jnp.float64).eps * scale


def _tied(name, params, vals, tol, scales):
    """Traced: does this nonsmooth primitive have a tie (or a near-tie) at these values?
    ``scales`` are magnitudes of the terms the operands were computed from (``_Scales``)."""
    f = lambda v: jnp.asarray(v, jnp.float64)  # noqa: E731
    if name in ("max", "min"):
        return jnp.any(_near(f(vals[0]) - f(vals[1]), jnp.maximum(scales[0], scales[1]), tol))
    if name in ("abs", "sign"):
        return jnp.any(_near(f(vals[0]), scales[0], tol))
    if name in ("floor", "ceil"):
        x = f(vals[0])
        return jnp.any(_near(x - jnp.round(x), scales[0], tol))
    if name == "round":
        x = f(vals[0])
        return jnp.any(_near(x - jnp.floor(x) - 0.5, scales[0], tol))
    if name == "clamp":
        lo, x, hi = (f(v) for v in vals)
        return jnp.any(_near(x - lo, jnp.maximum(scales[0], scales[1]), tol)
                       | _near(x - hi, jnp.maximum(scales[1], scales[2]), tol))
    if name in ("argmax", "argmin") and not R.is_float(vals[0]):
        return jnp.asarray(False)
    if name in ("reduce_max", "reduce_min", "argmax", "argmin"):
        axes = tuple(params["axes"])
        x = f(vals[0])
        ext = (jnp.max(x, axis=axes, keepdims=True) if name in ("reduce_max", "argmax")
               else jnp.min(x, axis=axes, keepdims=True))
        scale = jnp.max(jnp.broadcast_to(scales[0], x.shape), axis=axes, keepdims=True)
        return jnp.any(jnp.sum(_near(x - ext, scale, tol), axis=axes) > 1)
    if name == "sort":
        # a lexicographic tie needs equal values in every key, in particular in each float key:
        # flagging self-ties of the float keys over-approximates (safe: the interpreter decides)
        d = params["dimension"]
        flags = []
        for v, sc in zip(vals[: params["num_keys"]], scales):
            if R.is_float(v):
                sv = jnp.sort(f(v), axis=d)
                scale = jnp.max(jnp.broadcast_to(sc, jnp.shape(v)), axis=d, keepdims=True)
                flags.append(jnp.any(_near(jnp.diff(sv, axis=d), scale, tol)))
        return jnp.any(jnp.stack(flags)) if flags else jnp.asarray(False)
    raise KeyError(name)


#: primitives whose result is a sum of terms: the magnitude of the terms bounds its rounding
_SUMS = {"add", "sub", "add_any", "dot_general", "reduce_sum"}


def _term_scale(name, params, vals, out):
    """Traced magnitude of the terms summed to make ``out`` (|a| + |b| for a ± b, |A|·|B| for a
    product of matrices, Σ|x| for a sum), or |out| for other primitives: a near-zero result of a
    cancellation is tested against the size of what cancelled, not against itself."""
    a = [jnp.abs(jnp.asarray(v, jnp.float64)) for v in vals]
    if name in ("add", "sub", "add_any"):
        return a[0] + a[1]
    if name == "dot_general":
        return lax.dot_general(a[0], a[1], params["dimension_numbers"], preferred_element_type=jnp.float64)
    if name == "reduce_sum":
        return jnp.sum(a[0], axis=tuple(params["axes"]))
    return jnp.abs(jnp.asarray(out, jnp.float64))


#: nonsmooth primitives with a float result that the interpreter differentiates (calls, control
#: flow and lowerings are inlined before this test; ``R.SMOOTH`` is read live: ``register_smooth``)
_FLOAT_RULES = R.NONSMOOTH | R.LOCALLY_CONSTANT | R.JUMPS


def _has_rule(name, outs):
    """Does the interpreter have a rule for this primitive's results?  Complex results of
    input-dependent values have none; discrete results are checked where they are handled."""
    if any(jnp.iscomplexobj(o) for o in outs):
        return False
    return name in _FLOAT_RULES or name in R.SMOOTH or not any(R.is_float(o) for o in outs)


def _any(a):
    return jnp.asarray(False) if a is None else jnp.any(a)


def trace_ties(jaxpr, consts, args, ambs, tol, deps=None, scales=None):
    """Evaluate ``jaxpr`` (traceable) → (outputs, output ambiguity masks, tie flag, output deps).

    ``deps[i]`` says whether argument i may depend on the differentiated inputs (an
    over-approximation is safe: it can only send a point to the interpreter for nothing).
    Ties between values that do not depend on the inputs are locally constant and ignored,
    as in the interpreter.
    """
    env, amb, dep = {}, {}, {}
    flag = jnp.asarray(False)
    deps = [True] * len(args) if deps is None else list(deps)

    def read(v):
        return (v.val, None) if isinstance(v, jcore.Literal) else (env[v], amb.get(v))

    def is_dep(v):
        return False if isinstance(v, jcore.Literal) else dep.get(v, False)

    producer = {}  # var -> (primitive, params, operand values, value) of sums (``_term_scale``)
    outer = {}  # var -> thunk of the scale of an argument, from the caller's jaxpr

    def scale(v):
        if not isinstance(v, jcore.Literal):
            if v in producer:
                return _term_scale(*producer[v])
            if v in outer:
                return outer[v]()
        return jnp.abs(jnp.asarray(read(v)[0], jnp.float64))

    for var, c in zip(jaxpr.constvars, consts):
        env[var] = c
    for var, a, m, d in zip(jaxpr.invars, args, ambs, deps):
        env[var] = a
        dep[var] = bool(d)
        if m is not None:
            amb[var] = m
    for var, sc in zip(jaxpr.invars, scales or []):
        if sc is not None:
            outer[var] = sc
    for eqn in jaxpr.eqns:
        name, p = eqn.primitive.name, eqn.params
        pairs = [read(v) for v in eqn.invars]
        vals = [a for a, _ in pairs]
        in_amb = [m for _, m in pairs]
        in_dep = [is_dep(v) for v in eqn.invars]
        any_dep = any(in_dep)
        out_dep = [any_dep] * len(eqn.outvars)
        out_amb = None
        if name in ("jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
                    "custom_vjp_call_jaxpr", "remat2", "checkpoint", "remat") or name in L.LOWERINGS:
            inner = (L.lower(eqn, vals) if name in L.LOWERINGS
                     else p.get("jaxpr", p.get("call_jaxpr", p.get("fun_jaxpr"))))
            if hasattr(inner, "consts"):
                inner, iconsts = inner.jaxpr, inner.consts
            else:
                iconsts = []
            thunks = [(lambda v=v: scale(v)) for v in eqn.invars]  # inlined calls (relu) see the caller's sums
            outs, oambs, f, odeps = trace_ties(inner, iconsts, vals, in_amb, tol, in_dep, thunks)
            flag = flag | f
            for var, o, m, d in zip(eqn.outvars, outs, oambs, odeps):
                env[var] = o
                dep[var] = d
                if m is not None:
                    amb[var] = m
            continue
        if name == "cond":
            flag = flag | _any(in_amb[0])
            branches = p["branches"]

            def make(br):
                def g(*ops):
                    outs, _, f, _ = trace_ties(br.jaxpr, br.consts, list(ops), in_amb[1:], tol, in_dep[1:])
                    return tuple(outs), f
                return g

            outs, f = lax.switch(vals[0], [make(b) for b in branches], *vals[1:])
            flag = flag | f
        elif name == "scan":
            nc, ncar = p["num_consts"], p["num_carry"]
            body = p["jaxpr"]
            consts_v = vals[:nc]
            if any(m is not None for m in in_amb):
                flag = jnp.asarray(True)

            def step(carry, x):
                c, f = carry
                outs, _, f2, _ = trace_ties(body.jaxpr, body.consts, list(consts_v) + list(c) + list(x),
                                            [None] * len(body.jaxpr.invars), tol, [any_dep] * len(body.jaxpr.invars))
                return (tuple(outs[:ncar]), f | f2), tuple(outs[ncar:])

            (c, f), ys = lax.scan(step, (tuple(vals[nc : nc + ncar]), jnp.asarray(False)),
                                  tuple(vals[nc + ncar :]), length=p["length"], reverse=p["reverse"])
            outs = list(c) + list(ys)
            flag = flag | f
        elif name == "while":
            cn, bn = p["cond_nconsts"], p["body_nconsts"]
            cj, bj = p["cond_jaxpr"], p["body_jaxpr"]
            cconsts, bconsts = vals[:cn], vals[cn : cn + bn]
            if any(m is not None for m in in_amb):
                flag = jnp.asarray(True)

            def cond_fun(state):
                carry, _ = state
                (pred,), _, _, _ = trace_ties(cj.jaxpr, cj.consts, list(cconsts) + list(carry),
                                              [None] * len(cj.jaxpr.invars), tol, [any_dep] * len(cj.jaxpr.invars))
                return pred

            def body_fun(state):
                carry, f = state
                (pred,), pamb, f1, _ = trace_ties(cj.jaxpr, cj.consts, list(cconsts) + list(carry),
                                                  [None] * len(cj.jaxpr.invars), tol, [any_dep] * len(cj.jaxpr.invars))
                outs, _, f2, _ = trace_ties(bj.jaxpr, bj.consts, list(bconsts) + list(carry),
                                            [None] * len(bj.jaxpr.invars), tol, [any_dep] * len(bj.jaxpr.invars))
                return tuple(outs), f | f1 | f2 | _any(pamb[0])

            init = (tuple(vals[cn + bn :]), jnp.asarray(False))
            (c, f) = lax.while_loop(cond_fun, body_fun, init)
            # the final (false) evaluation of the condition may itself be tied
            (_,), pamb, f3, _ = trace_ties(cj.jaxpr, cj.consts, list(cconsts) + list(c),
                                           [None] * len(cj.jaxpr.invars), tol, [any_dep] * len(cj.jaxpr.invars))
            outs = list(c)
            flag = flag | f | f3 | _any(pamb[0])
        else:
            outs = eqn.primitive.bind(*vals, **p)
            outs = list(outs) if eqn.primitive.multiple_results else [outs]
            if any_dep and not _has_rule(name, outs):
                flag = jnp.asarray(True)  # the interpreter raises NoRuleError: never a silent singleton
            if name in _SUMS and R.is_float(outs[0]) and any_dep:
                producer[eqn.outvars[0]] = (name, p, vals, outs[0])
            if name in R.COMPARISONS:
                flag = flag | _any(in_amb[0]) | _any(in_amb[1])
                if R.is_float(vals[0]) and eqn.invars[0] is not eqn.invars[1] and any_dep:
                    d = jnp.asarray(vals[0], jnp.float64) - jnp.asarray(vals[1], jnp.float64)
                    sc = jnp.maximum(scale(eqn.invars[0]), scale(eqn.invars[1]))
                    out_amb = jnp.broadcast_to(_near(d, sc, tol), jnp.shape(outs[0]))
            elif name in R.LOGICAL and any(m is not None for m in in_amb):
                shape = jnp.shape(outs[0])
                ms = [jnp.zeros(shape, bool) if m is None else jnp.broadcast_to(m, shape) for m in in_amb]
                if name == "not":
                    out_amb = ms[0]
                else:
                    a, b = (jnp.asarray(v, bool) for v in vals)
                    if name == "xor":
                        out_amb = ms[0] | ms[1]
                    elif name == "and":
                        out_amb = (ms[0] | ms[1]) & ~((~ms[0] & ~a) | (~ms[1] & ~b))
                    else:
                        out_amb = (ms[0] | ms[1]) & ~((~ms[0] & a) | (~ms[1] & b))
            elif (name == "convert_element_type" and in_amb[0] is None and any_dep and R.is_float(vals[0])
                  and not jnp.issubdtype(p["new_dtype"], jnp.inexact)):
                # float → bool: tied at 0 (like x != 0); float → int: jumps at nonzero integers
                x = jnp.asarray(vals[0], jnp.float64)
                if p["new_dtype"] == jnp.bool_:
                    out_amb = _near(x, scale(eqn.invars[0]), tol)
                else:
                    flag = flag | jnp.any(_near(x - jnp.round(x), scale(eqn.invars[0]), tol) & (jnp.round(x) != 0))
            elif (name == "bitcast_convert_type" and in_amb[0] is None and any_dep and R.is_float(vals[0])
                  and jnp.shape(outs[0]) == jnp.shape(vals[0])):
                # sign bit at 0
                flag = flag | jnp.any(_near(jnp.asarray(vals[0], jnp.float64), scale(eqn.invars[0]), tol))
            elif name == "convert_element_type" and in_amb[0] is not None:
                if jnp.issubdtype(p["new_dtype"], jnp.floating):
                    flag = flag | _any(in_amb[0])
                else:
                    out_amb = in_amb[0]
            elif name == "select_n":
                flag = flag | _any(in_amb[0])
                if any(m is not None for m in in_amb[1:]):
                    flag = jnp.asarray(True)
            elif name in R.STRUCTURAL and any(m is not None for m in in_amb) and not any(R.is_float(v) for v in vals):
                masks = [jnp.zeros(jnp.shape(v), bool) if m is None else m for v, m in zip(vals, in_amb)]
                masks = [m if jnp.result_type(v) == jnp.bool_ else v for m, v in zip(masks, vals)]
                out_amb = eqn.primitive.bind(*masks, **p)
            elif name in L.SPECTRAL and any_dep:
                flag = flag | L.spectrum_degenerate(name, p, vals, tol)
            elif name in _TIE_PRIMS and any_dep:
                flag = flag | _tied(name, p, vals, tol, [scale(v) for v in eqn.invars])
                if any(m is not None for m in in_amb):  # e.g. argmax(x > 0) with x tied at 0
                    flag = flag | jnp.any(jnp.stack([_any(m) for m in in_amb if m is not None]))
            elif any(m is not None for m in in_amb):
                flag = flag | jnp.any(jnp.stack([_any(m) for m in in_amb]))
            elif (any_dep and name not in R.LOCALLY_CONSTANT and any(R.is_float(v) for v in vals)
                  and not any(R.is_float(o) for o in outs) and name not in _DISCRETE_HANDLED):
                # a discrete result of input-dependent floats without a rule: the interpreter decides
                # (it raises NoRuleError instead of treating the result as locally constant)
                flag = jnp.asarray(True)
        if name in R.LOCALLY_CONSTANT:
            out_dep = [False] * len(eqn.outvars)  # constant pieces: their jumps are flagged above
        for var, o, d in zip(eqn.outvars, outs, out_dep):
            if not isinstance(var, jcore.DropVar):
                env[var] = o
                dep[var] = d
        if out_amb is not None and not isinstance(eqn.outvars[0], jcore.DropVar):
            amb[eqn.outvars[0]] = out_amb
    outs = [read(v) for v in jaxpr.outvars]
    return [o for o, _ in outs], [m for _, m in outs], flag, [is_dep(v) for v in jaxpr.outvars]


class FastJacobian:
    """Compiled (value, tie flag, Jacobian) for a flat function of float leaves.

    ``closed`` is the jaxpr of the function of all leaves; ``diff`` the indices of the
    differentiated leaves.  Calling with the leaves returns (output leaves, tied, J (M, N)).
    """

    def __init__(self, closed, diff, tol):
        self.closed, self.diff, self.tol = closed, list(diff), float(tol)
        self._fn = jax.jit(self._compute)
        self._flag_fn = jax.jit(lambda leaves: self._outputs(list(leaves)))
        self._jac_fn = jax.jit(lambda leaves: self._compute(leaves)[2])

    def _outputs(self, leaves):
        outs, _, flag, _ = trace_ties(self.closed.jaxpr, self.closed.consts, list(leaves),
                                      [None] * len(leaves), self.tol, [i in self.diff for i in range(len(leaves))])
        return outs, flag

    def _compute(self, leaves):
        leaves = list(leaves)
        outs, flag = self._outputs(leaves)
        dl = [leaves[i] for i in self.diff]
        flat, unravel = jax.flatten_util.ravel_pytree(dl)

        def g(z):
            ls = list(leaves)
            for i, v in zip(self.diff, unravel(z)):
                ls[i] = v
            o, _ = self._outputs(ls)
            return jnp.concatenate([jnp.ravel(jnp.asarray(x, jnp.float64)) for x in o])

        J = jax.jacfwd(g)(flat)
        return outs, flag, J

    def __call__(self, leaves):
        return self._fn(tuple(leaves))

    def flag(self, leaves):
        """(output leaves, tied) without the Jacobian: at a tied point the interpreter computes the
        set, and the dense forward-mode Jacobian (n × N) would be wasted work and memory."""
        return self._flag_fn(tuple(leaves))

    def jac(self, leaves):
        """The forward-mode Jacobian (M, N) of the active selection (meaningful where not tied)."""
        return self._jac_fn(tuple(leaves))

"""``conservative.jacobian``: the whole conservative Jacobian of a JAX program at a point.

The program is traced to a jaxpr and interpreted at the point; every intermediate value
carries its value and the representation (★) of ``_selections`` of its Jacobian with respect
to the differentiated inputs.  Smooth primitives use JAX's JVP, nonsmooth ones enumerate
their active selections (``_rules``).  The result is

    J(x) = conv{ J_σ(x) : σ a selection of the active pieces of every nonsmooth primitive }

returned as a ``MatrixSet``.  For a program built from Lipschitz gradient selections this is a
conservative Jacobian in the sense of Bolte & Pauwels (slides "Conservative gradients",
Vaiter 2023); JAX's ``jacfwd``/``jacrev`` return one element of it.

Semantics (the documentation's page Concepts › Program semantics says the same for users):

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

Every primitive has a rule or raises (audit of the ``jax.lax`` primitives; the sets live in
``_rules``, ``_lowerings``):

* **smooth** (``_rules.SMOOTH``, JAX's JVP): arithmetic, ``exp``/``log``/trigonometric and special
  functions, ``dot_general``, ``conv_general_dilated``, reductions by sum/product, cumulative
  sums/products, data movement (``reshape``, ``slice``, ``gather``, ``scatter``, ``pad``, ...),
  ``cholesky``, ``triangular_solve``, ``lu``, ``qr``, ``custom_linear_solve``, float→float casts;
  ``register_smooth`` adds to it.
* **nonsmooth with a rule** (``_rules.NONSMOOTH``): ``max``, ``min``, ``abs``, ``clamp``,
  ``select_n``, ``reduce_max``/``reduce_min``, ``argmax``/``argmin``, ``sort``.
* **tie-aware discrete** (``_rules.COMPARISONS``, ``LOGICAL``): every comparison, the total-order
  ``lt_to``/``le_to``/``eq_to`` included, and ``and``/``or``/``not``/``xor`` of their results.
* **jumps** (``_rules.JUMPS``): ``sign``, ``floor``, ``ceil``, ``round``, float→int/bool casts
  (``convert_element_type``) and the sign bit of ``bitcast_convert_type``: locally constant away
  from their jump points, ambiguous at them.
* **locally constant**: ``stop_gradient``, ``nextafter``, ``is_finite``; any primitive whose inputs do
  not depend on the differentiated arguments (``iota``, random bits, tokens, ...).
* **lowered** (``_lowerings.LOWERINGS``, interpreted through an equivalent program of the classes
  above): ``top_k``, ``cummax``/``cummin``, ``reduce_window_max``/``reduce_window_min``
  (max-pooling), ``rem``.
* **spectral** (``_lowerings.SPECTRAL``): ``eigh``, ``svd`` — smooth, except at repeated (or, for
  singular values, zero) values, where ``NoRuleError`` says the spectrum is degenerate.
* **control flow and calls**: ``jit``/``pjit``, ``closed_call``, ``custom_jvp_call``,
  ``custom_vjp_call``, ``remat``/``checkpoint``, ``cond``, ``scan``, ``while``.
* **no rule** (``NoRuleError``, whatever the output dtype, whenever an input depends on the
  differentiated arguments): everything else, e.g. ``scatter-max``/``scatter-min``, the generic
  ``reduce``, bit manipulations (``population_count``, ``clz``, shifts
  of bit patterns, other ``bitcast_convert_type`` uses), ``eig``, ``schur``, ``fft``,
  ``approx_top_k``, ``select_and_scatter_add``, ``regularized_incomplete_beta``, ``igamma_grad_a``,
  the collectives (``psum``, ``all_gather``, ...).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import _rules as R
from . import _sparse_reps as S
from ._fast import FastJacobian
from ._interpreter import (
    _V,
    JumpError,
    NoRuleError,
    _concat,
    _Ctx,
    _eval_closed,
    _finite_rep,
    _raise_nonfinite,
    _size,
)
from ._matrix_set import MatrixSet
from ._selections import JRep
from ._ties import _as_options, _resolve_output

__all__ = ["jacobian", "value_and_jacobian", "register_smooth", "JumpError", "NoRuleError"]

register_smooth = R.register_smooth

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
    scale = (1.0 + np.max(np.abs(J._cval), initial=0.0)
             + sum(float(np.sum(np.max(np.abs(p.vals), axis=(1, 2)))) for p in J._packs))
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


#: ``mode="auto"`` runs reverse mode for at most this many outputs ...
REVERSE_MAX_OUTPUTS = 32
#: ... when the inputs have at least this many columns (and four times the outputs)
REVERSE_MIN_COLUMNS = 1024

_MODES = ("auto", "forward", "reverse")


def _prefers_reverse(m: int, N: int) -> bool:
    """``mode="auto"``: few outputs and many input columns (a loss of many parameters)."""
    return m <= REVERSE_MAX_OUTPUTS and N >= max(REVERSE_MIN_COLUMNS, 4 * m)


def value_and_jacobian(fun: Callable, argnums: int | tuple[int, ...] = 0, *, tol: float = 0.0,
                       max_selections: int = 4096, fast: bool | None = None,
                       mode: str = "auto") -> Callable[..., tuple[Any, MatrixSet]]:
    """Like ``jacobian`` but the returned function gives ``(fun(*args), J)``.

    ``fast``: ``True`` compiles a tie detector and the forward-mode Jacobian (``_fast``) and
    runs the interpreter only at points where some nonsmooth primitive is tied; ``False``
    always interprets; ``None`` (default) interprets on the first call and compiles from the
    second call with the same argument shapes on (for repeated use along trajectories).
    Jaxprs are cached per argument structure and shapes, like ``jax.jit``: a function whose
    behaviour depends on mutable Python state must not be reused.

    ``mode``: ``"forward"`` propagates the Jacobian set with respect to the N input columns (JVP
    form); ``"reverse"`` propagates the adjoint set of the m outputs backwards (VJP form,
    ``_reverse``; ``fast`` does not apply) and hands programs outside its subset to forward mode;
    ``"auto"`` (default) runs reverse mode when m ≤ ``REVERSE_MAX_OUTPUTS`` and
    N ≥ max(``REVERSE_MIN_COLUMNS``, 4m) (a loss of many parameters), forward mode otherwise.  Both
    modes give the same set.  The returned function's attribute ``last_mode`` says which ran.
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
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"mode: expected one of {_MODES}, got {mode!r}")
    if mode == "reverse":
        from ._reverse import value_and_jacobian_reverse  # the reverse module builds on this one

        return value_and_jacobian_reverse(fun, argnums, tol=tol, max_selections=max_selections)
    cache: dict = {}
    reverse = []  # the reverse-mode function of ``mode="auto"``, made on first use

    def wrapped(*args, **kwargs):
        leaves, treedef, diff = _prepare(fun, argnums, args)

        def flat_fun(*ls):
            return fun(*jax.tree_util.tree_unflatten(treedef, ls), **kwargs)

        key = None if kwargs else (treedef, tuple((l.shape, str(l.dtype)) for l in leaves))
        entry = cache.get(key) if key is not None else None
        if entry is None:
            closed, out_shape = jax.make_jaxpr(flat_fun, return_shape=True)(*leaves)
            m = int(sum(_size(o) for o in jax.tree_util.tree_leaves(out_shape)))
            entry = {"closed": closed, "out_tree": jax.tree_util.tree_structure(out_shape), "calls": 0, "fast": None,
                     "outputs": m}
            if key is not None:
                cache[key] = entry
        sizes = [_size(leaves[i]) for i in diff]
        N = int(sum(sizes))
        if mode == "auto" and _prefers_reverse(entry["outputs"], N):
            if not reverse:
                from ._reverse import value_and_jacobian_reverse

                reverse.append(value_and_jacobian_reverse(fun, argnums, tol=tol, max_selections=max_selections))
            try:
                return reverse[0](*args, **kwargs)
            finally:
                wrapped.last_mode = reverse[0].last_mode
        wrapped.last_mode = "forward"
        entry["calls"] += 1
        closed, out_tree = entry["closed"], entry["out_tree"]
        use_fast = fast if fast is not None else entry["calls"] > 1
        if use_fast and key is not None:
            if entry["fast"] is None:
                entry["fast"] = FastJacobian(closed, diff, tol)
            outs, tied = entry["fast"].flag(leaves)
            if not bool(tied):
                Jm = np.asarray(entry["fast"].jac(leaves), dtype=np.float64)
                if not np.all(np.isfinite(Jm)):
                    raise ValueError("jacobian: the derivative is not finite at this point (e.g. sqrt or log at 0)")
                for o in outs:
                    if not R.is_float(o):
                        raise TypeError(f"jacobian: outputs must be floating point, got dtype {jnp.result_type(o)}")
                return (jax.tree_util.tree_unflatten(out_tree, list(outs)),
                        MatrixSet._from_sparse(Jm.shape, Jm.ravel(), ()))
        ctx = _Ctx(N, tol, max_selections)
        offsets = np.cumsum([0] + sizes)
        inputs = [_V(l) for l in leaves]
        # large inputs: sparse reps (memory ∝ nonzeros and ties, not size × N); they give the same set
        sparse = N * N >= S.SPARSE_MIN_ENTRIES
        for k, i in enumerate(diff):
            if sparse:
                inputs[i] = _V(leaves[i], S.identity(sizes[k], N, offsets[k]))
                continue
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

    wrapped.last_mode = None
    return wrapped


def jacobian(fun: Callable, argnums: int | tuple[int, ...] = 0, *, tol: float = 0.0, max_selections: int = 4096,
             fast: bool | None = None, mode: str = "auto") -> Callable[..., MatrixSet]:
    """The conservative Jacobian of ``fun`` as a function returning a ``MatrixSet``.

    Like ``jax.jacfwd(fun, argnums)``, but ``jacobian(fun)(*args)`` is the *set*
    conv{J_σ : σ a selection of the pieces active at args} of shape (output size, input size)
    (see the module docstring for the semantics: ties within ``tol``, independent choices per
    occurrence, pytree flattening order, ``custom_jvp`` handling).

    ``max_selections`` bounds the joint selections of interacting ties (and tie-block orderings
    of ``sort``); independent ties cost nothing against it.  Exceeding it raises
    ``SetTooLargeError`` naming the limit.

    ``mode`` (``"auto"``, ``"forward"``, ``"reverse"``): forward (JVP) or reverse (VJP) form, the
    same set either way; ``"auto"`` takes reverse mode for few outputs and many inputs, such as the
    conservative gradient set of a loss (see ``value_and_jacobian``).  ``jac.last_mode`` says which
    ran on the last call.
    """
    vj = value_and_jacobian(fun, argnums, tol=tol, max_selections=max_selections, fast=fast, mode=mode)

    def jac(*args, **kwargs):
        try:
            return vj(*args, **kwargs)[1]
        finally:
            jac.last_mode = vj.last_mode

    jac.last_mode = None
    return jac

"""``clarke_jacobian``: the Clarke Jacobian of a piecewise-smooth JAX program as the hull of its
essentially active selections.

At x, every nonsmooth primitive whose operands tie (``max`` at a tie, ``abs`` at 0, a tied
comparison feeding ``where``, a tie block of ``sort``, ``sign``/``floor`` at a jump, ...) is a
*choice* among pieces.  A choice pattern σ (one option per tie, taken in program order) defines
a smooth selection f_σ with Jacobian J_σ(x); the pattern is realized at x + t·d (t ↓ 0) when
every tied quantity u_i has the sign the option needs: s_i·u_i(x + t d) > 0.  To first order
u_i(x + t d) = t·g_i·d, with g_i the gradient of u_i computed along the pattern so far, so the
*realizing cone* of σ is {d : s_i g_i·d > 0 for every tie i}.  σ is **essentially active**
(Scholtes 2012, "Introduction to Piecewise Differentiable Equations", §4.1) when that set has
nonempty interior, which is the linear program

    t* = max t   s.t.   s_i ĝ_i·d ≥ t  (ĝ_i = g_i/‖g_i‖₂),   ‖d‖∞ ≤ 1,

with t* > 0 (``margin``).  Then f = f_σ on an open set accumulating at x, so J_σ(x) is a
limiting Jacobian, and

    ∂ᶜf(x) = conv{ J_σ(x) : σ essentially active }           (Clarke Jacobian)

since the realizing cones of the essentially active patterns are dense in the directions.
The patterns are enumerated by a depth-first search over the ties in program order: a partial
pattern whose LP has t* = 0 is pruned with all its completions, so 2^k patterns are not visited
blindly (duplicated neurons or ``relu(x) - relu(-x)`` give contradictory constraints at the second
tie).  The direction d the LP returns is re-checked: it must satisfy the linearized constraints
s_i g_i·d ≥ t*/2 of the whole pattern.

**Exactness.**  For piecewise-affine programs (compositions of affine maps with max, min, abs,
clamp, sort, ReLU, where on comparisons) the first-order model is exact and so is the result.
For programs with nonlinear smooth pieces (exp, products of varying values, ...), t* > 0 still
proves a pattern active; a pattern with t* = 0 is pruned only when the closed cone
{d : s_i g_i·d ≥ 0} is {0} (checked with 2n LPs: then the pattern fails at first order in every
direction).  Otherwise its activity is decided by higher-order terms, which this method does not
compute: by default ``NotImplementedError`` is raised; with ``undecided="outer"`` the pattern is
kept (with all its completions) and the result is an outer approximation flagged ``exact=False``:
every pattern's Jacobian lies in the program's conservative set, so the result stays between the
two, ∂ᶜf(x) ⊆ result ⊆ conv ``conservative.jacobian(f)(x)``, never smaller than the Clarke
Jacobian.  A tie
that is also tied in its gradient (x² vs 0 at 0) is "equal" for affine quantities (exact) and
raises ``AmbiguousTieError`` for non-affine ones when the result depends on it.  Values are tied
when exactly equal (as in ``conservative.jacobian`` with ``tol=0``).

The Clarke Jacobian is the smallest of the conservative Jacobians of the function (slides
"Conservative gradients", Vaiter 2023): ∂ᶜf(x) ⊆ conv ``conservative.jacobian(f)(x)``, with
equality for programs without repeated or cancelling ties.  Compare the lexicographic derivative
(``lexicographic_jacobian``, Khan & Barton 2015; Nesterov 2005): one element of ∂ᶜf(x) for one
pass; and Griewank's piecewise linearization (Griewank 2013), whose abs-normal form has the same
tie structure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.optimize import linprog

from ._lexicographic import _Program
from ._matrix_set import MatrixSet, SetTooLargeError

__all__ = ["clarke_jacobian", "ClarkeSet", "DEFAULT_MAX_PATTERNS"]

DEFAULT_MAX_PATTERNS = 4096
_HIGHS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


class ClarkeSet(MatrixSet):
    """The ``MatrixSet`` returned by ``clarke_jacobian``, with what is known about it.

    * ``exact``: True when the set *is* the Clarke Jacobian ∂ᶜf(x) (every pattern was decided);
      False when undecided patterns were kept (``undecided="outer"``): then it is an outer
      approximation, ∂ᶜf(x) ⊆ set ⊆ conv ``conservative.jacobian(f)(x)``.
    * ``undecided``: the number of choice patterns (nodes of the search) kept without a proof of
      essential activity.
    * ``patterns``: the number of complete patterns whose Jacobians span the set.

    Sets derived from it by set operations report ``exact=False`` (they are not Clarke Jacobians).
    """

    __slots__ = ("_exact", "_undecided", "_patterns")

    @classmethod
    def _make(cls, generators, *, exact: bool, undecided: int, patterns: int) -> ClarkeSet:
        obj = cls(generators)
        object.__setattr__(obj, "_exact", bool(exact))
        object.__setattr__(obj, "_undecided", int(undecided))
        object.__setattr__(obj, "_patterns", int(patterns))
        return obj

    @property
    def exact(self) -> bool:
        return bool(getattr(self, "_exact", False))

    @property
    def undecided(self) -> int:
        return int(getattr(self, "_undecided", 0))

    @property
    def patterns(self) -> int:
        return int(getattr(self, "_patterns", 0))

    def __repr__(self) -> str:
        what = "exact" if self.exact else f"outer approximation, {self.undecided} undecided patterns kept"
        return f"ClarkeSet({MatrixSet.__repr__(self)}, {what})"


class _Branch(Exception):
    """Raised by the pattern decider at the first tie past its prefix."""

    def __init__(self, options, lin):
        super().__init__()
        self.options, self.lin = options, lin


class _PatternDecider:
    """Decides the ties of one run by a prefix of option indices; records their constraints
    (rows r with r·d > 0 required) and whether the tied quantities were affine."""

    def __init__(self, prefix):
        self.prefix, self.i = prefix, 0
        self.rows: list = []
        self.lins: list = []

    def _decide(self, options, lin):
        if self.i >= len(self.prefix):
            raise _Branch(options, lin)
        o = self.prefix[self.i]
        self.i += 1
        self.rows += options[o]
        self.lins += [bool(lin)] * len(options[o])
        return o

    def side(self, row, lin=True):
        return 1 if self._decide([[row], [-row]], lin) == 0 else -1

    def pick_max(self, rows, lin=True):
        options = [[rows[i] - rows[j] for j in range(len(rows)) if j != i] for i in range(len(rows))]
        return self._decide(options, lin)


def _normalized(rows):
    A = np.asarray(rows, dtype=np.float64)
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def _margin(rows):
    """t* = max t s.t. r̂_i·d ≥ t, ‖d‖∞ ≤ 1, t ≤ 1, and the maximizing d."""
    A = _normalized(rows)
    m, n = A.shape
    c = np.zeros(n + 1)
    c[-1] = -1.0
    res = linprog(c, A_ub=np.hstack([-A, np.ones((m, 1))]), b_ub=np.zeros(m),
                  bounds=[(-1.0, 1.0)] * n + [(None, 1.0)], method="highs", options=_HIGHS)
    if res.status != 0:
        raise RuntimeError(f"clarke_jacobian: the margin LP failed ({res.message})")
    return float(-res.fun), res.x[:n]


def _cone_is_zero(rows, margin):
    """Is {d : r_i·d ≥ 0} = {0}? (max ±d_j over the cone in the unit box, for every j)."""
    A = _normalized(rows)
    m, n = A.shape
    for j in range(n):
        for sgn in (1.0, -1.0):
            c = np.zeros(n)
            c[j] = -sgn
            res = linprog(c, A_ub=-A, b_ub=np.zeros(m), bounds=[(-1.0, 1.0)] * n, method="highs", options=_HIGHS)
            if res.status != 0:
                raise RuntimeError(f"clarke_jacobian: the cone LP failed ({res.message})")
            if -res.fun > margin:
                return False
    return True


def clarke_jacobian(fun: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
                    max_patterns: int = DEFAULT_MAX_PATTERNS, margin: float = 1e-8,
                    undecided: str = "raise") -> Callable[..., ClarkeSet]:
    """The Clarke Jacobian ∂ᶜf(x) of a piecewise-smooth program, as a ``MatrixSet``.

    ``clarke_jacobian(fun, argnums)(*args)``: rows and columns flattened as in
    ``conservative.jacobian`` (argnums order, pytree leaves, C order; with ``argnums=(0, 1)`` the
    joint set of [∂ₓf, ∂_θf] blocks).  It is the hull of the Jacobians of the *essentially
    active* choice patterns (Scholtes 2012), found by a depth-first search over the ties with one
    LP per partial pattern (module docstring, which states the math and what is exact).

    * ``max_patterns``: the most interpretations (nodes of the search) allowed;
      ``SetTooLargeError`` names it when exceeded.
    * ``margin``: a pattern is essentially active when its LP margin t* exceeds it (the
      realizing cone contains a ball of that radius in the unit ∞-box, rows normalized).

    * ``undecided``: what to do with a pattern whose activity needs higher-order terms:
      ``"raise"`` (default, ``NotImplementedError``) or ``"outer"`` (keep it: the result has
      ``exact=False`` and contains the Clarke Jacobian).

    Returns a ``ClarkeSet`` (a ``MatrixSet`` with ``.exact``, ``.undecided``, ``.patterns``).
    Exact for piecewise-affine programs and for piecewise-smooth programs decided at first
    order; ``NotImplementedError`` (or the flagged outer set) where a pattern's activity needs
    higher-order terms,
    ``AmbiguousTieError`` for ties also tied in their gradient (non-affine) that change the
    result, ``JumpError`` where f jumps.  ∂ᶜf(x) ⊆ conv ``conservative.jacobian(f)(x)``.

    Examples:
        >>> import jax, jax.numpy as jnp; jax.config.update("jax_enable_x64", True)
        >>> clarke_jacobian(lambda x: jax.nn.relu(x) - jax.nn.relu(-x))(jnp.zeros(1)).vertices.tolist()
        [[[1.0]]]
        >>> S = clarke_jacobian(lambda x: jnp.abs(x[0]) + jnp.abs(x[0]))(jnp.zeros(1))
        >>> sorted(S.vertices.ravel().tolist())
        [-2.0, 2.0]
        >>> len(clarke_jacobian(jnp.max)(jnp.zeros(3)).vertices)
        3
    """
    if isinstance(max_patterns, bool) or not isinstance(max_patterns, (int, np.integer)) or max_patterns < 1:
        raise ValueError(f"max_patterns: expected a positive int, got {max_patterns!r}")
    if not (isinstance(margin, (int, float)) and np.isfinite(margin) and 0 < margin < 1):
        raise ValueError(f"margin: expected a number in (0, 1), got {margin!r}")
    if undecided not in ("raise", "outer"):
        raise ValueError(f"undecided: expected 'raise' or 'outer', got {undecided!r}")

    def wrapped(*args, **kwargs):
        prog = _Program(fun, argnums, args, kwargs, "clarke_jacobian")
        n = prog.n
        eye = np.eye(n)
        stack = [((), None)]
        jacobians, runs, kept = [], 0, 0
        while stack:
            prefix, cert = stack.pop()
            runs += 1
            if runs > max_patterns:
                raise SetTooLargeError(
                    f"clarke_jacobian: the search over choice patterns needs more than max_patterns={max_patterns} "
                    "interpretations. Raise it with clarke_jacobian(..., max_patterns=...), "
                    "or move the point off the ties."
                )
            dec = _PatternDecider(prefix)
            try:
                Y = prog.run(dec, eye)
            except _Branch as b:
                children = []
                for o, opt in enumerate(b.options):
                    rows = dec.rows + opt
                    t, d = _margin(rows)
                    if t > margin:
                        got = float(np.min(_normalized(rows) @ d))
                        if not (got >= 0.5 * t and np.max(np.abs(d)) <= 1 + 1e-9):
                            raise RuntimeError(
                                f"clarke_jacobian: the LP certificate does not realize the pattern (margin {got:.3g} "
                                f"for t* = {t:.3g})")
                        children.append((prefix + (o,), d))
                    elif not all(dec.lins + [b.lin]) and not _cone_is_zero(rows, margin):
                        if undecided == "outer":
                            # kept without a proof: the set can only grow (towards the program's set)
                            kept += 1
                            children.append((prefix + (o,), None))
                            continue
                        raise NotImplementedError(
                            "clarke_jacobian: a choice pattern is not decided at first order: its linearized "
                            "realizing cone has empty interior but is not {0}, and the tied quantities are not "
                            "affine, so higher-order terms decide whether it is essentially active (e.g. "
                            "0 < y < x² near 0). Not implemented: use conservative.jacobian (a superset) or "
                            "lexicographic_jacobian (one element), or clarke_jacobian(..., undecided='outer') "
                            "(an outer approximation flagged exact=False)."
                        )
                stack.extend(reversed(children))
                continue
            jacobians.append(Y)
        return ClarkeSet._make(np.stack(jacobians) + 0.0, exact=kept == 0, undecided=kept,
                               patterns=len(jacobians))

    return wrapped

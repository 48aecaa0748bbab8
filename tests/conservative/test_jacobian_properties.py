"""Property tests for ``conservative.jacobian`` on random piecewise-smooth programs.

A random program is a short chain of vector ops on R^n (relu, abs, max/min of two linear maps,
clip, where, sort, x + max(x), x + (Wx)[argmax(Wx)], matmul, sin, tanh, x + sum(x)).  Evaluated at points on the grid
{-1, 0, 1}^n (ties are frequent) or at random reals.

Independent brute force: the selections are enumerated in numpy.  Every tied position of every
op occurrence is an independent choice among the active pieces (DESIGN §4: each occurrence is an
independent choice), the local Jacobian of each selected piece is written down by hand, and the
chain rule multiplies them.  The conservative Jacobian must be the convex hull of these products,
checked through support functions in many directions (two polytopes with equal support
functions are equal).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conservative import MatrixSet, SetTooLargeError
from conservative import jacobian as _jacobian

SETTINGS = settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_BRUTE = 3000

def jacobian(f):
    """``conservative.jacobian``; programs whose interacting ties exceed ``max_selections`` (the
    documented SetTooLargeError, e.g. a matmul mixing many tied rows) are discarded as examples."""

    def jac(x):
        try:
            return _jacobian(f)(x)
        except SetTooLargeError:
            assume(False)

    return jac


# ----------------------------------------------------------------------------- programs
small_int = st.sampled_from([-1.0, 0.0, 1.0])


def int_matrix(n):
    return st.lists(st.lists(small_int, min_size=n, max_size=n), min_size=n, max_size=n).map(
        lambda rows: np.array(rows, dtype=np.float64)
    )


def op_strategy(n):
    return st.one_of(
        st.just(("relu",)),
        st.just(("abs",)),
        st.tuples(st.just("max"), int_matrix(n), int_matrix(n)),
        st.tuples(st.just("min"), int_matrix(n), int_matrix(n)),
        st.tuples(st.just("clip"), st.sampled_from([(-1.0, 0.0), (0.0, 1.0), (-1.0, 1.0), (0.0, 0.0)])),
        st.tuples(st.just("where"), st.sampled_from([0.0, 0.5, -1.0, 2.0])),
        st.just(("sort",)),
        st.just(("maxsum",)),
        st.tuples(st.just("argmaxsum"), int_matrix(n)),
        st.tuples(st.just("matmul"), int_matrix(n)),
        st.just(("sin",)),
        st.just(("tanh",)),
        st.just(("sum",)),
        st.tuples(st.just("mulself"), int_matrix(n)),
    )


def program_strategy(n, max_ops=4):
    return st.lists(op_strategy(n), min_size=1, max_size=max_ops)


def point_strategy(n):
    # no subnormals: XLA on CPU flushes them to zero, so 1e-308 *is* a tie at 0 for JAX's
    # arithmetic while numpy's brute force sees a positive number (documented in jacobian)
    coord = st.one_of(small_int, st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False, allow_subnormal=False))
    return st.lists(coord, min_size=n, max_size=n).map(lambda v: np.array(v, dtype=np.float64))


def apply_op(op, x):
    """The JAX program (what jacobian and jax.jacfwd see)."""
    kind = op[0]
    if kind == "relu":
        return jax.nn.relu(x)
    if kind == "abs":
        return jnp.abs(x)
    if kind == "max":
        return jnp.maximum(op[1] @ x, op[2] @ x)
    if kind == "min":
        return jnp.minimum(op[1] @ x, op[2] @ x)
    if kind == "clip":
        return jnp.clip(x, op[1][0], op[1][1])
    if kind == "where":
        return jnp.where(x > 0, x, op[1] * x)
    if kind == "sort":
        return jnp.sort(x)
    if kind == "maxsum":
        return x + jnp.max(x)
    if kind == "argmaxsum":  # x + max(Wx), written with an argmax-based gather
        z = op[1] @ x
        return x + z[jnp.argmax(z)]
    if kind == "matmul":
        return op[1] @ x
    if kind == "sin":
        return jnp.sin(x)
    if kind == "tanh":
        return jnp.tanh(x)
    if kind == "sum":
        return x + jnp.sum(x)
    if kind == "mulself":  # bilinear: both factors carry the same selections
        return x * (op[1] @ x)
    raise KeyError(kind)


def make_program(ops):
    def f(x):
        for op in ops:
            x = apply_op(op, x)
        return x

    return f


def _diag_choices(options_per_pos):
    """Local Jacobians diag(d) for every combination of per-position derivative options."""
    out = []
    for d in itertools.product(*options_per_pos):
        out.append(np.diag(np.array(d, dtype=np.float64)))
    return out


def _row_choices(rows_per_pos):
    out = []
    for rows in itertools.product(*rows_per_pos):
        out.append(np.array(rows, dtype=np.float64))
    return out


def local_jacobians(op, x, y):
    """All local Jacobians of the active pieces of ``op`` at x (y = op(x), computed by JAX).

    Returns (list of matrices, number of tied positions)."""
    kind = op[0]
    n = len(x)
    if kind == "relu":
        opts = [[1.0] if v > 0 else [0.0] if v < 0 else [0.0, 1.0] for v in x]
        return _diag_choices(opts), sum(v == 0 for v in x)
    if kind == "abs":
        opts = [[1.0] if v > 0 else [-1.0] if v < 0 else [-1.0, 1.0] for v in x]
        return _diag_choices(opts), sum(v == 0 for v in x)
    if kind in ("max", "min"):
        a = np.asarray(op[1] @ jnp.asarray(x))
        b = np.asarray(op[2] @ jnp.asarray(x))
        rows = []
        for p in range(n):
            r = []
            if a[p] == y[p]:
                r.append(tuple(op[1][p]))
            if b[p] == y[p]:
                r.append(tuple(op[2][p]))
            assert r, "neither piece attains the value"
            rows.append(r)
        ties = sum(a[p] == b[p] for p in range(n))
        return _row_choices(rows), ties
    if kind == "clip":
        lo, hi = op[1]
        opts = []
        for v in x:
            o = set()
            if v <= lo:
                o.add(0.0)
            if v >= hi:
                o.add(0.0)
            if lo <= v <= hi:
                o.add(1.0)
            opts.append(sorted(o))
        return _diag_choices(opts), sum(len(o) > 1 for o in opts)
    if kind == "where":
        a = op[1]
        opts = [[1.0] if v > 0 else [a] if v < 0 else sorted({1.0, a}) for v in x]
        return _diag_choices(opts), sum(v == 0 for v in x)
    if kind == "sort":
        mats = set()
        for perm in itertools.permutations(range(n)):
            if all(x[perm[i]] == y[i] for i in range(n)):
                mats.add(tuple(np.eye(n)[list(perm)].ravel()))
        ties = sum(y[i] == y[i + 1] for i in range(n - 1))
        return [np.array(m).reshape(n, n) for m in mats], ties
    if kind == "maxsum":
        m = np.max(x)
        tied = [i for i in range(n) if x[i] == m]
        mats = []
        for i in tied:
            M = np.eye(n)
            M[:, i] += 1.0
            mats.append(M)
        return mats, int(len(tied) > 1)
    if kind == "argmaxsum":  # one choice among the tied rows of W: I + 1 W[i]
        z = op[1] @ x
        tied = [i for i in range(n) if z[i] == np.max(z)]
        return [np.eye(n) + np.outer(np.ones(n), op[1][i]) for i in tied], int(len(tied) > 1)
    if kind == "matmul":
        return [op[1]], 0
    if kind == "sin":
        return [np.diag(np.cos(x))], 0
    if kind == "tanh":
        return [np.diag(1.0 - np.tanh(x) ** 2)], 0
    if kind == "sum":
        return [np.eye(n) + np.ones((n, n))], 0
    if kind == "mulself":
        W = op[1]
        return [np.diag(W @ x) + np.diag(x) @ W], 0
    raise KeyError(kind)


def brute_force(ops, x0):
    """(all selection Jacobians as an array (K, n, n), number of ties, output value)."""
    x = jnp.asarray(x0)
    n = len(x0)
    Js = np.eye(n)[None]
    ties = 0
    for op in ops:
        y = apply_op(op, x)
        locs, t = local_jacobians(op, np.asarray(x), np.asarray(y))
        ties += t
        L = np.stack(locs)
        Js = np.einsum("aij,bjk->abik", L, Js).reshape(-1, n, n)
        Js = np.unique(np.round(Js, 14), axis=0)
        if len(Js) > MAX_BRUTE:
            return None, ties, y
        x = y
    return Js, ties, np.asarray(x)


def directions(Js, rng, k=25):
    n = Js.shape[1]
    D = [rng.standard_normal((n, n)) for _ in range(k)]
    D += list(Js[:10]) + [-J for J in Js[:10]]
    D += [np.eye(n), -np.eye(n)]
    return D


def assert_same_set(S: MatrixSet, Js: np.ndarray, rng):
    for D in directions(Js, rng):
        expect = float(np.max(np.einsum("kij,ij->k", Js, D)))
        got = S.support(D)
        assert got == pytest.approx(expect, abs=1e-9 * (1 + abs(expect))), (D, got, expect)


# ----------------------------------------------------------------------------- tests
@SETTINGS
@given(st.integers(2, 3).flatmap(lambda n: st.tuples(program_strategy(n), point_strategy(n))))
def test_set_equals_hull_of_all_selection_jacobians(case):
    ops, x0 = case
    Js, ties, _ = brute_force(ops, x0)
    assume(Js is not None)
    S = jacobian(make_program(ops))(jnp.asarray(x0))
    assert S.shape == (len(x0), len(x0))
    assert_same_set(S, Js, np.random.default_rng(0))


@SETTINGS
@given(st.integers(1, 3).flatmap(lambda n: st.tuples(program_strategy(n), point_strategy(n))))
def test_jacfwd_and_jacrev_lie_in_the_set(case):
    ops, x0 = case
    f = make_program(ops)
    x = jnp.asarray(x0)
    S = jacobian(f)(x)
    Jf = np.asarray(jax.jacfwd(f)(x))
    Jr = np.asarray(jax.jacrev(f)(x))
    assert S.contains(Jf, tol=1e-8), (ops, x0, Jf)
    assert S.contains(Jr, tol=1e-8), (ops, x0, Jr)


@SETTINGS
@given(st.integers(1, 3).flatmap(lambda n: st.tuples(program_strategy(n), point_strategy(n))))
def test_no_ties_gives_singleton_equal_to_jacfwd(case):
    ops, x0 = case
    Js, ties, _ = brute_force(ops, x0)
    assume(Js is not None and ties == 0)
    f = make_program(ops)
    x = jnp.asarray(x0)
    S = jacobian(f)(x)
    V = S.vertices
    assert len(V) == 1
    np.testing.assert_allclose(V[0], np.asarray(jax.jacfwd(f)(x)), atol=1e-12)
    np.testing.assert_allclose(V[0], Js[0], atol=1e-12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(2, 3).flatmap(
        lambda n: st.tuples(program_strategy(n, 2), program_strategy(n, 2), point_strategy(n))
    )
)
def test_chain_rule_closure(case):
    """J_{g∘f}(x) ⊆ J_g(f(x)) · J_f(x) (MatrixSet product)."""
    ops_f, ops_g, x0 = case
    f, g = make_program(ops_f), make_program(ops_g)
    x = jnp.asarray(x0)
    Jf = jacobian(f)(x)
    Jg = jacobian(g)(f(x))
    assume(Jf.num_candidate_vertices * Jg.num_candidate_vertices <= 256)
    P = Jg @ Jf
    Jgf = jacobian(lambda z: g(f(z)))(x)
    for V in Jgf.vertices:
        assert P.contains(V, tol=1e-8), (ops_f, ops_g, x0, V)


def test_brute_force_sanity():
    """The brute force itself on the slide's example: relu(x) - relu(-x) at 0 -> {0, 1, 2}."""
    ops = [("relu",)]
    Js, ties, _ = brute_force(ops, np.zeros(1))
    assert ties == 1 and sorted(Js.ravel()) == [0.0, 1.0]
    Js, ties, _ = brute_force([("sort",)], np.array([1.0, 1.0, 0.0]))
    assert len(Js) == 2 and ties == 1

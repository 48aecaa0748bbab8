"""Clarke Jacobians as hulls of essentially active selections (conservative._clarke)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conservative import (
    AmbiguousTieError,
    JumpError,
    MatrixSet,
    SetTooLargeError,
    clarke_jacobian,
    jacobian,
    lexicographic_jacobian,
)

EPS = np.finfo(np.float64).eps


def vertex_set(S):
    return sorted(map(tuple, np.round(S.vertices.reshape(len(S.vertices), -1), 12).tolist()))


def assert_same_hull(S, expected):
    T = MatrixSet(np.asarray(expected, dtype=np.float64))
    assert vertex_set(S) == vertex_set(T), (S.vertices, expected)


def sampled_limits(f, x, n_samples, seed=0, h=1e-6):
    """Jacobians jax.jacfwd at x + h·d for random unit directions d (limiting Jacobians)."""
    flat = np.asarray(x, np.float64).ravel()
    D = np.random.default_rng(seed).standard_normal((n_samples, flat.size))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    g = lambda z: jnp.ravel(f(z.reshape(np.shape(x))))  # noqa: E731
    J = np.asarray(jax.vmap(jax.jacfwd(g))(jnp.asarray(flat + h * D)))
    # one representative per distinct limit (they are few: one per piece met)
    _, first = np.unique(np.round(J.reshape(len(J), -1), 5), axis=0, return_index=True)
    return J[np.sort(first)]


# ------------------------------------------------------------------ closed forms
def test_closed_forms_where_the_program_set_is_larger():
    x = jnp.zeros(1)
    cases = [
        (lambda x: jax.nn.relu(x) - jax.nn.relu(-x), [[[1.0]]], [[[0.0]], [[2.0]]]),
        (lambda x: jnp.abs(x) - jnp.abs(x), [[[0.0]]], [[[-2.0]], [[2.0]]]),
        (jax.nn.softplus, [[[0.5]]], [[[-0.5]], [[1.5]]]),
        (jnp.abs, [[[-1.0]], [[1.0]]], [[[-1.0]], [[1.0]]]),
    ]
    for f, clarke, conservative in cases:
        S = clarke_jacobian(f)(x)
        assert_same_hull(S, clarke)
        assert_same_hull(jacobian(f)(x), conservative)


def test_duplicated_neurons():
    # the same neuron 5 times, minus 4 copies: f = relu(w·x); conservative set of the program is a
    # long segment, the Clarke Jacobian conv{0, w}
    w = jnp.array([1.0, -2.0])
    f = lambda x: 5 * jax.nn.relu(w @ x) - sum(jax.nn.relu(w @ x) for _ in range(4))  # noqa: E731
    x = jnp.zeros(2)
    S = clarke_jacobian(f)(x)
    assert_same_hull(S, [[[0.0, 0.0]], [[1.0, -2.0]]])
    C = jacobian(f)(x)
    assert all(C.contains(V, tol=1e-12) for V in S.vertices)
    assert len(vertex_set(C)) == 2 and max(abs(v[0]) for v in vertex_set(C)) == 5.0


def test_max_abs_sort_and_l1():
    assert_same_hull(clarke_jacobian(jnp.max)(jnp.zeros(3)), np.eye(3)[:, None, :])
    assert_same_hull(clarke_jacobian(lambda x: jnp.max(jnp.abs(x)))(jnp.zeros(2)),
                     [[[1.0, 0]], [[-1.0, 0]], [[0, 1.0]], [[0, -1.0]]])
    S = clarke_jacobian(jnp.sort)(jnp.zeros(3))
    assert len(S.vertices) == 6  # the 6 permutation matrices
    assert all(sorted(V.sum(axis=0).tolist()) == [1.0, 1.0, 1.0] for V in S.vertices)
    assert len(clarke_jacobian(lambda x: jnp.sum(jnp.abs(x)))(jnp.zeros(3)).vertices) == 8
    # away from ties: a singleton equal to jax.jacfwd
    f = lambda x: jnp.tanh(x) * jnp.maximum(x, 0.3) + jnp.sort(x)  # noqa: E731
    x = jnp.array([0.1, -0.7, 1.3])
    assert_same_hull(clarke_jacobian(f)(x), [np.asarray(jax.jacfwd(f)(x))])


def test_khan_barton_style_examples():
    # f(x) = max(min(x₁, -x₂), x₂ - x₁) at 0: three linear pieces, all essentially active
    f = lambda x: jnp.maximum(jnp.minimum(x[0], -x[1]), x[1] - x[0])  # noqa: E731
    assert_same_hull(clarke_jacobian(f)(jnp.zeros(2)), [[[1.0, 0.0]], [[0.0, -1.0]], [[-1.0, 1.0]]])
    # |x₁| - |x₂| + max(x₁, x₂): cancelling ties, 2-D
    g = lambda x: jnp.abs(x[0] + x[1]) - jnp.abs(x[0] + x[1]) + jnp.maximum(x[0], x[1])  # noqa: E731
    assert_same_hull(clarke_jacobian(g)(jnp.zeros(2)), [[[1.0, 0.0]], [[0.0, 1.0]]])


def test_nonlinear_pieces_decided_at_first_order():
    # max(x₁², x₂) at 0: the piece x₁² has a zero gradient, the comparison is decided by x₂
    f = lambda x: jnp.maximum(x[0] ** 2, x[1])  # noqa: E731
    assert_same_hull(clarke_jacobian(f)(jnp.zeros(2)), [[[0.0, 0.0]], [[0.0, 1.0]]])
    g = lambda x: jnp.maximum(jnp.exp(x[0]) - 1, jnp.sin(x[1])) + x[0] * x[1]  # noqa: E731
    assert_same_hull(clarke_jacobian(g)(jnp.zeros(2)), [[[1.0, 0.0]], [[0.0, 1.0]]])


def test_higher_order_needed_raises():
    # relu(min(y, x² - y)): the pattern 0 < y < x²/2 has an open region but an empty first-order cone
    f = lambda z: jax.nn.relu(jnp.minimum(z[1], z[0] ** 2 - z[1]))  # noqa: E731
    with pytest.raises(NotImplementedError, match="higher-order"):
        clarke_jacobian(f)(jnp.zeros(2))
    # a known limitation: |sin(y)| after relu(y) has the sign of y to every order, but the
    # first-order test sees a non-affine tie on the boundary y = 0 of the relu's pattern (2-D)
    g = lambda z: jax.nn.relu(z[1]) + jnp.abs(jnp.sin(z[1]))  # noqa: E731
    with pytest.raises(NotImplementedError, match="higher-order"):
        clarke_jacobian(g)(jnp.zeros(2))
    # (in 1-D the cone {0} is pointed: decided exactly)
    assert_same_hull(clarke_jacobian(lambda y: jax.nn.relu(y) + jnp.abs(jnp.sin(y)))(jnp.zeros(1)),
                     [[[2.0]], [[-1.0]]])
    with pytest.raises(AmbiguousTieError):
        clarke_jacobian(lambda x: jnp.where(x ** 2 > 0, x + 1, x - 1) + 0 * x)(jnp.zeros(1))


def test_errors():
    with pytest.raises(JumpError):
        clarke_jacobian(lambda x: jnp.where(x > 0, 1.0, 0.0) + x)(jnp.zeros(1))
    with pytest.raises(SetTooLargeError, match="max_patterns=3"):
        clarke_jacobian(lambda x: jnp.sum(jnp.abs(x)), max_patterns=3)(jnp.zeros(3))
    with pytest.raises(ValueError, match="margin"):
        clarke_jacobian(jnp.abs, margin=0.0)
    with pytest.raises(ValueError, match="max_patterns"):
        clarke_jacobian(jnp.abs, max_patterns=0)
    with pytest.raises(ValueError, match="non-finite"):
        clarke_jacobian(jnp.abs)(jnp.array([np.nan]))


def test_argnums_joint_blocks():
    f = lambda x, t: jnp.maximum(x, t)  # noqa: E731
    S = clarke_jacobian(f, argnums=(0, 1))(jnp.zeros(1), jnp.zeros(1))
    assert_same_hull(S, [[[1.0, 0.0]], [[0.0, 1.0]]])


def test_clarke_outer_mode_contains_the_clarke_jacobian():
    # true Clarke Jacobians (by hand): relu(min(y, x²-y)) → conv{(0,-1), (0,1)};
    # relu(y) + |sin y| → conv{(0,2), (0,-1)}
    cases = [(lambda z: jax.nn.relu(jnp.minimum(z[1], z[0] ** 2 - z[1])), [[[0.0, -1.0]], [[0.0, 1.0]]]),
             (lambda z: jax.nn.relu(z[1]) + jnp.abs(jnp.sin(z[1])), [[[0.0, 2.0]], [[0.0, -1.0]]])]
    for f, clarke in cases:
        S = clarke_jacobian(f, undecided="outer")(jnp.zeros(2))
        assert not S.exact and S.undecided >= 1 and "outer approximation" in repr(S)
        C = jacobian(f)(jnp.zeros(2))
        assert all(S.contains(np.asarray(v), tol=1e-12) for v in clarke)
        assert all(C.contains(v, tol=1e-12) for v in S.vertices)
    S = clarke_jacobian(jnp.abs)(jnp.zeros(1))
    assert S.exact and S.undecided == 0 and S.patterns == 2
    with pytest.raises(ValueError, match="undecided"):
        clarke_jacobian(jnp.abs, undecided="ignore")


# ------------------------------------------------------------------ properties
def _random_pa_program(seed, n):
    """Random compositions of affine maps with max/min/abs/ReLU (duplicated neurons included),
    positively homogeneous at 0, so every limiting Jacobian at 0 is a jacfwd at h·d."""
    rng = np.random.default_rng(seed)
    W1 = rng.integers(-2, 3, (4, n)).astype(float)
    W1[1] = W1[0] if seed % 2 else -W1[0]
    W2 = rng.integers(-2, 3, (2, 4)).astype(float)
    ops = rng.integers(0, 4, 4)
    acts = [jax.nn.relu, jnp.abs, lambda u: jnp.maximum(u, -u / 2), lambda u: jnp.minimum(u, 0.0)]

    def f(x):
        h = W1 @ x
        h = jnp.stack([acts[o](h[i]) for i, o in enumerate(ops)])
        y = W2 @ h
        return jnp.stack([jnp.max(jnp.concatenate([y, h[:1]])), jax.nn.relu(y[1]) - jax.nn.relu(-y[1])])

    return f


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 2))
def test_clarke_between_limits_and_conservative(seed, n):
    f = _random_pa_program(seed, n)
    x = jnp.zeros(n)
    S = clarke_jacobian(f)(x)
    C = jacobian(f)(x)
    V = S.vertices
    scale = max(1.0, float(np.abs(V).max()))
    tol = 1e3 * EPS * scale
    # Clarke is minimal: inside the program's conservative set
    assert all(C.contains(v, tol=tol) for v in V)
    # limiting Jacobians near the point lie in the set, and every vertex is one of them
    limits = sampled_limits(f, x, 600 if n == 2 else 50, seed=seed)
    assert all(S.contains(L, tol=tol) for L in limits)
    for v in V:
        assert np.min(np.abs(limits - v).reshape(len(limits), -1).max(axis=1)) <= 1e-6 * scale, v
    # the LD element is in the Clarke Jacobian
    M = np.random.default_rng(seed).standard_normal((n, n))
    assert S.contains(lexicographic_jacobian(f)(x, M=M), tol=tol)


@settings(max_examples=3, deadline=None)
@given(st.integers(0, 10_000))
def test_nonlinear_pieces_against_sampled_limits(seed):
    # smooth nonlinear maps after piecewise-affine ties (with a duplicated neuron): the ties are
    # decided at first order, and limits at x + h·d approach the vertices to O(h)
    rng = np.random.default_rng(seed)
    W = rng.integers(-2, 3, (3, 2)).astype(float)
    W[2] = W[0]
    b = rng.standard_normal(2)

    def f(x):
        h = jax.nn.relu(W @ x)
        m = jnp.max(h - jnp.abs(W[1] @ x))
        return jnp.stack([jnp.tanh(m + x[1]) * jnp.exp(b @ x), jnp.sin(h[2] - h[0]) + jnp.cos(x[1]) * h[1]])

    x = jnp.zeros(2)
    S = clarke_jacobian(f)(x)
    C = jacobian(f)(x)
    assert all(C.contains(v, tol=1e-12) for v in S.vertices)
    limits = sampled_limits(f, x, 600, seed=seed, h=1e-8)
    assert all(S.distance(L) <= 1e-6 for L in limits)
    for v in S.vertices:
        assert np.min(np.abs(limits - v).reshape(len(limits), -1).max(axis=1)) <= 1e-6, v

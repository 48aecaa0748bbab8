"""Directional derivatives and LD-derivatives (conservative._lexicographic)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

from conservative import (
    AmbiguousTieError,
    JumpError,
    NoRuleError,
    directional_derivative,
    jacobian,
    ld_derivative,
    lexicographic_jacobian,
)

EPS = np.finfo(np.float64).eps


# ------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("d", [-2.0, -0.5, 0.5, 3.0])
def test_directional_closed_forms(d):
    dd = lambda f, x=0.0: float(directional_derivative(f)(x, d))  # noqa: E731
    assert dd(jnp.abs) == abs(d)
    assert dd(jax.nn.relu) == max(d, 0.0)
    assert dd(lambda x: jax.nn.relu(x) - jax.nn.relu(-x)) == d
    assert dd(lambda x: jnp.abs(x) - jnp.abs(x)) == 0.0
    assert dd(lambda x: jnp.maximum(x, -x) + jnp.minimum(2 * x, 0.0)) == abs(d) + min(2 * d, 0)
    assert dd(lambda x: jnp.where(x > 0, 3 * x, -x)) == (3 * d if d > 0 else -d)
    assert dd(lambda x: x * jnp.sign(x)) == abs(d)
    assert dd(lambda x: jnp.clip(x, 0.0, 1.0)) == max(d, 0.0)
    assert dd(lambda x: jnp.clip(x, 0.0, 1.0), 1.0) == min(d, 0.0)
    assert dd(lambda x: x * (x > 0)) == max(d, 0.0)
    assert abs(dd(jax.nn.softplus) - d / 2) <= 4 * EPS
    # one-sided values of floor/round/ceil at their jumps, resolved by a vanishing factor
    assert dd(lambda x: x * jnp.floor(x)) == max(-d, 0.0)
    assert dd(lambda x: x * jnp.ceil(x)) == max(d, 0.0)
    assert dd(lambda x: (x - 0.5) * jnp.round(x), 0.5) == max(d, 0.0)
    if d < 0:  # x·floor(x) jumps from 1 to 0 below x = 1
        with pytest.raises(JumpError):
            dd(lambda x: x * jnp.floor(x), 1.0)
    else:
        assert dd(lambda x: x * jnp.floor(x), 1.0) == d


def test_directional_vector_and_pytrees():
    f = lambda p: {"m": jnp.max(p["a"]) + p["b"], "s": jnp.sort(p["a"])}  # noqa: E731
    x = {"a": jnp.zeros(3), "b": jnp.asarray(1.0)}
    d = {"a": jnp.array([1.0, 3.0, -2.0]), "b": jnp.asarray(0.5)}
    out = directional_derivative(f)(x, d)
    assert float(out["m"]) == 3.5
    np.testing.assert_array_equal(out["s"], [-2.0, 1.0, 3.0])
    # argnums with a second argument
    g = lambda x, t: jnp.abs(x - t)  # noqa: E731
    assert float(directional_derivative(g, 1)(1.0, 1.0, -1.0)) == 1.0
    assert float(directional_derivative(g, (0, 1))(1.0, 1.0, (2.0, 5.0))) == 3.0


def test_directional_matches_one_sided_differences():
    f = lambda x: jnp.sum(jnp.maximum(x[:2] @ jnp.array([[1.0, -1.0], [2.0, 0.5]]), 0.0) ** 2) + jnp.abs(x[2] * x[0])  # noqa: E731
    x = jnp.array([0.0, 0.0, 1.0])
    for d in np.random.default_rng(0).standard_normal((5, 3)):
        h = 1e-7
        fd = (f(x + h * d) - f(x)) / h
        assert abs(float(directional_derivative(f)(x, jnp.asarray(d))) - fd) <= 1e-5


def test_ld_derivative_and_lexicographic_jacobian_closed_forms():
    assert ld_derivative(lambda x: jnp.abs(x[0] - x[1]))(jnp.zeros(2), np.eye(2)).tolist() == [[1.0, -1.0]]
    # sort at a full tie: the perturbation x + ε₁e₁ + ε₁ε₂e₂ + ... orders x₃ < x₂ < x₁
    np.testing.assert_array_equal(lexicographic_jacobian(jnp.sort)(jnp.zeros(3)), np.eye(3)[::-1])
    np.testing.assert_array_equal(lexicographic_jacobian(jnp.max)(jnp.zeros(2), M=-np.eye(2)), [[0.0, 1.0]])
    P = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(lexicographic_jacobian(lambda x: x[jnp.argmax(x)])(jnp.zeros(3), M=P), [[0, 1, 0]])
    # a non-permutation M: max(x1, x2) along m1 = (1, 1) is tied, m2 = (1, -1) decides x1
    np.testing.assert_allclose(lexicographic_jacobian(jnp.max)(jnp.zeros(2), M=np.array([[1.0, 1], [1, -1]])),
                               [[1.0, 0.0]])


PROGRAMS = {
    "relu(x) - relu(-x)": (lambda x: jax.nn.relu(x) - jax.nn.relu(-x), 1.0),
    "|x| - |x|": (lambda x: jnp.abs(x) - jnp.abs(x), 0.0),
    "duplicated neurons": (
        lambda x: jax.nn.relu(x) + jax.nn.relu(x) - 2 * jax.nn.relu(x) + jnp.maximum(x, 0) - jnp.maximum(0, x),
        0.0,
    ),
    "softplus": (jax.nn.softplus, 0.5),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_ld_is_the_true_derivative_where_the_program_set_is_larger(name):
    f, true = PROGRAMS[name]
    x = jnp.zeros(1)
    S = jacobian(f)(x)
    assert S.vertices.shape[0] > 1  # the program's set is not a singleton
    for M in (None, -np.eye(1), 3 * np.eye(1)):
        J = lexicographic_jacobian(f)(x, M=M)
        assert abs(J[0, 0] - true) <= 4 * EPS
        assert S.contains(J, tol=1e-12)


def test_smooth_points_equal_jacfwd():
    f = lambda x: jnp.tanh(x) * jnp.maximum(x, 0.3) + jnp.sort(x)[::-1] * jnp.abs(x).sum()  # noqa: E731
    x = jnp.array([0.1, -0.7, 1.3])
    J = lexicographic_jacobian(f)(x, M=np.random.default_rng(1).standard_normal((3, 3)))
    np.testing.assert_allclose(J, jax.jacfwd(f)(x), atol=1e-13)


def test_control_flow_and_lowerings():
    def f(x):
        y = lax.cond(x[0] > 0, lambda v: 2 * v, lambda v: -v, x)
        z = lax.fori_loop(0, 3, lambda i, c: jnp.maximum(c, x[1]) + 0.0, x[2])
        return jnp.concatenate([y, z[None], lax.cummax(x)])

    x = jnp.array([0.0, 0.0, 0.0])
    J = lexicographic_jacobian(f)(x)
    S = jacobian(f)(x)
    assert S.contains(J, tol=1e-12)
    np.testing.assert_array_equal(J[:3], 2 * np.eye(3))  # x₀ > 0 along e₁
    # the loop's max(c, x₁) from c = x₂: the rows (0, 1, 0) of x₁ beats (0, 0, 1) of x₂
    np.testing.assert_array_equal(J[3], [0, 1, 0])
    # cummax (interpreted through its lowering): x₀ = ε₁ dominates the running maximum
    np.testing.assert_array_equal(J[4:], [[1, 0, 0]] * 3)


def test_errors():
    with pytest.raises(JumpError):
        directional_derivative(jnp.sign)(0.0, 1.0)
    with pytest.raises(JumpError):
        directional_derivative(lambda x: jnp.where(x > 0, 1.0, 0.0))(0.0, 1.0)
    # x² tied with 0 in value and derivative; the branches differ: higher order decides
    with pytest.raises(AmbiguousTieError):
        directional_derivative(lambda x: jnp.where(x ** 2 > 0, x + 1, x - 1) + 0 * x)(0.0, 1.0)
    # but branches that agree there are fine
    assert float(directional_derivative(lambda x: jnp.where(x ** 2 > 0, x, x))(0.0, 1.0)) == 1.0
    with pytest.raises(ValueError, match="M: must be nonsingular"):
        lexicographic_jacobian(jnp.max)(jnp.zeros(2), M=np.ones((2, 2)))
    with pytest.raises(ValueError, match="M: expected shape"):
        lexicographic_jacobian(jnp.max)(jnp.zeros(2), M=np.eye(3))
    with pytest.raises(ValueError, match="M: contains non-finite"):
        lexicographic_jacobian(jnp.max)(jnp.zeros(2), M=np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="d: leaf 0 has shape"):
        directional_derivative(jnp.abs)(jnp.zeros(2), jnp.zeros(3))
    with pytest.raises(ValueError, match="d: leaf 0 contains non-finite"):
        directional_derivative(jnp.abs)(jnp.zeros(2), jnp.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="non-finite"):
        lexicographic_jacobian(jnp.abs)(jnp.array([np.nan]))
    with pytest.raises(TypeError, match="argnums"):
        lexicographic_jacobian(jnp.abs, argnums="x")(jnp.zeros(1))
    with pytest.raises(ValueError, match="not finite"):
        lexicographic_jacobian(lambda x: jnp.sqrt(x))(jnp.zeros(1))
    with pytest.raises(NoRuleError, match="population_count|bitcast"):
        lexicographic_jacobian(lambda x: lax.bitcast_convert_type(x, jnp.int64).astype(jnp.float64))(jnp.ones(1))
    assert float(directional_derivative(jnp.sign)(0.0, 0.0)) == 0.0  # f'(x; 0) = 0


# ------------------------------------------------------------------ properties
def _random_pa_program(seed, n):
    """A random composition of affine maps with max/min/abs/ReLU, with many exact ties at 0."""
    rng = np.random.default_rng(seed)
    W1 = rng.integers(-2, 3, (4, n)).astype(float)
    W2 = rng.integers(-2, 3, (3, 4)).astype(float)
    W1[1] = W1[0]  # duplicated neuron
    ops = rng.integers(0, 4, 4)

    def f(x):
        h = W1 @ x
        h = jnp.stack([[jax.nn.relu, jnp.abs, lambda u: jnp.maximum(u, -u / 2), lambda u: jnp.minimum(u, 0.0)][o](h[i])
                       for i, o in enumerate(ops)])
        y = W2 @ h
        return jnp.concatenate([jnp.max(y)[None], jnp.sort(y), jax.nn.relu(y)])

    return f


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3))
def test_ld_element_in_program_set_and_one_sided_differences(seed, n):
    f = _random_pa_program(seed, n)
    rng = np.random.default_rng(seed)
    x = jnp.zeros(n)
    M = rng.standard_normal((n, n))
    J = lexicographic_jacobian(f)(x, M=M)
    S = jacobian(f)(x)
    scale = max(1.0, np.abs(J).max())
    assert S.contains(J, tol=1e3 * EPS * scale)
    d = jnp.asarray(rng.standard_normal(n))
    dd = np.asarray(directional_derivative(f)(x, d))
    h = 1e-6
    fd = (np.asarray(f(x + h * d)) - np.asarray(f(x))) / h  # exact for piecewise-affine f up to rounding
    assert np.max(np.abs(dd - fd)) <= max(1e-7, 1e3 * EPS * scale)
    # the first column of the LD-derivative is the directional derivative along m₁
    np.testing.assert_allclose(ld_derivative(f)(x, M)[:, 0],
                               np.asarray(directional_derivative(f)(x, jnp.asarray(M[:, 0]))),
                               atol=1e3 * EPS * scale)

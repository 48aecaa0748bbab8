"""Interacting ties: groups that only one choice depends on are enumerated option by option.

References are closed forms (the ℓ1 ball's vertices) and brute-force enumeration of every
selection in numpy.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import conservative as cv


def assert_hull_equal(S, expected, atol=1e-12):
    expected = np.unique(np.asarray(expected, np.float64).reshape(len(expected), -1), axis=0)
    V = S.vertices.reshape(len(S.vertices), -1)
    assert len(V) == len(expected), (len(V), len(expected))
    for E in expected:
        assert np.min(np.abs(V - E).max(axis=1)) <= atol, E


@pytest.mark.parametrize("n", [12, 30])
def test_max_abs_at_zero_is_the_l1_ball_without_the_product(n):
    # 2^n sign patterns × n tied maxima would be enumerated jointly; the abs choices are used by
    # the max only, so the set is built from its 2n vertices ±e_i
    S = cv.jacobian(lambda x: jnp.max(jnp.abs(x)))(jnp.zeros(n))
    assert len(S.vertices) == 2 * n
    for D in np.random.default_rng(n).standard_normal((5, 1, n)):
        assert abs(S.support(D) - np.max(np.abs(D))) <= 1e-12


def test_a_reused_tie_keeps_its_correlation():
    # a = |x| is read by the max and again by the sum: the sign of x_i chosen in the max is the
    # one in a_i (the set is smaller than with independent choices)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(3)

    def f(x):
        a = jnp.abs(x)
        return jnp.max(a) + a @ w

    S = cv.jacobian(f)(jnp.zeros(3))
    expected = []
    for s in itertools.product((-1.0, 1.0), repeat=3):
        for i in range(3):
            g = np.asarray(s) * w
            g[i] += s[i]
            expected.append(g[None, :])
    assert_hull_equal(S, expected)


def test_a_tie_held_by_a_loop_is_enumerated_jointly_and_exactly():
    # inside scan the values held by the loop are not visible to the liveness check: the joint
    # enumeration runs and gives the same set
    def f(x):
        def body(c, _):
            return c, jnp.max(jnp.abs(c))
        return lax.scan(body, x, None, length=1)[1]

    S = cv.jacobian(f)(jnp.zeros(4))
    assert_hull_equal(S, [s * np.eye(4)[i][None, :] for i in range(4) for s in (-1.0, 1.0)])


def test_a_relu_network_layer_over_tied_units_matches_brute_force():
    # second-layer relu reading k tied first-layer units: the first layer is used by this unit
    # only, its selections are enumerated option by option
    rng = np.random.default_rng(3)
    k = 6
    W1 = rng.standard_normal((k, 2))
    w2 = rng.standard_normal(k)
    x0 = np.zeros(2)  # every first-layer unit W1 x is tied at 0
    f = lambda x: jax.nn.relu(jax.nn.relu(W1 @ x) @ w2)  # noqa: E731
    S = cv.jacobian(f)(jnp.asarray(x0))
    expected = [np.zeros((1, 2))]
    for on in itertools.product((0.0, 1.0), repeat=k):
        expected.append(((np.asarray(on) * w2) @ W1)[None, :])
    hull = cv.MatrixSet(np.stack(expected))
    V = hull.vertices
    assert_hull_equal(S, V)

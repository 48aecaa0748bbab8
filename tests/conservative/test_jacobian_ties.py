"""Tied conditions whose branches differ, shared comparison choices and removable singularities.

References are independent of the interpreter: the hull of the one-sided Jacobians (``jax.jacfwd``
at points that break the tie) and closed forms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import conservative as cv


def both(f, x, **kw):
    """The set from the interpreter and from the compiled fast path (which must agree)."""
    x = jnp.asarray(x, jnp.float64)
    S0 = cv.jacobian(f, fast=False, **kw)(x)
    S1 = cv.jacobian(f, fast=True, **kw)(x)
    V0, V1 = (np.unique(S.vertices.reshape(len(S.vertices), -1).round(12), axis=0) for S in (S0, S1))
    np.testing.assert_array_equal(V0, V1)
    return S0


def interval(S):
    assert S.shape == (1, 1)
    return -S.support(-np.ones((1, 1))), S.support(np.ones((1, 1)))


def one_sided(f, x, h=1e-7):
    """jacfwd at x ± h (scalar x): the Jacobians of the two pieces meeting at x, up to O(h)."""
    return [float(jax.jacfwd(f)(jnp.asarray(x + s * h, jnp.float64))) for s in (-1.0, 1.0)]


def assert_interval_is_hull_of_sides(f, x, h=1e-7, curvature=10.0):
    lo, hi = interval(both(f, x))
    sides = one_sided(f, x, h)
    floor = curvature * h + 64 * np.finfo(float).eps
    assert abs(lo - min(sides)) <= floor and abs(hi - max(sides)) <= floor, ((lo, hi), sides)


# ---------------------------------------------------------------- branches differing at a tie
@pytest.mark.parametrize("f, x", [
    (lambda x: jnp.heaviside(x, 0.5) * x, 0.0),  # two comparisons, three values, times a vanishing factor
    (lambda x: jnp.interp(x, jnp.array([0.0, 1.0, 3.0]), jnp.array([0.0, 2.0, 1.0])), 1.0),
    (lambda x: jnp.interp(x, jnp.array([-1.0, 0.0, 1.0]), jnp.array([1.0, 0.0, 1.0])), 0.0),  # |x| on [-1, 1]
    (lambda x: jnp.piecewise(x, [x < 1, x >= 1], [lambda x: x, lambda x: 2 * x - 1]), 1.0),
    (lambda x: jnp.piecewise(x, [x <= 0.5, x > 0.5], [lambda x: x**2, lambda x: x - 0.25]), 0.5),  # C¹: one slope
    (lambda x: lax.cond(x > 0, lambda x: 1.0, lambda x: 0.0, x) * x, 0.0),  # relu through a cond
])
def test_continuous_functions_with_differing_branches_at_the_tie(f, x):
    assert_interval_is_hull_of_sides(f, x)


def test_vector_indicator_products_are_a_product_of_intervals():
    f = lambda x: jnp.heaviside(x, 0.5) * x  # noqa: E731
    S = both(f, jnp.zeros(3))
    assert len(S.vertices) == 8
    for D in np.random.default_rng(1).standard_normal((5, 3, 3)):
        # the support of the box conv{0, 1}^3 on the diagonal
        assert abs(S.support(D) - np.sum(np.maximum(np.diag(D), 0.0))) <= 1e-12


@pytest.mark.parametrize("f, x", [
    (lambda x: jnp.heaviside(x, 0.5), 0.0),
    (lambda x: x + jnp.interp(x, jnp.array([0.0, 1.0]), jnp.array([0.0, 1.0]), right=5.0), 1.0),  # jumps to 5
    (lambda x: lax.cond(x > 0, lambda x: x + 1.0, lambda x: x, x), 0.0),
])
def test_differing_branches_that_reach_the_output_jump(f, x):
    for fast in (False, True):
        with pytest.raises(cv.JumpError):
            cv.jacobian(f, fast=fast)(jnp.asarray(x, jnp.float64))


def test_repeated_and_mirrored_comparisons_share_one_choice():
    # x > 0 and 0 < x are one side test: the mixed selections 2·(-1) and 1·1 do not exist
    f = lambda x: jnp.where(x > 0, 2.0, 1.0) * jnp.where(0 < x, 1.0, -1.0) * x  # noqa: E731
    assert_interval_is_hull_of_sides(f, 0.0)
    assert interval(both(f, 0.0)) == (-1.0, 2.0)
    # ~(x > 0) is the complement of the same test: slopes 3 (x > 0) and 1 (x < 0), never 4 or 0
    g = lambda x: (jnp.where(x > 0, 3.0, 0.0) + jnp.where(~(x > 0), 1.0, 0.0)) * x  # noqa: E731
    assert interval(both(g, 0.0)) == (1.0, 3.0)


# ---------------------------------------------------------------- removable singularities
@pytest.mark.parametrize("x", [0.0, [0.0, 0.5, 0.0]])
def test_sinc_at_its_removable_singularity(x):
    x = jnp.asarray(x, jnp.float64)
    S = both(jnp.sinc, x)
    assert S.is_singleton
    J = jax.jacfwd(jnp.sinc)(x)
    np.testing.assert_allclose(S.vertices[0], np.atleast_2d(J), atol=1e-15)


def test_a_removable_singularity_with_a_first_order_branch():
    # the branch at 0 is the Taylor polynomial 1 + x/2 of expm1(x)/x: the set is {1/2}
    f = lambda x: jnp.where(x == 0, 1.0 + x / 2, jnp.expm1(x) / jnp.where(x == 0, 1.0, x))  # noqa: E731
    assert interval(both(f, 0.0)) == (0.5, 0.5)
    g = lambda x: jnp.where(x == 0, 1.0, jnp.sin(x) / x)  # noqa: E731
    assert interval(both(g, 0.0)) == (0.0, 0.0)


@pytest.mark.parametrize("f", [
    lambda x: jnp.where(x == 0, 1.0, jnp.expm1(x) / x),  # the branch 1 has slope 0, the function 1/2
    lambda x: jnp.where(x > 0, x * jnp.log(x), 0.0),  # not Lipschitz at 0
    lambda x: jnp.where(x > 0, jnp.log(jnp.where(x > 0, x, 1.0)), 0.0),  # the safe-log idiom: log jumps to -inf
    lambda x: jnp.where(x != 0, x**2 / jnp.where(x != 0, x, 1.0), 0.0),  # = x, but the branch at 0 is 0
])
def test_a_singular_branch_the_program_does_not_continue_raises(f):
    for fast in (False, True):
        with pytest.raises(ValueError, match="continue the function to first order"):
            cv.jacobian(f, fast=fast)(jnp.asarray(0.0))


def group_soft_threshold(x, lam=1.0):
    n = jnp.linalg.norm(x)
    return jnp.where(n > lam, (1 - lam / jnp.where(n > 0, n, 1.0)) * x, jnp.zeros_like(x))


@pytest.mark.parametrize("x", [np.zeros(3), np.array([0.3, -0.2, 0.1])])
def test_group_soft_threshold_is_locally_zero_inside_the_ball(x):
    # the norm's derivative is not finite at 0, but that branch is not selected there
    S = both(group_soft_threshold, x)
    assert S.is_singleton and np.all(S.vertices == 0)


def test_a_non_finite_derivative_that_reaches_the_output_still_raises():
    for fast in (False, True):
        with pytest.raises(ValueError, match="not finite"):
            cv.jacobian(lambda x: jnp.linalg.norm(x), fast=fast)(jnp.zeros(2))

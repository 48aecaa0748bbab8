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


# ---------------------------------------------------------------- one tie decision
def _ball(a, b, c):
    u = np.array([a, b])
    r = float(jnp.linalg.norm(jnp.asarray(u)))  # the radius the interpreter computes: an exact tie there
    return (lambda u: u * jnp.minimum(1.0, r / jnp.linalg.norm(u))), u


def _rsqrt(a, b, c):
    t = float(jnp.asarray(a) / jnp.sqrt(jnp.asarray(b)))  # eager a / sqrt(b); XLA fuses it to a * rsqrt(b)
    return (lambda x: jax.nn.relu(x / jnp.sqrt(b) - t) + c * x), np.array([a])


def _fma(a, b, c):
    d = float(jnp.asarray(a) * jnp.asarray(b) + jnp.asarray(c))  # eager; compiled a * x + c may be an FMA
    return (lambda x: jnp.maximum(a * x + c, d)), np.array([b])


def _group_prox(a, b, c):
    x = np.array([a, b, c])
    lam = float(jnp.linalg.norm(jnp.asarray(x)))
    return (lambda x: jnp.where(jnp.linalg.norm(x) > lam, (1 - lam / jnp.linalg.norm(x)) * x, 0 * x)), x


_PROGRAMS = [_ball, _rsqrt, _fma, _group_prox]


def _vertex_set(S):
    V = S.vertices.reshape(len(S.vertices), -1)
    return V[np.lexsort(V.T[::-1])]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(a=st.floats(0.1, 10.0), b=st.floats(0.1, 10.0), c=st.floats(-3.0, 3.0),
       k=st.integers(0, len(_PROGRAMS) - 1), ulps=st.integers(-2, 2))
def test_fast_path_and_interpreter_decide_ties_alike(a, b, c, k, ulps):
    # at exact ties of the interpreter's arithmetic, and a few ulps off them, the first call, the
    # second call and the compiled fast path return the same set
    f, x = _PROGRAMS[k](a, b, c)
    x = x.copy()
    for _ in range(abs(ulps)):
        x[0] = np.nextafter(x[0], np.inf if ulps > 0 else -np.inf)
    J = cv.jacobian(f)
    sets = [J(jnp.asarray(x)), J(jnp.asarray(x)), cv.jacobian(f, fast=True)(jnp.asarray(x)),
            cv.jacobian(f, fast=False)(jnp.asarray(x))]
    V = [_vertex_set(S) for S in sets]
    scale = max(1.0, float(np.max(np.abs(V[-1]))))
    for W in V[:-1]:
        assert W.shape == V[-1].shape, [len(v) for v in V]
        assert np.max(np.abs(W - V[-1]), initial=0.0) <= 1e3 * np.finfo(float).eps * scale


def test_piggyback_sees_every_boundary_step_of_a_projected_gradient():
    # projected gradient onto the unit ball with the minimizer outside: every iterate from the
    # second on lies on the sphere, each such step is tied (the projection's two pieces)
    c = jnp.array([3.0, 4.0])

    def F(x, theta):
        y = x - 0.5 * (x - theta)
        return y * jnp.minimum(1.0, 1.0 / jnp.linalg.norm(y))

    res = cv.piggyback(F, jnp.array([0.6, 0.8]), c, 6)
    boundary = [k for k in range(6) if abs(float(jnp.linalg.norm(res.iterates[k])) - 1.0) == 0.0
                and float(jnp.linalg.norm(res.iterates[k] - 0.5 * (res.iterates[k] - c))) == 1.0]
    assert set(boundary) <= set(res.tied_steps)
    assert bool(res.ad_in_set.all())

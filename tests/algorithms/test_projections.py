"""Projections against brute force (cvxpy), smooth Jacobians, and input validation."""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import (
    projection_affine_set,
    projection_box,
    projection_halfspace,
    projection_hyperplane,
    projection_l1_ball,
    projection_l2_ball,
    projection_linf_ball,
    projection_non_negative,
    projection_simplex,
)

N_CASES = 12
D = 6


def _project(constraints, v):
    x = cp.Variable(v.shape)
    cp.Problem(cp.Minimize(cp.sum_squares(x - v)), constraints(x)).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10
    )
    return x.value


def _points(seed):
    rng = np.random.default_rng(seed)
    for i in range(N_CASES):
        # alternate small and large points so that both "inside" and "outside" cases occur
        yield rng, rng.normal(size=D) * (0.3 if i % 3 == 0 else 2.0)


def test_non_negative():
    for _, v in _points(0):
        np.testing.assert_allclose(projection_non_negative(v), _project(lambda x: [x >= 0], v), atol=1e-7)


def test_box():
    for rng, v in _points(1):
        lo = -rng.uniform(0, 1, D)
        up = rng.uniform(0, 1, D)
        np.testing.assert_allclose(projection_box(v, lo, up), _project(lambda x: [x >= lo, x <= up], v), atol=1e-7)
    # one-sided and scalar bounds
    v = np.array([-2.0, 0.5, 3.0])
    np.testing.assert_allclose(projection_box(v, 0.0, np.inf), [0.0, 0.5, 3.0])


def test_linf_ball():
    for rng, v in _points(2):
        r = rng.uniform(0.2, 2)
        np.testing.assert_allclose(projection_linf_ball(v, r), _project(lambda x: [cp.norm_inf(x) <= r], v), atol=1e-7)


def test_l2_ball():
    for rng, v in _points(3):
        r = rng.uniform(0.2, 2)
        np.testing.assert_allclose(projection_l2_ball(v, r), _project(lambda x: [cp.norm2(x) <= r], v), atol=1e-7)
    # a matrix is projected as a whole (Frobenius ball)
    M = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(np.linalg.norm(projection_l2_ball(M, 1.0)), 1.0)


def test_l1_ball():
    for rng, v in _points(4):
        r = rng.uniform(0.2, 3)
        np.testing.assert_allclose(projection_l1_ball(v, r), _project(lambda x: [cp.norm1(x) <= r], v), atol=1e-7)
    inside = np.array([0.1, -0.2, 0.0, 0.3])
    np.testing.assert_allclose(projection_l1_ball(inside, 1.0), inside)


def test_simplex():
    for rng, v in _points(5):
        z = rng.uniform(0.5, 2)
        ref = _project(lambda x: [x >= 0, cp.sum(x) == z], v)
        np.testing.assert_allclose(projection_simplex(v, z), ref, atol=1e-7)
    # rows of a matrix are projected independently
    rng = np.random.default_rng(6)
    V = rng.normal(size=(4, 5))
    P = projection_simplex(V)
    for i in range(4):
        np.testing.assert_allclose(P[i], projection_simplex(V[i]), atol=1e-14)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)


def test_hyperplane_halfspace():
    for rng, v in _points(7):
        a = rng.normal(size=D)
        b = rng.normal()
        np.testing.assert_allclose(projection_hyperplane(v, a, b), _project(lambda x: [a @ x == b], v), atol=1e-7)
        np.testing.assert_allclose(projection_halfspace(v, a, b), _project(lambda x: [a @ x <= b], v), atol=1e-7)


def test_affine_set():
    for rng, v in _points(8):
        A = rng.normal(size=(3, D))
        b = rng.normal(size=3)
        np.testing.assert_allclose(projection_affine_set(v, A, b), _project(lambda x: [A @ x == b], v), atol=1e-7)


def test_simplex_jacobian_closed_form_away_from_ties():
    """diag(s) − ssᵀ/‖s‖₁ with s the support (jaxopt paper, App. B.1)."""
    rng = np.random.default_rng(9)
    for _ in range(N_CASES):
        v = rng.normal(size=D)
        p = projection_simplex(v)
        s = (np.asarray(p) > 0).astype(float)
        J = jax.jacfwd(projection_simplex)(jnp.asarray(v))
        np.testing.assert_allclose(J, np.diag(s) - np.outer(s, s) / s.sum(), atol=1e-12)


def test_l2_ball_and_halfspace_jacobians_away_from_kinks():
    v = jnp.array([3.0, 4.0])
    u = np.array([0.6, 0.8])
    np.testing.assert_allclose(jax.jacfwd(projection_l2_ball)(v, 1.0), (np.eye(2) - np.outer(u, u)) / 5.0, atol=1e-12)
    np.testing.assert_allclose(jax.jacfwd(projection_l2_ball)(v, 10.0), np.eye(2))
    a = jnp.array([1.0, 1.0])
    np.testing.assert_allclose(jax.jacfwd(projection_halfspace)(v, a, 0.0), np.eye(2) - np.outer(a, a) / 2)
    np.testing.assert_allclose(jax.jacfwd(projection_halfspace)(v, a, 10.0), np.eye(2))
    # differentiable in the set's parameters: d/dr of r·v/‖v‖
    np.testing.assert_allclose(jax.jacfwd(projection_l2_ball, argnums=1)(v, 1.0), u)


def test_projections_are_finite_at_zero():
    z = jnp.zeros(4)
    for fn in (projection_l2_ball, projection_l1_ball, projection_linf_ball, projection_simplex):
        np.testing.assert_array_equal(np.isfinite(jax.jacfwd(fn)(z)), True)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: projection_l2_ball(jnp.ones(3), 0.0), "radius"),
        (lambda: projection_l2_ball(jnp.ones(3), -1.0), "radius"),
        (lambda: projection_l1_ball(jnp.ones(3), -1.0), "radius"),
        (lambda: projection_linf_ball(jnp.ones(3), 0.0), "radius"),
        (lambda: projection_simplex(jnp.ones(3), 0.0), "value"),
        (lambda: projection_box(jnp.ones(3), 1.0, 0.0), "lower"),
        (lambda: projection_hyperplane(jnp.ones(3), jnp.zeros(3), 1.0), "a must be nonzero"),
        (lambda: projection_halfspace(jnp.ones(3), jnp.zeros(3), 1.0), "a must be nonzero"),
        (lambda: projection_affine_set(jnp.ones(3), jnp.ones((2, 3)), jnp.ones(2)), "full row rank"),
        (lambda: projection_affine_set(jnp.ones(3), jnp.ones((2, 4)), jnp.ones(2)), "shape"),
    ],
)
def test_bad_parameters(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_traced_parameters_skip_validation_and_match():
    v = jnp.array([0.5, -2.0, 1.5])
    f = jax.jit(projection_l1_ball)
    np.testing.assert_allclose(f(v, 1.0), projection_l1_ball(v, 1.0))
    g = jax.jit(projection_box)
    np.testing.assert_allclose(g(v, -1.0, 1.0), [0.5, -1.0, 1.0])

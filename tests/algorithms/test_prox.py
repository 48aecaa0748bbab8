"""Prox operators against brute force (cvxpy), their smooth Jacobians, and input validation."""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import prox_elastic_net, prox_group_lasso, prox_lasso, soft_threshold

N_CASES = 12


def _solve(objective, shape):
    x = cp.Variable(shape)
    cp.Problem(cp.Minimize(objective(x))).solve(solver=cp.CLARABEL, tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9)
    return x.value


def _cases(seed):
    rng = np.random.default_rng(seed)
    for _ in range(N_CASES):
        yield rng, rng.normal(size=7) * rng.uniform(0.2, 3.0), rng.uniform(0.05, 1.5), rng.uniform(0.2, 2.0)


def test_prox_lasso_matches_cvxpy():
    for rng, v, lam, step in _cases(0):
        lam_vec = lam * rng.uniform(0, 1.5, size=v.shape)  # per-coordinate weights, some small
        for lam_ in (lam, lam_vec):
            ref = _solve(lambda x: 0.5 * cp.sum_squares(x - v) + step * cp.sum(cp.multiply(lam_, cp.abs(x))), v.shape)
            np.testing.assert_allclose(prox_lasso(v, lam_, step), ref, atol=1e-7)


def test_prox_elastic_net_matches_cvxpy():
    for rng, v, lam, step in _cases(1):
        gamma = rng.uniform(0, 2)
        ref = _solve(
            lambda x: 0.5 * cp.sum_squares(x - v) + step * (lam * cp.norm1(x) + 0.5 * gamma * cp.sum_squares(x)),
            v.shape,
        )
        np.testing.assert_allclose(prox_elastic_net(v, lam, gamma, step), ref, atol=1e-7)


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")  # zeroed groups sit at the cone's apex
def test_prox_group_lasso_matches_cvxpy():
    rng = np.random.default_rng(2)
    for _ in range(N_CASES):
        v = rng.normal(size=(3, 4))
        lam = rng.uniform(0.2, 2.5, size=3)  # one weight per group (row); some groups are zeroed
        step = rng.uniform(0.5, 1.5)
        ref = _solve(
            lambda x: 0.5 * cp.sum_squares(x - v) + step * sum(lam[g] * cp.norm2(x[g]) for g in range(3)), v.shape
        )
        np.testing.assert_allclose(prox_group_lasso(v, lam, step), ref, atol=1e-6)
        # a 1-D input is one group
        ref1 = _solve(lambda x: 0.5 * cp.sum_squares(x - v[0]) + step * lam[0] * cp.norm2(x), (4,))
        np.testing.assert_allclose(prox_group_lasso(v[0], lam[0], step), ref1, atol=1e-6)


def test_soft_threshold_values_and_zero_threshold():
    v = jnp.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(soft_threshold(v, 1.0), [-1.0, 0, 0, 0, 0, 0, 1.0])
    np.testing.assert_allclose(soft_threshold(v, 0.0), v)
    # with λ = 0 the prox is the identity, and JAX's derivative at 0 is in the conservative
    # set conv{0, 1} (not the 0 that a sign(x)·max(|x| − t, 0) program would give)
    d = jax.jacfwd(prox_lasso)(0.0, 0.0)
    assert 0.0 < d <= 1.0


def test_prox_lasso_jacobian_at_smooth_points():
    v = jnp.array([-2.0, -0.3, 0.1, 1.7])
    lam, step = 0.5, 2.0  # threshold 1
    J = jax.jacfwd(prox_lasso)(v, lam, step)
    np.testing.assert_allclose(J, np.diag([1.0, 0, 0, 1.0]))
    dlam = jax.jacfwd(prox_lasso, argnums=1)(v, lam, step)
    np.testing.assert_allclose(dlam, [step, 0, 0, -step])
    dstep = jax.jacfwd(prox_lasso, argnums=2)(v, lam, step)
    np.testing.assert_allclose(dstep, [lam, 0, 0, -lam])


def test_prox_group_lasso_jacobian_and_zero_input():
    v = jnp.array([3.0, 4.0])  # norm 5
    t = 1.0
    J = jax.jacfwd(prox_group_lasso)(v, t)
    u = v / 5.0
    np.testing.assert_allclose(J, np.eye(2) - t * (np.eye(2) - np.outer(u, u)) / 5.0, atol=1e-12)
    # at x = 0 the program stays finite (no 0/0, no sqrt'(0)), for t > 0 and for t = 0
    for lam in (1.0, 0.0):
        out = prox_group_lasso(jnp.zeros(3), lam)
        np.testing.assert_array_equal(out, np.zeros(3))
        assert np.all(np.isfinite(jax.jacfwd(prox_group_lasso)(jnp.zeros(3), lam)))
        assert np.all(np.isfinite(jax.jacfwd(prox_group_lasso, argnums=1)(jnp.zeros(3), lam)))
    np.testing.assert_allclose(jax.jacfwd(prox_group_lasso)(jnp.zeros(3), 1.0), np.zeros((3, 3)))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: prox_lasso(jnp.ones(3), -0.1), "lam"),
        (lambda: prox_lasso(jnp.ones(3), jnp.array([0.1, -1.0, 0.2])), "lam"),
        (lambda: prox_lasso(jnp.ones(3), 0.1, step=0.0), "step"),
        (lambda: prox_lasso(jnp.ones(3), np.nan), "lam"),
        (lambda: prox_elastic_net(jnp.ones(3), 0.1, -1.0), "gamma"),
        (lambda: prox_elastic_net(jnp.ones(3), -0.1, 1.0), "lam"),
        (lambda: prox_group_lasso(jnp.ones(3), -1.0), "lam"),
        (lambda: prox_group_lasso(jnp.ones(3), 1.0, step=-2.0), "step"),
    ],
)
def test_prox_parameters_out_of_range(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_prox_under_jit_and_vmap():
    v = jnp.linspace(-2, 2, 9)
    np.testing.assert_allclose(jax.jit(prox_lasso)(v, 0.7, 1.0), prox_lasso(v, 0.7, 1.0))
    lams = jnp.array([0.1, 0.5, 1.0])
    out = jax.vmap(lambda l: prox_elastic_net(v, l, 0.3))(lams)
    assert out.shape == (3, 9)
    np.testing.assert_allclose(out[1], prox_elastic_net(v, 0.5, 0.3))
    assert prox_lasso(jnp.arange(3), 1.0).dtype == jnp.float64

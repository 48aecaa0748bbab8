"""Primal-dual interior-point QP solver (one-step paper, eq. (12), Appendix B)."""

import dataclasses

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import QP, interior_point_map, iterate, qp_initial_state, qp_optimality, qp_residuals, qp_solve

RNG = np.random.default_rng(5)
n, m, p = 12, 3, 6
M = RNG.uniform(-1, 1, (n, n))
QP0 = QP(Q=jnp.asarray(M.T @ M + 0.1 * np.eye(n)), q=jnp.asarray(RNG.uniform(-1, 1, n)),
         A=jnp.asarray(RNG.uniform(-1, 1, (m, n))), b=jnp.asarray(RNG.uniform(-1, 1, m)),
         G=jnp.asarray(RNG.uniform(-1, 1, (p, n))), h=jnp.asarray(RNG.uniform(-1, 1, p)))
F = interior_point_map()
W0 = qp_initial_state(QP0)
STEPS = 30


def cvxpy_solution(qp):
    x = cp.Variable(n)
    obj = 0.5 * cp.quad_form(x, np.asarray(qp.Q), assume_PSD=True) + np.asarray(qp.q) @ x
    cp.Problem(cp.Minimize(obj), [np.asarray(qp.A) @ x == np.asarray(qp.b),
                                  np.asarray(qp.G) @ x <= np.asarray(qp.h)]).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return x.value


def test_solution_matches_cvxpy_and_qp_solve():
    w = iterate(F, W0, QP0, STEPS)
    rd, rp, ri, mu = qp_residuals(w, QP0)
    assert max(float(jnp.max(jnp.abs(r))) for r in (rd, rp, ri)) < 1e-12
    assert float(mu) < 2e-12
    assert int(jnp.sum(w.z > 1e-6)) >= 1  # some inequality is active
    np.testing.assert_allclose(w.x, cvxpy_solution(QP0), atol=1e-7)
    np.testing.assert_allclose(qp_solve(QP0).x, w.x, atol=1e-10)


def grad_b(mode, **kw):
    def obj(b):
        w = iterate(F, W0, dataclasses.replace(QP0, b=b), STEPS, mode=mode, **kw)
        return 0.5 * jnp.sum(w.x ** 2)

    return jax.jit(jax.grad(obj))(QP0.b)


def test_one_step_and_implicit_agree():
    g_imp = grad_b("implicit", optimality_fun=qp_optimality)
    np.testing.assert_allclose(grad_b("one_step"), g_imp, atol=1e-6)
    np.testing.assert_allclose(grad_b("autodiff"), g_imp, atol=1e-6)
    h = 1e-6
    fd = []
    for i in range(m):
        e = np.zeros(m)
        e[i] = h
        xs = [qp_solve(dataclasses.replace(QP0, b=QP0.b + s * e)).x for s in (1, -1)]
        fd.append((0.5 * jnp.sum(xs[0] ** 2) - 0.5 * jnp.sum(xs[1] ** 2)) / (2 * h))
    np.testing.assert_allclose(g_imp, np.asarray(fd), atol=1e-6)


def test_full_jacobian_all_data_forward_and_reverse():
    fun = lambda qp: iterate(F, W0, qp, STEPS, mode="implicit", optimality_fun=qp_optimality).x  # noqa: E731
    Jf = jax.jit(jax.jacfwd(fun))(QP0)
    Jr = jax.jit(jax.jacrev(fun))(QP0)
    for field in ("Q", "q", "A", "b", "G", "h"):
        np.testing.assert_allclose(getattr(Jf, field), getattr(Jr, field), atol=1e-10)
    Jos = jax.jit(jax.jacrev(lambda qp: iterate(F, W0, qp, STEPS, mode="one_step").x))(QP0)
    np.testing.assert_allclose(Jos.h, Jr.h, atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match=r"QP expects Q \(n, n\)"):
        qp_initial_state(dataclasses.replace(QP0, h=jnp.ones(p + 1)))
    with pytest.raises(ValueError, match=r"QP expects"):
        F(W0, dataclasses.replace(QP0, G=jnp.ones((0, n)), h=jnp.ones(0)))
    with pytest.raises(ValueError, match="mu_min"):
        interior_point_map(mu_min=0.0)


def test_qp_solve_that_stops_early_is_reported():
    with pytest.raises(ValueError, match="qp_solve did not converge: .* after 2 iterations"):
        qp_solve(QP0, maxiter=2)

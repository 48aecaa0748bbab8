"""Krylov solvers, dense factorizations and the differentiable solve_linear."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import SOLVERS, IllConditionedWarning, LinearSolveWarning, bicgstab, cg, gmres, normal_cg, solve_linear
from algorithms._linear_solve import condition_estimate, factor

RNG = np.random.default_rng(2)
N = 12
M = RNG.normal(size=(N, N))
SPD = jnp.asarray(M @ M.T + N * np.eye(N))
NONSYM = jnp.asarray(M + 2 * N ** 0.5 * np.eye(N))
B = jnp.asarray(RNG.normal(size=N))


@pytest.mark.parametrize("method,A", [(cg, SPD), (cg, -SPD), (gmres, NONSYM), (bicgstab, NONSYM),
                                      (normal_cg, NONSYM), (gmres, SPD), (bicgstab, SPD)])
def test_krylov_solvers_against_numpy(method, A):
    x, info = jax.jit(lambda b: method(lambda v: A @ v, b, tol=1e-12))(B)
    np.testing.assert_allclose(x, np.linalg.solve(A, B), rtol=1e-9, atol=1e-10)
    assert float(info.residual) <= 1e-10
    assert 0 < int(info.iterations) <= 10 * N


def test_gmres_restart_and_iteration_count():
    x, info = gmres(lambda v: NONSYM @ v, B, tol=1e-12, restart=3)
    np.testing.assert_allclose(x, np.linalg.solve(NONSYM, B), rtol=1e-8)
    assert float(info.residual) <= 1e-11
    assert 3 < int(info.iterations) <= 10 * N


def test_gmres_cycle_stops_at_convergence():
    # A with 4 distinct eigenvalues: the Krylov space of dimension 4 holds the solution, so a
    # cycle of restart=30 stops after exactly 4 Arnoldi steps instead of running all 30
    Q = np.linalg.qr(RNG.normal(size=(40, 40)))[0]
    A = jnp.asarray(Q @ np.diag(np.repeat([1.0, 2.0, 3.0, 5.0], 10)) @ Q.T)
    b = jnp.asarray(RNG.normal(size=40))
    x, info = jax.jit(lambda b: gmres(lambda v: A @ v, b, tol=1e-12, restart=30))(b)
    assert int(info.iterations) == 4
    np.testing.assert_allclose(x, np.linalg.solve(np.asarray(A), np.asarray(b)), rtol=1e-10)


@pytest.mark.parametrize("solve", SOLVERS)
def test_solve_linear_is_differentiable_in_matrix_and_rhs(solve):
    A = SPD if solve in ("cholesky", "cg") else NONSYM

    def fun(a, b):
        return solve_linear(lambda v: a @ v, b, solve=solve, tol=1e-12)

    def ref(a, b):
        return jnp.linalg.solve(a, b)

    np.testing.assert_allclose(fun(A, B), ref(A, B), rtol=1e-9)
    w = jnp.asarray(RNG.normal(size=N))
    g = jax.grad(lambda a, b: jnp.vdot(w, fun(a, b)), argnums=(0, 1))(A, B)
    g_ref = jax.grad(lambda a, b: jnp.vdot(w, ref(a, b)), argnums=(0, 1))(A, B)
    np.testing.assert_allclose(g[0], g_ref[0], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(g[1], g_ref[1], rtol=1e-7, atol=1e-10)
    t = jax.jvp(lambda b: fun(A, b), (B,), (w,))[1]
    np.testing.assert_allclose(t, ref(A, w), rtol=1e-8, atol=1e-10)


def test_condition_estimate_is_a_tight_lower_bound():
    for A in (SPD, NONSYM, jnp.asarray(np.diag(np.logspace(0, 9, N)) @ np.linalg.qr(M)[0])):
        fwd, bwd = factor(A, "lu")
        est = float(condition_estimate(A, fwd, bwd))
        true = np.linalg.cond(np.asarray(A))
        # lower bound up to the rounding of the SVD reference (κ·eps relative)
        assert true / 1.5 <= est <= true * (1 + 1e-6), (est, true)


def test_screened_condition_estimate_refines_only_suspicious_systems():
    from algorithms._linear_solve import COND_WARN

    Q = np.linalg.qr(M)[0]
    for A, suspicious in ((SPD, False), (NONSYM, False), (jnp.asarray(np.diag(np.logspace(0, 11, N)) @ Q), True)):
        if suspicious:
            with pytest.warns(IllConditionedWarning, match="condition number ≈ 1.0"):
                fwd, bwd = factor(A, "lu")
        else:
            fwd, bwd = factor(A, "lu")
        est = float(condition_estimate(A, fwd, bwd, screen=2, threshold=COND_WARN / N))
        true = np.linalg.cond(np.asarray(A))
        assert est <= true * (1 + 1e-6)
        # a screened estimate is within the √n factor of the screen; a refined one is tight
        assert est >= (true / 1.5 if suspicious else true / N), (est, true)


def test_singular_ill_conditioned_and_nonconverged_reports():
    sing = jnp.asarray(np.outer(np.arange(1.0, N + 1), np.ones(N)))
    with pytest.raises(ValueError, match="singular.*condition number"):
        solve_linear(lambda v: sing @ v, B, solve="lu")
    ill = jnp.asarray(np.diag(np.logspace(0, 12, N)))
    with pytest.warns(IllConditionedWarning, match=r"condition number ≈ 1\.0+e\+12"):
        solve_linear(lambda v: ill @ v, B, solve="lu")
    with pytest.warns(LinearSolveWarning, match=r"'bicgstab' did not converge.*after 2 iterations"):
        jax.block_until_ready(solve_linear(lambda v: NONSYM @ v, B, solve="bicgstab", maxiter=2))
    with pytest.raises(ValueError, match="`solve` must be one of"):
        solve_linear(lambda v: v, B, solve="qr")
    with pytest.raises(ValueError, match="flat vector"):
        solve_linear(lambda v: v, jnp.ones((2, 2)))

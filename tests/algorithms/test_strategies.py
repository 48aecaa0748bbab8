"""solve= strategies: strings and objects, the 'auto' choice, preconditioners, custom solvers."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import algorithms
from algorithms import (
    CG,
    DENSE_THRESHOLD,
    GMRES,
    LU,
    Auto,
    BiCGSTAB,
    Cholesky,
    Custom,
    LinearSolveWarning,
    NormalCG,
    as_strategy,
    bicgstab,
    cg,
    choose_solver,
    gmres,
    implicit_plan,
    iterate,
    solve_linear,
)

RNG = np.random.default_rng(7)
N = 80
_M = RNG.normal(size=(N, N)) / np.sqrt(N)
SPD = jnp.asarray(_M @ _M.T + np.diag(np.linspace(0.5, 20.0, N)))
NONSYM = jnp.asarray(_M + np.diag(np.linspace(2.0, 10.0, N)))
B = jnp.asarray(RNG.normal(size=N))
EPS = np.finfo(np.float64).eps


def _floor(A, x, c=100.0):
    """Round-off floor of a solve: c·eps·κ(A)·‖x‖."""
    return c * EPS * np.linalg.cond(np.asarray(A)) * np.linalg.norm(np.asarray(x))


def test_strings_objects_and_bad_values():
    assert as_strategy("auto") == Auto() and as_strategy("lu") == LU() and as_strategy("cg") == CG()
    assert as_strategy("gmres") == GMRES() and as_strategy("normal_cg") == NormalCG()
    assert isinstance(as_strategy(lambda mv, b: b), Custom)
    with pytest.raises(ValueError, match="`solve` must be one of"):
        as_strategy("qr")
    with pytest.raises(TypeError, match="`solve` must be one of"):
        as_strategy(3)
    with pytest.raises(ValueError, match="`restart` must be a positive int"):
        GMRES(restart=0)
    with pytest.raises(ValueError, match="`tol`"):
        CG(tol=-1.0)
    with pytest.raises(ValueError, match="`maxiter`"):
        BiCGSTAB(maxiter=0)
    with pytest.raises(TypeError, match="`preconditioner`"):
        CG(preconditioner=3)
    with pytest.raises(TypeError, match="custom solver must be a callable"):
        Custom(None)
    with pytest.raises(ValueError, match="`threshold`"):
        Auto(threshold=-1)
    with pytest.raises(TypeError, match="`symmetric`"):
        solve_linear(lambda v: v, B, symmetric="yes")


def test_auto_choice_is_stated():
    assert choose_solver("auto", DENSE_THRESHOLD) == LU()
    assert choose_solver("auto", DENSE_THRESHOLD + 1, symmetric=True) == CG()
    assert choose_solver("auto", DENSE_THRESHOLD + 1) == GMRES(restart=30)
    assert choose_solver(Auto(threshold=10, restart=5), 11) == GMRES(restart=5)
    assert choose_solver(Auto(symmetric=False), 10_000, symmetric=True) == GMRES()
    assert choose_solver("bicgstab", 3) == BiCGSTAB()
    assert choose_solver("auto", 10_000, True).describe() == "CG()"


@pytest.mark.parametrize("method,A", [(cg, SPD), (gmres, NONSYM), (bicgstab, NONSYM)])
def test_exact_preconditioner_converges_at_once_and_jacobi_helps(method, A):
    Ainv = jnp.linalg.inv(A)
    x, info = method(lambda v: A @ v, B, tol=1e-12, preconditioner=lambda v: Ainv @ v)
    assert int(info.iterations) <= 2
    ref = np.linalg.solve(np.asarray(A), np.asarray(B))
    assert np.linalg.norm(x - ref) <= max(1e-10 * np.linalg.norm(ref), _floor(A, ref))
    d = jnp.diag(A)
    xj, infoj = method(lambda v: A @ v, B, tol=1e-12, preconditioner=lambda v: v / d)
    assert float(infoj.residual) <= 1e-11
    assert np.linalg.norm(xj - ref) <= max(1e-9 * np.linalg.norm(ref), _floor(A, ref))


@pytest.mark.parametrize("strategy", [LU(), Cholesky(), CG(tol=1e-13), GMRES(tol=1e-13, restart=7),
                                      BiCGSTAB(tol=1e-13), NormalCG(tol=1e-13), Auto(threshold=10),
                                      GMRES(tol=1e-13, preconditioner=lambda v: v / jnp.arange(1.0, N + 1)),
                                      Custom(lambda mv, b: jax.scipy.sparse.linalg.gmres(mv, b, tol=1e-14,
                                                                                         restart=N)[0])])
def test_every_strategy_is_differentiable_both_modes(strategy):
    sym = isinstance(strategy, (Cholesky, CG))
    A = SPD if sym else NONSYM

    def fun(a, b):
        return solve_linear(lambda v: a @ v, b, solve=strategy, tol=1e-13, symmetric=sym)

    ref = np.linalg.solve(np.asarray(A), np.asarray(B))
    x = jax.jit(fun)(A, B)
    assert np.linalg.norm(x - ref) <= max(1e-9 * np.linalg.norm(ref), _floor(A, ref))
    w = jnp.asarray(RNG.normal(size=N))
    g = jax.jit(jax.grad(lambda b: jnp.vdot(w, fun(A, b))))(B)  # the transposed solve: Aᵀ g = w
    g_ref = np.linalg.solve(np.asarray(A).T, np.asarray(w))
    assert np.linalg.norm(g - g_ref) <= max(1e-9 * np.linalg.norm(g_ref), _floor(A, g_ref))
    t = jax.jvp(lambda b: fun(A, b), (B,), (w,))[1]
    t_ref = np.linalg.solve(np.asarray(A), np.asarray(w))
    assert np.linalg.norm(t - t_ref) <= max(1e-9 * np.linalg.norm(t_ref), _floor(A, t_ref))


def test_custom_solver_is_checked():
    with pytest.warns(LinearSolveWarning, match=r"'bad' did not converge: relative residual 1\.000e\+00"):
        def bad(mv, b):
            return jnp.zeros_like(b)
        jax.block_until_ready(solve_linear(lambda v: NONSYM @ v, B, solve=bad))
    with pytest.raises(ValueError, match="custom solver returned shape"):
        solve_linear(lambda v: NONSYM @ v, B, solve=lambda mv, b: b[:3])


def test_auto_cg_on_a_wrong_symmetric_hint_falls_back_to_gmres():
    # a nonsymmetric system claimed SPD: CG fails, GMRES redoes it; no warning, correct result
    ref = np.linalg.solve(np.asarray(NONSYM), np.asarray(B))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = jax.block_until_ready(jax.jit(lambda b: solve_linear(lambda v: NONSYM @ v, b, solve="auto",
                                                                 tol=1e-12, symmetric=True))(B))
    assert np.linalg.norm(x - ref) <= max(1e-9 * np.linalg.norm(ref), _floor(NONSYM, ref))
    # a plain CG on it is reported as not converged (never a silent error)
    with pytest.warns(LinearSolveWarning, match="'cg' did not converge"):
        jax.block_until_ready(solve_linear(lambda v: NONSYM @ v, B, solve=CG(maxiter=20)))


def test_auto_warning_says_which_solver_it_chose():
    with pytest.warns(LinearSolveWarning, match=r"'gmres' \(chosen by solve='auto' for n=80, symmetric=False\)"):
        jax.block_until_ready(solve_linear(lambda v: NONSYM @ v, B, solve=Auto(maxiter=2)))


# ------------------------------------------------------------------------------------------
# iterate(mode="implicit") with the default solver, closed forms


def test_default_is_matrix_free_cg_for_large_ridge_gd_and_exact():
    n = 3 * DENSE_THRESHOLD
    X = jnp.asarray(RNG.normal(size=(2 * n, n)) / np.sqrt(2 * n))
    y = jnp.asarray(RNG.normal(size=2 * n))
    H = X.T @ X
    step = 1.0 / (float(np.linalg.eigvalsh(np.asarray(H))[-1]) + 3.0)
    F = algorithms.gradient_descent(lambda x, th: X.T @ (X @ x - y) + th * x, step)
    theta = jnp.linspace(0.5, 3.0, n)
    plan = implicit_plan(F, jnp.zeros(n), theta)
    assert plan["solver"] == "CG()" and plan["symmetric"] and plan["system"].startswith("fixed point")
    xbar = jnp.linalg.solve(H + jnp.diag(theta), X.T @ y)
    J_ref = -np.linalg.solve(np.asarray(H + jnp.diag(theta)), np.diag(np.asarray(xbar)))
    f = lambda th: iterate(F, jnp.zeros(n), th, 2000, mode="implicit", tol=1e-12)  # noqa: E731
    for J in (jax.jit(jax.jacrev(f))(theta), jax.jit(jax.jacfwd(f))(theta)):
        err = np.linalg.norm(np.asarray(J) - J_ref)
        assert err <= max(1e-9 * np.linalg.norm(J_ref), _floor(H + jnp.diag(theta), J_ref)), err
    # no dense n×n matrix in the compiled program of the default (matrix-free): temp memory O(n)
    g = jax.jit(jax.grad(lambda th: jnp.sum(f(th))))
    temp = g.lower(theta).compile().memory_analysis().temp_size_in_bytes
    g_lu = jax.jit(jax.grad(lambda th: jnp.sum(iterate(F, jnp.zeros(n), th, 2000, mode="implicit", solve="lu"))))
    temp_lu = g_lu.lower(theta).compile().memory_analysis().temp_size_in_bytes
    assert temp < temp_lu and temp_lu >= n * n * 8


def test_newton_map_uses_its_root_form_by_default_and_says_so():
    A = jnp.asarray(RNG.normal(size=(60, 4)))
    labels = jnp.sign(jnp.asarray(RNG.normal(size=60)))
    f = algorithms.logistic_regression_objective(A, labels, 0.1)
    F = algorithms.newton_map(f)
    w = jnp.ones(60)
    plan = implicit_plan(F, jnp.zeros(4), w)
    assert "F.optimality" in plan["system"] and plan["solver"] == "LU()"
    J_default = jax.jacrev(lambda t: iterate(F, jnp.zeros(4), t, 30, mode="implicit"))(w)
    J_root = jax.jacrev(lambda t: iterate(F, jnp.zeros(4), t, 30, mode="implicit",
                                          optimality_fun=algorithms.stationarity(f), solve="cholesky"))(w)
    np.testing.assert_allclose(J_default, J_root, rtol=1e-10, atol=1e-13)

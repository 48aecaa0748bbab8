"""custom_root / custom_fixed_point against closed forms, with every linear solver."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import (
    SOLVERS,
    IllConditionedWarning,
    LinearSolveWarning,
    custom_fixed_point,
    custom_root,
)

RNG = np.random.default_rng(1)
X = jnp.asarray(RNG.normal(size=(25, 5)))
Y = jnp.asarray(RNG.normal(size=25))
H = X.T @ X
LAM = jnp.asarray([0.3, 1.0, 2.0, 0.5, 4.0])


def f(x, lam, shift):
    """Ridge with per-coordinate penalty and a shifted target: two θ arguments."""
    return 0.5 * jnp.sum((X @ x - Y - shift) ** 2) + 0.5 * jnp.sum(lam * x ** 2)


grad_f = jax.grad(f)


def closed_form(lam, shift):
    return jnp.linalg.solve(H + jnp.diag(lam), X.T @ (Y + shift))


def gd_solver(init, lam, shift):
    eta = 1.0 / (jnp.linalg.eigvalsh(H)[-1] + jnp.max(lam))
    return jax.lax.fori_loop(0, 3000, lambda _, x: x - eta * grad_f(x, lam, shift), init)


SHIFT = jnp.asarray(RNG.normal(size=25)) * 0.1
INIT = jnp.zeros(5)


@pytest.mark.parametrize("solve", SOLVERS)
def test_custom_root_every_solver(solve):
    solver = custom_root(grad_f, solve=solve)(gd_solver)
    J_ref = jax.jacfwd(closed_form, argnums=(0, 1))(LAM, SHIFT)
    J_rev = jax.jit(jax.jacrev(solver, argnums=(1, 2)))(INIT, LAM, SHIFT)
    J_fwd = jax.jit(jax.jacfwd(solver, argnums=(1, 2)))(INIT, LAM, SHIFT)
    for J in (J_rev, J_fwd):
        np.testing.assert_allclose(J[0], J_ref[0], atol=1e-9)
        np.testing.assert_allclose(J[1], J_ref[1], atol=1e-9)


@pytest.mark.parametrize("solve", SOLVERS)
def test_custom_fixed_point_every_solver(solve):
    eta = 0.01

    def T(x, lam, shift):
        return x - eta * grad_f(x, lam, shift)

    solver = custom_fixed_point(T, solve=solve)(gd_solver)
    g = jax.jit(jax.grad(lambda lam, s: jnp.sum(solver(INIT, lam, s) ** 2), argnums=(0, 1)))(LAM, SHIFT)
    g_ref = jax.grad(lambda lam, s: jnp.sum(closed_form(lam, s) ** 2), argnums=(0, 1))(LAM, SHIFT)
    np.testing.assert_allclose(g[0], g_ref[0], atol=1e-9)
    np.testing.assert_allclose(g[1], g_ref[1], atol=1e-9)


def test_solution_value_untouched_and_init_gets_zero_derivative():
    solver = custom_root(grad_f)(gd_solver)
    np.testing.assert_allclose(solver(INIT, LAM, SHIFT), closed_form(LAM, SHIFT), atol=1e-10)
    J_init = jax.jacfwd(solver, argnums=0)(INIT, LAM, SHIFT)
    np.testing.assert_array_equal(J_init, 0.0)


def test_one_adjoint_solve_for_several_arguments():
    calls = []

    def counting_solver(init, lam, shift):
        return gd_solver(init, lam, shift)

    solver = custom_root(grad_f, solve="cg")(counting_solver)
    jaxpr = jax.make_jaxpr(jax.grad(lambda lam, s: jnp.sum(solver(INIT, lam, s)), argnums=(0, 1)))(LAM, SHIFT)
    n_solves = str(jaxpr).count("custom_linear_solve")
    assert n_solves == 1, n_solves
    del calls


def test_vmap_over_theta_and_pytree_solution():
    def G(x, lam):
        a, b = x["a"], x["b"]
        return {"a": a * lam - 1.0, "b": b - a ** 2}

    @custom_root(G)
    def solver(init, lam):
        a = 1.0 / lam
        return {"a": a, "b": a ** 2}

    lams = jnp.asarray([0.5, 1.0, 2.0])
    J = jax.vmap(jax.jacrev(lambda lam: solver({"a": 0.0, "b": 0.0}, lam)))(lams)
    np.testing.assert_allclose(J["a"], -1.0 / lams ** 2, rtol=1e-12)
    np.testing.assert_allclose(J["b"], -2.0 / lams ** 3, rtol=1e-12)


def test_nonconvergence_warning_names_solver_residual_iterations():
    solver = custom_root(grad_f, solve="gmres", maxiter=1)(gd_solver)
    with pytest.warns(LinearSolveWarning, match=r"'gmres' did not converge: relative residual .* after 1 iterations"):
        jax.block_until_ready(jax.jacrev(solver, argnums=1)(INIT, LAM, SHIFT))
    solver = custom_root(grad_f, solve="cg", maxiter=2)(gd_solver)
    with pytest.warns(LinearSolveWarning, match="'cg'.*after 2 iterations"):
        jax.block_until_ready(jax.jit(jax.jacfwd(solver, argnums=1))(INIT, LAM, SHIFT))


def test_checks_off_gives_the_same_derivative_without_callbacks():
    for solve in ("lu", "cg"):
        on = jax.jit(jax.jacrev(custom_root(grad_f, solve=solve, tol=1e-12)(gd_solver), argnums=1))
        off = jax.jit(jax.jacrev(custom_root(grad_f, solve=solve, tol=1e-12, checks=False)(gd_solver), argnums=1))
        np.testing.assert_allclose(off(INIT, LAM, SHIFT), on(INIT, LAM, SHIFT), rtol=1e-12, atol=1e-14)
        assert "callback" in str(jax.make_jaxpr(on)(INIT, LAM, SHIFT))
        assert "callback" not in str(jax.make_jaxpr(off)(INIT, LAM, SHIFT))
    with pytest.raises(TypeError, match="`checks` must be a bool"):
        custom_root(grad_f, checks="no")(gd_solver)


def test_singular_and_non_spd_systems():
    G = lambda x, th: jnp.asarray([x[0] - th[0], x[0] - th[1]])  # noqa: E731 — ∂₁G rank 1

    @custom_root(G)
    def solver(init, th):
        return jnp.asarray([th[0], th[0]])

    with pytest.raises(ValueError, match="singular.*condition number"):
        jax.jacfwd(solver, argnums=1)(jnp.zeros(2), jnp.ones(2))
    with pytest.warns(IllConditionedWarning, match="condition number"):
        jax.block_until_ready(jax.jit(jax.jacrev(solver, argnums=1))(jnp.zeros(2), jnp.ones(2)))

    neg = custom_root(lambda x, th: -(x - th), solve="cholesky")(lambda init, th: th)
    with pytest.raises(ValueError, match="cholesky.*symmetric positive definite"):
        jax.jacfwd(neg, argnums=1)(jnp.zeros(2), jnp.ones(2))


def test_bad_arguments():
    with pytest.raises(ValueError, match="`solve` must be one of"):
        custom_root(grad_f, solve="svd")
    with pytest.raises(ValueError, match="`tol` must be"):
        custom_fixed_point(grad_f, tol=-1.0)
    solver = custom_root(grad_f)(gd_solver)
    with pytest.raises(TypeError, match="positional arguments"):
        solver(INIT, LAM, shift=SHIFT)
    bad = custom_root(lambda x, th: x[:2] - th)(lambda init, th: jnp.zeros(3))
    with pytest.raises(ValueError, match="same size as x"):
        jax.jacfwd(bad, argnums=1)(jnp.zeros(3), jnp.ones(2))

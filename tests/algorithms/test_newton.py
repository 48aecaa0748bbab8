"""Newton's method on ℓ2-regularized logistic regression (one-step paper, eq. (11), Example 3)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import custom_root, iterate, logistic_regression_objective, newton_map, newton_solve, stationarity

RNG = np.random.default_rng(4)
N, P = 80, 6
A = np.concatenate([np.ones((N, 1)), RNG.normal(size=(N, P - 1))], axis=1)
Y = np.sign(A @ RNG.normal(size=P) + 0.7 * RNG.normal(size=N))
f = logistic_regression_objective(A, Y, 0.5)
F = newton_map(f)
THETA = jnp.asarray(RNG.uniform(0.5, 1.5, size=N))
X0 = jnp.zeros(P)
loss = lambda x: 0.5 * jnp.sum(x ** 2)  # noqa: E731


def hypergrad(mode, steps, **kw):
    return jax.jit(jax.grad(lambda th: loss(iterate(F, X0, th, steps, mode=mode, **kw))))(THETA)


def test_quadratic_convergence_to_stationary_point():
    xs = [X0]
    for _ in range(12):
        xs.append(F(xs[-1], THETA))
    x_bar = xs[-1]
    assert float(jnp.linalg.norm(jax.grad(f)(x_bar, THETA))) < 1e-12
    errs = [float(jnp.linalg.norm(x - x_bar)) for x in xs[:-1]]
    k = next(i for i, e in enumerate(errs) if e < 1e-2)
    # quadratic rate once in the local region; errors at round-off (relative to ‖x̄‖) tie
    floor = 100 * np.finfo(np.float64).eps * max(1.0, float(jnp.linalg.norm(x_bar)))
    assert errs[k + 1] <= max(10 * errs[k] ** 2, floor)
    np.testing.assert_allclose(newton_solve(f, X0, THETA), x_bar, atol=1e-12)


def test_one_step_and_implicit_agree_after_convergence():
    g_imp = hypergrad("implicit", 12, optimality_fun=stationarity(f), solve="cholesky")
    g_os = hypergrad("one_step", 12)
    g_ad = hypergrad("autodiff", 12)
    np.testing.assert_allclose(g_os, g_imp, atol=1e-10)
    np.testing.assert_allclose(g_ad, g_imp, atol=1e-10)
    # implicit through the Newton map itself (I - ∂ₓF = I at x̄) gives the same
    np.testing.assert_allclose(hypergrad("implicit", 12), g_imp, atol=1e-10)


def test_one_step_error_corollary_3():
    """‖J^OS x_k - J x̄‖ ≤ L_J‖x_{k-1} - x̄‖ (eq. (7)): the ratio stays bounded while both decay quadratically."""
    x_bar = newton_solve(f, X0, THETA)
    solver = custom_root(stationarity(f), solve="cholesky")(partial(newton_solve, f))
    J_bar = jax.jacfwd(lambda th: solver(X0, th))(THETA)
    errs, dists = [], []
    for k in (4, 5, 6, 7):
        x_prev = iterate(F, X0, THETA, k - 1)
        J_os = jax.jit(jax.jacfwd(lambda th: iterate(F, X0, th, k, mode="one_step")))(THETA)
        dists.append(float(jnp.linalg.norm(x_prev - x_bar)))
        errs.append(float(jnp.linalg.norm(J_os - J_bar, 2)))
    ratios = np.asarray(errs) / np.asarray(dists)
    assert np.max(ratios) <= 3 * np.min(ratios), ratios  # one constant L_J fits every k
    assert errs[-1] < 1e-8 and errs[0] > 1e-3, errs  # quadratic decay in k
    for e0, e1 in zip(errs, errs[1:]):
        assert e1 <= 100 * e0 ** 2 + 1e-12


def test_custom_root_on_newton_solve_vmap():
    solver = custom_root(stationarity(f), solve="cholesky")(partial(newton_solve, f))
    thetas = jnp.stack([THETA, THETA[::-1]])
    g = jax.jit(jax.vmap(jax.grad(lambda th: loss(solver(X0, th)))))(thetas)
    for th, gi in zip(thetas, g):
        g_os = jax.grad(lambda t: loss(iterate(F, X0, t, 12, mode="one_step")))(th)
        np.testing.assert_allclose(gi, g_os, atol=1e-10)


def test_bad_input():
    with pytest.raises(ValueError, match="`lam` must be positive"):
        logistic_regression_objective(A, Y, 0.0)
    with pytest.raises(ValueError, match=r"`A` must be \(N, n\)"):
        logistic_regression_objective(A, Y[:-1], 1.0)
    with pytest.raises(ValueError, match="0 < c < 1/2"):
        newton_map(f, c=0.7)
    with pytest.raises(ValueError, match="`solve` must be one of"):
        newton_map(f, solve="cg")


def test_closed_form_logistic_hessian_matches_autodiff_and_gives_same_newton_step():
    from algorithms import logistic_regression_hessian, logistic_regression_objective, newton_map

    rng = np.random.default_rng(3)
    A = np.concatenate([np.ones((30, 1)), rng.normal(size=(30, 4))], axis=1)
    y = rng.choice([-1.0, 1.0], size=30)
    f = logistic_regression_objective(A, y, 0.3)
    H = logistic_regression_hessian(A, y, 0.3)
    x, th = jnp.asarray(rng.normal(size=5)), jnp.asarray(rng.uniform(0.5, 2, size=30))
    np.testing.assert_allclose(H(x, th), jax.hessian(f)(x, th), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(newton_map(f, hessian=H)(x, th), newton_map(f)(x, th), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jax.jacrev(lambda t: newton_map(f, hessian=H)(x, t))(th),
                               jax.jacrev(lambda t: newton_map(f)(x, t))(th), rtol=1e-10, atol=1e-12)


def test_newton_solve_that_stops_early_is_reported():
    with pytest.raises(ValueError, match=r"newton_solve did not converge: ‖∇₁f\(x, θ\)‖ = .* after 1 iterations"):
        newton_solve(f, X0, THETA, maxiter=1)
    with pytest.warns(RuntimeWarning, match="newton_solve did not converge"):
        jax.block_until_ready(jax.jit(lambda t: newton_solve(f, X0, t, maxiter=1))(THETA))
    with pytest.raises(ValueError, match="newton_solve did not converge: .* = inf"):
        newton_solve(f, X0 * jnp.nan, THETA)

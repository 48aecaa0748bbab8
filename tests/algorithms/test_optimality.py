"""The optimality-map catalog: G(x*, θ) = 0 at known solutions, implicit Jacobian vs finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import (
    block_proximal_gradient,
    custom_root,
    kkt,
    kl_projection_simplex,
    mirror_descent,
    newton_fixed_point,
    projected_gradient,
    proximal_gradient,
    stationarity,
)

RNG = np.random.default_rng(3)
X = jnp.asarray(RNG.normal(size=(30, 6)))
Y = jnp.asarray(RNG.normal(size=30))


def fd_jacobian(fun, theta, h=1e-6):
    """Central finite differences of a solution map (θ a flat vector)."""
    theta = np.asarray(theta, dtype=float)
    cols = []
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        cols.append((np.asarray(fun(jnp.asarray(theta + e))) - np.asarray(fun(jnp.asarray(theta - e)))) / (2 * h))
    return np.stack(cols, axis=-1)


def check(G, solution, theta, *, pair=False, atol_fd=1e-6, solve="lu"):
    """G(x*(θ), θ) = 0 and implicit Jacobian of x* (through custom_root) vs finite differences.

    With ``pair=True`` the map takes θ = (θ_f, None) (objective parameters only).
    """
    wrap = (lambda t: (t, None)) if pair else (lambda t: t)
    unwrap = (lambda th: th[0]) if pair else (lambda th: th)
    x = solution(theta)
    res = jax.flatten_util.ravel_pytree(G(x, wrap(theta)))[0]
    assert float(jnp.max(jnp.abs(res))) < 1e-10
    solver = custom_root(G, solve=solve)(lambda init, th: solution(unwrap(th)))
    J = jax.jacfwd(lambda t: jax.flatten_util.ravel_pytree(solver(x, wrap(t)))[0])(theta)
    J_fd = fd_jacobian(lambda t: jax.flatten_util.ravel_pytree(solution(t))[0], theta)
    np.testing.assert_allclose(J, J_fd, atol=atol_fd)
    return J


def ridge(x, lam):
    return 0.5 * jnp.sum((X @ x - Y) ** 2) + 0.5 * jnp.sum(lam * x ** 2)


def ridge_solution(lam):
    return jnp.linalg.solve(X.T @ X + jnp.diag(lam), X.T @ Y)


LAM = jnp.asarray([0.5, 1.0, 1.5, 2.0, 0.7, 3.0])


def test_stationarity_ridge():
    check(stationarity(ridge), ridge_solution, LAM, solve="cholesky")


def test_newton_fixed_point_ridge():
    check(newton_fixed_point(jax.grad(ridge)), ridge_solution, LAM)


def soft_threshold(y, lam, scaling=1.0):
    return jnp.sign(y) * jnp.maximum(jnp.abs(y) - lam * scaling, 0.0)


def lasso_solution(lam, iters=20000):
    """ISTA to machine precision (the lasso solution has no closed form off its support)."""
    L = float(np.linalg.eigvalsh(np.asarray(X.T @ X))[-1])
    grad = lambda x: X.T @ (X @ x - Y)  # noqa: E731
    return jax.jit(lambda l: jax.lax.fori_loop(0, iters, lambda _, x: soft_threshold(x - grad(x) / L, l / L),
                                               jnp.zeros(6)))(lam)


def test_proximal_gradient_lasso():
    f = lambda x, _: 0.5 * jnp.sum((X @ x - Y) ** 2)  # noqa: E731
    G = proximal_gradient(f, lambda y, lam, eta: soft_threshold(y, lam, eta), stepsize=0.01)
    lam = jnp.asarray(2.0)  # three zero coefficients, the others strictly inside
    x = lasso_solution(lam)
    assert 0 < int(jnp.sum(x == 0)) < 6
    G2 = lambda x, t: G(x, (None, t))  # noqa: E731
    res = G2(x, lam)
    assert float(jnp.max(jnp.abs(res))) < 1e-10
    solver = custom_root(G2)(lambda init, t: lasso_solution(t))
    J = jax.jacfwd(lambda t: solver(x, t))(lam)
    J_fd = (lasso_solution(lam + 1e-5) - lasso_solution(lam - 1e-5)) / 2e-5
    np.testing.assert_allclose(J, J_fd, atol=1e-7)
    S = np.asarray(x != 0)
    Xs = np.asarray(X)[:, S]
    np.testing.assert_allclose(np.asarray(J)[S], -np.linalg.solve(Xs.T @ Xs, np.sign(np.asarray(x)[S])), atol=1e-10)


def proj_simplex(v):
    u = jnp.sort(v)[::-1]
    css = jnp.cumsum(u) - 1.0
    k = jnp.arange(1, v.size + 1)
    rho = jnp.max(jnp.where(u - css / k > 0, k, 0))
    tau = css[rho - 1] / rho
    return jnp.maximum(v - tau, 0.0)


THETA_S = jnp.asarray([0.9, 0.1, 0.6, -0.4, 0.3])  # projection with two zero coordinates


def test_projected_gradient_simplex():
    f = lambda x, th: 0.5 * jnp.sum((x - th) ** 2)  # noqa: E731
    G = projected_gradient(f, lambda y, _: proj_simplex(y), stepsize=0.5)
    J = check(G, proj_simplex, THETA_S, pair=True)
    p = np.asarray(proj_simplex(THETA_S))
    S = p > 0
    expected = np.zeros((5, 5))
    expected[np.ix_(S, S)] = np.eye(S.sum()) - 1.0 / S.sum()
    np.testing.assert_allclose(J, expected, atol=1e-12)


def test_kkt_simplex_projection():
    f = lambda z, th: 0.5 * jnp.sum((z - th) ** 2)  # noqa: E731
    G = kkt(f, eq_fun=lambda z, th: jnp.sum(z, keepdims=True) - 1.0, ineq_fun=lambda z, th: -z)

    def solution(th):
        z = proj_simplex(th)
        # z - θ + ν1 - λ = 0: ν = θᵢ - zᵢ on the support, λᵢ = ν - θᵢ off it
        nu = jnp.sum(jnp.where(z > 0, th - z, 0.0)) / jnp.sum(z > 0)
        lam = jnp.where(z > 0, 0.0, nu - th)
        return z, nu[None], lam

    J = check(G, solution, THETA_S)
    p = np.asarray(proj_simplex(THETA_S))
    S = p > 0
    expected = np.zeros((5, 5))
    expected[np.ix_(S, S)] = np.eye(S.sum()) - 1.0 / S.sum()
    np.testing.assert_allclose(np.asarray(J)[:5], expected, atol=1e-12)


def test_mirror_descent_kl_geometry():
    w = 0.7
    f = lambda x, th: -jnp.vdot(th, x) + w * jnp.vdot(x, jnp.log(x))  # noqa: E731
    G = mirror_descent(f, stepsize=0.3)
    theta = jnp.asarray([0.2, -0.5, 1.0, 0.3])
    solution = lambda th: jax.nn.softmax(th / w)  # noqa: E731
    J = check(G, solution, theta, pair=True)
    p = np.asarray(solution(theta))
    np.testing.assert_allclose(J, (np.diag(p) - np.outer(p, p)) / w, atol=1e-12)
    np.testing.assert_allclose(kl_projection_simplex(jnp.log(jnp.asarray([1.0, 3.0]))), [0.25, 0.75])


def test_block_proximal_gradient():
    f = lambda x, _: 0.5 * jnp.sum((X[:, :3] @ x[0] + X[:, 3:] @ x[1] - Y) ** 2)  # noqa: E731
    G = block_proximal_gradient(f, [lambda y, lam, eta: soft_threshold(y, lam, eta),
                                    lambda y, _, eta: y], stepsizes=[0.01, 0.02])
    lam = jnp.asarray(3.0)
    L = float(np.linalg.eigvalsh(np.asarray(X.T @ X))[-1])

    def solution(l):
        def step(_, x):
            y = x - X.T @ (X @ x - Y) / L
            return jnp.concatenate([soft_threshold(y[:3], l / L), y[3:]])
        x = jax.jit(lambda l: jax.lax.fori_loop(0, 20000, step, jnp.zeros(6)))(l)
        return x[:3], x[3:]

    x = solution(lam)
    Gt = lambda x, t: G(x, (None, (t, None)))  # noqa: E731
    assert float(jnp.max(jnp.abs(jnp.concatenate(Gt(x, lam))))) < 1e-10
    solver = custom_root(Gt)(lambda init, t: solution(t))
    J = jnp.concatenate(jax.jacfwd(lambda t: solver(x, t))(lam))
    J_fd = (jnp.concatenate(solution(lam + 1e-5)) - jnp.concatenate(solution(lam - 1e-5))) / 2e-5
    np.testing.assert_allclose(J, J_fd, atol=1e-7)


def test_bad_stepsizes_and_blocks():
    with pytest.raises(ValueError, match="`stepsize` must be a positive"):
        proximal_gradient(ridge, soft_threshold, stepsize=0.0)
    with pytest.raises(ValueError, match="`stepsizes` has 1 entries but there are 2 blocks"):
        block_proximal_gradient(ridge, [soft_threshold, soft_threshold], stepsizes=[0.1])

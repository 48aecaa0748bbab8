"""Heavy-ball and Nesterov in phase space: convergence, the slides' counterexample, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import heavy_ball, nesterov, phase_state, run, solve


def _quadratic(seed=0, n=6, mu=0.5, L=10.0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    H = Q @ np.diag(np.linspace(mu, L, n)) @ Q.T
    return dict(H=jnp.asarray(H), b=jnp.asarray(rng.normal(size=n)))


def grad_quadratic(x, th):
    return th["H"] @ x - th["b"]


def test_phase_state():
    s = phase_state(jnp.array([1.0, 2.0]))
    np.testing.assert_array_equal(s, [1.0, 2.0, 1.0, 2.0])
    np.testing.assert_array_equal(phase_state([1, 2], [0, 0]), [1.0, 2.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="x_prev"):
        phase_state(jnp.ones(2), jnp.ones(3))


def test_heavy_ball_converges_on_a_strongly_convex_quadratic():
    mu, L = 0.5, 10.0
    th = _quadratic(mu=mu, L=L)
    alpha = 4 / (np.sqrt(L) + np.sqrt(mu)) ** 2
    beta = ((np.sqrt(L / mu) - 1) / (np.sqrt(L / mu) + 1)) ** 2
    F = heavy_ball(grad_quadratic, alpha, beta)
    sol = solve(F, F.init(jnp.zeros(6)), th, 400)
    x_star = np.linalg.solve(th["H"], th["b"])
    np.testing.assert_allclose(sol.primal, x_star, atol=1e-10)
    np.testing.assert_allclose(sol.state, np.concatenate([x_star, x_star]), atol=1e-10)
    # the conservative Jacobian at a smooth point is [[(1+β)I − αH, −βI], [I, 0]]
    J = jax.jacfwd(F, argnums=0)(sol.state, th)
    n = 6
    expected = np.block([[(1 + beta) * np.eye(n) - alpha * th["H"], -beta * np.eye(n)], [np.eye(n), np.zeros((n, n))]])
    np.testing.assert_allclose(J, expected, atol=1e-12)


def test_nesterov_converges_on_a_strongly_convex_quadratic():
    mu, L = 0.5, 10.0
    th = _quadratic(1, mu=mu, L=L)
    kappa = L / mu
    F = nesterov(grad_quadratic, 1.0 / L, (np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1))
    sol = solve(F, F.init(jnp.ones(6)), th, 600)
    np.testing.assert_allclose(sol.primal, np.linalg.solve(th["H"], th["b"]), atol=1e-10)
    assert sol.residual < 1e-10


def _hb_counterexample_grad(x, th):
    """f(x) = x²/2 for x ≥ 0 and x²/8 for x < 0 (slides, "Example where heavy-ball fails")."""
    return jnp.where(x >= 0, x, x / 4)


@pytest.mark.parametrize("x0", [1.0, -1.0, 5.0, -7.3, 0.01, 123.0])
def test_heavy_ball_counterexample_converges_to_zero(x0):
    F = heavy_ball(_hb_counterexample_grad, 1.0, 0.75)
    traj = run(F, F.init(jnp.array([x0])), None, 400)
    assert np.all(np.isfinite(traj))
    np.testing.assert_allclose(traj[-1], [0.0, 0.0], atol=1e-12 * max(1.0, abs(x0)))
    # from a nonzero velocity too
    traj = run(F, phase_state(jnp.array([x0]), jnp.array([-x0])), None, 400)
    np.testing.assert_allclose(traj[-1], [0.0, 0.0], atol=1e-12 * max(1.0, abs(x0)))


def test_heavy_ball_counterexample_pieces():
    """The two smooth pieces of F at 0 are M1 (x ≥ 0) and M2 (x < 0); M1 M1 M2 M2 has eigenvalue −9/8."""
    F = heavy_ball(_hb_counterexample_grad, 1.0, 0.75)
    M1 = jax.jacfwd(F)(jnp.array([1.0, 1.0]), None)
    M2 = jax.jacfwd(F)(jnp.array([-1.0, -1.0]), None)
    np.testing.assert_allclose(M1, [[0.75, -0.75], [1.0, 0.0]])
    np.testing.assert_allclose(M2, [[1.5, -0.75], [1.0, 0.0]])
    eig = np.linalg.eigvals(M1 @ M1 @ M2 @ M2)
    assert np.min(np.abs(eig + 9 / 8)) < 1e-12


def test_heavy_ball_divergence_message():
    th = _quadratic(2, mu=1.0, L=4.0)
    F = heavy_ball(grad_quadratic, 1.0, 0.5)  # needs alpha < 2(1.5)/4 = 0.75
    with pytest.raises(ValueError, match=r"diverged at step \d+.*alpha < 2\(1 \+ beta\)/L.*≈ 0.75"):
        run(F, F.init(jnp.ones(6)), th, 5000)


def test_nesterov_divergence_message():
    th = _quadratic(3, mu=1.0, L=4.0)
    F = nesterov(grad_quadratic, 0.6, 0.5)  # bound 2(1.5)/(2·4) = 0.375
    with pytest.raises(ValueError, match=r"diverged at step \d+.*Nesterov.*≈ 0.375"):
        run(F, F.init(jnp.ones(6)), th, 5000)


def test_state_errors():
    F = heavy_ball(grad_quadratic, 0.1, 0.5)
    th = _quadratic()
    with pytest.raises(ValueError, match="even length"):
        F(jnp.ones(5), th)
    with pytest.raises(TypeError, match=r"F.init\(x0\)"):
        # the primal point passed instead of the phase-space state [x; y]: grad_f sees x of size 3
        run(F, jnp.ones(6), th, 3)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: heavy_ball(grad_quadratic, 0.0, 0.5), "alpha"),
        (lambda: heavy_ball(grad_quadratic, 0.1, 1.0), "beta"),
        (lambda: heavy_ball(grad_quadratic, 0.1, -0.1), "beta"),
        (lambda: nesterov(grad_quadratic, -0.1, 0.5), "step"),
        (lambda: nesterov(grad_quadratic, 0.1, 1.5), "momentum"),
    ],
)
def test_bad_momentum_parameters(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_momentum_parameters_from_theta_are_differentiable():
    F = heavy_ball(grad_quadratic, alpha=lambda th: th["alpha"], beta=lambda th: th["beta"])
    th = {**_quadratic(), "alpha": jnp.asarray(0.05), "beta": jnp.asarray(0.5)}
    g = jax.grad(lambda t: jnp.sum(run(F, F.init(jnp.zeros(6)), t, 5)[-1]))(th)
    eps = 1e-6
    f = lambda a: float(jnp.sum(run(F, F.init(jnp.zeros(6)), {**th, "alpha": a}, 5)[-1]))
    np.testing.assert_allclose(g["alpha"], (f(0.05 + eps) - f(0.05 - eps)) / (2 * eps), rtol=1e-6)

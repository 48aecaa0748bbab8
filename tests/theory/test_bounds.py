"""The papers' bounds: closed forms, and that they hold on a smooth example."""

import numpy as np
import pytest

from theory import (
    implicit_error_bound_one_step_paper,
    implicit_jacobian_error_bound,
    one_step_error_bound,
    one_step_error_bound_superlinear,
)


def test_closed_forms():
    assert one_step_error_bound(0.5, 2.0, 3.0, 0.1) == pytest.approx(0.5 * 2 / 0.5 + 0.3)
    assert one_step_error_bound_superlinear(3.0, 0.1) == pytest.approx(0.3)
    assert implicit_error_bound_one_step_paper(0.5, 2.0, 3.0, 0.1) == pytest.approx((6 / 0.25 + 3 / 0.5) * 0.1)
    assert implicit_jacobian_error_bound(2.0, 1.0, 4.0, 3.0, 0.5) == pytest.approx((0.5 + 12 / 4) * 0.5)
    out = one_step_error_bound(0.5, 1.0, 1.0, np.array([0.0, 1.0]))
    assert out.shape == (2,) and out[0] == pytest.approx(1.0)


def test_one_step_bound_holds_for_gradient_descent_on_a_quadratic():
    # f(x, θ) = ½ xᵀQx - θᵀx, F(x, θ) = x - α(Qx - θ): ∂ₓF = I - αQ, ∂_θF = αI, J x̄ = Q⁻¹
    Q = np.diag([1.0, 3.0])
    alpha = 0.4
    rho = max(abs(1 - alpha * 1.0), abs(1 - alpha * 3.0))
    L_F, L_J = alpha, 0.0  # ∂_θF constant
    J_os = alpha * np.eye(2)
    err = np.linalg.norm(J_os - np.linalg.inv(Q), 2)
    assert err <= one_step_error_bound(rho, L_F, L_J, 1.0) + 1e-12


def test_implicit_bound_holds_on_a_nonlinear_example():
    # root map F(x, θ) = θ - x - x³/10 near x* (scalar): A = -∂₁F = 1 + 3x²/10, B = ∂₂F = 1
    theta = 0.5
    xs = 0.5
    for _ in range(100):
        xs = theta - xs**3 / 10
    true = 1 / (1 + 3 * xs**2 / 10)
    for xhat in xs + np.array([0.1, 0.01, -0.05]):
        est = 1 / (1 + 3 * xhat**2 / 10)
        eps = 0.2
        gamma = 6 * (abs(xs) + eps) / 10  # Lipschitz constant of A on the ε-ball
        bound = implicit_jacobian_error_bound(1.0, 0.0, gamma, 1.0, abs(xhat - xs), epsilon=eps)
        assert abs(est - true) <= bound


def test_bad_input():
    with pytest.raises(ValueError, match="rho"):
        one_step_error_bound(1.0, 1, 1, 1)
    with pytest.raises(ValueError, match="L_F"):
        one_step_error_bound(0.5, -1, 1, 1)
    with pytest.raises(ValueError, match="alpha"):
        implicit_jacobian_error_bound(0.0, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="dist"):
        implicit_jacobian_error_bound(1.0, 1, 1, 1, 1.0, epsilon=0.5)
    with pytest.raises(ValueError, match="finite"):
        one_step_error_bound_superlinear(np.nan, 1)


def test_estimator_error_bounds_hold_for_weighted_ridge_gradient_descent():
    """algorithms.estimator_errors measured against the papers' bounds with the exact constants.

    F(x, θ) = x - γ(Xᵀ(Xx - y) + θ∘x): ∂ₓF = I - γ(H + diag θ) (ρ = max |1 - γλᵢ|), ∂_θF = -γ diag(x)
    (L_F = γ max ‖x‖_∞ over the run, L_J = γ); root form ∇f: α = λ_min(H + diag θ), β = 1, γ_A = 0,
    R = ‖x̄‖_∞ (Blondel et al. Theorem 1)."""
    import jax
    import jax.numpy as jnp

    from algorithms import estimator_errors, iterate
    from theory import estimator_error_bounds

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(25, 5)), rng.normal(size=25)
    H, theta = X.T @ X, np.array([0.5, 1.0, 2.0, 0.3, 1.5])
    lam = np.linalg.eigvalsh(H + np.diag(theta))
    step = 1.0 / lam[-1]
    F = lambda x, th: x - step * (X.T @ (X @ x - y) + th * x)  # noqa: E731
    x_bar = np.linalg.solve(H + np.diag(theta), X.T @ y)
    J_bar = -np.linalg.solve(H + np.diag(theta), np.diag(x_bar))
    steps = [1, 5, 20, 80]
    res = estimator_errors(F, jnp.zeros(5), jnp.asarray(theta), steps, modes=("one_step", "implicit"),
                           x_ref=x_bar, jac_ref=J_bar)
    xs = [np.zeros(5)]
    for _ in range(80):
        xs.append(F(xs[-1], theta))  # numpy: the same iterates as iterate(F, 0, θ, k)
    xs = xs[1:]
    np.testing.assert_allclose(xs[-1], iterate(F, jnp.zeros(5), jnp.asarray(theta), 80), rtol=1e-12, atol=1e-15)
    rho = float(np.max(np.abs(1 - step * lam)))
    L_F = step * max(np.max(np.abs(x)) for x in xs + [x_bar])
    out = estimator_error_bounds(res, rho=rho, L_F=L_F, L_J=step, alpha=lam[0], beta=1.0, gamma=0.0,
                                 R=np.max(np.abs(x_bar)))
    assert set(out) == {"one_step", "implicit"}
    assert out["one_step"]["holds"] and out["implicit"]["holds"]
    np.testing.assert_allclose(out["implicit"]["bound"], res.iterate_error / lam[0])
    np.testing.assert_allclose(res.previous_iterate_error[1:], [np.linalg.norm(xs[k - 2] - x_bar) for k in steps[1:]],
                               rtol=1e-9, atol=1e-15)
    assert res.previous_iterate_error[0] == pytest.approx(np.linalg.norm(x_bar))  # x_0 = 0
    # with only ρ, L_F, L_J the implicit bound is the one-step paper's Remark 2 (looser)
    remark2 = estimator_error_bounds(res, rho=rho, L_F=L_F, L_J=step)["implicit"]
    assert remark2["holds"] and np.all(remark2["bound"] >= out["implicit"]["bound"])
    # a deliberately wrong constant is caught: the measured error exceeds the "bound"
    assert not estimator_error_bounds(res, rho=0.0, L_J=1e-6)["one_step"]["holds"]
    with pytest.raises(ValueError, match="no bound applies"):
        estimator_error_bounds(res, L_F=1.0)

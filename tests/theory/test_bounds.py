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

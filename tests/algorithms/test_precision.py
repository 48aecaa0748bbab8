"""Estimator errors against closed-form and implicit references."""

import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import estimator_errors, reference_jacobian

RNG = np.random.default_rng(7)
X = jnp.asarray(RNG.normal(size=(20, 4)))
Y = jnp.asarray(RNG.normal(size=20))
H = X.T @ X
THETA = jnp.asarray([0.5, 1.0, 2.0, 0.3])
GAMMA = float(1.0 / (np.linalg.eigvalsh(np.asarray(H))[-1] + 2.0))
X0 = jnp.zeros(4)


def F(x, theta):
    return x - GAMMA * (X.T @ (X @ x - Y) + theta * x)


def closed_form(theta):
    x = jnp.linalg.solve(H + jnp.diag(theta), X.T @ Y)
    return x, -jnp.linalg.solve(H + jnp.diag(theta), jnp.diag(x))


def test_reference_jacobian_matches_closed_form():
    x_ref, J_ref = reference_jacobian(F, X0, THETA)
    x_cf, J_cf = closed_form(THETA)
    np.testing.assert_allclose(x_ref, x_cf, atol=1e-12)
    np.testing.assert_allclose(J_ref, J_cf, atol=1e-11)


def test_estimator_errors_ridge():
    x_cf, J_cf = closed_form(THETA)
    steps = [5, 10, 20, 40]
    res = estimator_errors(F, X0, THETA, steps, modes=("autodiff", "implicit", "one_step", "truncated"),
                           truncate=20, x_ref=x_cf, jac_ref=J_cf)
    assert res.iterate_error.shape == (4,) and set(res.jacobian_error) == {"autodiff", "implicit", "one_step", "truncated"}
    assert np.all(np.diff(res.iterate_error) < 0)
    assert np.all(np.diff(res.jacobian_error["autodiff"]) < 0)
    assert res.jacobian_error["implicit"][-1] < 1e-7 and res.jacobian_error["autodiff"][-1] < 1e-5
    # implicit at x_k: J^ID = -(H + diag θ)⁻¹ diag(x_k), error = ‖(H+diag θ)⁻¹ diag(x_k - x̄)‖
    Hinv = np.linalg.inv(np.asarray(H + jnp.diag(THETA)))
    for k, e, xe in zip(steps, res.jacobian_error["implicit"], res.iterate_error):
        assert e <= np.linalg.norm(Hinv, 2) * xe * (1 + 1e-9) + 1e-14
    assert res.jacobian_error["one_step"][-1] > res.jacobian_error["truncated"][-1]
    default = estimator_errors(F, X0, THETA, [10], modes=("implicit",))
    np.testing.assert_allclose(default.jacobian_error["implicit"], res.jacobian_error["implicit"][1], rtol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="`modes` entries"):
        estimator_errors(F, X0, THETA, [5], modes=("piggyback",))
    with pytest.raises(ValueError, match="`truncate` is required"):
        estimator_errors(F, X0, THETA, [5], modes=("truncated",))
    with pytest.raises(ValueError, match="did not reach"):
        reference_jacobian(F, X0, THETA, maxiter=3)

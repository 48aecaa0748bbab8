"""Estimator errors against closed-form and implicit references."""

import jax
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
    assert (res.iterate_error.shape == (4,)
            and set(res.jacobian_error) == {"autodiff", "implicit", "one_step", "truncated"})
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


# A nonlinear contraction with pytree state and parameters: x = {"u": (3,), "v": (2,)}, θ = (W, b).
W0 = jnp.asarray(RNG.normal(size=(5, 5))) * 0.25
B0 = jnp.asarray(RNG.normal(size=5))


def F_tree(x, theta):
    W, b = theta
    z = jnp.concatenate([x["u"], x["v"]])
    z = 0.5 * jnp.tanh(W @ z + b) + 0.1 * z
    return {"u": z[:3], "v": z[3:]}


def G_tree(x, theta):  # root form of the same fixed point: G = x - F(x, θ)
    fx = F_tree(x, theta)
    return {"u": x["u"] - fx["u"], "v": x["v"] - fx["v"]}


def test_sweep_equals_the_jacobians_of_iterate():
    """The compiled sweep returns the errors of the derivatives that iterate() gives, mode by mode."""
    from algorithms import flat_jacobian, iterate

    x0 = {"u": jnp.zeros(3), "v": jnp.ones(2)}
    theta = (W0, B0)
    x_ref, J_ref = reference_jacobian(F_tree, x0, theta)
    steps = [1, 3, 6]
    modes = ("autodiff", "implicit", "one_step", "truncated")
    jacobians = {(mode, k): np.asarray(jax.jit(flat_jacobian, static_argnums=0)(
        lambda th: iterate(F_tree, x0, th, k, mode=mode, **({"truncate": min(3, k)} if mode == "truncated" else
                                                            {"residual_rtol": None} if mode == "implicit" else {})),
        theta)) for mode in modes for k in steps}
    for ord in (2, "fro"):
        res = estimator_errors(F_tree, x0, theta, steps, modes=modes, truncate=3, ord=ord)
        for mode in modes:
            expected = [np.linalg.norm(jacobians[mode, k] - np.asarray(J_ref), ord=ord) for k in steps]
            np.testing.assert_allclose(res.jacobian_error[mode], expected, rtol=1e-9, atol=1e-13)
    root = estimator_errors(F_tree, x0, theta, steps, modes=("implicit",), optimality_fun=G_tree,
                            x_ref=x_ref, jac_ref=J_ref, ord="fro")
    np.testing.assert_allclose(root.jacobian_error["implicit"], res.jacobian_error["implicit"], rtol=1e-9,
                               atol=1e-13)
    x_flat = [np.concatenate([np.asarray(v) for v in (iterate(F_tree, x0, theta, k)["u"],
                                                      iterate(F_tree, x0, theta, k)["v"])]) for k in steps]
    np.testing.assert_allclose(res.iterate_error, [np.linalg.norm(x - res.x_ref) for x in x_flat], rtol=1e-9)


def test_bad_input_of_the_sweep():
    with pytest.raises(ValueError, match="`jac_ref` must have shape"):
        estimator_errors(F, X0, THETA, [5], x_ref=X0, jac_ref=np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"diverged at step 2: iterate x_2 contains non-finite"):
        estimator_errors(lambda x, th: 1e200 * x + th, X0 + 1.0, THETA, [5], x_ref=X0, jac_ref=np.zeros((4, 4)),
                         modes=("one_step",))
    # growth without overflow is divergence too: x_k = 2^k x_0 passes 1e10 × the initial scale at k = 35
    with pytest.raises(ValueError, match=r"diverged at step 35: ‖x_35‖_∞ = .* max_growth"):
        estimator_errors(lambda x, th: 2.0 * x + 0.0 * th, X0 + 1.0, THETA, [60], x_ref=X0,
                         jac_ref=np.zeros((4, 4)), modes=("one_step",))
    with pytest.raises(ValueError, match="`theta` contains non-finite"):
        estimator_errors(F, X0, THETA * jnp.nan, [5])
    for bad in ([2.7], [5, 2.0], [True], 5, "5"):
        with pytest.raises(TypeError, match="`steps` must"):
            estimator_errors(F, X0, THETA, bad, x_ref=X0, jac_ref=np.zeros((4, 4)))
    with pytest.raises(TypeError, match="`truncate` must be a positive int"):
        estimator_errors(F, X0, THETA, [5], modes=("truncated",), truncate=2.5, x_ref=X0, jac_ref=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="`truncate` must be a positive int"):
        estimator_errors(F, X0, THETA, [5], modes=("truncated",), truncate=0, x_ref=X0, jac_ref=np.zeros((4, 4)))
    # ∂ₓF = I at every point: I - ∂ₓF singular, the implicit estimator does not exist
    with pytest.warns(RuntimeWarning, match="implicit Jacobian is not finite at k = \\[1, 2\\]"):
        res = estimator_errors(lambda x, th: x + 0.0 * th, X0, THETA, [1, 2], modes=("implicit", "one_step"),
                               x_ref=X0, jac_ref=np.zeros((4, 4)))
    assert np.all(np.isnan(res.jacobian_error["implicit"])) and np.all(res.jacobian_error["one_step"] == 0.0)

"""The runner: trajectories, last iterates, freezing with tol, divergence and structure errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import IterationMap, fixed_point_residual, gradient_descent, run, solve


def _quadratic_gd(step=0.1):
    # f(x, θ) = ½ xᵀ diag(h) x − bᵀx, minimiser b/h
    return gradient_descent(lambda x, th: th["h"] * x - th["b"], step)


THETA = dict(h=jnp.array([1.0, 2.0, 4.0]), b=jnp.array([1.0, -1.0, 2.0]))


def test_trajectory_matches_python_loop():
    F = _quadratic_gd()
    x0 = jnp.array([3.0, 0.0, -1.0])
    traj = run(F, x0, THETA, 25)
    assert traj.shape == (26, 3)
    x = x0
    np.testing.assert_array_equal(traj[0], x0)
    for k in range(25):
        x = F(x, THETA)
        np.testing.assert_allclose(traj[k + 1], x, rtol=1e-14)


def test_run_is_jittable_and_differentiable():
    F = _quadratic_gd()
    x0 = jnp.zeros(3)
    traj = jax.jit(run, static_argnums=(0, 3))(F, x0, THETA, 10)
    np.testing.assert_allclose(traj, run(F, x0, THETA, 10))
    # after many steps the derivative of x_K in b is diag(1/h) (implicit function theorem);
    # reverse and forward mode agree
    last = lambda th: run(F, x0, th, 400)[-1]
    Jf = jax.jacfwd(last)(THETA)["b"]
    Jr = jax.jacrev(last)(THETA)["b"]
    np.testing.assert_allclose(Jf, np.diag(1 / np.asarray(THETA["h"])), atol=1e-10)
    np.testing.assert_allclose(Jr, Jf, atol=1e-12)


def test_solve_reports_last_iterate_and_residual():
    F = _quadratic_gd()
    sol = solve(F, jnp.zeros(3), THETA, 500)
    np.testing.assert_allclose(sol.state, THETA["b"] / THETA["h"], atol=1e-12)
    np.testing.assert_allclose(sol.primal, sol.state)
    assert sol.residual < 1e-12
    np.testing.assert_allclose(sol.residual, fixed_point_residual(F, sol.state, THETA))
    np.testing.assert_allclose(solve(F, jnp.zeros(3), THETA, 37).state, run(F, jnp.zeros(3), THETA, 37)[-1])
    # the result is a pytree: it passes through jit
    out = jax.jit(lambda th: solve(F, jnp.zeros(3), th, 50))(THETA)
    np.testing.assert_allclose(out.state, solve(F, jnp.zeros(3), THETA, 50).state)


def test_tol_freezes_the_iteration():
    F = _quadratic_gd()
    traj = run(F, jnp.zeros(3), THETA, 300, tol=1e-6)
    steps = np.linalg.norm(np.diff(np.asarray(traj), axis=0), axis=1)
    k = int(np.argmax(steps == 0))
    assert 0 < k < 300 and np.all(steps[k:] == 0)
    assert steps[k - 1] <= 1e-6 < steps[k - 2]
    assert solve(F, jnp.zeros(3), THETA, 300, tol=1e-6).residual <= 1e-6


def test_pytree_state():
    F = IterationMap(lambda s, th: dict(a=0.5 * s["a"] + th, b=s["b"] * 0.5), name="halve")
    traj = run(F, dict(a=jnp.ones(2), b=jnp.array(4.0)), 1.0, 60)
    np.testing.assert_allclose(traj["a"][-1], [2.0, 2.0])
    assert traj["b"].shape == (61,)


def test_integer_x0_is_promoted():
    traj = run(_quadratic_gd(), jnp.array([1, 2, 3]), THETA, 2)
    assert traj.dtype == jnp.float64


def test_divergence_names_the_step_and_the_reason():
    F = _quadratic_gd(step=1.0)  # L = 4 > 2/step
    with pytest.raises(ValueError, match=r"iteration diverged at step \d+") as info:
        run(F, jnp.ones(3), THETA, 2000)
    msg = str(info.value)
    assert "2/L" in msg and "L ≈ 4" in msg and "step = 1" in msg
    k = int(msg.split("step ")[1].split(":")[0])
    # |1 − 4| = 3 per step from ‖x_1‖ = O(1): ‖x_k‖ passes 1e10 × the initial scale after
    # log(1e10)/log 3 ≈ 21 more steps, long before float64 overflows (≈ 646 steps)
    assert 20 <= k <= 25 and "max_growth" in msg
    with pytest.raises(ValueError, match="iteration diverged at step"):
        solve(F, jnp.ones(3), THETA, 2000)
    # without the growth criterion only the overflow to inf is caught
    with pytest.raises(ValueError, match="iteration diverged at step") as info:
        run(F, jnp.ones(3), THETA, 2000, max_growth=None)
    k = int(str(info.value).split("step ")[1].split(":")[0])
    assert 600 < k < 700 and "non-finite" in str(info.value)


def test_growth_without_overflow_is_divergence_and_is_reported_under_jit():
    # x_k = 2^k x_0 never overflows in 300 steps (2^300 ≈ 2e90) but is plainly divergent
    F = lambda x, th: 2.0 * x + th  # noqa: E731
    with pytest.raises(ValueError, match=r"iteration diverged at step 3[0-9]:.*max_growth"):
        run(F, jnp.ones(2), 0.0, 300)
    with pytest.raises(ValueError, match="iteration diverged at step 3[0-9]"):
        solve(F, jnp.ones(2), 0.0, 300)
    with pytest.warns(RuntimeWarning, match="iteration diverged"):
        jax.block_until_ready(jax.jit(lambda t: run(F, jnp.ones(2), t, 300))(0.0))
    with pytest.warns(RuntimeWarning, match="iteration diverged within steps=300"):
        jax.block_until_ready(jax.jit(lambda t: solve(F, jnp.ones(2), t, 300).state)(0.0))
    # a slowly converging map travels far from a small start without being called divergent
    G = lambda x, th: 0.999 * x + th  # noqa: E731 (x̄ = 1000·θ = 1e3 × ‖x_1‖)
    assert float(solve(G, jnp.zeros(2), 1.0, 20000).state[0]) == pytest.approx(1000.0, rel=1e-6)
    with pytest.raises(ValueError, match="max_growth"):
        run(G, jnp.zeros(2), 1.0, 3, max_growth=0.5)


def test_divergence_of_a_plain_function_and_nonfinite_x0():
    # x_k = 1 + k, and x_4 = F(4) = nan
    with pytest.raises(ValueError, match="iteration diverged at step 4:"):
        run(lambda x, th: jnp.where(x > 3.5, jnp.nan, x + 1.0), jnp.array(1.0), None, 5)
    with pytest.raises(ValueError, match="x0 is not finite"):
        run(_quadratic_gd(), jnp.array([jnp.nan, 0.0, 0.0]), THETA, 3)


def test_divergence_is_reported_under_jit():
    F = _quadratic_gd(step=1.0)
    with pytest.warns(RuntimeWarning, match=r"iteration diverged at step 2\d"):
        traj = jax.block_until_ready(jax.jit(run, static_argnums=(0, 3))(F, jnp.ones(3), THETA, 2000))
    assert not np.all(np.isfinite(traj))


def test_bad_structures():
    F = _quadratic_gd()
    with pytest.raises(TypeError, match="shape"):
        run(IterationMap(lambda x, th: x[:2]), jnp.ones(3), None, 3)
    with pytest.raises(TypeError, match="structure"):
        run(IterationMap(lambda x, th: (x, x)), jnp.ones(3), None, 3)
    with pytest.raises(TypeError, match="missing the key 'b'"):
        run(F, jnp.ones(3), dict(h=THETA["h"]), 3)
    with pytest.raises(ValueError, match="steps"):
        run(F, jnp.ones(3), THETA, -1)
    with pytest.raises(ValueError, match="steps"):
        run(F, jnp.ones(3), THETA, 2.5)


def test_no_growth_check_at_a_zero_start_is_no_false_alarm():
    # x_0 = x_1 = 0 (scale 0) with max_growth=None: only inf/nan count, eagerly and under jit
    G = lambda x, th: 0.0 * x  # noqa: E731
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in (lambda t: solve(G, jnp.zeros(2), t, 30, max_growth=None).state,
                  jax.jit(lambda t: solve(G, jnp.zeros(2), t, 30, max_growth=None).state),
                  jax.jit(lambda t: run(G, jnp.zeros(2), t, 30, max_growth=None))):
            np.testing.assert_array_equal(jax.block_until_ready(f(1.0)), 0.0)

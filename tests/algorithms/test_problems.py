"""Ready-made problems converge to their cvxpy references; θ validation; derivatives of the limit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import graphical_lasso, lasso, run, solve, tv_denoising


def _lasso_problem(seed=0, lam=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(25, 10))
    y = X @ (rng.normal(size=10) * (rng.uniform(size=10) < 0.4)) + 0.1 * rng.normal(size=25)
    return lasso(X, y, lam)


def _tv_problem(lam=0.4):
    rng = np.random.default_rng(1)
    y = np.repeat([0.0, 1.5, -0.5, 0.7], 6) + 0.2 * rng.normal(size=24)
    return tv_denoising(y, lam, rho=1.0)


def _glasso_problem(lam=0.15):
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(40, 5)) @ np.linalg.cholesky(np.eye(5) + 0.5 * np.eye(5, k=1) + 0.5 * np.eye(5, k=-1)).T
    return graphical_lasso(np.cov(Z.T), lam)


def test_lasso_matches_reference():
    P = _lasso_problem()
    sol = solve(P.F, P.x0, P.theta, 5000)
    ref = P.reference(P.theta)
    np.testing.assert_allclose(sol.primal, ref, atol=1e-8)
    assert abs(float(P.objective(sol.primal, P.theta)) - float(P.objective(jnp.asarray(ref), P.theta))) < 1e-9
    assert 0 < np.sum(np.abs(ref) > 1e-8) < 10  # a genuinely sparse solution


def test_graphical_lasso_matches_reference():
    P = _glasso_problem()
    sol = solve(P.F, P.x0, P.theta, 1000)
    assert sol.residual < 1e-10
    Theta = np.asarray(sol.primal)
    ref = P.reference(P.theta)
    np.testing.assert_allclose(Theta, ref, atol=1e-7)
    np.testing.assert_allclose(Theta, Theta.T, atol=1e-12)
    assert np.linalg.eigvalsh(Theta).min() > 0
    assert np.sum(np.abs(ref) < 1e-8) > 0  # some off-diagonal zeros


def test_tv_denoising_matches_reference():
    P = _tv_problem()
    sol = solve(P.F, P.x0, P.theta, 3000)
    assert sol.residual < 1e-10
    np.testing.assert_allclose(sol.primal, P.reference(P.theta), atol=1e-8)


def test_tv_denoising_derivative_is_the_segment_average():
    """At a solution with stable jumps, x̄ is the mean of y on each constant segment (shifted by
    ±λ terms independent of y), so ∂x̄/∂y averages y within segments."""
    P = _tv_problem()
    x_of = lambda th: solve(P.F, P.x0, th, 3000).primal
    x = np.asarray(x_of(P.theta))
    J = np.asarray(jax.jacfwd(lambda y: x_of({**P.theta, "y": y}))(P.theta["y"]))
    jumps = np.flatnonzero(np.abs(np.diff(x)) > 1e-7) + 1
    expected = np.zeros_like(J)
    for seg in np.split(np.arange(x.size), jumps):
        expected[np.ix_(seg, seg)] = 1.0 / seg.size
    np.testing.assert_allclose(J, expected, atol=1e-6)


def test_lasso_derivative_in_lambda():
    """On the support S with signs σ: w_S = (X_SᵀX_S)⁻¹(X_Sᵀy − λσ), so ∂w_S/∂λ = −(X_SᵀX_S)⁻¹σ."""
    P = _lasso_problem(3)
    w_of = lambda lam: solve(P.F, P.x0, {**P.theta, "lam": lam}, 5000).primal
    w = np.asarray(w_of(P.theta["lam"]))
    S = np.abs(w) > 1e-8
    XS = np.asarray(P.theta["X"])[:, S]
    d = np.asarray(jax.jacfwd(w_of)(P.theta["lam"]))
    np.testing.assert_allclose(d[S], -np.linalg.solve(XS.T @ XS, np.sign(w[S])), atol=1e-7)
    np.testing.assert_allclose(d[~S], 0.0, atol=1e-12)


@pytest.mark.parametrize("make", [_lasso_problem, _tv_problem, _glasso_problem])
def test_missing_theta_keys_are_named(make):
    P = make()
    key = "lam"
    bad = {k: v for k, v in P.theta.items() if k != key}
    with pytest.raises(TypeError, match=r"missing the keys \['lam'\]"):
        run(P.F, P.x0, bad, 3)
    with pytest.raises(TypeError, match=r"missing the keys \['lam'\]"):
        P.reference(bad)
    with pytest.raises(TypeError, match="must be a dict"):
        run(P.F, P.x0, [1.0, 2.0], 3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: lasso(np.ones((3, 2)), np.ones(3), -1.0), "lam"),
        (lambda: lasso(np.ones((3, 2)), np.ones(4), 1.0), "X must be"),
        (lambda: graphical_lasso(np.array([[1.0, 0.2], [0.0, 1.0]]), 0.1), "symmetric"),
        (lambda: graphical_lasso(np.ones((2, 3)), 0.1), "square"),
        (lambda: graphical_lasso(np.eye(2), -0.1), "lam"),
        (lambda: tv_denoising(np.ones(1), 0.1), "length"),
        (lambda: tv_denoising(np.ones(5), 0.1, rho=0.0), "rho"),
        (lambda: tv_denoising(np.ones(5), -0.1), "lam"),
    ],
)
def test_bad_problem_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()

"""GD, forward-backward, Douglas-Rachford and ADMM converge to known solutions."""

import dataclasses

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import (
    admm,
    douglas_rachford,
    forward_backward,
    gradient_descent,
    projection_box,
    projection_non_negative,
    prox_lasso,
    run,
    solve,
)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Quadratic:
    """f(x, θ) = ½ xᵀQx − bᵀx."""

    Q: jax.Array
    b: jax.Array


def _data(seed=0, n=30, p=8):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    y = X @ (rng.normal(size=p) * (rng.uniform(size=p) < 0.5)) + 0.1 * rng.normal(size=n)
    return jnp.asarray(X), jnp.asarray(y)


def _lasso_cvxpy(X, y, lam):
    w = cp.Variable(X.shape[1])
    obj = 0.5 * cp.sum_squares(np.asarray(X) @ w - np.asarray(y)) + lam * cp.norm1(w)
    cp.Problem(cp.Minimize(obj)).solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return w.value


def test_gradient_descent_quadratic_with_dataclass_theta():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(5, 5))
    th = Quadratic(Q=jnp.asarray(M @ M.T + np.eye(5)), b=jnp.asarray(rng.normal(size=5)))
    L = float(np.linalg.eigvalsh(th.Q).max())
    F = gradient_descent(lambda x, t: t.Q @ x - t.b, 1.0 / L)
    sol = solve(F, jnp.zeros(5), th, 3000)
    np.testing.assert_allclose(sol.state, np.linalg.solve(th.Q, th.b), atol=1e-10)
    # the derivative of the limit in b is Q⁻¹
    J = jax.jacfwd(lambda t: solve(F, jnp.zeros(5), t, 3000).state)(th).b
    np.testing.assert_allclose(J, np.linalg.inv(th.Q), atol=1e-8)


def test_gradient_descent_step_as_a_parameter():
    """The slides' F(x, ρ) = x − ρ∇h(x): the step is a leaf of θ and can be differentiated."""
    F = gradient_descent(lambda x, th: 2.0 * x - 2.0, step=lambda th: th["rho"])  # h = (x − 1)²
    x1 = lambda th: F(jnp.array([3.0]), th)
    np.testing.assert_allclose(x1(dict(rho=0.25)), [2.0])
    np.testing.assert_allclose(jax.grad(lambda th: x1(th)[0])(dict(rho=0.25))["rho"], -4.0)


def test_projected_gradient_nonnegative_and_box_least_squares():
    X, y = _data(1)
    Xn, yn = np.asarray(X), np.asarray(y)
    L = float(np.linalg.norm(Xn, 2) ** 2)
    grad = lambda w, th: th["X"].T @ (th["X"] @ w - th["y"])
    th = dict(X=X, y=y)
    for proj, cons in [
        (lambda v, th, s: projection_non_negative(v), lambda w: [w >= 0]),
        (lambda v, th, s: projection_box(v, -0.2, 0.3), lambda w: [w >= -0.2, w <= 0.3]),
    ]:
        F = forward_backward(grad, proj, 1.0 / L)
        w_hat = solve(F, jnp.zeros(X.shape[1]), th, 5000).state
        w = cp.Variable(X.shape[1])
        cp.Problem(cp.Minimize(0.5 * cp.sum_squares(Xn @ w - yn)), cons(w)).solve(solver=cp.CLARABEL)
        np.testing.assert_allclose(w_hat, w.value, atol=1e-6)


def test_forward_backward_lasso_and_its_jacobian():
    X, y = _data(2)
    lam = 2.0
    L = float(np.linalg.norm(np.asarray(X), 2) ** 2)
    F = forward_backward(
        lambda w, th: th["X"].T @ (th["X"] @ w - th["y"]),
        lambda v, th, s: prox_lasso(v, th["lam"], s),
        step=lambda th: th["step"],  # a leaf of θ (here not differentiated)
    )
    th = dict(X=X, y=y, lam=jnp.asarray(lam), step=jnp.asarray(1.0 / L))
    w = solve(F, jnp.zeros(X.shape[1]), th, 4000).state
    np.testing.assert_allclose(w, _lasso_cvxpy(X, y, lam), atol=1e-8)
    # at a point where the support S is stable: dw_S/dy = (X_Sᵀ X_S)⁻¹ X_Sᵀ, dw_{S^c}/dy = 0
    S = np.abs(np.asarray(w)) > 1e-8
    J = jax.jacfwd(lambda yy: solve(F, jnp.zeros(X.shape[1]), {**th, "y": yy}, 4000).state)(y)
    XS = np.asarray(X)[:, S]
    np.testing.assert_allclose(J[S], np.linalg.solve(XS.T @ XS, XS.T), atol=1e-7)
    np.testing.assert_allclose(J[~S], 0.0, atol=1e-12)


def _ridge_prox(X, y):
    """prox_{s f} for f = ½‖Xw − y‖²: (I + sXᵀX)⁻¹(v + sXᵀy)."""

    def prox(v, th, s):
        X, y = th["X"], th["y"]
        return jnp.linalg.solve(jnp.eye(X.shape[1]) + s * X.T @ X, v + s * X.T @ y)

    return prox


@pytest.mark.parametrize("relax", [1.0, 1.6])
def test_douglas_rachford_lasso(relax):
    X, y = _data(3)
    lam = 1.5
    F = douglas_rachford(_ridge_prox(X, y), lambda v, th, s: prox_lasso(v, th["lam"], s), step=0.1, relax=relax)
    th = dict(X=X, y=y, lam=jnp.asarray(lam))
    sol = solve(F, jnp.zeros(X.shape[1]), th, 3000)
    assert sol.residual < 1e-10
    np.testing.assert_allclose(sol.primal, _lasso_cvxpy(X, y, lam), atol=1e-8)
    np.testing.assert_allclose(sol.primal, F.primal(sol.state, th))


def test_admm_lasso_consensus_and_scaled_constraint():
    X, y = _data(4)
    lam = 1.0
    rho = 2.0
    th = dict(X=X, y=y, lam=jnp.asarray(lam))
    p = X.shape[1]

    def x_update(v, th, r):  # argmin ½‖Xx − y‖² + (r/2)‖x − v‖²  (A = I)
        return jnp.linalg.solve(th["X"].T @ th["X"] + r * jnp.eye(p), th["X"].T @ th["y"] + r * v)

    # x − z = 0 (B = −I): z_update(w) = prox_{λ/ρ‖·‖₁}(−w)
    F = admm(x_update, lambda w, th, r: prox_lasso(-w, th["lam"] / r), rho=rho)
    state0 = F.init(jnp.zeros(p))
    assert state0.shape == (2 * p,)
    sol = solve(F, state0, th, 3000)
    ref = _lasso_cvxpy(X, y, lam)
    np.testing.assert_allclose(sol.primal, ref, atol=1e-8)
    np.testing.assert_allclose(sol.state[:p], ref, atol=1e-8)  # z = x at the solution

    # x − 2z = 0 (B = −2I given as a matrix, c = 0 given): x̄ solves ½‖Xx − y‖² + λ‖x/2‖₁
    Bm = -2.0 * jnp.eye(p)

    def z_update2(w, th, r):  # argmin λ‖z‖₁ + (r/2)‖−2z − w‖² = prox_{λ/(4r)}(−w/2)
        return prox_lasso(-w / 2.0, th["lam"] / (4.0 * r))

    F2 = admm(x_update, z_update2, A=None, B=Bm, c=jnp.zeros(p), rho=rho)
    sol2 = solve(F2, F2.init(jnp.zeros(p)), th, 3000)
    np.testing.assert_allclose(sol2.primal, _lasso_cvxpy(X, y, lam / 2), atol=1e-7)


def test_admm_init_sizes_u_from_the_constraints():
    D = jnp.asarray(np.eye(5, k=1)[:-1] - np.eye(5)[:-1])  # 4 constraints, x of size 5
    F = admm(lambda v, th, r: v[:5], lambda w, th, r: -w, A=D, B=-jnp.eye(4))
    assert F.init(jnp.zeros(4)).shape == (8,)
    assert F.init(jnp.zeros(4), u0=jnp.ones(4))[4:].sum() == 4.0
    G = admm(lambda v, th, r: v, lambda w, th, r: -w, B=lambda th: th["B"])
    with pytest.raises(ValueError, match="pass u0 or theta"):
        G.init(jnp.zeros(3))
    assert G.init(jnp.zeros(3), theta=dict(B=jnp.ones((2, 3)))).shape == (5,)


def test_gradient_descent_divergence_message():
    F = gradient_descent(lambda x, th: th * x, 0.5)
    with pytest.raises(ValueError, match=r"diverged at step \d+.*L ≈ 5.*2/L ≈ 0.4"):
        run(F, jnp.ones(2), 5.0, 3000)


def test_forward_backward_divergence_message():
    F = forward_backward(lambda x, th: th * x, lambda v, th, s: prox_lasso(v, 0.0, s), 1.0)
    with pytest.raises(ValueError, match=r"diverged at step \d+.*forward-backward needs step < 2/L"):
        run(F, jnp.ones(2), 4.0, 3000)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: gradient_descent(lambda x, th: x, 0.0), "step"),
        (lambda: gradient_descent(lambda x, th: x, -1.0), "step"),
        (lambda: forward_backward(lambda x, th: x, lambda v, th, s: v, -0.1), "step"),
        (lambda: douglas_rachford(lambda v, th, s: v, lambda v, th, s: v, 0.0), "step"),
        (lambda: douglas_rachford(lambda v, th, s: v, lambda v, th, s: v, 1.0, relax=2.0), "relax"),
        (lambda: admm(lambda v, th, r: v, lambda w, th, r: w, rho=0.0), "rho"),
    ],
)
def test_bad_algorithm_parameters(make, name):
    with pytest.raises(ValueError, match=name):
        make()

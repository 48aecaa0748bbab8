"""Support-restricted implicit differentiation at prox / projection fixed points, against closed forms."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import algorithms
from algorithms import (
    CG,
    GMRES,
    custom_fixed_point,
    custom_root,
    free_coordinates,
    implicit_plan,
    iterate,
    proximal_gradient,
    restricted_solve,
)

EPS = np.finfo(np.float64).eps
RNG = np.random.default_rng(11)
N_SAMPLES, N_FEATURES = 40, 120
X = jnp.asarray(RNG.normal(size=(N_SAMPLES, N_FEATURES)) / np.sqrt(N_SAMPLES))
W_TRUE = np.zeros(N_FEATURES)
W_TRUE[:8] = RNG.normal(size=8) * 3
Y = jnp.asarray(np.asarray(X) @ W_TRUE + 0.05 * RNG.normal(size=N_SAMPLES))
LAM = 0.1
PROB = algorithms.lasso(X, Y, LAM)
STEPS = 4000


def _lasso_closed_form(w):
    """d w̄/dλ for ½‖Xw - y‖² + λ‖w‖₁: -(X_Sᵀ X_S)⁻¹ sign(w_S) on S = supp(w), 0 off it."""
    w = np.asarray(w)
    S = np.flatnonzero(w)
    XS = np.asarray(X)[:, S]
    G = XS.T @ XS
    J = np.zeros_like(w)
    J[S] = -np.linalg.solve(G, np.sign(w[S]))
    return J, S, np.linalg.cond(G)


def _dw_dlam(lam, **kw):
    return iterate(PROB.F, PROB.x0, dict(PROB.theta, lam=lam), STEPS, mode="implicit", **kw)


@pytest.mark.parametrize("solve", ["auto", "lu", CG(tol=1e-13), GMRES(tol=1e-13)])
def test_lasso_hypergradient_equals_closed_form_on_the_support(solve):
    lam = jnp.asarray(LAM)
    w = _dw_dlam(lam)
    J_ref, S, kappa = _lasso_closed_form(w)
    assert 3 <= S.size < N_SAMPLES  # a genuinely sparse solution with X_S of full column rank
    floor = max(1e-10, 100 * EPS * kappa * np.linalg.norm(J_ref))
    for J in (jax.jit(jax.jacfwd(lambda t: _dw_dlam(t, solve=solve, tol=1e-13)))(lam),
              jax.jit(jax.jacrev(lambda t: _dw_dlam(t, solve=solve, tol=1e-13)))(lam)):
        J = np.asarray(J)
        assert np.max(np.abs(J - J_ref)) <= floor, np.max(np.abs(J - J_ref))
        assert np.all(J[np.setdiff1d(np.arange(N_FEATURES), S)] == 0.0)  # exactly zero off the support


def test_default_plan_for_the_lasso_is_restricted_cg():
    plan = implicit_plan(PROB.F, PROB.x0, PROB.theta)
    assert plan == dict(system="fixed point (I - ∂ₓF) u = ∂_θF θ̇", n=N_FEATURES, symmetric=True,
                        support="auto", solver="dense LU on S for |S| ≤ 32 (batched JVPs), else CG()")


def test_free_coordinates_are_the_support_and_restricted_solve_is_the_closed_form():
    lam = jnp.asarray(LAM)
    w = _dw_dlam(lam)
    th = dict(PROB.theta, lam=lam)
    g_val, matvec = jax.linearize(lambda v: v - PROB.F(v, th), w)
    free = np.asarray(free_coordinates(matvec, w))
    np.testing.assert_array_equal(free, np.asarray(w) != 0)
    b = jax.jvp(lambda t: PROB.F(w, dict(th, lam=t)), (lam,), (1.0,))[1]
    J_ref, _, _ = _lasso_closed_form(w)
    u = restricted_solve(matvec, b, jnp.asarray(free), solve=CG(tol=1e-13), symmetric=True)
    assert np.max(np.abs(np.asarray(u) - J_ref)) <= 1e-10


def test_vmap_over_lambda_and_a_user_mask():
    lams = jnp.asarray([0.08, 0.1, 0.12])
    Js = jax.jit(jax.vmap(jax.jacfwd(lambda t: _dw_dlam(t))))(lams)
    ws = jax.vmap(_dw_dlam)(lams)
    for J, w in zip(Js, ws):
        J_ref, _, kappa = _lasso_closed_form(w)
        assert np.max(np.abs(np.asarray(J) - J_ref)) <= max(1e-10, 100 * EPS * kappa * np.linalg.norm(J_ref))
    # a user mask: the same derivative
    J_mask = jax.jacrev(lambda t: _dw_dlam(t, support=lambda w, th: w != 0))(jnp.asarray(LAM))
    J_ref, _, _ = _lasso_closed_form(_dw_dlam(jnp.asarray(LAM)))
    assert np.max(np.abs(np.asarray(J_mask) - J_ref)) <= 1e-10
    # a wrong mask (declares a free coordinate inactive) is reported
    with pytest.warns(RuntimeWarning, match="`support` declares coordinates inactive"):
        jax.block_until_ready(jax.jacrev(lambda t: _dw_dlam(t, support=lambda w, th: w > 0))(jnp.asarray(LAM)))


def test_root_form_with_a_support_callable():
    # the proximal-gradient residual G = prox(x - s∇f) - x (jaxopt paper eq. (7)) restricted to S
    L = float(np.linalg.norm(np.asarray(X), 2) ** 2)
    soft = lambda v, lam, s: jnp.sign(v) * jnp.maximum(jnp.abs(v) - lam * s, 0.0)  # noqa: E731
    G = proximal_gradient(lambda w, _: 0.5 * jnp.sum((X @ w - Y) ** 2), soft, stepsize=1.0 / L)
    w_bar = _dw_dlam(jnp.asarray(LAM))

    def solver(init, lam):
        return jax.lax.stop_gradient(w_bar) + 0.0 * lam

    J_ref, _, _ = _lasso_closed_form(w_bar)
    sol = custom_root(lambda w, lam: G(w, (None, lam)), support=lambda w, lam: w != 0, solve=GMRES(tol=1e-13))(solver)
    J = jax.jacrev(sol, argnums=1)(jnp.zeros(N_FEATURES), jnp.asarray(LAM))
    assert np.max(np.abs(np.asarray(J) - J_ref)) <= 1e-10
    with pytest.raises(ValueError, match="support='auto'.*fixed-point form"):
        custom_root(G, support="auto")
    with pytest.raises(ValueError, match="`support` must be"):
        custom_fixed_point(lambda x, t: x, support="yes")


def test_zero_rows_with_a_parameter_dependence_are_exact():
    # rows 0, 1 of ∂ₓF are zero but depend on θ: u_𝒜 = ∂_θF_𝒜 θ̇ feeds the free block
    C = jnp.asarray([[0.3, 0.1], [0.2, 0.4]])

    def F(x, th):
        a = jnp.stack([th[0], 2.0 * th[1]])
        rest = 0.5 * x[2:] + C @ x[:2] * 0.0 + jnp.asarray([[1.0, -1.0], [0.5, 2.0]]) @ x[:2] * 0.25 + th[2]
        return jnp.concatenate([a, rest])

    th = jnp.asarray([1.0, -0.5, 0.3])
    x0 = jnp.zeros(4)
    J_full = jax.jacfwd(lambda t: iterate(F, x0, t, 200, mode="implicit", support=None))(th)
    # closed form: x̄_𝒜 = (θ₀, 2θ₁), x̄_S = 2(K x̄_𝒜/4 + θ₂) with K the coupling matrix
    K = np.asarray([[1.0, -1.0], [0.5, 2.0]])
    dA = np.asarray([[1.0, 0, 0], [0, 2.0, 0]])
    dS = 2 * (K @ dA / 4 + np.asarray([[0, 0, 1.0], [0, 0, 1.0]]))
    J_ref = np.vstack([dA, dS])
    for support in ("auto", None):
        for jac in (jax.jacfwd, jax.jacrev):
            J = jac(lambda t: iterate(F, x0, t, 200, mode="implicit", support=support))(th)
            assert np.max(np.abs(np.asarray(J) - J_ref)) <= 1e-13
    assert np.max(np.abs(np.asarray(J_full) - J_ref)) <= 1e-13


def test_projected_gradient_on_the_nonnegative_orthant():
    # min ½‖x - θ‖²_H over x ≥ 0 with H SPD: active coordinates sit at 0 with a positive gradient
    A = RNG.normal(size=(6, 6))
    H = jnp.asarray(A @ A.T + 6 * np.eye(6))
    th = jnp.asarray([1.0, -2.0, 0.5, -1.0, 2.0, 0.3])
    step = 1.0 / float(np.linalg.eigvalsh(np.asarray(H))[-1])
    F = lambda x, t: jnp.maximum(x - step * (H @ (x - t)), 0.0)  # noqa: E731
    x = iterate(F, jnp.zeros(6), th, 3000)
    S = np.flatnonzero(np.asarray(x) > 0)
    Hn = np.asarray(H)
    # on S: H_SS (x_S - θ_S) - H_S𝒜 θ_𝒜 = 0 ⇒ dx_S/dθ = [I_SS | H_SS⁻¹ H_S𝒜] (columns of S and 𝒜)
    J_ref = np.zeros((6, 6))
    Acal = np.setdiff1d(np.arange(6), S)
    J_ref[np.ix_(S, S)] = np.eye(S.size)
    J_ref[np.ix_(S, Acal)] = np.linalg.solve(Hn[np.ix_(S, S)], Hn[np.ix_(S, Acal)])
    assert 0 < S.size < 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        J = jax.jacrev(lambda t: iterate(F, jnp.zeros(6), t, 3000, mode="implicit"))(th)
    assert np.max(np.abs(np.asarray(J) - J_ref)) <= max(1e-12, 100 * EPS * np.linalg.cond(Hn))


def test_dense_block_on_the_support_matches_the_krylov_solve_and_the_closed_form(monkeypatch):
    from algorithms import Auto
    from algorithms import _restricted as R

    lam = jnp.asarray(LAM)
    w = _dw_dlam(lam)
    J_ref, S, kappa = _lasso_closed_form(w)
    floor = max(1e-10, 100 * EPS * kappa * np.linalg.norm(J_ref))
    assert R.support_sizes(N_FEATURES, "auto", prox=True) and not R.support_sizes(N_FEATURES, "auto")
    assert not R.support_sizes(N_FEATURES, CG(), prox=True)
    assert not R.support_sizes(N_FEATURES, Auto(support_dense=False), prox=True)
    results = {}
    for label, sizes in (("dense", (64,)), ("fallback", (2, 4))):  # (2, 4): |S| > 4 → CG
        monkeypatch.setattr(R, "SUPPORT_DENSE_SIZES", sizes)
        results[label] = np.asarray(jax.jit(jax.jacrev(_dw_dlam))(lam))
        assert np.max(np.abs(results[label] - J_ref)) <= floor, label
    assert 4 < S.size <= 64  # the fallback really ran CG, the default the dense block
    off = np.setdiff1d(np.arange(N_FEATURES), S)
    assert np.all(results["dense"][off] == 0.0)
    with pytest.raises(TypeError, match="support_dense"):
        Auto(support_dense="yes")

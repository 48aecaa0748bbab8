"""algorithms.iterate: the four estimators on ridge gradient descent, against closed forms."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import DivergenceWarning, IllConditionedWarning, iterate

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(30, 6)))
Y = jnp.asarray(RNG.normal(size=30))
H = X.T @ X
THETA = jnp.asarray([0.5, 1.0, 1.5, 2.0, 0.7, 3.0])
GAMMA = float(1.0 / (np.linalg.eigvalsh(np.asarray(H))[-1] + 3.0))
X0 = jnp.zeros(6)


def F(x, theta):
    """Gradient descent on ridge: F(x, θ) = x - γ(Xᵀ(Xx - y) + θ ∘ x)."""
    return x - GAMMA * (X.T @ (X @ x - Y) + theta * x)


def x_bar(theta):
    return jnp.linalg.solve(H + jnp.diag(theta), X.T @ Y)


def jac_bar(theta):
    """Closed form: J = -(H + diag θ)⁻¹ diag(x̄)."""
    return -jnp.linalg.solve(H + jnp.diag(theta), jnp.diag(x_bar(theta)))


def iterates(theta, k):
    """x_0, ..., x_k computed in NumPy (independent of the code under test)."""
    Xn, yn, th = np.asarray(X), np.asarray(Y), np.asarray(theta)
    xs = [np.asarray(X0)]
    for _ in range(k):
        x = xs[-1]
        xs.append(x - GAMMA * (Xn.T @ (Xn @ x - yn) + th * x))
    return xs


def jac(mode, k, **kw):
    return np.asarray(jax.jit(jax.jacfwd(lambda th: iterate(F, X0, th, k, mode=mode, **kw)))(THETA))


def test_forward_value_is_the_same_for_every_mode():
    ref = iterates(THETA, 37)[-1]
    for mode, kw in [("autodiff", {}), ("implicit", {}), ("one_step", {}), ("truncated", {"truncate": 5})]:
        np.testing.assert_allclose(iterate(F, X0, THETA, 37, mode=mode, **kw), ref, rtol=1e-13, atol=1e-14)


def test_autodiff_is_the_piggyback_recursion_and_converges():
    A = np.eye(6) - GAMMA * (np.asarray(H) + np.diag(np.asarray(THETA)))
    xs = iterates(THETA, 400)
    Jk = np.zeros((6, 6))
    errs = []
    for k in range(1, 401):
        Jk = A @ Jk - GAMMA * np.diag(xs[k - 1])  # J_k = ∂ₓF J_{k-1} + ∂_θF(x_{k-1})
        if k in (7, 400):
            np.testing.assert_allclose(jac("autodiff", k), Jk, atol=1e-13)
        if k in (25, 50, 100, 400):
            errs.append(np.linalg.norm(Jk - jac_bar(THETA), 2))
    assert all(b < a for a, b in zip(errs, errs[1:]))
    assert errs[-1] < 1e-9


def test_implicit_is_exact_formula_at_every_iterate_and_exact_at_the_solution():
    for k in (30,):
        xk = iterates(THETA, k)[-1]
        expected = -np.linalg.solve(np.asarray(H) + np.diag(np.asarray(THETA)), np.diag(xk))
        np.testing.assert_allclose(jac("implicit", k), expected, atol=1e-12)
    np.testing.assert_allclose(jac("implicit", 600), jac_bar(THETA), atol=1e-12)
    np.testing.assert_allclose(
        jax.jit(jax.jacrev(lambda th: iterate(F, X0, th, 600, mode="implicit")))(THETA),
        jac_bar(THETA), atol=1e-12)


def test_one_step_within_corollary_1_bound():
    Jbar = np.asarray(jac_bar(THETA))
    xbar = np.asarray(x_bar(THETA))
    A = np.eye(6) - GAMMA * (np.asarray(H) + np.diag(np.asarray(THETA)))
    rho = np.linalg.norm(A, 2)  # ‖∂ₓF‖: F is affine in x
    L_F = GAMMA * np.max(np.abs(xbar))  # ‖∂_θF(x̄, θ)‖ = ‖γ diag(x̄)‖
    L_J = GAMMA  # ‖∂_θF(x) - ∂_θF(x')‖ = γ‖diag(x - x')‖ ≤ γ‖x - x'‖
    assert rho < 1
    xs = iterates(THETA, 300)
    for k in (1, 10, 300):
        err = np.linalg.norm(jac("one_step", k) - Jbar, 2)
        bound = rho * L_F / (1 - rho) + L_J * np.linalg.norm(xs[k - 1] - xbar)
        assert err <= bound * (1 + 1e-12), (k, err, bound)
        np.testing.assert_allclose(jac("one_step", k), -GAMMA * np.diag(xs[k - 1]), atol=1e-15)
    # one-step does not converge to the true Jacobian for a slow contraction (rho ≈ 1)
    assert np.linalg.norm(jac("one_step", 300) - Jbar, 2) > 0.3 * np.linalg.norm(Jbar, 2)


def test_truncated_is_k_step_backprop():
    k, K = 60, 15
    A = np.eye(6) - GAMMA * (np.asarray(H) + np.diag(np.asarray(THETA)))
    xs = iterates(THETA, k)
    Jk = np.zeros((6, 6))
    for i in range(k - K + 1, k + 1):
        Jk = A @ Jk - GAMMA * np.diag(xs[i - 1])
    np.testing.assert_allclose(jac("truncated", k, truncate=K), Jk, atol=1e-13)
    np.testing.assert_allclose(jac("truncated", k, truncate=1), jac("one_step", k), atol=1e-15)
    # truncate = steps differentiates everything but x0 (constant here): equals autodiff
    np.testing.assert_allclose(jac("truncated", k, truncate=k), jac("autodiff", k), atol=1e-14)


@pytest.mark.parametrize("mode,kw", [("autodiff", {}), ("implicit", {}), ("one_step", {}),
                                     ("truncated", {"truncate": 4})])
def test_jvp_vjp_consistency_and_jit_vmap(mode, kw):
    fun = lambda th: iterate(F, X0, th, 80, mode=mode, **kw)  # noqa: E731
    u = jnp.asarray(RNG.normal(size=6))
    v = jnp.asarray(RNG.normal(size=6))
    jv = jax.jit(lambda th, t: jax.jvp(fun, (th,), (t,))[1])(THETA, v)
    (ujt,) = jax.jit(lambda th, w: jax.vjp(fun, th)[1](w))(THETA, u)
    np.testing.assert_allclose(jnp.vdot(u, jv), jnp.vdot(ujt, v), rtol=1e-12)
    grad = jax.grad(lambda th: jnp.sum(fun(th) ** 2))
    thetas = jnp.stack([THETA, 2 * THETA, THETA + 1.0])
    grads = jax.jit(jax.vmap(grad))(thetas)
    grad_jit = jax.jit(grad)
    for th, g in zip(thetas, grads):
        np.testing.assert_allclose(g, grad_jit(th), atol=1e-12)
    np.testing.assert_allclose(grads[0], 2 * jac(mode, 80, **kw).T @ fun(THETA), atol=1e-12)


def test_pytree_state_and_parameters():
    def G(state, theta):
        x, z = state
        return (F(x, theta["lam"] + theta["shift"][0]), 0.5 * z + theta["shift"])

    theta = {"lam": THETA, "shift": jnp.asarray([0.25])}
    state0 = (X0, jnp.zeros(1))

    def loss(th, mode):
        x, z = iterate(G, state0, th, 700, mode=mode)
        return jnp.sum(x ** 2) + jnp.sum(z)

    g_imp = jax.grad(lambda th: loss(th, "implicit"))(theta)
    g_ad = jax.grad(lambda th: loss(th, "autodiff"))(theta)
    np.testing.assert_allclose(g_imp["lam"], g_ad["lam"], atol=1e-10)
    np.testing.assert_allclose(g_imp["shift"], g_ad["shift"], atol=1e-10)
    J = jac_bar(theta["lam"] + 0.25)
    np.testing.assert_allclose(g_imp["lam"], 2 * J.T @ x_bar(theta["lam"] + 0.25), atol=1e-10)


def test_optimality_fun_root_form():
    grad_f = lambda x, th: X.T @ (X @ x - Y) + th * x  # noqa: E731
    J = jax.jacrev(lambda th: iterate(F, X0, th, 600, mode="implicit", optimality_fun=grad_f,
                                      solve="cholesky"))(THETA)
    np.testing.assert_allclose(J, jac_bar(THETA), atol=1e-12)


def test_reverse_mode_memory_flat_for_implicit_and_one_step():
    def temp_bytes(mode, steps):
        g = jax.jit(jax.grad(lambda th: jnp.sum(iterate(F, X0, th, steps, mode=mode) ** 2)))
        return g.lower(THETA).compile().memory_analysis().temp_size_in_bytes

    for mode in ("implicit", "one_step"):
        assert temp_bytes(mode, 1000) == temp_bytes(mode, 10), mode
    assert temp_bytes("autodiff", 1000) > temp_bytes("autodiff", 10) + 900 * 6 * 8


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_arguments():
    with pytest.raises(ValueError, match="`mode` must be one of"):
        iterate(F, X0, THETA, 5, mode="unrolled")
    with pytest.raises(ValueError, match="truncate.*steps=5"):
        iterate(F, X0, THETA, 5, mode="truncated", truncate=6)
    with pytest.raises(ValueError, match="needs `truncate"):
        iterate(F, X0, THETA, 5, mode="truncated")
    with pytest.raises(ValueError, match="only used with mode='truncated'"):
        iterate(F, X0, THETA, 5, mode="one_step", truncate=2)
    for steps in (0, -3):
        with pytest.raises(ValueError, match="`steps` must be a positive"):
            iterate(F, X0, THETA, steps)
    with pytest.raises(TypeError, match="`steps` must be a Python int"):
        iterate(F, X0, THETA, 5.0)
    with pytest.raises(TypeError, match=r"theta\['n'\].*int"):
        iterate(lambda x, th: x * th["a"], X0, {"a": 0.5, "n": jnp.asarray(3)}, 5)
    with pytest.raises(ValueError, match="`solve` must be one of"):
        iterate(F, X0, THETA, 5, mode="implicit", solve="qr")
    with pytest.warns(UserWarning, match="float32"):
        iterate(F, X0, THETA.astype(jnp.float32), 3)
    # F must map x to a pytree like x (structure, shapes, dtypes): said before any loop is traced
    with pytest.raises(TypeError, match="structure of x0"):
        iterate(lambda x, th: [x[0] * th], (X0,), THETA, 3)
    with pytest.raises(TypeError, match=r"x0 is float64\[6\], F returned float64\[3\]"):
        iterate(lambda x, th: x[:3], X0, THETA, 3)


def test_divergence_reports_the_step():
    G = lambda x, th: 10.0 * x * x + th  # noqa: E731 — blows up to inf after a few steps
    x0, th = jnp.ones(2), jnp.ones(2)
    expected = next(i for i, x in enumerate(_powers(G, x0, th, 40)) if not np.all(np.isfinite(x)))
    for mode in ("autodiff", "one_step", "implicit"):
        with pytest.raises(ValueError, match=f"x_{expected} \\(step {expected} of steps=40\\)"):
            iterate(G, x0, th, 40, mode=mode)
    with pytest.warns(DivergenceWarning, match=f"x_{expected} "):
        jax.block_until_ready(jax.jit(lambda t: iterate(G, x0, t, 40))(th))
    # under vmap only the diverging batch element is reported, with its own first bad step
    batch = jnp.stack([jnp.full(2, -9.0), th])  # θ = -9: x_k = 1 for all k (10·1 - 9 = 1)
    with pytest.warns(DivergenceWarning, match=f"x_{expected} "):
        out = jax.block_until_ready(jax.jit(jax.vmap(lambda t: iterate(G, x0, t, 40)))(batch))
    assert np.all(np.isfinite(out[0])) and not np.all(np.isfinite(out[1]))


def test_healthy_runs_under_jit_warn_nothing_and_keep_fast_dispatch():
    # the run-time checks are pure callbacks guarded by lax.cond: no effects in the compiled program
    f = jax.jit(jax.grad(lambda t: jnp.sum(iterate(F, X0, t, 30, mode="implicit", solve="cg"))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.block_until_ready(f(THETA))
    assert not jax.make_jaxpr(f)(THETA).effects


def _powers(G, x0, th, k):
    xs = [np.asarray(x0)]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(k):
            xs.append(np.asarray(G(jnp.asarray(xs[-1]), th)))
    return xs


def test_singular_implicit_system_reports_condition_number():
    # F(x, θ) = x·1 + 0·θ... : ∂ₓF = I, so I - ∂ₓF = 0
    G = lambda x, th: x + 0.0 * th  # noqa: E731
    with pytest.raises(ValueError, match="I - ∂ₓF.*condition number"):
        jax.jacfwd(lambda th: iterate(G, X0, th, 3, mode="implicit"))(THETA)
    with pytest.warns(IllConditionedWarning, match="condition number"):
        out = jax.jit(jax.jacrev(lambda th: iterate(G, X0, th, 3, mode="implicit")))(THETA)
        jax.block_until_ready(out)


def test_ill_conditioned_implicit_system_warns():
    G = lambda x, th: x * jnp.asarray([0.5] + [1 - 1e-12] * 5) + th  # noqa: E731
    with pytest.warns(IllConditionedWarning, match=r"condition number ≈ [0-9.]+e\+1[01]"):
        jax.jacfwd(lambda th: iterate(G, X0, th, 2, mode="implicit"))(THETA)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.jacfwd(lambda th: iterate(F, X0, th, 2, mode="implicit"))(THETA)

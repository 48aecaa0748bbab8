"""algorithms.iterate: the four estimators on ridge gradient descent, against closed forms."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import DivergenceWarning, IllConditionedWarning, ResidualWarning, iterate

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
    for k in (10,):
        xk = iterates(THETA, k)[-1]
        expected = -np.linalg.solve(np.asarray(H) + np.diag(np.asarray(THETA)), np.diag(xk))
        # x_10 is not yet a fixed point to residual_rtol: the formula holds, with a warning
        with pytest.warns(ResidualWarning, match="not a solution"):
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
        # independent of the number of steps (a few hundred bytes of loop structure aside: the
        # divergence check runs every 16 steps, so runs shorter than that compile a simpler loop)
        t10, t1k, t100k = temp_bytes(mode, 10), temp_bytes(mode, 1000), temp_bytes(mode, 100_000)
        assert t1k == t100k and abs(t1k - t10) <= 1024, (mode, t10, t1k, t100k)
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
    xs = _powers(G, x0, th, 40)
    sup = [float(np.max(np.abs(x))) if np.all(np.isfinite(x)) else np.inf for x in xs]
    # the documented criterion: inf/nan, or ‖x_k‖_∞ > 1e10 · max(‖x_0‖_∞, ‖x_1‖_∞)
    expected = next(i for i, m in enumerate(sup) if not m <= 1e10 * max(sup[:2]))
    assert expected < next(i for i, m in enumerate(sup) if not np.isfinite(m))  # before the overflow
    for mode in ("autodiff", "one_step", "implicit"):
        with pytest.raises(ValueError, match=f"diverged at step {expected} of steps=40: ‖x_{expected}‖_∞"):
            iterate(G, x0, th, 40, mode=mode)
    inf_step = next(i for i, m in enumerate(sup) if not np.isfinite(m))
    with pytest.raises(ValueError, match=f"step {inf_step} of steps=40: iterate x_{inf_step} contains non-finite"):
        iterate(G, x0, th, 40, max_growth=None)
    with pytest.warns(DivergenceWarning, match=f"step {expected} of steps=40: ‖x_{expected}‖"):
        jax.block_until_ready(jax.jit(lambda t: iterate(G, x0, t, 40))(th))
    # under vmap only the diverging batch element is reported, with its own first bad step
    batch = jnp.stack([jnp.full(2, -9.0), th])  # θ = -9: x_k = 1 for all k (10·1 - 9 = 1)
    with pytest.warns(DivergenceWarning, match=f"step {expected} of steps=40: ‖x_{expected}‖"):
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
    with warnings.catch_warnings():  # x_2 is far from x̄: only the conditioning is checked here
        warnings.simplefilter("error")
        jax.jacfwd(lambda th: iterate(F, X0, th, 2, mode="implicit", residual_rtol=None))(THETA)


def test_implicit_at_an_unconverged_iterate_warns_with_the_residual():
    # x_3 of a 1/2-contraction: ‖F(x_3) - x_3‖ = ‖F(x_0) - x_0‖ / 8, far above residual_rtol
    G = lambda x, th: 0.5 * x + th  # noqa: E731
    x0 = jnp.ones(3)
    f = lambda th: jnp.sum(iterate(G, x0, th, 3, mode="implicit"))  # noqa: E731
    for g in (jax.grad(f), jax.jit(jax.grad(f)), jax.jacfwd(f), jax.jit(jax.jacfwd(f))):
        with pytest.warns(ResidualWarning, match=r"fixed-point residual .* is 1\.083e-01 = 1\.250e-01 ×"):
            # the derivative itself is the implicit formula at x_3 (here exact: G is affine)
            assert float(jax.block_until_ready(g(jnp.asarray(1.0)))) == pytest.approx(6.0, rel=1e-12)
    # converged: no warning; disabled: no warning; bad values of the option: clear errors
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.grad(lambda th: jnp.sum(iterate(G, x0, th, 60, mode="implicit")))(1.0)
        jax.grad(lambda th: jnp.sum(iterate(G, x0, th, 3, mode="implicit", residual_rtol=None)))(1.0)
    for bad in (0.0, -1.0, float("nan"), "1e-3"):
        with pytest.raises(ValueError, match="residual_rtol"):
            iterate(G, x0, jnp.asarray(1.0), 3, mode="implicit", residual_rtol=bad)
    # the root form checks ‖G(x_k, θ)‖ against ‖G(x_0, θ)‖
    root = lambda x, th: x - 0.5 * x - th  # noqa: E731
    with pytest.warns(ResidualWarning, match="optimality residual"):
        jax.grad(lambda th: jnp.sum(iterate(G, x0, th, 3, mode="implicit", optimality_fun=root)))(1.0)


def test_geometric_growth_is_divergence_in_every_mode_and_transformation():
    # x_k = -2 x_{k-1} + θ stays finite for 300 steps (≈ 1e90) but diverges: caught near step 34
    G = lambda x, th: -2.0 * x + th  # noqa: E731
    x0 = jnp.ones(3)
    for mode in ("autodiff", "one_step", "truncated", "implicit"):
        kw = {"truncate": 5} if mode == "truncated" else {}
        f = lambda th: jnp.sum(iterate(G, x0, th, 300, mode=mode, **kw))  # noqa: E731
        with pytest.raises(ValueError, match=r"diverged at step 3[0-9] of steps=300: ‖x_3[0-9]‖_∞ = .* max_growth"):
            f(jnp.asarray(1.0))
        for g in (jax.jit(f), jax.jit(jax.grad(f)), jax.jit(jax.jacfwd(f))):
            # the check survives dead-code elimination when only the derivative is returned
            with pytest.warns(DivergenceWarning, match=r"diverged at step 3[0-9]"):
                jax.block_until_ready(g(jnp.asarray(1.0)))


def test_nan_theta_is_named():
    G = lambda x, th: 0.5 * x + th["b"]  # noqa: E731
    with pytest.raises(ValueError, match=r"`theta\['b'\]` contains non-finite"):
        iterate(G, jnp.ones(2), {"b": jnp.asarray(jnp.nan)}, 10)
    with pytest.warns(DivergenceWarning, match="`theta` itself contains non-finite"):
        jax.block_until_ready(jax.jit(lambda t: iterate(G, jnp.ones(2), {"b": t}, 10))(jnp.nan))


def test_non_callables_are_rejected_before_use():
    from algorithms import custom_fixed_point, custom_root
    with pytest.raises(TypeError, match="optimality_fun"):
        custom_root(5)
    with pytest.raises(TypeError, match="fixed_point_fun"):
        custom_fixed_point("F")
    with pytest.raises(TypeError, match="solver"):
        custom_root(lambda x, t: x)(3)
    with pytest.raises(TypeError, match="`F` must be a callable"):
        iterate(None, jnp.ones(2), jnp.asarray(1.0), 3)
    with pytest.raises(TypeError, match="optimality_fun"):
        iterate(lambda x, t: x, jnp.ones(2), jnp.asarray(1.0), 3, mode="implicit", optimality_fun=1.0)
    with pytest.raises(TypeError, match="check_finite"):
        iterate(lambda x, t: x, jnp.ones(2), jnp.asarray(1.0), 3, check_finite="yes")


def test_out_of_memory_under_grad_raises_instead_of_hanging():
    # residuals of 200 000 steps × 4000 floats (6.4 GB) under a 3 GiB address-space cap
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        import algorithms
        F = lambda x, th: jnp.tanh(x * th)
        try:
            jax.grad(lambda th: algorithms.iterate(F, jnp.ones(4000), th, 200000).sum())(0.5)
        except Exception as e:
            print("RAISED", type(e).__name__, "memory" in str(e).lower())
    """)
    # the cap is set by the shell (no Python code runs between fork and exec in this process)
    out = subprocess.run(["bash", "-c", f'ulimit -v {3 * 2**20} && exec "$0" -c "$1"', sys.executable, code],
                         capture_output=True, text=True, timeout=120,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert "RAISED" in out.stdout and "True" in out.stdout, out.stdout + out.stderr[-2000:]


@pytest.mark.parametrize("delay", [0.0, 2.0])  # during tracing/compiling, and in the loop
def test_long_eager_loop_stops_on_ctrl_c_within_seconds(delay):
    import signal
    import subprocess
    import sys
    import textwrap
    import time
    code = textwrap.dedent("""
        import sys
        import jax, jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        import algorithms
        print("start", flush=True)
        try:
            algorithms.iterate(lambda x, a: 0.5 * jnp.sin(x) + a, jnp.ones(3), jnp.asarray(0.1), 10**10)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
    """)
    def default_sigint():
        # a fresh process as a user starts it: SIGINT neither ignored nor blocked (an ignored or blocked
        # disposition of the test runner would otherwise be inherited through exec)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])

    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, preexec_fn=default_sigint,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    try:
        assert p.stdout.readline().strip() == "start"
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 3 and "interrupted" in out and time.monotonic() - t0 < 30
    finally:
        p.kill()


def test_eager_loop_restores_the_sigint_handler_and_runs_off_the_main_thread():
    import signal
    import threading

    from algorithms import iterate
    F = lambda x, a: 0.5 * jnp.sin(x) + a  # noqa: E731
    before = signal.getsignal(signal.SIGINT)
    x = iterate(F, jnp.ones(3), jnp.asarray(0.1), 50)
    assert signal.getsignal(signal.SIGINT) is before
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("x", iterate(F, jnp.ones(3), jnp.asarray(0.1), 50)))
    t.start()
    t.join()
    np.testing.assert_array_equal(np.asarray(out["x"]), np.asarray(x))


def test_a_solver_started_at_the_solution_is_not_warned_about():
    # custom_root whose solver returns the exact root: ‖G(x)‖ and ‖G(init)‖ are both round-off
    from algorithms import custom_root
    A = jnp.asarray([[3.0, 1.0], [1.0, 2.0]])
    G = lambda x, b: A @ x - b  # noqa: E731

    @custom_root(G)
    def solver(init, b):
        return jnp.linalg.solve(A, b)

    b = jnp.asarray([1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        J = jax.jacfwd(lambda b: solver(jnp.linalg.solve(A, b), b))(b)
    np.testing.assert_allclose(J, np.linalg.inv(np.asarray(A)), atol=1e-14)
    with pytest.warns(ResidualWarning, match="optimality residual"):  # a solver that stops early
        jax.jacfwd(lambda b: custom_root(G)(lambda init, b: init)(jnp.zeros(2), b))(b)


def test_growth_check_off_at_a_zero_start_is_no_false_alarm():
    # x_0 = x_1 = 0: the initial scale is 0; with max_growth=None only inf/nan count
    G = lambda x, th: 0.0 * x + th * 0.0  # noqa: E731
    for f in (lambda t: iterate(G, jnp.zeros(2), t, 40, max_growth=None),
              jax.jit(lambda t: iterate(G, jnp.zeros(2), t, 40, max_growth=None))):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(jax.block_until_ready(f(jnp.asarray(1.0))), 0.0)


def test_eager_run_sized_from_a_previous_call_still_reports_the_first_bad_step():
    # x_{k+1} = a x_k + 1: a healthy call with a = 0.5 records the per-step time, so the next
    # call with the same map and shapes runs in one compiled chunk; with a = 2 the iterates
    # 2^k·(x_0 + 1) - 1 first exceed max_growth · max(|x_0|, |x_1|) = 1e3 · 3 at k = 11
    from algorithms import _iterate

    F = lambda x, a: a * x + 1.0  # noqa: E731
    x0 = jnp.ones(3)
    np.testing.assert_allclose(np.asarray(iterate(F, x0, jnp.asarray(0.5), 200)), 2.0, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(iterate(F, x0, jnp.asarray(0.5), 200)), 2.0, rtol=1e-12)
    assert any(key[0] is F for key in _iterate._STEP_SECONDS)
    ks = np.arange(20)
    expected = int(np.argmax(2.0 ** ks * 2 - 1 > 1e3 * 3))
    assert expected == 11
    with pytest.raises(ValueError, match=f"diverged at step {expected} of steps=200"):
        iterate(F, x0, jnp.asarray(2.0), 200, max_growth=1e3)

"""Set-valued piggyback: closed forms, AD element membership, forward = reverse, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conservative as cv


def grad_f(x):
    return jnp.where(x >= 0, x, x / 4)


def heavy_ball(z, th):
    x, y = z[0], z[1]
    return jnp.stack([x - grad_f(x) + 0.75 * (x - y) + th[0], x])


M1 = np.array([[0.75, -0.75], [1.0, 0.0]])
M2 = np.array([[1.5, -0.75], [1.0, 0.0]])


def test_smooth_recursion_matches_unrolled_jacfwd():
    A = jnp.array([[0.5, 0.1], [0.0, 0.3]])
    F = lambda x, th: A @ x + jnp.tanh(th) * jnp.array([1.0, 2.0])  # noqa: E731
    r = cv.piggyback(F, jnp.zeros(2), jnp.array([0.2]), 8)

    def unrolled(th):
        x = jnp.zeros(2)
        for _ in range(8):
            x = F(x, th)
        return x

    assert all(s.is_singleton for s in r.sets)
    np.testing.assert_allclose(r.sets[-1].center, jax.jacfwd(unrolled)(jnp.array([0.2])), atol=1e-12)
    np.testing.assert_allclose(r.ad_jacobians[-1], jax.jacfwd(unrolled)(jnp.array([0.2])), atol=1e-12)
    assert r.ad_in_set.all() and r.tied_steps == ()


def test_heavy_ball_sets_at_fixed_point_are_path_products():
    """At (0, 0) with θ = 0 every step is tied: 𝒥_k = conv{Σ_j Π M_σ ... e1} over selections."""
    steps = 6
    r = cv.piggyback(heavy_ball, jnp.zeros(2), jnp.zeros(1), steps)
    assert r.tied_steps == tuple(range(steps))
    # brute force: J_{k+1} = M_σ J_k + e1, over all 2^k selection sequences
    Js = [np.zeros((2, 1))]
    for _ in range(steps):
        Js = [M @ J + np.array([[1.0], [0.0]]) for J in Js for M in (M1, M2)]
    S = r.sets[-1]
    for J in Js:
        assert S.contains(J, tol=1e-9)
    for V in S.vertices:  # every vertex is one of the selection sequences
        assert min(np.abs(V - J).max() for J in Js) < 1e-9
    assert r.ad_in_set.all()
    assert np.all(np.diff(r.diameters[1:]) >= -1e-12)


def test_forward_and_reverse_sets_agree():
    steps, w = 7, np.array([0.3, -1.0])
    r = cv.piggyback(heavy_ball, jnp.zeros(2), jnp.zeros(1), steps)
    rv = cv.piggyback_vjp(heavy_ball, jnp.zeros(2), jnp.zeros(1), steps, w)
    fwd = r.sets[-1].left_multiply(w[None, :])
    np.testing.assert_allclose(np.sort(fwd.vertices.ravel()), np.sort(rv.set.vertices.ravel()), atol=1e-10)
    assert rv.ad_in_set
    np.testing.assert_allclose(rv.ad_vjp, w @ r.ad_jacobians[-1], atol=1e-10)


def test_initial_set_and_gap_to_limit():
    # x_{k+1} = x/2 + θ: 𝒥_k = {J0/2^k + 2(1 - 2^-k)}; limit 2
    F = lambda x, th: x / 2 + th  # noqa: E731
    J0 = cv.MatrixSet(np.array([[[0.0]], [[4.0]]]))
    limit = cv.MatrixSet(np.array([[[2.0]]]))
    r = cv.piggyback(F, jnp.zeros(1), jnp.ones(1), 5, J0=J0, limit=limit)
    for k, S in enumerate(r.sets):
        lo, hi = sorted(S.vertices.ravel())
        np.testing.assert_allclose([lo, hi], [2 * (1 - 2.0**-k), 4 / 2**k + 2 * (1 - 2.0**-k)], atol=1e-12)
        np.testing.assert_allclose(r.gaps[k], 2.0 / 2**k, atol=1e-9)


def test_fast_path_agrees_with_interpreter_off_ties():
    rng = np.random.default_rng(0)
    W = jnp.asarray(rng.standard_normal((4, 4)))

    def f(x, th):
        return jnp.clip(jax.nn.relu(W @ x) - jnp.abs(x) * th, -1.0, 2.0) + jnp.sort(x)

    vj = cv.value_and_jacobian(f, argnums=(0, 1), fast=True)
    for _ in range(5):
        x, th = jnp.asarray(rng.standard_normal(4)), jnp.asarray(rng.uniform(0.1, 1))
        v1, J1 = vj(x, th)
        v2, J2 = cv.value_and_jacobian(f, argnums=(0, 1), fast=False)(x, th)
        assert J1.is_singleton and J2.is_singleton
        np.testing.assert_allclose(J1.center, J2.center, atol=1e-12)
        np.testing.assert_allclose(v1, v2, atol=1e-12)
    # at a tie the fast path hands over to the interpreter
    v, J = vj(jnp.array([0.0, 1.0, 2.0, 3.0]), jnp.asarray(0.5))
    assert not J.is_singleton


def test_divergence_is_reported_with_step():
    F = lambda x, th: 3.0 * x + th  # noqa: E731
    with pytest.raises(ValueError, match="diverged at step"):
        cv.piggyback(F, jnp.ones(1), jnp.ones(1), 2000)
    # x_k = 2^k stays finite for 300 steps but grows past 1e10 × the initial scale at k = 35
    G = lambda x, th: 2.0 * x + 0.0 * th  # noqa: E731
    for run in (lambda: cv.piggyback(G, jnp.ones(1), jnp.ones(1), 300),
                lambda: cv.piggyback_vjp(G, jnp.ones(1), jnp.ones(1), 300, jnp.ones(1))):
        with pytest.raises(ValueError, match=r"diverged at step 35: ‖x_35‖_∞ = .* max_growth"):
            run()
    with pytest.raises(TypeError, match="steps"):
        cv.piggyback(G, jnp.ones(1), jnp.ones(1), 2.5)


def test_bad_input():
    F = lambda x, th: x / 2 + th  # noqa: E731
    with pytest.raises(ValueError, match="steps"):
        cv.piggyback(F, jnp.zeros(1), jnp.ones(1), -1)
    with pytest.raises(ValueError, match="J0"):
        cv.piggyback(F, jnp.zeros(1), jnp.ones(1), 2, J0=np.zeros((2, 2)))
    with pytest.raises(TypeError, match="limit"):
        cv.piggyback(F, jnp.zeros(1), jnp.ones(1), 2, limit=np.zeros((1, 1)))
    with pytest.raises(ValueError, match="non-finite"):
        cv.piggyback(F, jnp.array([np.nan]), jnp.ones(1), 2)
    with pytest.raises(ValueError, match="w"):
        cv.piggyback_vjp(F, jnp.zeros(1), jnp.ones(1), 2, np.ones(3))
    with pytest.raises(ValueError, match="structure of x0"):
        cv.piggyback(lambda x, th: jnp.concatenate([x, th]), jnp.zeros(1), jnp.ones(1), 2)

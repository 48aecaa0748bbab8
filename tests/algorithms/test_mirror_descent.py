"""Entropic mirror descent on the simplex: estimators against the closed form softmax(θ/w)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import entropic_objective, iterate, mirror_descent, mirror_descent_map

W, ETA = 0.8, 0.5  # logit contraction factor |1 - ηw| = 0.6
f = entropic_objective(W)
F = mirror_descent_map(f, ETA)
THETA = jnp.asarray([0.3, -1.0, 0.8, 0.1, -0.2])
X0 = jnp.full(5, 0.2)


def closed_form_jacobian(theta):
    p = jax.nn.softmax(theta / W)
    return (jnp.diag(p) - jnp.outer(p, p)) / W


def jac(mode, k, **kw):
    return jax.jit(jax.jacfwd(lambda th: iterate(F, X0, th, k, mode=mode, **kw)))(THETA)


def test_fixed_point_is_softmax():
    x = iterate(F, X0, THETA, 200)
    np.testing.assert_allclose(x, jax.nn.softmax(THETA / W), atol=1e-14)
    np.testing.assert_allclose(jnp.sum(x), 1.0, atol=1e-15)


def test_estimators_against_closed_form():
    J = closed_form_jacobian(THETA)
    np.testing.assert_allclose(jac("implicit", 200), J, atol=1e-12)
    np.testing.assert_allclose(jac("autodiff", 200), J, atol=1e-12)
    errs = [float(jnp.linalg.norm(jac("autodiff", k) - J, 2)) for k in (5, 10, 20)]
    assert errs[0] > errs[1] > errs[2]
    # logits contract by ρ = 0.6 per step: one-step stays off, truncated-K error ∝ ρ^K
    e1 = float(jnp.linalg.norm(jac("one_step", 200) - J, 2))
    e8 = float(jnp.linalg.norm(jac("truncated", 200, truncate=8) - J, 2))
    assert e1 > 0.1 * float(jnp.linalg.norm(J, 2))
    assert e8 < 0.6 ** 7 * e1 * 1.01


def test_implicit_with_mirror_descent_optimality_map():
    G = mirror_descent(f, stepsize=1.0)
    J = jax.jacrev(lambda th: iterate(F, X0, th, 100, mode="implicit",
                                      optimality_fun=lambda x, t: G(x, (t, None))))(THETA)
    np.testing.assert_allclose(J, closed_form_jacobian(THETA), atol=1e-12)


def test_bad_stepsize():
    with pytest.raises(ValueError, match="`stepsize` must be a positive"):
        mirror_descent_map(f, -1.0)

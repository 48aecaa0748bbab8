"""Log-domain Sinkhorn: autodiff of the plan converges although σ_max(∂₁F) = 1 (Pauwels & Vaiter)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import EntropicOT, iterate, sinkhorn_anchored_map, sinkhorn_map, sinkhorn_plan

RNG = np.random.default_rng(6)
n, m = 5, 4
OT = EntropicOT(cost=jnp.asarray(RNG.uniform(0, 1, (n, m))), a=jnp.full(n, 1.0 / n),
                b=jnp.asarray([0.1, 0.2, 0.3, 0.4]), epsilon=jnp.asarray(0.05))
G0 = jnp.zeros(m)


def plan_of(mode, steps, fmap=sinkhorn_map):
    def fun(cost):
        ot = EntropicOT(cost, OT.a, OT.b, OT.epsilon)
        return sinkhorn_plan(iterate(fmap, G0, ot, steps, mode=mode), ot)

    return fun


def test_marginals_at_convergence():
    P = plan_of("autodiff", 2000)(OT.cost)
    np.testing.assert_allclose(P.sum(1), OT.a, atol=1e-14)
    np.testing.assert_allclose(P.sum(0), OT.b, atol=1e-12)
    np.testing.assert_allclose(plan_of("autodiff", 2000, sinkhorn_anchored_map)(OT.cost), P, atol=1e-13)


def test_unit_norm_jacobian_and_plain_implicit_is_singular():
    """∂₁F(ḡ) = diag(1/b)Pᵀ diag(1/a)P is row-stochastic: ‖∂₁F‖_∞ = ρ(∂₁F) = 1 (eigenvector 1)."""
    g_bar = iterate(sinkhorn_map, G0, OT, 2000)
    Jx = np.asarray(jax.jacfwd(sinkhorn_map)(g_bar, OT))
    assert np.all(Jx >= 0)
    np.testing.assert_allclose(Jx.sum(axis=1), 1.0, atol=1e-12)  # translation invariance
    np.testing.assert_allclose(np.max(np.abs(np.linalg.eigvals(Jx))), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="I - ∂ₓF.*singular.*condition number"):
        jax.jacfwd(plan_of("implicit", 2000))(OT.cost)
    # the anchored map removes the eigenvalue 1
    Ja = jax.jacfwd(sinkhorn_anchored_map)(g_bar - g_bar[-1], OT)
    assert np.max(np.abs(np.linalg.eigvals(np.asarray(Ja)))) < 1 - 1e-3


def test_autodiff_plan_derivative_converges_to_implicit():
    J_imp = jax.jit(jax.jacfwd(plan_of("implicit", 2000, sinkhorn_anchored_map)))(OT.cost)
    errs = []
    for k in (10, 20, 40, 80, 2000):
        J_ad = jax.jit(jax.jacfwd(plan_of("autodiff", k)))(OT.cost)
        errs.append(float(jnp.max(jnp.abs(J_ad - J_imp))))
    assert all(b < 0.5 * a for a, b in zip(errs[:4], errs[1:4])), errs
    assert errs[-1] < 1e-12, errs
    # ... while the potentials themselves drift along span(1) (no reference for them)
    fun = lambda c: iterate(sinkhorn_map, G0, EntropicOT(c, OT.a, OT.b, OT.epsilon), 2000)  # noqa: E731
    Jg = jax.jacfwd(fun)(OT.cost)
    assert np.all(np.isfinite(np.asarray(Jg)))

"""The heavy-ball counterexample, facts (a)-(f), as fast tests on the library's own heavy_ball map.

f(x) = x²/2 (x ≥ 0), x²/8 (x < 0); heavy-ball with α = 1, β = 3/4 (slides, "Example where
heavy-ball fails"). The full reproduction (plots, longer runs) is examples/heavy_ball_counterexample.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

import conservative
import theory
from algorithms import gradient_descent, heavy_ball, run

closed = lambda x, th: jnp.where(x >= 0, x, x / 4)  # noqa: E731  JAX picks f''(0) = 1 at 0
opened = lambda x, th: jnp.where(x > 0, x, x / 4)  # noqa: E731   same f', JAX picks f''(0) = 1/4
M1 = np.array([[0.75, -0.75], [1.0, 0.0]])
M2 = np.array([[1.5, -0.75], [1.0, 0.0]])


def test_a_iterates_converge_to_zero():
    F = heavy_ball(closed, 1.0, 0.75)
    for x0 in (1.0, -2.0, 0.3):
        traj = run(F, jnp.array([x0, x0]), None, 300)
        assert float(jnp.abs(traj[-1]).max()) < 1e-10


def test_b_conservative_jacobian_at_zero_is_conv_M1_M2():
    S = conservative.jacobian(heavy_ball(closed, 1.0, 0.75))(jnp.zeros(2), None)
    V = S.vertices
    assert len(V) == 2
    assert any(np.allclose(V[0], M) for M in (M1, M2)) and any(np.allclose(V[1], M) for M in (M1, M2))


def test_c_jsr_exceeds_one_with_exact_minus_nine_eighths():
    R1, R2 = (sp.Matrix(M.tolist()).applyfunc(sp.nsimplify) for M in (M1, M2))
    assert sp.Rational(-9, 8) in (R1 * R1 * R2 * R2).eigenvals()
    res = theory.jsr([M1, M2])
    assert res.lower > (9 / 8) ** 0.25 - 1e-12 and res.lower <= res.upper
    word = [M1, M2]
    P = (np.linalg.multi_dot([word[i] for i in res.certificate]) if len(res.certificate) > 1
         else word[res.certificate[0]])
    assert abs(max(abs(np.linalg.eigvals(P))) ** (1 / len(res.certificate)) - res.lower) < 1e-9


def test_d_set_valued_piggyback_at_the_fixed_point_grows():
    F = heavy_ball(lambda x, th: closed(x, th) - th, 1.0, 0.75)  # θ shifts the gradient; 0 is fixed at θ = 0
    r = conservative.piggyback(F, jnp.zeros(2), jnp.zeros(1), 16)
    assert r.ad_in_set.all() and len(r.tied_steps) == 16
    assert r.diameters[-1] > 1.5 * r.diameters[8] > 0


def test_e_equivalent_programs_alternated_diverge_while_iterates_stay_at_zero():
    maps = [heavy_ball(closed, 1.0, 0.75), heavy_ball(opened, 1.0, 0.75)]
    jacs = [jax.jit(jax.jacfwd(lambda z, F=F: F(z, None))) for F in maps]
    assert not np.allclose(jacs[0](jnp.zeros(2)), jacs[1](jnp.zeros(2)))
    z, J = jnp.zeros(2), np.eye(2)
    for k in range(200):
        i = (1, 1, 0, 0)[k % 4]
        J = np.asarray(jacs[i](z)) @ J
        z = maps[i](z, None)
    assert float(jnp.abs(z).max()) == 0.0
    assert np.linalg.norm(J, 2) > 100  # ≈ 1.0299^200 up to constants


def test_f_gradient_descent_same_alternation_converges():
    maps = [gradient_descent(closed, 0.5), gradient_descent(opened, 0.5)]
    jacs = [jax.jit(jax.jacfwd(lambda x, F=F: F(x, None))) for F in maps]
    x, J = jnp.zeros(1), np.eye(1)
    for k in range(200):
        i = (1, 1, 0, 0)[k % 4]
        J = np.asarray(jacs[i](x)) @ J
        x = maps[i](x, None)
    assert float(jnp.abs(x).max()) == 0.0 and abs(J[0, 0]) < 1e-12

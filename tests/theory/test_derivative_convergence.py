"""derivative_convergence: closed forms first (a linear contraction, heavy-ball, a lasso at a kink),
then Sinkhorn (inconclusive), the report's renderings and bad input."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

import algorithms
import theory

EPS = np.finfo(np.float64).eps

# ----------------------------------------------------------------------------- closed forms
A_LIN = np.array([[0.5, 0.2], [-0.1, 0.3]])
B_LIN = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]])


def linear_map(x, theta):
    """F(x, θ) = A x + B θ with x and θ pytrees (x = {u, v}, θ = (a, b))."""
    z = jnp.stack([x["u"], x["v"]])
    t = jnp.concatenate([theta[0], jnp.atleast_1d(theta[1])])
    z1 = jnp.asarray(A_LIN) @ z + jnp.asarray(B_LIN) @ t
    return {"u": z1[0], "v": z1[1]}


@pytest.fixture(scope="module")
def linear():
    theta = (jnp.array([1.0, -1.0]), jnp.asarray(2.0))
    x0 = {"u": jnp.asarray(0.0), "v": jnp.asarray(0.0)}
    return theory.derivative_convergence(linear_map, x0, theta), np.array([1.0, -1.0, 2.0])


def test_linear_contraction_closed_form(linear):
    rep, t = linear
    J_star = np.linalg.solve(np.eye(2) - A_LIN, B_LIN)            # J_pb = J_imp = {(I - A)⁻¹B}
    x_star = J_star @ t
    assert rep.verdict == "converge" and rep.contraction.contracts
    assert rep.family.is_singleton and rep.ties == ()
    assert set(rep.xbar) == {"u", "v"}                            # the state keeps its pytree structure
    # the certified distance bound holds for the computed x̄
    assert np.linalg.norm(rep.xbar_flat - x_star) <= rep.distance_bound
    assert rep.residual <= 1e-12 * max(1.0, np.linalg.norm(x_star))
    # fix 𝒥 is the single point (I - A)⁻¹B, within its certified error (and rounding of the solve)
    (V,) = rep.fixed_set.vertices
    floor = max(rep.fixed_set_error, 64 * EPS * np.linalg.norm(J_star))
    assert np.linalg.norm(V - J_star) <= floor
    assert np.linalg.norm(rep.implicit.vertex_images[0] - J_star) <= 64 * EPS * np.linalg.norm(J_star)
    assert rep.gap_lower == 0.0 and not rep.limits.strict
    # the predicted rate is the spectral radius of A; the fits along the run agree with it
    rho = float(np.max(np.abs(np.linalg.eigvals(A_LIN))))
    assert rep.predicted_rate == pytest.approx(rho, abs=64 * EPS)
    for key in ("iterates", "jax", "jax_increments", "piggyback"):
        assert rep.observed[key]["rate"] == pytest.approx(rho, abs=0.02), key
    assert rep.curves["piggyback_vs_scan_max_abs"] <= 64 * EPS * np.linalg.norm(J_star) * 10


def test_report_renderings(linear, tmp_path):
    rep, _ = linear
    text = rep.summary()
    assert text.startswith("derivative_convergence: CONVERGE") and "ρ =" in text
    data = json.loads(rep.to_json(tmp_path / "r.json"))
    assert data["verdict"] == "converge" and data == json.loads((tmp_path / "r.json").read_text())
    assert data["contraction"]["contracts"] is True
    rep.plot(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 10_000
    with pytest.raises(dataclasses.FrozenInstanceError):
        rep.verdict = "diverge"


# ----------------------------------------------------------------------------- heavy-ball
def grad_f(x, theta):
    """f(x) = x²/2 (x ≥ 0), x²/8 (x < 0), shifted by θ: the fixed point is 0 at θ = 0."""
    return jnp.where(x >= 0, x, x / 4) - theta


@pytest.fixture(scope="module")
def heavy_ball():
    F = algorithms.heavy_ball(grad_f, 1.0, 0.75)
    return theory.derivative_convergence(F, F.init(jnp.array([1.0])), jnp.array([0.0]))


def test_heavy_ball_diverges_with_certified_word(heavy_ball):
    rep = heavy_ball
    assert rep.verdict == "diverge"
    assert rep.jsr.lower > 1 and rep.jsr.lower <= rep.jsr.upper
    A = rep.A_family
    assert len(A) == 2                        # M1 (x ≥ 0) and M2 (x < 0), found through the tolerance
    # the lower bound is the spectral radius of the word's product, to the 1/|w| power
    P = np.linalg.multi_dot([A[i] for i in rep.jsr_word]) if len(rep.jsr_word) > 1 else A[rep.jsr_word[0]]
    assert rep.jsr.lower == pytest.approx(max(abs(np.linalg.eigvals(P))) ** (1 / len(rep.jsr_word)), rel=1e-9)
    assert rep.jsr_exact is not None and rep.jsr_exact["lower_float"] == pytest.approx(rep.jsr.lower, rel=1e-12)
    # the slides' word M1 M1 M2 M2 has the eigenvalue -9/8 exactly
    i1 = int(np.flatnonzero(np.isclose(A[:, 0, 0], 0.75))[0])
    i2 = int(np.flatnonzero(np.isclose(A[:, 0, 0], 1.5))[0])
    eig = theory.exact_eigenvalues(A, [i1, i1, i2, i2])
    assert any(str(lam) == "-9/8" for lam in eig)
    assert "diverge" in rep.summary().lower() and "word" in rep.reason
    # the set-valued recursion at x̄ grows (observation next to the certificate)
    assert rep.observed["set_recursion_at_xbar"]["rate"] > 1
    assert rep.fixed_set is None and rep.implicit is None


def test_heavy_ball_tie_found_within_the_derived_tolerance(heavy_ball):
    rep = heavy_ball
    x1 = abs(float(rep.xbar_flat[0]))                            # x̄ is near, not at, the kink x = 0
    assert x1 <= rep.tie_tolerance
    assert len(rep.ties) == 1 and rep.ties[0]["rows"] == [0] and rep.ties[0]["pieces"] == 2
    assert rep.ties[0]["exact"] == (x1 == 0.0)
    assert rep.jax_element_in_family


def test_gradient_descent_two_pieces_local_rate_and_fixed_set():
    """GD with step 1/2 on the same f: J_F(0, 0) = conv{[1/2, 1/2], [7/8, 1/2]} (x ≥ 0 / x < 0).
    fix 𝒥 = [1, 4] (the fixed points 1/2/(1 - 1/2) and 1/2/(1 - 7/8) are its ends); from x0 = 1 the
    iterates stay on x > 0, so the local rate is 1/2 while the set-valued recursion's is 7/8."""
    G = algorithms.gradient_descent(grad_f, 0.5)
    rep = theory.derivative_convergence(G, jnp.ones(1), jnp.zeros(1))
    assert rep.verdict == "converge" and len(rep.family.vertices) == 2
    V = np.sort(rep.fixed_set.vertices.ravel())
    assert np.max(np.abs(V - [1.0, 4.0])) <= max(rep.fixed_set_error, 64 * EPS * 4)
    assert rep.predicted_rate == pytest.approx(0.5, abs=64 * EPS)
    assert rep.predicted_rate_bounds[0] == pytest.approx(0.875, rel=1e-9)
    for key in ("iterates", "jax", "piggyback"):
        assert rep.observed[key]["rate"] == pytest.approx(0.5, abs=0.01), key
    # J_imp = {1/2 / (1 - a) : a ∈ [1/2, 7/8]} = [1, 4] = J_pb: no strict inclusion in one dimension
    assert not rep.limits.strict


def test_admm_tv_denoising_predicted_rate_is_fitted():
    rng = np.random.default_rng(1)
    y = np.repeat([0.0, 2.0, -1.0], 2) + 0.3 * rng.standard_normal(6)
    prob = algorithms.tv_denoising(y, 0.5)
    base = prob.theta

    def F(s, t):
        return prob.F(s, dict(base, y=t))

    rep = theory.derivative_convergence(F, prob.x0, jnp.asarray(y))
    assert rep.verdict == "converge"
    assert rep.observed["jax"]["rate"] == pytest.approx(rep.predicted_rate, abs=0.01)
    assert rep.observed["piggyback"]["rate"] == pytest.approx(rep.predicted_rate, abs=0.01)


# ----------------------------------------------------------------------------- lasso at a kink
def test_lasso_equal_limits_at_a_kink_approached_from_one_side():
    """Orthogonal design X = I, γ = 1/2: F(x, λ) = S_{λ/2}(x/2 + y/2), y = (3, 1), λ = 1, so
    x* = (2, 0) with coordinate 1 exactly at the kink (|y_1| = λ). From x0 = (0, 0.3) the iterates
    approach it from above (x_1 halves at each step) and x̄ is only near the kink. Closed form:
    J_imp = J_pb = {-1} × [-1, 0] (the one-sided derivatives of λ ↦ x*(λ) are its endpoints)."""
    prob = algorithms.lasso(np.eye(2), np.array([3.0, 1.0]), 1.0, step=0.5)
    base = prob.theta

    def F(x, lam):
        return prob.F(x, dict(base, lam=lam[0]))

    rep = theory.derivative_convergence(F, jnp.array([0.0, 0.3]), jnp.array([1.0]))
    assert rep.verdict == "converge"
    assert 0 < rep.xbar_flat[1] <= rep.tie_tolerance              # not at the kink, within the tolerance
    assert rep.family_exact_vertices == 1 and len(rep.family.vertices) == 2
    assert rep.ties == ({"rows": [1], "pieces": 2, "exact": False},)
    assert np.linalg.norm(rep.xbar_flat - [2.0, 0.0]) <= rep.distance_bound
    V = np.sort(rep.fixed_set.vertices[:, :, 0], axis=0)
    assert np.max(np.abs(V - np.array([[-1.0, -1.0], [-1.0, 0.0]]))) <= max(rep.fixed_set_error, 64 * EPS)
    assert not rep.limits.strict and rep.gap_at_vertices <= rep.implicit.covering_radius + rep.fixed_set_error
    assert rep.predicted_rate == pytest.approx(0.5, abs=1e-5)


# integer data with the exact solution x̄ = (2, 0, 0): X_1ᵀ(y - Xx̄) = λ exactly at the zero coordinate 1
X_KINK = np.array([[2, 5, 2], [2, -1, -1], [0, -1, -2], [2, 1, 2], [0, 0, 2], [-2, 2, -1], [1, 1, -1],
                   [-1, -1, 2]], dtype=float)
Y_KINK = np.array([5, 5, 0, 4, 0, -4, 2, -2], dtype=float)


def test_lasso_strict_inclusion_at_a_kink():
    prob = algorithms.lasso(X_KINK, Y_KINK, 4.0, step=0.021484375)
    base = prob.theta

    def F(x, lam):
        return prob.F(x, dict(base, lam=lam[0]))

    rep = theory.derivative_convergence(F, jnp.zeros(3), jnp.array([4.0]))
    assert rep.verdict == "converge"
    assert np.linalg.norm(rep.xbar_flat - [2.0, 0.0, 0.0]) <= rep.distance_bound
    assert len(rep.family.vertices) == 2 and [t["rows"] for t in rep.ties] == [[1]]
    assert rep.limits.strict and rep.gap_lower > 0                # J_imp ⊊ J_pb, certified
    assert rep.fixed_set.distance_bounds(rep.witness)[1] <= rep.fixed_set_error + 1e-9
    assert rep.limits.includes
    # the predicted local rate on the identified pieces is the fitted one
    assert rep.observed["jax"]["rate"] == pytest.approx(rep.predicted_rate_jax, abs=0.01)
    assert rep.observed["iterates"]["rate"] == pytest.approx(rep.predicted_rate, abs=0.01)


# ----------------------------------------------------------------------------- Sinkhorn
def test_sinkhorn_inconclusive_with_reason():
    rng = np.random.default_rng(0)
    m = 4
    P, Q = rng.uniform(0, 1, (m, 2)), rng.uniform(0, 1, (m, 2))
    C = ((P[:, None] - Q[None]) ** 2).sum(-1)
    ot = algorithms.EntropicOT(cost=jnp.asarray(C), a=jnp.full(m, 1 / m), b=jnp.full(m, 1 / m),
                               epsilon=jnp.asarray(0.1))
    rep = theory.derivative_convergence(algorithms.sinkhorn_map, jnp.zeros(m), ot)
    assert rep.verdict == "inconclusive"
    assert "eigenvalue of modulus" in rep.reason and "σ_max" in rep.reason
    assert rep.jsr.lower <= 1 + 1e-9 and rep.jsr.upper >= 1 - 1e-9
    assert rep.implicit is None and "singular" in rep.implicit_note
    assert not np.isfinite(rep.distance_bound)


# ----------------------------------------------------------------------------- bad input
def _lin(x, t):
    return 0.5 * x + t


@pytest.mark.parametrize("F, x0, theta, kwargs, exc, word", [
    (42, jnp.zeros(2), jnp.ones(2), {}, TypeError, "F"),
    (_lin, jnp.array([0.0, jnp.nan]), jnp.ones(2), {}, ValueError, "x0"),
    (_lin, jnp.zeros(2), jnp.array([1.0, jnp.inf]), {}, ValueError, "theta"),
    (_lin, jnp.zeros(2), jnp.ones(3), {}, (TypeError, ValueError), "theta"),
    (lambda x, t: jnp.sum(x) + t, jnp.zeros(2), jnp.ones(1), {}, ValueError, "F"),
    (lambda x, t: -x + t, jnp.zeros(2), jnp.ones(2), {"maxiter": 200}, ValueError, "maxiter"),
    (lambda x, t: 2.0 * x + t, jnp.zeros(2), jnp.ones(2), {}, ValueError, "diverged"),
    (_lin, jnp.zeros(2), jnp.ones(2), {"tol": -1.0}, ValueError, "tol"),
    (_lin, jnp.zeros(2), jnp.ones(2), {"maxiter": 2.5}, TypeError, "maxiter"),
    (_lin, jnp.zeros(2), jnp.ones(2), {"xbar": jnp.zeros(3)}, ValueError, "xbar"),
    (_lin, jnp.zeros(2), jnp.ones(2), {"lipschitz": float("nan")}, ValueError, "lipschitz"),
    (_lin, jnp.zeros(2), jnp.ones(2), {"bogus": 1}, TypeError, "bogus"),
    (_lin, jnp.array([True, False]), jnp.ones(2), {}, TypeError, "x0"),
])
def test_bad_input(F, x0, theta, kwargs, exc, word):
    with pytest.raises(exc, match=word):
        theory.derivative_convergence(F, x0, theta, **kwargs)

"""Conservative Jacobians of prox operators, projections and iteration maps at their kinks.

``conservative.jacobian`` interprets the JAX program of each operator; at a kink it must return
the set of Jacobians of the active pieces, which we derive by hand, and JAX's own element
(``jax.jacfwd``) must lie in it. Where the program's set is larger than the Clarke Jacobian
(each occurrence of a kink is an independent choice), we check Clarke ⊆ set ⊆ the hand-derived
chain-rule set.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

conservative = pytest.importorskip("conservative")
if not hasattr(conservative, "jacobian"):
    pytest.skip("conservative.jacobian is not available yet", allow_module_level=True)

from algorithms import (  # noqa: E402
    forward_backward,
    heavy_ball,
    projection_box,
    projection_halfspace,
    projection_l1_ball,
    projection_l2_ball,
    projection_linf_ball,
    projection_non_negative,
    projection_simplex,
    prox_elastic_net,
    prox_group_lasso,
    prox_lasso,
)

MatrixSet = conservative.MatrixSet
TOL = 1e-9


def _as_matrix(J, m):
    return np.asarray(J, dtype=float).reshape(m, -1)


def assert_set_equals(S, generators):
    """S = conv(generators): every generator is in S and every vertex of S is in their hull."""
    generators = [np.asarray(g, dtype=float) for g in generators]
    H = MatrixSet(np.stack(generators))
    assert S.shape == H.shape, (S.shape, H.shape)
    for g in generators:
        assert S.contains(g, tol=TOL), f"expected element\n{g}\nnot in the computed set"
    for v in S.vertices:
        assert H.contains(v, tol=TOL), f"computed vertex\n{v}\nnot in the hand-derived set"


def assert_jax_element_in(S, fun, *args, argnums=0, tol=TOL):
    if isinstance(argnums, int):
        J = jax.jacfwd(fun, argnums=argnums)(*args)
        M = _as_matrix(J, S.shape[0])
    else:
        Js = jax.jacfwd(fun, argnums=argnums)(*args)
        M = np.concatenate([_as_matrix(J, S.shape[0]) for J in Js], axis=1)
    assert S.contains(M, tol=tol), f"JAX's element\n{M}\nis not in the conservative set"


def _diag_sets(fixed, free):
    """Diagonal matrices with the given fixed entries and entries in {0, c} at the free indices."""
    out = []
    for bits in itertools.product([0.0, 1.0], repeat=len(free)):
        d = np.array(fixed, dtype=float)
        for (i, c), b in zip(free, bits):
            d[i] = c * b
        out.append(np.diag(d))
    return out


# ----------------------------------------------------------------------------- prox operators
def test_soft_threshold_at_plus_minus_lambda():
    x = jnp.array([1.0, -1.0, 0.3, 2.0, -3.0])
    S = conservative.jacobian(prox_lasso)(x, 1.0)
    # tied coordinates 0, 1 each get {0, 1}; 0.3 is inside (0), ±2, ±3 outside (1)
    assert_set_equals(S, _diag_sets([0, 0, 0, 1, 1], [(0, 1.0), (1, 1.0)]))
    assert len(S.vertices) == 4
    assert_jax_element_in(S, prox_lasso, x, 1.0)


def test_soft_threshold_joint_in_x_and_lambda():
    """At x = λ = 1: pieces "0" ([0, 0]) and "x − λ" ([1, −1]), jointly."""
    S = conservative.jacobian(prox_lasso, argnums=(0, 1))(1.0, 1.0)
    assert_set_equals(S, [np.array([[0.0, 0.0]]), np.array([[1.0, -1.0]])])
    assert not S.contains(np.array([[1.0, 0.0]]), tol=TOL)  # blocks of different pieces don't mix
    assert_jax_element_in(S, prox_lasso, 1.0, 1.0, argnums=(0, 1))


def test_elastic_net_at_the_kink():
    x = jnp.array([0.5, -2.0])
    lam, gamma, step = 0.25, 1.0, 2.0  # threshold 0.5, shrink 1/3
    S = conservative.jacobian(prox_elastic_net)(x, lam, gamma, step)
    assert_set_equals(S, _diag_sets([0, 1 / 3], [(0, 1 / 3)]))
    assert_jax_element_in(S, prox_elastic_net, x, lam, gamma, step)


def test_group_lasso_on_the_threshold_sphere():
    """‖x‖ = t: conv{0, I − t(I − uuᵀ)/‖x‖} = conv{0, uuᵀ}."""
    x = jnp.array([0.6, 0.8])
    u = np.asarray(x)
    S = conservative.jacobian(prox_group_lasso)(x, 1.0)
    assert_set_equals(S, [np.zeros((2, 2)), np.outer(u, u)])
    assert_jax_element_in(S, prox_group_lasso, x, 1.0)
    # at x = 0 (t > 0) the set is {0}; away from the sphere it is a singleton
    assert_set_equals(conservative.jacobian(prox_group_lasso)(jnp.zeros(2), 1.0), [np.zeros((2, 2))])
    assert len(conservative.jacobian(prox_group_lasso)(2 * x, 1.0).vertices) == 1


# ----------------------------------------------------------------------------- projections
def test_non_negative_at_zero():
    x = jnp.array([0.0, 1.0, -1.0])
    S = conservative.jacobian(projection_non_negative)(x)
    assert_set_equals(S, _diag_sets([0, 1, 0], [(0, 1.0)]))
    assert_jax_element_in(S, projection_non_negative, x)


def test_box_at_the_bounds():
    lo, up = jnp.array([-1.0, -1.0, 0.0, 0.0]), jnp.array([1.0, 1.0, 2.0, 2.0])
    x = jnp.array([-1.0, 1.0, 0.5, 3.0])  # at lower, at upper, inside, outside
    S = conservative.jacobian(projection_box)(x, lo, up)
    assert_set_equals(S, _diag_sets([0, 0, 1, 0], [(0, 1.0), (1, 1.0)]))
    assert_jax_element_in(S, projection_box, x, lo, up)


def test_linf_ball_at_the_boundary():
    x = jnp.array([2.0, -2.0, 0.1])
    S = conservative.jacobian(projection_linf_ball)(x, 2.0)
    assert_set_equals(S, _diag_sets([0, 0, 1], [(0, 1.0), (1, 1.0)]))
    assert_jax_element_in(S, projection_linf_ball, x, 2.0)


def test_l2_ball_on_the_sphere():
    """‖x‖ = r: conv{I, I − uuᵀ}; jointly with r: conv{[I, 0], [I − uuᵀ, u]}."""
    x = jnp.array([0.6, 0.0, 0.8]) * 2.0
    u = np.asarray(x) / 2.0
    S = conservative.jacobian(projection_l2_ball)(x, 2.0)
    assert_set_equals(S, [np.eye(3), np.eye(3) - np.outer(u, u)])
    assert_jax_element_in(S, projection_l2_ball, x, 2.0)
    S2 = conservative.jacobian(projection_l2_ball, argnums=(0, 1))(x, 2.0)
    assert_set_equals(
        S2, [np.hstack([np.eye(3), np.zeros((3, 1))]), np.hstack([np.eye(3) - np.outer(u, u), u[:, None]])]
    )
    assert_jax_element_in(S2, projection_l2_ball, x, 2.0, argnums=(0, 1))


def test_halfspace_on_the_boundary():
    a = jnp.array([1.0, 2.0])
    x = jnp.array([1.0, 1.0])  # aᵀx = 3 = b
    S = conservative.jacobian(projection_halfspace)(x, a, 3.0)
    an = np.asarray(a)
    assert_set_equals(S, [np.eye(2), np.eye(2) - np.outer(an, an) / 5.0])
    assert_jax_element_in(S, projection_halfspace, x, a, 3.0)


def test_simplex_at_a_tie():
    """x = (1, 0, −1): τ = 0 = x_2, so coordinate 2 sits at the threshold.

    Clarke: conv{diag(s) − ssᵀ/|s|} for the supports {1} and {1, 2}, i.e. conv{0, M12}.
    The program τ = max(τ_1, τ_2, τ_3), y = max(x − τ, 0) makes two choices: ∇τ ∈ {e1, (e1+e2)/2}
    (tied maximum) and the piece of y_2 ∈ {0, x_2 − τ}; the set is the hull of the 4 products.
    """
    x = jnp.array([1.0, 0.0, -1.0])
    S = conservative.jacobian(projection_simplex)(x)
    e1, e2 = np.eye(3)[0], np.eye(3)[1]
    expected = []
    for g in (e1, (e1 + e2) / 2):
        for active2 in (False, True):
            J = np.zeros((3, 3))
            J[0] = e1 - g
            if active2:
                J[1] = e2 - g
            expected.append(J)
    assert_set_equals(S, expected)
    M12 = np.zeros((3, 3))
    M12[:2, :2] = [[0.5, -0.5], [-0.5, 0.5]]
    for clarke in (np.zeros((3, 3)), M12):
        assert S.contains(clarke, tol=TOL)
    assert_jax_element_in(S, projection_simplex, x)


def test_l1_ball_on_the_boundary():
    """‖x‖₁ = r with no zero entry: the condition of where(‖x‖₁ ≤ r, x, S_τ(x)) is tied and both
    branches agree (τ = τ_3 = 0), with ∇τ = σ/3 (σ = sign x) in the soft-thresholding branch.

    The Clarke Jacobian is conv{I, I − σσᵀ/3}. The program's set is larger in one documented
    way: at τ = 0 the bounds −τ and τ of the clip coincide, so for x_i < 0 the ``min`` is tied
    and row i of the soft-thresholding branch is e_i − c_i σ/3 with c_i ∈ {−1, +1} (c_i = 1 for
    x_i > 0).  The scalar condition of ``where`` is one comparison broadcast over the vector, so
    all rows take the same branch (one shared selection).
    """
    x = jnp.array([0.5, -0.3, 0.2])
    S = conservative.jacobian(projection_l1_ball)(x, 1.0)
    sigma = np.sign(np.asarray(x))
    rows = []
    for i in range(3):
        rows.append([np.eye(3)[i] - c * sigma / 3 for c in ((1.0,) if sigma[i] > 0 else (1.0, -1.0))])
    assert_set_equals(S, [np.eye(3)] + [np.stack(r) for r in itertools.product(*rows)])
    for clarke in (np.eye(3), np.eye(3) - np.outer(sigma, sigma) / 3):
        assert S.contains(clarke, tol=TOL)
    assert_jax_element_in(S, projection_l1_ball, x, 1.0)
    # strictly inside the ball the set is {I}, zero entries included
    inside = jnp.array([0.5, 0.0, -0.2])
    assert_set_equals(conservative.jacobian(projection_l1_ball)(inside, 1.0), [np.eye(3)])


# ----------------------------------------------------------------------------- iteration maps
def test_heavy_ball_counterexample_set():
    """Slides, "Example where heavy-ball fails": J_F(0, 0) = conv{M1, M2}, eig(M1 M1 M2 M2) ∋ −9/8."""
    F = heavy_ball(lambda x, th: jnp.where(x >= 0, x, x / 4), 1.0, 0.75)
    S = conservative.jacobian(F)(jnp.zeros(2), None)
    M1 = np.array([[0.75, -0.75], [1.0, 0.0]])
    M2 = np.array([[1.5, -0.75], [1.0, 0.0]])
    assert_set_equals(S, [M1, M2])
    assert_jax_element_in(S, F, jnp.zeros(2), None)
    V = S.vertices
    assert len(V) == 2
    A, B = (V[0], V[1]) if np.allclose(V[0], M1) else (V[1], V[0])
    assert np.min(np.abs(np.linalg.eigvals(A @ A @ B @ B) + 9 / 8)) < 1e-12


def test_forward_backward_lasso_map_at_a_kink():
    """F(x) = S_{sλ}(x − s(Hx − b)); at a point where x − s∇f hits ±sλ in coordinate 0 the rows
    of ∂ₓF are: row 0 ∈ {0, (I − sH)_0}, the others fixed by their piece."""
    H = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    b = jnp.array([1.0, 0.0])
    s, lam = 0.25, 1.0
    F = forward_backward(lambda x, th: th["H"] @ x - th["b"], lambda v, th, st: prox_lasso(v, th["lam"], st), s)
    th = dict(H=H, b=b, lam=jnp.asarray(lam))
    x = jnp.array([0.5, 2.0])  # v = x − s(Hx − b) = (0.5 − 0.25·1.0, 2 − 0.25·2.25) = (0.25, 1.4375)
    v = x - s * (H @ x - b)
    np.testing.assert_allclose(v[0], s * lam)
    S = conservative.jacobian(F)(x, th)
    G = np.eye(2) - s * np.asarray(H)
    A0 = G.copy()
    A0[0] = 0.0
    assert_set_equals(S, [A0, G])
    assert_jax_element_in(S, F, x, th)


# ----------------------------------------------------------------------------- JAX's element ∈ set
_GRID = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])

OPERATORS = [
    ("prox_lasso", lambda x: prox_lasso(x, 1.0)),
    ("prox_elastic_net", lambda x: prox_elastic_net(x, 0.5, 1.0, 2.0)),
    ("prox_group_lasso", lambda x: prox_group_lasso(x.reshape(2, 2), jnp.array([1.0, 0.5])).ravel()),
    ("projection_non_negative", projection_non_negative),
    ("projection_box", lambda x: projection_box(x, -1.0, 0.5)),
    ("projection_linf_ball", lambda x: projection_linf_ball(x, 1.0)),
    ("projection_l2_ball", lambda x: projection_l2_ball(x, 1.5)),
    ("projection_l1_ball", lambda x: projection_l1_ball(x, 1.0)),
    ("projection_simplex", projection_simplex),
    ("projection_halfspace", lambda x: projection_halfspace(x, jnp.array([1.0, 1.0, 0.0, 0.0]), 1.0)),
]


@pytest.mark.parametrize("name, fun", OPERATORS, ids=[n for n, _ in OPERATORS])
def test_jax_element_in_set_on_a_grid_with_ties(name, fun):
    """Points on a coarse grid hit the kinks of every operator (ties with ±λ, bounds, radii,
    thresholds, equal entries for the sorts); JAX's element must be in the set everywhere."""
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = jnp.asarray(rng.choice(_GRID, size=4))
        S = conservative.jacobian(fun)(x)
        assert S.shape == (4, 4)
        assert_jax_element_in(S, fun, x, tol=1e-7)

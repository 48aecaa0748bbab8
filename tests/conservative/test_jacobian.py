"""Closed-form conservative Jacobians of small JAX programs (conservative.jacobian)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import conservative as cv
from conservative import JumpError, MatrixSet, jacobian, value_and_jacobian


def sorted_vertices(S):
    V = S.vertices
    return V[np.lexsort(V.reshape(len(V), -1).T[::-1])]


def assert_hull_equal(S, expected, atol=1e-12):
    """S == conv(expected): same vertex set (expected given as its extreme points)."""
    expected = np.asarray(expected, dtype=np.float64)
    if expected.ndim == 2:
        expected = expected[None]
    V = S.vertices
    assert V.shape[1:] == expected.shape[1:]
    assert len(V) == len(expected), (V, expected)
    for E in expected:
        assert np.min(np.abs(V - E).reshape(len(V), -1).max(axis=1)) <= atol, (V, E)


def interval(S):
    """A 1×1 set as (lo, hi)."""
    assert S.shape == (1, 1)
    return -S.support(-np.ones((1, 1))), S.support(np.ones((1, 1)))


def assert_ad_in(S, f, *args, argnums=0):
    for jf in (jax.jacfwd, jax.jacrev):
        J = jf(f, argnums=argnums)(*args)
        if isinstance(J, tuple):
            J = np.concatenate([np.atleast_2d(np.asarray(j).reshape(np.size(args[0]), -1)) for j in J], axis=1)
        J = np.asarray(J).reshape(S.shape)
        assert S.contains(J, tol=1e-10), (jf.__name__, J)


relu = jax.nn.relu


# ----------------------------------------------------------------------------- scalars
@pytest.mark.parametrize(
    "f, expected",
    [
        (relu, (0.0, 1.0)),
        (lambda x: jnp.maximum(x, 0.0), (0.0, 1.0)),
        (jnp.abs, (-1.0, 1.0)),
        (lambda x: relu(-x) + x, (0.0, 1.0)),  # slide: grad gives 1
        (lambda x: relu(x) - relu(-x), (0.0, 2.0)),  # each occurrence is an independent choice
        (lambda x: jnp.minimum(x, 0.0), (0.0, 1.0)),
        (lambda x: jnp.minimum(2 * x, -x), (-1.0, 2.0)),
        (lambda x: jnp.abs(3 * x), (-3.0, 3.0)),
        (lambda x: relu(x) + relu(x), (0.0, 2.0)),
    ],
)
def test_scalar_kinks_at_zero(f, expected):
    S = jacobian(f)(0.0)
    assert interval(S) == pytest.approx(expected, abs=1e-14)
    assert_ad_in(S, f, 0.0)


@pytest.mark.parametrize("x, d", [(1.5, 1.0), (-0.3, 0.0)])
def test_relu_away_from_kink_is_singleton(x, d):
    S = jacobian(relu)(x)
    assert S.is_singleton
    assert S.vertices.ravel().tolist() == [d]


def test_max_of_three_affine_maps_at_triple_tie():
    a = jnp.array([1.0, -2.0, 0.5])
    b = jnp.array([0.0, 0.0, 0.0])

    def f(x):
        return jnp.maximum(jnp.maximum(a[0] * x + b[0], a[1] * x + b[1]), a[2] * x + b[2])

    S = jacobian(f)(0.0)
    assert interval(S) == pytest.approx((-2.0, 1.0))
    assert_ad_in(S, f, 0.0)

    # In R^2: three affine maps <a_i, x> tied at the origin -> conv{a_1, a_2, a_3} (a triangle).
    A = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])

    def g(x):
        return jnp.max(A @ x)

    S2 = jacobian(g)(jnp.zeros(2))
    assert_hull_equal(S2, np.asarray(A)[:, None, :])
    assert not S2.contains(np.array([[1.0, 1.0]]), tol=1e-6)  # not the bounding box
    assert S2.contains(np.array([[0.0, 0.0]]))  # barycenter
    assert_ad_in(S2, g, jnp.zeros(2))

    def g_nested(x):
        y = A @ x
        return jnp.maximum(jnp.maximum(y[0], y[1]), y[2])

    S3 = jacobian(g_nested)(jnp.zeros(2))
    assert_hull_equal(S3, np.asarray(A)[:, None, :])


# ----------------------------------------------------------------------------- soft-thresholding
LAM = 0.7


def st_sign(x, lam):
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - lam, 0.0)


def st_clip(x, lam):
    return x - jnp.clip(x, -lam, lam)


def st_where(x, lam):
    return jnp.where(x > lam, x - lam, jnp.where(x < -lam, x + lam, 0.0))


def st_relu(x, lam):
    return relu(x - lam) - relu(-x - lam)


SOFT = [st_sign, st_clip, st_where, st_relu]


@pytest.mark.parametrize("st", SOFT)
@pytest.mark.parametrize("x0", [LAM, -LAM])
def test_soft_threshold_at_kinks(st, x0):
    S = jacobian(st)(x0, LAM)
    assert interval(S) == pytest.approx((0.0, 1.0))
    assert_ad_in(S, st, x0, LAM)


@pytest.mark.parametrize("st", SOFT)
@pytest.mark.parametrize("x0, d", [(2.0, 1.0), (0.1, 0.0), (-3.0, 1.0)])
def test_soft_threshold_smooth_points(st, x0, d):
    S = jacobian(st)(x0, LAM)
    assert S.is_singleton and S.vertices.ravel().tolist() == [d]


@pytest.mark.parametrize("st", SOFT)
@pytest.mark.parametrize("x0, sgn", [(LAM, -1.0), (-LAM, 1.0)])
def test_soft_threshold_joint_blocks_are_coupled(st, x0, sgn):
    """argnums=(0, 1): [∂x, ∂λ] ∈ conv{[0, 0], [1, ∓1]}; the ∂λ column moves with ∂x."""
    S = jacobian(st, argnums=(0, 1))(x0, LAM)
    assert S.shape == (1, 2)
    assert_hull_equal(S, [[[0.0, 0.0]], [[1.0, sgn]]])
    # the decoupled box corner [1, 0] is NOT in the joint set
    assert not S.contains(np.array([[1.0, 0.0]]), tol=1e-6)
    assert not S.contains(np.array([[0.0, sgn]]), tol=1e-6)
    assert_ad_in(S, st, x0, LAM, argnums=(0, 1))


def test_soft_threshold_at_lambda_equals_theta():
    """θ = λ (x is the parameter at the kink): the joint set is a segment, not a square."""
    S = jacobian(lambda th, lam: st_clip(th, lam), argnums=(0, 1))(0.5, 0.5)
    assert_hull_equal(S, [[[0.0, 0.0]], [[1.0, -1.0]]])
    assert len(S.vertices) == 2


# ----------------------------------------------------------------------------- vector primitives
def test_clip_at_both_ends_of_a_vector():
    x = jnp.array([-1.0, 0.3, 1.0, 2.0])
    S = jacobian(lambda x: jnp.clip(x, -1.0, 1.0))(x)
    # diag(d) with d0 ∈ [0,1], d1 = 1, d2 ∈ [0,1], d3 = 0
    exp = []
    for d0 in (0.0, 1.0):
        for d2 in (0.0, 1.0):
            exp.append(np.diag([d0, 1.0, d2, 0.0]))
    assert_hull_equal(S, exp)
    assert_ad_in(S, lambda x: jnp.clip(x, -1.0, 1.0), x)


def test_clip_joint_with_bounds():
    f = lambda x, lo, hi: jnp.clip(x, lo, hi)  # noqa: E731
    S = jacobian(f, argnums=(0, 1, 2))(0.0, 0.0, 1.0)
    assert_hull_equal(S, [[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]])
    S = jacobian(f, argnums=(0, 1, 2))(1.0, 0.0, 1.0)
    assert_hull_equal(S, [[[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]])


def test_elementwise_maximum_of_vectors_is_zonotope():
    x = jnp.array([1.0, 2.0, 3.0])
    y = jnp.array([1.0, 0.0, 3.0])
    S = jacobian(jnp.maximum, argnums=(0, 1))(x, y)
    assert S.shape == (3, 6)
    # rows 0 and 2 tied (independently), row 1 picks x
    exp = []
    for a in (0, 1):
        for c in (0, 1):
            M = np.zeros((3, 6))
            M[0, 0 if a else 3] = 1
            M[1, 1] = 1
            M[2, 2 if c else 5] = 1
            exp.append(M)
    assert_hull_equal(S, exp)
    assert len(S.vertices) == 4
    assert_ad_in(S, jnp.maximum, x, y, argnums=(0, 1))


def test_minimum_of_vectors():
    x = jnp.array([0.0, 5.0])
    S = jacobian(lambda x: jnp.minimum(x, 0.0))(x)
    assert_hull_equal(S, [np.diag([0.0, 0.0]), np.diag([1.0, 0.0])])


def test_reduce_max_at_ties():
    x = jnp.array([3.0, 1.0, 3.0, 3.0])
    S = jacobian(jnp.max)(x)
    assert_hull_equal(S, [[[1, 0, 0, 0]], [[0, 0, 1, 0]], [[0, 0, 0, 1]]])
    assert_ad_in(S, jnp.max, x)
    S = jacobian(jnp.min)(-x)
    assert_hull_equal(S, [[[1, 0, 0, 0]], [[0, 0, 1, 0]], [[0, 0, 0, 1]]])


def test_reduce_max_along_axis():
    X = jnp.array([[1.0, 1.0], [2.0, 0.0]])
    S = jacobian(lambda X: jnp.max(X, axis=1))(X)
    # row 0 chooses between X00, X01; row 1 is X10 (flattened C order)
    assert_hull_equal(S, [[[1, 0, 0, 0], [0, 0, 1, 0]], [[0, 1, 0, 0], [0, 0, 1, 0]]])
    S = jacobian(lambda X: jnp.max(X, axis=0))(X)
    assert S.is_singleton
    np.testing.assert_array_equal(S.vertices[0], [[0, 0, 1, 0], [0, 1, 0, 0]])


def test_argmax_gather_at_ties_is_the_set_of_max():
    x = jnp.array([1.0, 3.0, 3.0])
    for f in (lambda x: x[jnp.argmax(x)], lambda x: -(-x)[jnp.argmin(-x)],
              lambda x: jax.nn.one_hot(jnp.argmax(x), 3) @ x):  # resolved only by the product
        jf = jacobian(f)
        S = jf(x)
        assert_hull_equal(S, [[[0, 1, 0]], [[0, 0, 1]]])
        assert_ad_in(S, f, x)
        # the compiled fast path (used from the second call) falls back to the interpreter at the tie
        assert_hull_equal(jf(x), [[[0, 1, 0]], [[0, 0, 1]]])
        S = jf(x.at[1].set(2.5))
        assert S.is_singleton and np.array_equal(S.vertices[0], [[0, 0, 1]])


def test_argmax_index_is_one_choice_shared_by_its_uses():
    x = jnp.array([2.0, 2.0])

    def shared(x):  # one argmax read twice: the two reads take the same index
        i = jnp.argmax(x)
        return x[i] - x[i]

    assert_hull_equal(jacobian(shared)(x), [[[0, 0]]])
    # two argmax occurrences are two independent choices (DESIGN §4: per occurrence)
    assert_hull_equal(jacobian(lambda x: x[jnp.argmax(x)] - x[jnp.argmax(x)])(x), [[[1, -1]], [[-1, 1]]])
    # a different array read at the tied index: same values (x² at a tie), different Jacobians
    f = lambda x: (x * x)[jnp.argmax(x)]  # noqa: E731
    S = jacobian(f)(x)
    assert_hull_equal(S, [[[4, 0]], [[0, 4]]])
    assert_ad_in(S, f, x)


def test_argmax_along_rows_and_joint_with_a_second_argument():
    X = jnp.array([[1.0, 2.0, 2.0], [0.0, 5.0, 1.0]])
    f = lambda X: jnp.take_along_axis(X, jnp.argmax(X, axis=1)[:, None], axis=1).ravel()  # noqa: E731
    S = jacobian(f)(X)
    e = np.eye(6)
    assert_hull_equal(S, [[e[1], e[4]], [e[2], e[4]]])
    assert_ad_in(S, f, X)
    # away from ties: a singleton equal to jacfwd
    X2 = X.at[0, 2].set(1.5)
    S2 = jacobian(f)(X2)
    assert S2.is_singleton
    np.testing.assert_array_equal(S2.vertices[0], jax.jacfwd(f)(X2).reshape(2, 6))


def test_piecewise_at_the_breakpoint():
    # jnp.piecewise builds its branch index from a cumsum of the conditions: each tied condition
    # becomes a True/False choice, and every branch index they can produce is evaluated
    g = lambda x: jnp.piecewise(x, [x < 0], [lambda x: 0.5 * x, lambda x: 2 * x])  # noqa: E731
    x = jnp.array([0.0, -1.0, 3.0])
    S = jacobian(g)(x)
    assert_hull_equal(S, [np.diag([0.5, 0.5, 2.0]), np.diag([2.0, 0.5, 2.0])])
    assert_ad_in(S, g, x)
    # x < 0 and x >= 0 ask on which side of the one tie x = 0 the point is: one shared choice,
    # so "neither holds" (the default branch 0) is not a selection
    g2 = lambda x: jnp.piecewise(x, [x < 0, x >= 0], [lambda x: 0.5 * x, lambda x: 2 * x])  # noqa: E731
    assert interval(jacobian(g2)(0.0)) == (0.5, 2.0)
    assert interval(jacobian(g2, fast=True)(0.0)) == (0.5, 2.0)
    # 0 < x is the same side test as x > 0, and x <= 1 the complement of x > 1
    g3 = lambda x: jnp.piecewise(x, [x > 1, 1 >= x], [lambda x: 3 * x - 2, lambda x: x])  # noqa: E731
    assert interval(jacobian(g3)(1.0)) == (1.0, 3.0)


@pytest.mark.parametrize(
    "f, x, expected",
    [
        (lambda x: x * jnp.sign(x), 0.0, (-1.0, 1.0)),  # = |x|
        (lambda x: jnp.sign(x) * jnp.maximum(jnp.abs(x) - 0.5, 0.0), 0.0, (0.0, 0.0)),  # soft-threshold
        (lambda x: (x - 1.0) * jnp.floor(x), 1.0, (0.0, 1.0)),  # pieces 0·(x-1) and 1·(x-1)
        (lambda x: (x - 2.0) * jnp.ceil(x), 2.0, (2.0, 3.0)),
        (lambda x: (x - 0.5) * jnp.round(x), 0.5, (0.0, 1.0)),
        (lambda x: x * jnp.sign(x), 2.0, (1.0, 1.0)),  # away from the jump: locally constant
    ],
)
def test_jumps_resolved_by_a_vanishing_factor(f, x, expected):
    S = jacobian(f)(x)
    assert interval(S) == pytest.approx(expected)
    assert_ad_in(S, f, jnp.asarray(x))


def test_comparison_of_a_jump_stays_elementwise():
    # sign(x) > 0 at 20 zeros: 20 independent tied conditions (a zonotope), not 2^20 joint options
    f = lambda x: jnp.where(jnp.sign(x) > 0, x, 0.0)  # noqa: E731
    x = jnp.zeros(40).at[::2].set(1.0)
    S = jacobian(f)(x)
    assert len(S.groups) == 20
    assert_ad_in(S, f, x)
    assert_hull_equal(jacobian(f)(jnp.array([0.0, 1.0])), [np.diag([0.0, 1.0]), np.diag([1.0, 1.0])])


def test_arithmetic_on_ambiguous_values_stays_per_position():
    # |x| written with indicator / sign arithmetic: the ambiguous factor is carried through the
    # elementwise ops (one choice per tied position) until the vanishing factor x resolves it
    for f, scale in ((lambda x: x * (2 * (x > 0) - 1.0), 1.0), (lambda x: x * (3.0 * jnp.sign(x)), 3.0),
                     (lambda x: x * ((x > 0).astype(float) * 2 - 1), 1.0)):
        assert interval(jacobian(f)(0.0)) == pytest.approx((-scale, scale))
        x = jnp.zeros(30).at[::3].set(1.0)
        S = jacobian(f)(x)
        assert len(S.groups) == 20  # 20 zeros: a zonotope of 20 segments, not 2^20 joint options
        assert_ad_in(S, f, x)
    with pytest.raises(JumpError):
        jacobian(lambda x: (x + 1.0) * jnp.sign(x))(0.0)
    # an ambiguous intermediate with different Jacobians per option, resolved by a later factor x:
    # x·sign(x)·(x + 1) = |x|(x + 1) has derivatives ±1 at 0
    assert interval(jacobian(lambda x: x * (jnp.sign(x) * (x + 1.0)))(0.0)) == pytest.approx((-1.0, 1.0))


def test_jumps_that_reach_the_output_raise():
    for f, x in ((jnp.sign, 0.0), (lambda x: x - jnp.floor(x), 3.0), (lambda x: (x > 0).astype(float), 0.0),
                 (lambda x: x + jnp.sign(x), 0.0)):
        with pytest.raises(JumpError, match="depends on a tie|jumps here"):
            jacobian(f)(x)
    assert jacobian(jnp.floor)(2.5).vertices.ravel().tolist() == [0.0]


def test_control_flow_on_a_tied_index_runs_every_option():
    f = lambda x: lax.cond(jnp.argmax(x) == 0, lambda: x[0], lambda: x[1])  # noqa: E731
    S = jacobian(f)(jnp.array([1.0, 1.0]))
    assert_hull_equal(S, [[[1, 0]], [[0, 1]]])
    assert_ad_in(S, f, jnp.array([1.0, 1.0]))


def test_sort_with_ties_gives_permutation_matrices():
    x = jnp.array([1.0, 0.0, 1.0, 1.0])
    S = jacobian(jnp.sort)(x)
    # sorted: [0, 1, 1, 1]; output 0 <- input 1; outputs 1..3 <- any ordering of inputs {0, 2, 3}
    import itertools

    exp = []
    for perm in itertools.permutations([0, 2, 3]):
        P = np.zeros((4, 4))
        P[0, 1] = 1
        for i, j in enumerate(perm):
            P[1 + i, j] = 1
        exp.append(P)
    assert_hull_equal(S, exp)
    # the set is a subset of doubly-stochastic matrices: every vertex is a permutation
    for V in S.vertices:
        assert set(np.unique(V)) <= {0.0, 1.0}
        np.testing.assert_array_equal(V.sum(0), 1)
        np.testing.assert_array_equal(V.sum(1), 1)
    assert_ad_in(S, jnp.sort, x)


def test_argsort_gather_at_ties_has_every_ordering():
    x = jnp.array([1.0, 0.0, 1.0])
    f = lambda x: x[jnp.argsort(x)]  # noqa: E731
    S = jacobian(f)(x)
    np.testing.assert_array_equal(sorted_vertices(S), sorted_vertices(jacobian(jnp.sort)(x)))
    assert len(S.vertices) == 2
    assert_ad_in(S, f, x)
    # the indices and the sorted values of one sort share the choice: sort_key_val's two outputs agree
    g = lambda x: (lambda k, i: k - x[i])(*lax.sort_key_val(x, jnp.arange(3)))  # noqa: E731
    assert_hull_equal(jacobian(g)(x), [np.zeros((3, 3))])
    # reading another array's sorted positions at a tie: values differ between orderings -> jump
    with pytest.raises(JumpError, match="depends on a tie"):
        jacobian(lambda x: jnp.sort(x)[jnp.argsort(x)])(x)


def test_sort_without_ties_is_single_permutation():
    x = jnp.array([2.0, -1.0, 0.5])
    S = jacobian(jnp.sort)(x)
    assert S.is_singleton
    np.testing.assert_array_equal(S.vertices[0], np.eye(3)[[1, 2, 0]])


# ----------------------------------------------------------------------------- where / cond
def test_where_tied_condition_with_agreeing_branches():
    f = lambda x: jnp.where(x > 1.0, 3 * x - 2.0, x)  # noqa: E731 - continuous at 1
    S = jacobian(f)(1.0)
    assert interval(S) == pytest.approx((1.0, 3.0))
    assert_ad_in(S, f, 1.0)
    f2 = lambda x: jnp.where(x >= 0.0, jnp.sin(x), jnp.tanh(2 * x))  # noqa: E731
    assert interval(jacobian(f2)(0.0)) == pytest.approx((1.0, 2.0))


def test_where_untied_condition_picks_one_branch():
    f = lambda x: jnp.where(x > 1.0, 3 * x, x)  # noqa: E731 - jumps at 1 but x=2 is far
    S = jacobian(f)(2.0)
    assert S.is_singleton and S.vertices.ravel().tolist() == [3.0]


def test_lax_cond_tied_predicate_agreeing_branches():
    def f(x):
        return lax.cond(x[0] > 0, lambda z: z * jnp.array([1.0, 2.0]), lambda z: z * jnp.array([-1.0, 5.0]), x)

    x = jnp.array([0.0, 0.0])
    S = jacobian(f)(x)
    # one predicate for both outputs: the two rows move together
    assert_hull_equal(S, [np.diag([1.0, 2.0]), np.diag([-1.0, 5.0])])
    assert not S.contains(np.diag([1.0, 5.0]), tol=1e-6)
    assert_ad_in(S, f, x)


def test_lax_cond_untied():
    f = lambda x: lax.cond(x > 0, lambda z: 2 * z, lambda z: -z, x)  # noqa: E731
    assert jacobian(f)(1.0).vertices.ravel().tolist() == [2.0]
    assert jacobian(f)(-1.0).vertices.ravel().tolist() == [-1.0]


# ----------------------------------------------------------------------------- heavy ball
ALPHA, BETA = 1.0, 0.75
M1 = np.array([[0.75, -0.75], [1.0, 0.0]])
M2 = np.array([[1.5, -0.75], [1.0, 0.0]])


def fprime(x):
    return jnp.where(x >= 0, x, x / 4)


def heavy_ball(z):
    x, y = z[0], z[1]
    return jnp.stack([x - ALPHA * fprime(x) + BETA * (x - y), x])


def test_heavy_ball_conservative_jacobian_at_zero():
    S = jacobian(heavy_ball)(jnp.zeros(2))
    assert_hull_equal(S, [M1, M2])
    assert_ad_in(S, heavy_ball, jnp.zeros(2))
    # the product M1 M1 M2 M2 has eigenvalue -9/8 (the counterexample)
    ev = np.linalg.eigvals(M1 @ M1 @ M2 @ M2)
    assert np.min(np.abs(ev + 9 / 8)) < 1e-12


def test_heavy_ball_two_argument_form():
    F = lambda x, y: (x - ALPHA * fprime(x) + BETA * (x - y), x)  # noqa: E731
    S = jacobian(F, argnums=(0, 1))(0.0, 0.0)
    assert_hull_equal(S, [M1, M2])


def test_heavy_ball_off_kink():
    S = jacobian(heavy_ball)(jnp.array([0.5, 0.2]))
    assert_hull_equal(S, [M1])
    S = jacobian(heavy_ball)(jnp.array([-0.5, 0.2]))
    assert_hull_equal(S, [M2])


# ----------------------------------------------------------------------------- pytrees
def test_pytree_dict_input_tuple_output_flattening_order():
    def f(p):
        # dict leaves are flattened in sorted key order: 'a' (shape 2) then 'b' (scalar)
        return (jnp.maximum(p["b"], 0.0) * jnp.ones(1), p["a"] * 2.0, jnp.sum(p["a"]) * p["b"])

    p = {"b": jnp.array(0.0), "a": jnp.array([1.0, 3.0])}
    S = jacobian(f)(p)
    assert S.shape == (1 + 2 + 1, 2 + 1)
    # columns: a0, a1, b; rows: out0 (1), out1 (2), out2 (1)
    base = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 4.0]])
    tie = base.copy()
    tie[0, 2] = 1.0
    assert_hull_equal(S, [base, tie])
    J = jax.jacfwd(f)(p)
    dense = np.concatenate(
        [np.concatenate([np.reshape(Ji["a"], (np.size(out), 2)), np.reshape(Ji["b"], (np.size(out), 1))], axis=1)
         for Ji, out in zip(J, f(p))]
    )
    assert S.contains(dense, tol=1e-12)


def test_pytree_multiple_args_argnums_order():
    def f(x, y, z):
        return x * y[0] + jnp.abs(z)

    x, y, z = jnp.array(2.0), (jnp.array(3.0), jnp.array(4.0)), jnp.array(0.0)
    S = jacobian(f, argnums=(2, 0))(x, y, z)
    # columns: z first, then x
    assert_hull_equal(S, [[[-1.0, 3.0]], [[1.0, 3.0]]])
    S = jacobian(f, argnums=1)(x, y, z)
    assert_hull_equal(S, [[[2.0, 0.0]]])


def test_value_and_jacobian_returns_pytree_value():
    f = lambda p: {"u": relu(p["x"]), "v": (p["x"] ** 2,)}  # noqa: E731
    val, S = value_and_jacobian(f)({"x": jnp.array([0.0, 1.0])})
    np.testing.assert_array_equal(val["u"], [0.0, 1.0])
    np.testing.assert_array_equal(val["v"][0], [0.0, 1.0])
    assert S.shape == (4, 2)
    assert_hull_equal(S, [np.array([[0, 0], [0, 1], [0, 0], [0, 2.0]]), np.array([[1, 0], [0, 1], [0, 0], [0, 2.0]])])


# ----------------------------------------------------------------------------- transformations
def test_jit_inner_function():
    inner = jax.jit(lambda x: jnp.abs(x) + relu(x))
    f = lambda x: 2.0 * inner(x)  # noqa: E731
    S = jacobian(f)(0.0)
    assert interval(S) == pytest.approx((-2.0, 4.0))
    assert_ad_in(S, f, 0.0)
    # a jit-compiled outer function as well
    assert interval(jacobian(jax.jit(f))(0.0)) == pytest.approx((-2.0, 4.0))


def test_checkpoint():
    f = jax.checkpoint(lambda x: relu(x) * 3.0)
    assert interval(jacobian(f)(0.0)) == pytest.approx((0.0, 3.0))


def test_scan_fixed_trip_count_accumulates_independent_choices():
    def f(x):
        def body(c, _):
            return c + relu(x), None

        return lax.scan(body, 0.0, None, length=3)[0]

    S = jacobian(f)(0.0)
    # three independent occurrences of relu'(0) ∈ [0,1]
    assert interval(S) == pytest.approx((0.0, 3.0))
    assert_ad_in(S, f, 0.0)


def test_scan_with_xs_and_ys():
    def f(x):
        def body(c, a):
            y = jnp.maximum(c, a)
            return y, 2 * y

        return lax.scan(body, x, jnp.array([0.0, 1.0]))[1]

    S = jacobian(f)(0.0)
    # step 0: max(x, 0) at tie -> d ∈ [0,1]; step 1: max(0, 1) = 1, constant
    assert_hull_equal(S, [[[0.0], [0.0]], [[2.0], [0.0]]])


def test_fori_loop_heavy_ball_iterations_contain_ad():
    def f(z):
        return lax.fori_loop(0, 2, lambda i, z: heavy_ball(z), z)

    S = jacobian(f)(jnp.zeros(2))
    # iterates stay at 0, so the set is conv{Ma Mb : a, b ∈ {1, 2}}
    exp = [A @ B for A in (M1, M2) for B in (M1, M2)]
    for E in exp:
        assert S.contains(E, tol=1e-10)
    for V in S.vertices:
        assert MatrixSet(np.stack(exp)).contains(V, tol=1e-10)
    assert_ad_in(S, f, jnp.zeros(2))


def test_while_loop():
    def f(x):
        def body(c):
            i, v = c
            return i + 1, jnp.abs(v) * 2.0

        return lax.while_loop(lambda c: c[0] < 2, body, (0, x))[1]

    # |2|x|| twice: d/dx = 4 sign choices; at 0: [-4, 4]
    S = jacobian(f)(0.0)
    assert interval(S) == pytest.approx((-4.0, 4.0))
    S = jacobian(f)(-1.0)
    assert S.vertices.ravel().tolist() == [-4.0]


def test_while_loop_float_condition_data_dependent_trip_count():
    def f(x):
        return lax.while_loop(lambda v: v < 10.0, lambda v: 2.0 * v + 1.0, x)

    # x = 1: 1 -> 3 -> 7 -> 15 (three steps), derivative 8
    assert jacobian(f)(1.0).vertices.ravel().tolist() == [8.0]


# ----------------------------------------------------------------------------- custom_jvp
def test_jax_nn_relu_custom_jvp_uses_primal():
    S = jacobian(jax.nn.relu)(jnp.array([0.0, -1.0, 2.0]))
    assert_hull_equal(S, [np.diag([0.0, 0.0, 1.0]), np.diag([1.0, 0.0, 1.0])])
    assert_ad_in(S, jax.nn.relu, jnp.array([0.0, -1.0, 2.0]))


@jax.custom_jvp
def my_abs(x):
    return jnp.maximum(x, -x)


@my_abs.defjvp
def _my_abs_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    # a valid element at 0 (0.25 ∈ [-1, 1]), the sign elsewhere
    return my_abs(x), jnp.where(x == 0, 0.25, jnp.sign(x)) * t


@jax.custom_jvp
def wrong_rule(x):
    return 2.0 * x


@wrong_rule.defjvp
def _wrong_rule_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return wrong_rule(x), 7.0 * t  # deliberately inconsistent with the primal


def test_user_custom_jvp_set_comes_from_primal_and_contains_rule_element():
    S = jacobian(my_abs)(0.0)
    assert interval(S) == pytest.approx((-1.0, 1.0))
    assert float(jax.jacfwd(my_abs)(0.0)) == 0.25
    assert S.contains(np.array([[0.25]]))
    assert jacobian(my_abs)(-2.0).vertices.ravel().tolist() == [-1.0]


def test_custom_jvp_rule_is_ignored():
    S = jacobian(wrong_rule)(1.0)
    assert S.vertices.ravel().tolist() == [2.0]
    assert float(jax.jacfwd(wrong_rule)(1.0)) == 7.0  # JAX follows the rule, the set does not


def test_custom_vjp_uses_primal():
    @jax.custom_vjp
    def f(x):
        return jnp.maximum(x, 0.0) * 3.0

    f.defvjp(lambda x: (f(x), x), lambda x, g: (g * 1.5,))
    S = jacobian(f)(0.0)
    assert interval(S) == pytest.approx((0.0, 3.0))
    assert S.contains(np.array([[float(jax.grad(f)(0.0))]]))


# ----------------------------------------------------------------------------- tol
def test_tol_enlargement_near_tie():
    x0 = 1e-12
    S0 = jacobian(relu)(x0)
    assert S0.is_singleton and S0.vertices.ravel().tolist() == [1.0]
    S1 = jacobian(relu, tol=1e-9)(x0)
    assert interval(S1) == pytest.approx((0.0, 1.0))
    S2 = jacobian(jnp.abs, tol=1e-9)(-x0)
    assert interval(S2) == pytest.approx((-1.0, 1.0))


def test_tol_enlargement_max_sort_where():
    x = jnp.array([1.0, 1.0 + 1e-12, 0.0])
    assert jacobian(jnp.max)(x).is_singleton
    assert len(jacobian(jnp.max, tol=1e-9)(x).vertices) == 2
    assert jacobian(jnp.sort)(x).is_singleton
    assert len(jacobian(jnp.sort, tol=1e-9)(x).vertices) == 2
    f = lambda x: jnp.where(x > 0, x, 0.5 * x)  # noqa: E731
    assert jacobian(f)(1e-12).is_singleton
    assert interval(jacobian(f, tol=1e-9)(1e-12)) == pytest.approx((0.5, 1.0))
    # tol smaller than the gap: no enlargement
    assert jacobian(jnp.max, tol=1e-13)(x).is_singleton


def test_tol_enlargement_contains_set_at_zero_tol():
    x = jnp.array([0.0, 1e-12, -3.0])
    f = lambda x: jnp.abs(x) + relu(x)  # noqa: E731
    S0 = jacobian(f)(x)
    S1 = jacobian(f, tol=1e-9)(x)
    for V in S0.vertices:
        assert S1.contains(V, tol=1e-12)
    assert len(S1.vertices) > len(S0.vertices)


# ----------------------------------------------------------------------------- scale
def test_soft_threshold_scale_1000_with_30_ties():
    n, lam = 1000, 0.5
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, n)
    x[np.abs(np.abs(x) - lam) < 1e-3] = 1.0
    tied = rng.choice(n, 30, replace=False)
    x[tied] = lam * rng.choice([-1.0, 1.0], 30)
    S = jacobian(st_clip)(jnp.asarray(x), lam)
    assert S.shape == (n, n)
    d_base = (np.abs(x) > lam).astype(float)
    # contains the JAX element and the extreme selections
    J_ad = np.asarray(jax.jacfwd(st_clip)(jnp.asarray(x), lam))
    assert S.contains(J_ad, tol=1e-8)
    d_hi = d_base.copy()
    d_hi[tied] = 1.0
    assert S.contains(np.diag(d_hi), tol=1e-8)
    assert S.contains(np.diag(d_base), tol=1e-8)
    # not the identity (non-tied |x| < λ entries are 0)
    assert not S.contains(np.eye(n), tol=1e-3)
    assert S.distance(np.eye(n)) == pytest.approx(np.sqrt(np.sum(np.abs(x) < lam)), rel=1e-8)
    # support: ⟨D, X⟩ maximised coordinatewise over the 30 independent intervals
    D = rng.standard_normal((n, n))
    expect = float(np.sum(np.diag(D) * d_base) + np.sum(np.maximum(np.diag(D)[tied], 0.0)))
    assert S.support(D) == pytest.approx(expect, rel=1e-12, abs=1e-12)
    assert S.num_candidate_vertices == 2**30


# ----------------------------------------------------------------------------- isnan-style self comparisons
@pytest.mark.parametrize(
    "f, x, d",
    [
        (lambda x: jnp.where(jnp.isnan(x), 0.0, x), 1.0, 1.0),
        (lambda x: jnp.where(jnp.isnan(x), 0.0, x), 0.0, 1.0),
        (jnp.nan_to_num, 2.0, 1.0),
        (jax.nn.softplus, 1.0, 1.0 / (1.0 + np.exp(-1.0))),  # logaddexp(x, 0) guards with isnan
    ],
)
def test_isnan_guard_is_not_a_tie(f, x, d):
    """x != x (isnan) never flips under perturbation: no tie, no JumpError."""
    S = jacobian(f)(x)
    assert S.is_singleton
    assert S.vertices.ravel()[0] == pytest.approx(d, abs=1e-14)


def test_softplus_at_zero_differentiates_the_primal():
    """softplus = logaddexp(x, 0) = max(x, 0) + log1p(exp(-|x|)): at 0 the primal has two kinks
    (independent occurrences): m - a/2 with m ∈ [0, 1], a ∈ [-1, 1]; JAX's 1/2 is inside."""
    S = jacobian(jax.nn.softplus)(0.0)
    assert interval(S) == pytest.approx((-0.5, 1.5))
    assert S.contains(np.array([[0.5]]))


def test_median_untied():
    S = jacobian(jnp.median)(jnp.array([3.0, 1.0, 2.0]))
    np.testing.assert_array_equal(S.vertices, [[[0.0, 0.0, 1.0]]])


def test_same_selection_used_twice_is_coupled():
    """y = relu(x) used in two outputs: one selection for both rows, a segment not a square."""
    f = lambda x: jnp.stack([relu(x), -2.0 * relu(x)])  # noqa: E731 - two occurrences: independent
    g = lambda x: (lambda y: jnp.stack([y, -2.0 * y]))(relu(x))  # noqa: E731 - one occurrence
    Sg = jacobian(g)(0.0)
    assert_hull_equal(Sg, [[[0.0], [0.0]], [[1.0], [-2.0]]])
    assert not Sg.contains(np.array([[1.0], [0.0]]), tol=1e-6)
    Sf = jacobian(f)(0.0)
    assert Sf.contains(np.array([[1.0], [0.0]]), tol=1e-9)


def test_product_of_kinks():
    f = lambda x: relu(x[0]) * relu(x[1]) + relu(x[0])  # noqa: E731
    x = jnp.array([0.0, 1.0])
    S = jacobian(f)(x)
    # d/dx0 = relu'(x0) (x1 + 1) ∈ [0, 2], d/dx1 = relu(x0) = 0; two occurrences of relu(x0)
    assert_hull_equal(S, [[[0.0, 0.0]], [[2.0, 0.0]]])
    assert_ad_in(S, f, x)


def test_subnormal_points_are_ties_like_xla():
    """XLA on CPU flushes subnormals to zero: relu'(1e-308) is JAX's 0 and the set must hold it."""
    x = jnp.array([1.1e-308])
    S = jacobian(jax.nn.relu)(x)
    assert S.contains(jax.jacfwd(jax.nn.relu)(x))
    np.testing.assert_array_equal(np.sort(S.vertices.ravel()), [0.0, 1.0])


def test_indicator_products_are_selections():
    """x ⊙ 1[x > 0] at ties: like where(x > 0, x, 0); JAX's element is in the set."""
    f = lambda x: x * (x > 0) + 0.5 * x * (x <= 0)  # noqa: E731  leaky-relu written with masks
    x = jnp.array([0.0, 1.0, -2.0])
    S = jacobian(f)(x)
    assert S.contains(jax.jacfwd(f)(x)) and S.contains(jax.jacrev(f)(x))
    # the tied coordinate: two indicator products, each its own choice: {0, 1} + {0, 1/2}
    np.testing.assert_allclose(sorted({float(v[0, 0]) for v in S.vertices}), [0.0, 1.5])
    np.testing.assert_allclose(S.support(np.diag([0.0, 1.0, 1.0])), 1.5)


def test_sort_with_several_operands_permutes_them_jointly():
    """lax.sort((x, 2x)) with x1 = x2 tied: one choice of ordering for both outputs (2 vertices, not 4)."""
    f = lambda x: jnp.concatenate(lax.sort((x, 2.0 * x), num_keys=1))  # noqa: E731
    x = jnp.array([1.0, 1.0, 0.0])
    S = jacobian(f)(x)
    P1 = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)  # stable order: 0, then x0, x1
    P2 = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], float)
    expected = [np.vstack([P, 2 * P]) for P in (P1, P2)]
    V = S.vertices
    assert len(V) == 2
    for E in expected:
        assert min(np.abs(V - E).max(axis=(1, 2))) < 1e-12
    assert S.contains(jax.jacfwd(f)(x))


def test_sort_with_several_keys_ties_only_when_all_keys_tie():
    """Lexicographic keys (k1, k2) = (x, y): a tie in x alone is broken by y (no selection)."""
    f = lambda x, y: lax.sort((x, y), num_keys=2)[0]  # noqa: E731
    S = jacobian(f)(jnp.array([1.0, 1.0]), jnp.array([0.0, 1.0]))
    assert S.is_singleton
    np.testing.assert_array_equal(S.center, np.eye(2))
    T = jacobian(f, argnums=(0, 1))(jnp.array([1.0, 1.0]), jnp.array([1.0, 1.0]))
    assert len(T.vertices) == 2  # both orderings of the fully tied pair


def test_sort_key_val_with_differing_values_at_a_tie_jumps():
    f = lambda x: lax.sort_key_val(x, jnp.array([1.0, 2.0]) * x)[1]  # noqa: E731
    with pytest.raises(JumpError, match="sort"):
        jacobian(f)(jnp.array([1.0, 1.0]))
    # argsort: integer indices follow the stable order and are not tracked
    g = lambda x: x[jnp.argsort(x)]  # noqa: E731
    assert jacobian(g)(jnp.array([2.0, 1.0])).is_singleton


def test_unknown_primitive_error_is_a_type_error_too():
    from jax.scipy.special import betainc

    from conservative import NoRuleError

    with pytest.raises(TypeError, match="register_smooth"):
        jacobian(lambda x: betainc(2.0, 3.0, x))(jnp.array([0.3, 0.5]))
    assert issubclass(NoRuleError, NotImplementedError)


# ----------------------------------------------------------------------------- fast path = interpreter
TIED_PROGRAMS = [
    (lambda x: x[jnp.argmax(x)], [1.0, 3.0, 3.0]),
    (lambda x: jax.nn.one_hot(jnp.argmax(x), 3) @ x, [1.0, 3.0, 3.0]),
    (lambda x: x[jnp.argmax(x > 0)], [0.0, 1.0, 2.0]),  # first positive entry: jumps at x₀ = 0
    (lambda x: jnp.piecewise(x, [x < 0], [lambda x: 0.5 * x, lambda x: 2 * x]), [0.0, -1.0, 3.0]),
    (lambda x: jnp.sum(jnp.cumsum(x > 0) * x), [0.0, 1.0, 2.0]),  # jumps
    (lambda x: jnp.sort(x) * jnp.arange(1.0, 4.0), [1.0, 1.0, 0.0]),
    (lambda x: jnp.where(x > 0, x, 0.0) + jnp.abs(x), [0.0, 1.0, -2.0]),
    (lambda x: x * (x > 0), [0.0, 1.0, -2.0]),
    (lambda x: jnp.max(x) - jnp.min(x), [2.0, 2.0, 1.0]),
    (lambda x: x[jnp.argsort(x)] * jnp.arange(1.0, 4.0), [1.0, 0.0, 1.0]),
    (lambda x: x * jnp.sign(x) + (x - 1.0) * jnp.floor(x), [0.0, 1.0, 0.5]),
    (lambda x: jnp.sign(x), [0.0, 1.0, 2.0]),  # jumps
]


@pytest.mark.parametrize("f, x", TIED_PROGRAMS)
def test_fast_path_and_interpreter_agree_at_ties(f, x):
    x = jnp.asarray(x)
    results = []
    for fast in (True, False):
        jf = jacobian(f, fast=fast)
        try:
            jf(x)
            results.append(("set", sorted_vertices(jf(x))))  # second call: the compiled path when fast
        except JumpError as e:
            results.append(("jump", type(e)))
    assert results[0][0] == results[1][0]
    if results[0][0] == "set":
        np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-12)


# ------------------------------------------------------------------ discrete results of varying values
def _both_paths(f, x):
    """The set from the interpreter (first call) and from the compiled fast path (later calls)."""
    jac = cv.jacobian(f)
    first = jac(jnp.asarray(x))
    second = jac(jnp.asarray(x))
    forced = cv.jacobian(f, fast=True)(jnp.asarray(x))
    return first, second, forced


@pytest.mark.parametrize("f, x, expected", [
    (lambda x: x * x.astype(bool), 0.0, [0.0, 1.0]),          # the function x: [0, 1] at 0
    (lambda x: x * x.astype(bool), 2.0, [1.0]),
    (lambda y: jnp.copysign(1.0, y) * y, 0.0, [-1.0, 1.0]),   # |y| through the sign bit
    (lambda y: jnp.copysign(1.0, y) * y, -2.0, [-1.0]),
    (lambda x: x * jnp.signbit(x), 0.0, [0.0, 1.0]),          # min(x, 0)·(-1)... x·1_{x<0}: [0, 1]
    (lambda x: x + x.astype(int), 0.5, [1.0]),               # trunc is constant off the integers
    (lambda x: x + x.astype(int), 0.0, [1.0]),               # and continuous at 0
])
def test_discrete_casts_of_varying_values_are_not_taken_as_constant(f, x, expected):
    for S in _both_paths(f, x):
        assert sorted(S.vertices.ravel().tolist()) == pytest.approx(expected)
        assert S.contains(jax.jacfwd(f)(jnp.asarray(x)).reshape(1, 1), tol=1e-12)


@pytest.mark.parametrize("f, x", [
    (lambda x: x + x.astype(int), 1.0),                        # trunc jumps at 1
    (lambda x: x + x.astype(int), -3.0),
    (lambda x: x + jnp.digitize(x, jnp.array([0.0, 1.0, 2.0])), 1.0),
])
def test_jumps_of_integer_results_raise(f, x):
    for call in (lambda: cv.jacobian(f)(jnp.asarray(x)), lambda: cv.jacobian(f, fast=True)(jnp.asarray(x))):
        with pytest.raises(cv.JumpError):
            call()


def test_total_order_comparisons_are_tied_like_plain_ones():
    # jnp.interp at a knot: the index from searchsorted (lt_to comparisons) is tied, each index
    # is a selection, and the two pieces meet continuously: the set is [-1, 1] (slopes ±1)
    f = lambda x: jnp.interp(x, jnp.array([0.0, 1.0, 2.0]), jnp.array([0.0, 1.0, 0.0]))  # noqa: E731
    for fast in (False, True):
        assert interval(cv.jacobian(f, fast=fast)(jnp.asarray(1.0))) == (-1.0, 1.0)
    assert cv.jacobian(f)(jnp.asarray(0.5)).vertices.ravel().tolist() == [1.0]
    # a knot where the slope does not change is a tie without a kink: a singleton
    g = lambda x: jnp.interp(x, jnp.array([0.0, 1.0, 2.0]), jnp.array([0.0, 1.0, 2.0]))  # noqa: E731
    assert cv.jacobian(g)(jnp.asarray(1.0)).vertices.ravel().tolist() == [1.0]
    # vector input, knots of a 4-point table: each tied coordinate gets its own pair of slopes
    xp, fp = jnp.array([0.0, 1.0, 2.0, 3.0]), jnp.array([0.0, 2.0, 1.0, 1.0])
    h = lambda x: jnp.interp(x, xp, fp)  # noqa: E731
    S = cv.jacobian(h)(jnp.array([1.0, 2.0, 0.5]))
    assert_hull_equal(S, [np.diag([a, b, 2.0]) for a in (2.0, -1.0) for b in (-1.0, 0.0)])


def test_bit_level_and_other_discrete_results_without_a_rule_raise():
    # the two 32-bit halves of a float64: not a sign-bit use, no rule, a clear error at any point
    f = lambda x: x * jax.lax.bitcast_convert_type(x, jnp.int32)[0].astype(x.dtype)  # noqa: E731
    for call in (lambda: cv.jacobian(f)(jnp.asarray(1.5)), lambda: cv.jacobian(f, fast=True)(jnp.asarray(1.5))):
        with pytest.raises(cv.NoRuleError, match="bitcast_convert_type"):
            call()

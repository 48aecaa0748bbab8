"""Bad input gets a clear error (DESIGN §5): MatrixSet and conservative.jacobian."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from conservative import JumpError, MatrixSet, NoRuleError, SetTooLargeError, jacobian, register_smooth

relu = jax.nn.relu


# ----------------------------------------------------------------------------- MatrixSet
@pytest.mark.parametrize("gens", ["abc", None, object(), [object()], {"a": 1}])
def test_matrix_set_non_array_generators(gens):
    with pytest.raises((TypeError, ValueError), match="generators"):
        MatrixSet(gens)


@pytest.mark.parametrize(
    "gens", [np.zeros(3), np.zeros((2, 2, 2, 2)), np.zeros(()), np.zeros((2, 0, 3)), np.zeros((0, 2, 2))]
)
def test_matrix_set_wrong_shapes(gens):
    with pytest.raises(ValueError, match="generators"):
        MatrixSet(gens)


def test_matrix_set_empty_family_and_ragged():
    with pytest.raises(ValueError, match="empty"):
        MatrixSet([])
    with pytest.raises(ValueError, match="generators"):
        MatrixSet([np.eye(2), np.eye(3)])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_matrix_set_non_finite(bad):
    G = np.zeros((2, 2, 2))
    G[1, 0, 1] = bad
    with pytest.raises(ValueError, match="non-finite"):
        MatrixSet(G)
    S = MatrixSet(np.zeros((2, 2, 2)) + np.eye(2))
    M = np.zeros((2, 2))
    M[0, 0] = bad
    for call in (S.contains, S.support, S.distance, S.project, S.translate):
        with pytest.raises(ValueError, match="non-finite"):
            call(M)
    with pytest.raises(ValueError):
        S.scale(bad)


def test_matrix_set_complex_rejected():
    with pytest.raises(TypeError):
        MatrixSet(np.ones((1, 2, 2)) * 1j)


def test_matrix_set_float32_warns():
    with pytest.warns(UserWarning, match="float32"):
        S = MatrixSet(np.ones((2, 2, 2), dtype=np.float32))
    S = MatrixSet(np.stack([np.eye(2), np.zeros((2, 2))]))
    with pytest.warns(UserWarning, match="float32"):
        S.contains(np.eye(2, dtype=np.float32))
    with pytest.warns(UserWarning, match="float32"):
        S.support(np.eye(2, dtype=np.float32))
    with pytest.warns(UserWarning, match="float32"):
        MatrixSet(jnp.ones((2, 2), dtype=jnp.float32))


def test_matrix_set_mismatched_shapes_in_operations():
    S = MatrixSet(np.zeros((2, 2, 3)))
    T = MatrixSet(np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="shape"):
        S + T
    with pytest.raises(ValueError):
        S @ S
    with pytest.raises(ValueError, match="A"):
        S.left_multiply(np.ones((2, 3)))
    with pytest.raises(ValueError, match="B"):
        S.right_multiply(np.ones((2, 2)))
    with pytest.raises(ValueError, match="M"):
        S.contains(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="D"):
        S.support(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="M"):
        S.distance(np.zeros(6))
    with pytest.raises(ValueError, match="rows"):
        MatrixSet.hstack([S, MatrixSet(np.zeros((1, 3, 1)))])
    with pytest.raises(ValueError, match="generators"):
        MatrixSet.hstack([MatrixSet(np.random.default_rng(0).standard_normal((3, 2, 1))),
                          MatrixSet(np.random.default_rng(1).standard_normal((2, 2, 1)))])
    with pytest.raises(TypeError):
        S + "x"
    with pytest.raises(TypeError):
        S.minkowski_sum(np.zeros((2, 3)))
    with pytest.raises(TypeError):
        MatrixSet.hstack([S, np.zeros((2, 3))])
    with pytest.raises(ValueError):
        MatrixSet.hstack([])
    with pytest.raises(ValueError, match="n1"):
        S.split_columns(3)
    with pytest.raises(ValueError):
        MatrixSet.minkowski_sum_of_hulls(np.zeros((2, 3)), [np.zeros((1, 3, 2))])
    with pytest.raises(ValueError):
        MatrixSet.zonotope(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(TypeError):
        S * np.ones((2, 2))


def test_matrix_set_negative_tol():
    S = MatrixSet(np.eye(2))
    with pytest.raises(ValueError, match="tol"):
        S.contains(np.eye(2), tol=-1e-3)


def test_matrix_set_vertices_limit_message():
    Z = np.random.default_rng(3).standard_normal((6, 2, 2))
    S = MatrixSet.zonotope(np.zeros((2, 2)), Z)
    with pytest.raises(SetTooLargeError, match=r"max_vertices=10\b"):
        S.enumerate_vertices(max_vertices=10)
    assert len(S.enumerate_vertices(max_vertices=64)) >= 2


# ----------------------------------------------------------------------------- jacobian
def test_no_rule_primitive_names_primitive_and_register_smooth():
    from jax.scipy.special import betainc

    with pytest.raises(NotImplementedError, match=r"regularized_incomplete_beta.*register_smooth"):
        jacobian(lambda x: betainc(2.0, 3.0, x))(jnp.array([0.3, 0.5]))


def test_register_smooth_lets_a_smooth_primitive_through():
    p = jax.extend.core.Primitive("my_double_for_test")
    p.def_impl(lambda x: 2 * x)
    p.def_abstract_eval(lambda x: jax.core.ShapedArray(x.shape, x.dtype))
    jax.interpreters.ad.defjvp(p, lambda t, x: 2 * t)
    with pytest.raises(NotImplementedError, match="my_double_for_test"):
        jacobian(lambda x: p.bind(x))(1.0)
    register_smooth(p)
    assert jacobian(lambda x: p.bind(x))(1.0).vertices.ravel().tolist() == [2.0]


def test_discontinuous_where_raises_jump_error():
    f = lambda x: jnp.where(x > 0, x + 1.0, x)  # noqa: E731 - jumps at 0
    with pytest.raises(JumpError):
        jacobian(f)(0.0)
    assert issubclass(JumpError, ValueError)
    # within tol the branches are considered equal only if they agree within tol
    with pytest.raises(JumpError):
        jacobian(lambda x: jnp.where(x > 0, x + 1e-6, x), tol=1e-9)(0.0)
    S = jacobian(lambda x: jnp.where(x > 0, x + 1e-12, x), tol=1e-9)(0.0)
    assert S.contains(np.array([[1.0]]))


def test_discontinuous_cond_raises_jump_error():
    f = lambda x: lax.cond(x > 0, lambda z: z + 1.0, lambda z: z, x)  # noqa: E731
    with pytest.raises(JumpError):
        jacobian(f)(0.0)


def test_comparison_converted_to_number_jumps_unless_multiplied_by_zero():
    # x * (x > 0) is continuous at 0 (the indicator multiplies 0): resolved like where(x > 0, x, 0)
    np.testing.assert_array_equal(np.sort(jacobian(lambda x: x * (x > 0))(0.0).vertices.ravel()), [0.0, 1.0])
    # (x + 1) * (x > 0) jumps at 0; (x > 0) + x too (no rule resolves an added indicator)
    with pytest.raises(JumpError, match="jumps"):
        jacobian(lambda x: (x + 1.0) * (x > 0))(0.0)
    with pytest.raises(ValueError, match="tied comparison"):
        jacobian(lambda x: (x > 0) + x)(0.0)


def test_while_loop_tied_condition_raises():
    f = lambda x: lax.while_loop(lambda v: v < 1.0, lambda v: v + 1.0, x)  # noqa: E731
    with pytest.raises(JumpError, match="while_loop"):
        jacobian(f)(1.0)


def test_argmax_at_tie_reading_different_values_jumps():
    # y[argmax(x)] with y different at the tied positions: the function jumps there
    with pytest.raises(JumpError, match="depends on a tie"):
        jacobian(lambda x: (x * jnp.array([1.0, 2.0]))[jnp.argmax(x)])(jnp.array([1.0, 1.0]))
    with pytest.raises(JumpError, match="depends on a tie"):
        jacobian(lambda x: lax.cond(jnp.argmax(x) == 0, lambda: x[0], lambda: 2 * x[1]))(jnp.array([1.0, 1.0]))
    with pytest.raises(SetTooLargeError, match="max_selections=8. Raise it"):
        jacobian(lambda X: jnp.sum(jnp.take_along_axis(X, jnp.argmax(X, axis=1)[:, None], axis=1)),
                 max_selections=8)(jnp.ones((4, 3)))


def test_sqrt_at_zero_not_lipschitz():
    with pytest.raises(ValueError, match="sqrt"):
        jacobian(jnp.sqrt)(0.0)


def test_integer_argnums_leaf_type_error():
    with pytest.raises(TypeError, match="floating"):
        jacobian(lambda x: x * 2)(jnp.array([1, 2]))
    with pytest.raises(TypeError, match="floating"):
        jacobian(lambda p: p["a"] * p["n"])({"a": jnp.array(1.0), "n": jnp.array(2)})
    # an integer argument that is not differentiated is fine
    S = jacobian(lambda x, n: x * n, argnums=0)(2.0, jnp.array(3))
    assert S.vertices.ravel().tolist() == [3.0]


def test_integer_output_type_error():
    with pytest.raises(TypeError, match="outputs"):
        jacobian(lambda x: jnp.argmax(x))(jnp.array([1.0, 2.0]))


@pytest.mark.parametrize("argnums", [(), "0", 1.0, (0, "1"), None, [0.5]])
def test_bad_argnums_type(argnums):
    with pytest.raises(TypeError, match="argnums"):
        jacobian(lambda x, y: x * y, argnums=argnums)(1.0, 2.0)


@pytest.mark.parametrize("argnums", [2, -3, (0, 5)])
def test_bad_argnums_range(argnums):
    with pytest.raises(ValueError, match="argnums"):
        jacobian(lambda x, y: x * y, argnums=argnums)(1.0, 2.0)


def test_negative_argnums_like_jax():
    S = jacobian(lambda x, y: x * y, argnums=-1)(2.0, 3.0)
    assert S.vertices.ravel().tolist() == [2.0]


def test_duplicate_argnums_rejected():
    with pytest.raises(ValueError, match="argnums"):
        jacobian(lambda x, y: x * y, argnums=(0, 0))(2.0, 3.0)


@pytest.mark.parametrize("tol", [-1e-9, float("nan"), float("inf"), "0.1"])
def test_bad_tol(tol):
    with pytest.raises(ValueError, match="tol"):
        jacobian(relu, tol=tol)


@pytest.mark.parametrize("ms", [0, -1])
def test_bad_max_selections(ms):
    with pytest.raises(ValueError, match="max_selections"):
        jacobian(relu, max_selections=ms)


@pytest.mark.parametrize("ms", [2.5, 8.0, True, "8"])
def test_max_selections_must_be_an_int(ms):
    with pytest.raises(TypeError, match="max_selections"):
        jacobian(relu, max_selections=ms)


def test_fun_not_callable():
    with pytest.raises(TypeError, match="fun"):
        jacobian(3.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_point(bad):
    with pytest.raises(ValueError, match="non-finite"):
        jacobian(relu)(jnp.array([0.0, bad]))


def test_float32_point_warns():
    with pytest.warns(UserWarning, match="float32"):
        jacobian(relu)(jnp.array([1.0, -1.0], dtype=jnp.float32))


def test_max_selections_exceeded_by_interacting_ties():
    def f(x):
        for _ in range(4):
            x = relu(x) + relu(-x) * 0.5  # each level depends on the previous selections
        return x

    with pytest.raises(SetTooLargeError, match="max_selections=8"):
        jacobian(f, max_selections=8)(0.0)
    # with enough room it works and contains JAX's element
    S = jacobian(f, max_selections=4096)(0.0)
    assert S.contains(np.array([[float(jax.jacfwd(f)(0.0))]]), tol=1e-12)


def test_independent_ties_do_not_count_against_max_selections():
    x = jnp.zeros(20)
    S = jacobian(relu, max_selections=2)(x)  # 20 independent ties: a zonotope, 2^20 vertices
    assert S.num_candidate_vertices == 2**20
    assert S.contains(0.5 * np.eye(20), tol=1e-8)
    with pytest.raises(SetTooLargeError, match="max_vertices"):
        S.vertices


def test_sort_tie_block_above_max_selections():
    # every way of exceeding the limit raises the documented SetTooLargeError with the remedy
    with pytest.raises(SetTooLargeError, match="max_selections=100. Raise it"):
        jacobian(jnp.sort, max_selections=100)(jnp.zeros(6))  # 720 orderings
    with pytest.raises(SetTooLargeError, match="max_selections=100. Raise it"):
        jacobian(lambda x: x[jnp.argsort(x)], max_selections=100)(jnp.zeros(6))
    with pytest.raises(SetTooLargeError, match="max_selections=8. Raise it"):
        jacobian(lambda x: jnp.piecewise(x, [x < 0, x >= 0], [lambda v: -v, lambda v: v]).sum() *
                 jnp.where(x > 0, 1.0, 1.0).sum(), max_selections=8)(jnp.zeros(5))


def test_tie_in_non_differentiated_argument_is_not_a_jump():
    S = jacobian(lambda x, c: jnp.where(c > 0, x, 2 * x), argnums=0)(1.0, 0.0)
    assert S.vertices.ravel().tolist() == [2.0]


def test_constant_tie_is_not_a_jump():
    c = jnp.zeros(2)
    S = jacobian(lambda x: jnp.where(c > 0, x, 3 * x))(jnp.array([1.0, 2.0]))
    np.testing.assert_array_equal(S.vertices, [3.0 * np.eye(2)])


def test_as_matrix_stack_validates_families():
    from conservative import as_matrix_stack

    assert as_matrix_stack(np.eye(2)).shape == (1, 2, 2)
    with pytest.raises(ValueError, match="fam: empty family"):
        as_matrix_stack([], "fam")
    with pytest.raises(ValueError, match="different shapes"):
        as_matrix_stack([np.eye(2), np.eye(3)], "fam")
    with pytest.raises(ValueError, match="non-finite"):
        as_matrix_stack([np.full((2, 2), np.nan)], "fam")
    with pytest.raises(TypeError, match="complex"):
        as_matrix_stack([np.eye(2) * 1j], "fam")


def test_jacobian_under_a_transformation_is_a_clear_type_error():
    J = jacobian(lambda x: jnp.maximum(x, 0.0))
    for transform in (jax.jit, jax.vmap):
        with pytest.raises(TypeError, match="tracer.*concrete values"):
            transform(lambda x: J(x).vertices)(jnp.ones(3) if transform is jax.vmap else jnp.asarray(1.0))


@pytest.mark.parametrize("f, x", [
    (lambda x: jnp.zeros(3).at[jnp.array([0, 0])].max(x[:2]), jnp.array([1.0, 1.0, 0.0])),  # scatter-max
    (lambda x: lax.reduce(x, 0.0, lambda a, b: a * b + b, (0,)), jnp.array([1.0, 2.0])),  # generic reduce
    (lambda x: jnp.real(jnp.fft.fft(x)), jnp.array([1.0, 2.0])),  # complex intermediate
    (lambda x: lax.approx_max_k(x, 1)[0], jnp.array([1.0, 2.0])),
    (lambda x: jnp.linalg.eigvals(jnp.diag(x)).real, jnp.array([1.0, 2.0])),  # eig
])
def test_primitives_of_the_no_rule_class_raise(f, x):
    for fast in (False, True):
        with pytest.raises(NoRuleError):
            jacobian(f, fast=fast)(x)

"""jacobian_reverse gives the forward conservative Jacobian as a set (supports, vertices), falls back
to forward mode outside its subset, and raises the forward errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import conservative as C
from conservative._reverse import jacobian_reverse

jax.config.update("jax_enable_x64", True)
EPS = np.finfo(np.float64).eps


def assert_same_set(A, B, directions=40, seed=0):
    assert A.shape == B.shape
    rng = np.random.default_rng(seed)
    for _ in range(directions):
        D = rng.standard_normal(A.shape)
        a, b = A.support(D), B.support(D)
        assert abs(a - b) <= max(1e-12, 64 * EPS * (1 + abs(b))), (a, b)


def both(f, x, **kw):
    jr = jacobian_reverse(f, **kw)
    return jr(x), C.jacobian(f, fast=False, mode="forward", **kw)(x), jr


def test_soft_threshold_gradient_is_the_box():
    lam = 0.5
    x = jnp.array([0.5, -0.5, 1.5, 0.2, -2.0])
    A, B, jr = both(lambda x: jnp.sum(jnp.sign(x) * jnp.maximum(jnp.abs(x) - lam, 0)) + 0.5 * x @ x, x)
    assert jr.last_mode == "reverse"
    lo = np.asarray(x) + np.array([0, 0, 1, 0, 1.0])
    hi = lo + np.array([1, 1, 0, 0, 0.0])
    box = C.MatrixSet(np.stack([lo + (hi - lo) * np.array(b) for b in np.ndindex(*(2,) * 5)])[:, None, :])
    assert_same_set(A, box)
    assert_same_set(A, B)


def test_relu_difference_is_an_independent_choice_per_occurrence():
    A, B, jr = both(lambda x: jax.nn.relu(x) - jax.nn.relu(-x), jnp.array([0.0]))
    assert jr.last_mode == "reverse"
    assert np.allclose(sorted(A.vertices.ravel()), [0.0, 2.0])
    assert_same_set(A, B)


def test_same_comparison_read_twice_is_one_choice():
    # where(x > 0, x, 0) appears twice: one choice, so d/dx at 0 is {0, 1 + 2}, not [0, 3] with 1 and 2
    f = lambda x: jnp.where(x > 0, x, 0.0) + 2 * jnp.where(0 < x, x, 0.0)  # noqa: E731
    A, B, jr = both(f, jnp.array([0.0]))
    assert jr.last_mode == "reverse"
    assert np.allclose(sorted(A.vertices.ravel()), [0.0, 3.0])
    assert_same_set(A, B)


def test_reduce_max_ties_and_argnums_tuple():
    f = lambda x, y: jnp.max(x * y) + jnp.sum(jnp.abs(y))  # noqa: E731
    x, y = jnp.array([1.0, 2.0, 0.5]), jnp.array([2.0, 1.0, 0.0])
    jr = jacobian_reverse(f, argnums=(0, 1))
    A, B = jr(x, y), C.jacobian(f, argnums=(0, 1), fast=False)(x, y)
    assert jr.last_mode == "reverse"
    assert_same_set(A, B)


def test_interacting_ties_merge_into_one_group():
    # relu(a · relu(x) - 1) at x = (0, 0, 1), a = (1, 2, 1): the outer tie multiplies the inner ones,
    # gradient = s_out · (a_i s_i) with s_out, s_1, s_2 ∈ {0, 1} jointly (one merged group)
    a = jnp.array([1.0, 2.0, 1.0])
    f = lambda x: jax.nn.relu(a @ jax.nn.relu(x) - 1.0)  # noqa: E731
    A, B, jr = both(f, jnp.array([0.0, 0.0, 1.0]))
    assert jr.last_mode == "reverse"
    expect = {(s0 * s1 * 1.0, s0 * s2 * 2.0, s0 * 1.0) for s0 in (0, 1) for s1 in (0, 1) for s2 in (0, 1)}
    hull = C.MatrixSet(np.array(sorted(expect))[:, None, :])
    assert_same_set(A, hull)
    assert_same_set(A, B)


def test_same_comparison_inside_and_outside_a_product():
    # where(x > 0, ...) read by two nested selects at the same tie: one choice, multiplied with itself
    f = lambda x: jnp.where(x > 0, jnp.where(x > 0, 3 * x, 0.0) + jnp.maximum(x, 0.0), 0.0)  # noqa: E731
    A, B, jr = both(f, jnp.array([0.0]))
    assert jr.last_mode == "reverse"
    assert_same_set(A, B)
    assert np.allclose(sorted(A.vertices.ravel()), sorted(B.vertices.ravel()))


@pytest.mark.parametrize("f, x", [
    (lambda x: jnp.sort(x)[0] * x[1], jnp.array([1.0, 1.0])),
    (lambda x: jnp.where(x == 0, 1.0, jnp.sin(x) / x), jnp.array([0.0])),
    (lambda x: jax.lax.cond(x[0] > 0, lambda v: v * 2, lambda v: v, x), jnp.array([1.0, 2.0])),
])
def test_fallback_cases_give_the_forward_answer(f, x):
    A, B, jr = both(f, x)
    assert jr.last_mode == "forward"
    assert_same_set(A, B)


def test_errors_are_the_forward_errors():
    with pytest.raises(C.JumpError):
        jacobian_reverse(lambda x: jnp.where(x > 0, 1.0, 0.0) + x)(jnp.array([0.0]))
    with pytest.raises(TypeError, match="argnums"):
        jacobian_reverse(jnp.sin, argnums="a")(jnp.array([1.0]))
    with pytest.raises(ValueError, match="non-finite"):
        jacobian_reverse(jnp.sin)(jnp.array([np.nan]))


def test_two_layer_network_loss_contains_jax_grad():
    rng = np.random.default_rng(0)
    W1 = np.round(rng.standard_normal((6, 5)) * 8) / 8
    X = np.round(rng.standard_normal((4, 6)) * 8) / 8
    X[0, 2] = 0.0
    W1[2, 1] = 1.0
    X[0, 2] = -(X[0] @ W1[:, 1])  # unit (0, 1) exactly tied
    W2 = jnp.asarray(rng.standard_normal((5, 3)))
    y = jnp.array([0, 1, 2, 0])

    def loss(W):
        z = jax.nn.relu(jnp.asarray(X) @ W) @ W2
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(4), y])

    A, B, jr = both(loss, jnp.asarray(W1))
    assert jr.last_mode == "reverse" and len(A) > 1
    assert A.contains(np.ravel(jax.grad(loss)(jnp.asarray(W1)))[None, :], tol=1e-10)
    assert_same_set(A, B)


@pytest.mark.parametrize("f, x", [
    (lambda x: jnp.sum(x.at[jnp.array([0, 7])].get(mode="fill", fill_value=0.0) ** 2) + jnp.max(x),
     jnp.array([1., 2., 2.])),
    (lambda x: jnp.concatenate([x, 2 * x[:2]]).max() * jnp.abs(x[0]), jnp.array([1., 1., 0.5])),
    (lambda x: jnp.sum(jnp.clip(x, -1.0, 1.0) ** 3), jnp.array([1., -1., 0.3])),
    (lambda x: jnp.stack([jnp.max(x), jnp.min(x), jnp.sum(jnp.abs(x))]), jnp.array([1., 1., 0.])),
    (lambda x: jax.nn.logsumexp(jax.nn.relu(x) * 2.0) + jnp.linalg.norm(x), jnp.array([0., 1., 2.])),
    (lambda x: jax.jit(lambda y: jnp.maximum(y, 0.0).sum())(x) * x[1], jnp.array([0., 2.])),
    (lambda x: jnp.sum(jnp.maximum(x[:, None] + jnp.zeros((2, 3)), x[None, :2].T) ** 2), jnp.array([1., 2.])),
    (lambda x: x[jnp.argmax(x)] * 2 + jnp.sign(x[0]) * x[1], jnp.array([1., 3., 2.])),
], ids=["gather-fill", "concatenate", "clamp", "three-outputs", "logsumexp", "inner-jit", "size-1-broadcast",
        "argmax-sign"])
def test_supported_primitives_give_the_forward_set(f, x):
    A, B, jr = both(f, x)
    assert jr.last_mode == "reverse", jr.last_reason
    assert_same_set(A, B)


OPS = ["relu", "abs", "max", "min", "lin", "sum", "where"]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.sampled_from(OPS), min_size=1, max_size=5), st.integers(0, 2 ** 31 - 1))
def test_random_piecewise_affine_programs_equal_forward(ops, seed):
    """Random compositions of kinks and integer-weight linear maps at points with exact ties."""
    rng = np.random.default_rng(seed)
    n = 4
    Ms = [jnp.asarray(rng.integers(-2, 3, (n, n)).astype(float)) for _ in ops]

    def f(x):
        for op, M in zip(ops, Ms):
            if op == "relu":
                x = jax.nn.relu(x)
            elif op == "abs":
                x = jnp.abs(x)
            elif op == "max":
                x = jnp.maximum(x, x[::-1])
            elif op == "min":
                x = jnp.minimum(x, 1.0)
            elif op == "lin":
                x = M @ x
            elif op == "sum":
                x = x + jnp.max(x)
            else:
                x = jnp.where(x > 0, 2 * x, x * 0.5) * 0 + jnp.where(x >= 0, x, 0.0)
        return jnp.sum(x * jnp.arange(1.0, n + 1)) + x[0]

    x = jnp.asarray(rng.integers(-1, 2, n).astype(float))
    A, B, _ = both(f, x)
    assert_same_set(A, B, directions=20, seed=seed)
    if len(B) <= 64:
        Vr = np.unique(np.round(A.vertices.reshape(len(A.vertices), -1), 9), axis=0)
        Vf = np.unique(np.round(B.vertices.reshape(len(B.vertices), -1), 9), axis=0)
        assert Vr.shape == Vf.shape and np.allclose(Vr, Vf)


def _soft_loss(x, lam=0.5):
    return jnp.sum(jnp.sign(x) * jnp.maximum(jnp.abs(x) - lam, 0.0)) + 0.5 * x @ x


def test_mode_auto_takes_reverse_for_a_loss_of_many_inputs():
    n = 2 * C._jacobian.REVERSE_MIN_COLUMNS
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, n)
    x[rng.choice(n, 50, replace=False)] = 0.5
    x = jnp.asarray(x)
    auto = C.value_and_jacobian(_soft_loss)
    value, A = auto(x)
    assert auto.last_mode == "reverse"
    assert float(value) == float(_soft_loss(x))
    fwd = C.jacobian(_soft_loss, mode="forward")
    B = fwd(x)
    assert fwd.last_mode == "forward"
    assert_same_set(A, B, directions=10)
    assert A.num_groups == 50 and A.contains(np.asarray(jax.grad(_soft_loss)(x))[None, :])


def test_mode_auto_keeps_forward_for_many_outputs_or_few_inputs():
    jac = C.jacobian(lambda x: jnp.maximum(x, 0.0))
    jac(jnp.zeros(2000))
    assert jac.last_mode == "forward"  # 2000 outputs
    jac = C.jacobian(_soft_loss)
    jac(jnp.array([0.5, 1.0]))
    assert jac.last_mode == "forward"  # 2 inputs


def test_mode_reverse_returns_the_value_and_the_forward_set():
    x = jnp.array([0.5, -0.5, 1.5, 0.2])
    vj = C.value_and_jacobian(_soft_loss, mode="reverse")
    value, A = vj(x)
    assert vj.last_mode == "reverse" and float(value) == float(_soft_loss(x))
    assert_same_set(A, C.jacobian(_soft_loss, mode="forward")(x))
    # outside the reverse subset (a tied sort) the forward interpreter answers
    g = lambda x: jnp.sum(jnp.sort(x) * jnp.arange(4.0))
    jac = C.jacobian(g, mode="reverse")
    y = jnp.array([1.0, 1.0, 0.0, 2.0])
    assert_same_set(jac(y), C.jacobian(g, mode="forward")(y))
    assert jac.last_mode == "forward"


@pytest.mark.parametrize("mode", ["sideways", None, 1])
def test_mode_must_be_a_known_option(mode):
    with pytest.raises(ValueError, match="mode"):
        C.jacobian(jnp.sin, mode=mode)

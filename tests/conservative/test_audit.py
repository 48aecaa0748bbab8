"""audit_ad: AD elements against the Clarke Jacobian and the program's conservative Jacobian."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conservative import ADAudit, audit_ad, jacobian
from conservative._audit import INSIDE, INSIDE_OUTER, OUTSIDE, SPURIOUS

jax.config.update("jax_enable_x64", True)
EPS = np.finfo(np.float64).eps


def test_identity_written_with_relus_is_spurious():
    # relu(x) - relu(-x) = x: AD returns 0 or 2 at 0 (JAX's relu'(0) = 0), the derivative is 1
    a = audit_ad(lambda x: jax.nn.relu(x) - jax.nn.relu(-x))(jnp.zeros(1))
    assert isinstance(a, ADAudit) and a.exact
    for name in ("jacfwd", "jacrev"):
        e = a.element(name)
        assert e.verdict == SPURIOUS and e.spurious and not e.inside_clarke
        M = float(e.matrix[0, 0])
        assert M in (0.0, 2.0)
        # d(M, {1}) = |M - 1| = 1 exactly; the program's set [0, 2] contains M
        assert abs(e.clarke_distance[0] - 1.0) <= 1e3 * EPS and abs(e.clarke_distance[1] - 1.0) <= 1e3 * EPS
        assert e.conservative_distance[1] <= a.tol
    with pytest.raises(AssertionError, match=r"jacfwd: spurious.*d\(·, Clarke\) ∈ \[1, 1\]"):
        a.assert_clarke()
    a.assert_conservative()  # spurious elements are in the program's set
    text = str(a)
    assert "spurious" in text and "Clarke Jacobian exact with 1 vertices" in text


def test_abs_softplus_and_duplicated_neurons_are_inside_clarke():
    w = jnp.array([1.0, -2.0])
    dup = lambda x: 5 * jax.nn.relu(w @ x) - sum(jax.nn.relu(w @ x) for _ in range(4))  # noqa: E731
    for f, x in [(jnp.abs, jnp.zeros(1)), (jax.nn.softplus, jnp.zeros(1)), (dup, jnp.zeros(2))]:
        a = audit_ad(f)(x)
        a.assert_clarke()
        assert all(v == INSIDE for v in a.verdicts.values()), a


def test_user_elements_and_outside_both():
    # |x| - |x| = 0: the program's set is [-2, 2]; 2 is spurious, 3 is outside both
    a = audit_ad(lambda x: jnp.abs(x) - jnp.abs(x), elements={"two": [[2.0]], "three": [[3.0]]},
                 modes=())(jnp.zeros(1))
    assert a.verdicts == {"two": SPURIOUS, "three": OUTSIDE}
    assert abs(a.element("three").conservative_distance[0] - 1.0) <= 1e3 * EPS
    with pytest.raises(AssertionError, match="three: outside both"):
        a.assert_conservative()
    a.assert_conservative("two")
    with pytest.raises(KeyError, match="jacfwd"):
        a.element("jacfwd")


def test_pytrees_and_argnums_follow_the_flattening_of_jacobian():
    f = lambda x, t: jnp.maximum(x * t["a"], t["b"])  # noqa: E731
    args = (jnp.zeros(2), {"a": jnp.array([1.0, -1.0]), "b": jnp.zeros(2)})
    a = audit_ad(f, argnums=(0, 1))(*args)
    J = jacobian(f, argnums=(0, 1))(*args)
    assert a.element("jacfwd").matrix.shape == J.shape == (2, 6)
    a.assert_clarke()
    # a matrix with the blocks in another order is far from both sets
    M = np.asarray(a.element("jacfwd").matrix)
    b = audit_ad(f, argnums=(0, 1), modes=(), elements={"swapped": M[:, ::-1]})(*args)
    assert b.element("swapped").conservative_distance[0] > 0.5


def test_outer_clarke_set_is_not_certified_inside():
    # relu(min(y, x² - y)): the pattern 0 < y < x²/2 is decided at second order only
    f = lambda z: jax.nn.relu(jnp.minimum(z[1], z[0] ** 2 - z[1]))  # noqa: E731
    a = audit_ad(f, undecided="outer")(jnp.zeros(2))
    assert not a.exact
    assert set(a.verdicts.values()) <= {INSIDE_OUTER, SPURIOUS}
    with pytest.raises(AssertionError):
        a.assert_clarke()
    with pytest.raises(NotImplementedError, match="higher-order"):
        audit_ad(f)(jnp.zeros(2))


def test_errors():
    with pytest.raises(TypeError, match="fun"):
        audit_ad(3)
    with pytest.raises(ValueError, match="tol"):
        audit_ad(jnp.abs, tol=-1.0)
    with pytest.raises(ValueError, match="modes"):
        audit_ad(jnp.abs, modes=("grad",))
    with pytest.raises(TypeError, match="elements"):
        audit_ad(jnp.abs, elements=[[1.0]])
    with pytest.raises(ValueError, match=r"elements\['m'\]: expected shape \(1, 1\)"):
        audit_ad(jnp.abs, elements={"m": np.zeros((2, 2))})(jnp.zeros(1))
    with pytest.raises(ValueError, match="non-finite"):
        audit_ad(jnp.abs, elements={"m": [[np.nan]]})(jnp.zeros(1))



@settings(max_examples=3, deadline=None)
@given(st.integers(0, 10_000))
def test_ad_elements_are_never_outside_the_program_set(seed):
    # random relu/abs/max compositions with a duplicated and a cancelling neuron, at the kink 0:
    # JAX's elements lie in the program's set (inside Clarke or spurious), and the verdicts agree
    # with a direct distance to the Clarke set
    rng = np.random.default_rng(seed)
    W1 = rng.integers(-2, 3, (4, 2)).astype(float)
    W1[1] = W1[0]
    W2 = rng.integers(-2, 3, (2, 4)).astype(float)

    def f(x):
        h = W1 @ x
        h = jnp.stack([jax.nn.relu(h[0]), -jax.nn.relu(h[1]), jnp.abs(h[2]), jnp.maximum(h[3], -h[3] / 2)])
        return jnp.stack([jnp.max(W2 @ h), jax.nn.relu(h[2]) - jax.nn.relu(-h[2])])

    a = audit_ad(f)(jnp.zeros(2))
    for e in a.elements:
        assert e.verdict in (INSIDE, SPURIOUS), str(a)
        d = a.clarke.distance(e.matrix)
        assert (e.verdict == INSIDE) == (d <= a.tol), (d, str(a))
        assert e.clarke_distance[0] <= d <= e.clarke_distance[1] + a.tol


def test_program_sets_too_large_to_enumerate():
    # 41 copies of the same relu: 2^41 candidate vertices of the program's set, never enumerated;
    # the program's set is the segment [-40, 41]·w, the Clarke Jacobian conv{0, w}
    w = jnp.array([1.0, -2.0])
    k = 40
    f = lambda x: (k + 1) * jax.nn.relu(w @ x) - sum(jax.nn.relu(w @ x) for _ in range(k))  # noqa: E731
    a = audit_ad(f, modes=("jacfwd",), elements={"far": np.asarray([41.0 * w])})(jnp.zeros(2))
    assert "a Minkowski sum of" in str(a)
    assert a.verdicts == {"jacfwd": INSIDE, "far": SPURIOUS}
    # d(41·w, conv{0, w}) = 40·‖w‖
    far = a.element("far")
    assert abs(far.clarke_distance[1] - 40 * np.sqrt(5.0)) <= 1e3 * EPS * 41 * np.sqrt(5.0)

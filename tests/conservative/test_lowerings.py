"""Primitives interpreted through an equivalent program (``conservative._lowerings``) and the
degenerate-spectrum rule of ``eigh``/``svd``.

References are independent of the interpreter: closed forms, the hull of the limiting Jacobians
(``jax.jacfwd`` at points that break the ties, one per ordering of the tied entries), JAX's own
element, and the values of the primitives themselves.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import conservative as cv
from conservative import MatrixSet
from conservative import _lowerings as L

EPS = np.finfo(np.float64).eps


# ----------------------------------------------------------------------------- helpers
def vertex_rows(S):
    V = S.vertices
    return np.unique(V.reshape(len(V), -1).round(12), axis=0)


def both(f, x, **kw):
    """The set of the first call of one ``jacobian`` object (the interpreter, as ``fast=False``),
    checked against its second call (the compiled fast path, as ``fast=True``: it must flag
    every tie and hand the point to the interpreter, and agree with it at smooth points)."""
    x = jnp.asarray(x, jnp.float64)
    J = cv.jacobian(f, **kw)
    S0, S1 = J(x), J(x)
    np.testing.assert_array_equal(vertex_rows(S0), vertex_rows(S1))
    return S0


def assert_same_set(S, generators, tol=1e-9):
    """S = conv(generators): every generator in S and every vertex of S in their hull."""
    G = MatrixSet(np.asarray(generators, np.float64).reshape((-1,) + S.shape))
    for M in G.vertices:
        assert S.contains(M, tol=tol), M
    for V in S.vertices:
        assert G.contains(V, tol=tol), V


def assert_ad_in(S, f, x, modes=(jax.jacfwd, jax.jacrev)):
    for jf in modes:
        J = np.asarray(jax.jit(jf(f))(jnp.asarray(x, jnp.float64))).reshape(S.shape)
        assert S.contains(J, tol=1e-10), (jf.__name__, J)


def limiting(f, x, tied, h=1e-7):
    """Jacobians of ``f`` at x + h·d for d = every ordering of the entries ``tied`` (flat
    indices): the limiting Jacobians of a piecewise linear map whose pieces are decided by the
    order of those entries."""
    x = np.asarray(x, np.float64)
    jf = jax.jit(jax.jacfwd(f))
    out = []
    for perm in itertools.permutations(range(len(tied))):
        d = np.zeros(x.size)
        d[list(tied)] = np.asarray(perm, np.float64) + 1.0
        J = jf(jnp.asarray(x + h * d.reshape(x.shape)))
        out.append(np.asarray(J).reshape(-1, x.size))
    return np.unique(np.stack(out).round(9), axis=0)


def assert_smooth(f, x, argnums=0, fast=True):
    """A singleton equal to jax.jacfwd, up to a floor max(err, 64·eps·scale) (from the
    interpreter, and with ``fast`` also from the fast path)."""
    if isinstance(x, tuple) or not fast:
        S = cv.jacobian(f, argnums=argnums, fast=False)(*(x if isinstance(x, tuple) else (x,)))
    else:
        S = both(f, x)
    assert len(S.vertices) == 1
    args = x if isinstance(x, tuple) else (x,)
    J = jax.jit(jax.jacfwd(f, argnums=argnums))(*args)
    if isinstance(J, tuple):
        J = np.concatenate([np.asarray(j).reshape(S.shape[0], -1) for j in J], axis=1)
    J = np.asarray(J).reshape(S.shape)
    scale = max(1.0, float(np.max(np.abs(J))))
    assert np.max(np.abs(S.vertices[0] - J)) <= 64 * EPS * scale * max(S.shape)
    return S


# ----------------------------------------------------------------------------- values
def test_lowered_values_equal_the_primitives():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(-2, 3, size=(30, 3, 6)).astype(np.float64))  # many ties
    for k in (1, 3, 6):
        v, i = lax.top_k(x, k)
        v2, i2 = jax.jit(L.LOWERINGS["top_k"](k=k, axis=2))(x)
        np.testing.assert_array_equal(i, i2)  # tie order: increasing index
        np.testing.assert_array_equal(v, v2)
        assert i2.dtype == jnp.int32
    v, i = lax.top_k(jnp.moveaxis(x, 1, 2), 2)
    v2, i2 = L.LOWERINGS["top_k"](k=2, axis=1)(x)
    np.testing.assert_array_equal(jnp.moveaxis(i, 2, 1), i2)
    # 0.0 and -0.0 tie for lax.sort (index order); lax.top_k puts 0.0 first: same values, the
    # same indices up to their order inside the block of zeros
    z = jnp.where(x == 0, jnp.where(rng.random(x.shape) < 0.5, -0.0, 0.0), x)
    v, i = lax.top_k(z, 6)
    v2, i2 = L.LOWERINGS["top_k"](k=6, axis=2)(z)
    np.testing.assert_array_equal(v, v2)
    np.testing.assert_array_equal(np.where(v == 0, -1, i), np.where(v2 == 0, -1, i2))
    np.testing.assert_array_equal(np.sort(np.where(v == 0, i, -1)), np.sort(np.where(v2 == 0, i2, -1)))
    for axis, reverse, name, op in ((1, False, "cummax", lax.cummax), (2, True, "cummax", lax.cummax),
                                    (1, True, "cummin", lax.cummin), (2, False, "cummin", lax.cummin)):
        a = op(z, axis=axis, reverse=reverse)
        b = jax.jit(L.LOWERINGS[name](axis=axis, reverse=reverse))(z)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("dtype, configs", [(jnp.float64, 4), (jnp.int32, 2)])
def test_lowered_pooling_values_equal_the_primitives(dtype, configs):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.integers(-3, 4, (2, 5, 6))).astype(dtype)
    for i in range(configs):
        wd = tuple(int(v) for v in rng.integers(1, 4, 3))
        st = tuple(int(v) for v in rng.integers(1, 3, 3))
        bd = tuple(int(v) for v in rng.integers(1, 3, 3))
        wdl = tuple(int(v) for v in rng.integers(1, 3, 3))
        pad = tuple((int(a), int(b)) for a, b in rng.integers(-1, 3, (3, 2)))
        if i % 2 == 0:  # windows tiling the (padded, dilated) operand: the reshape route
            st, wdl = wd, (1, 1, 1)
        for op, init in ((lax.max, -jnp.inf), (lax.min, jnp.inf), (lax.max, 0), (lax.min, 1)):
            if dtype == jnp.int32 and not np.isfinite(init):
                init = jnp.iinfo(jnp.int32).min if init < 0 else jnp.iinfo(jnp.int32).max
            init = np.asarray(init, dtype)
            f = lambda x: lax.reduce_window(x, init, op, wd, st, pad, base_dilation=bd, window_dilation=wdl)  # noqa: B023
            try:
                ref = f(x)
            except (TypeError, ValueError):
                continue  # an empty or invalid window configuration
            (eqn,) = jax.make_jaxpr(f)(x).jaxpr.eqns
            lowered = jax.jit(L.LOWERINGS[eqn.primitive.name](**eqn.params))
            got = lowered(x, jnp.asarray(init))[0] if eqn.primitive.name == "reduce_window" else lowered(x)
            np.testing.assert_array_equal(got, ref)
    for name, fn in (("reduce_window_max", jnp.max), ("reduce_window_min", jnp.min)):
        got = L.LOWERINGS[name](window_dimensions=(1, 2, 2), window_strides=(1, 2, 2), padding=((0, 0), (0, 1), (0, 0)),
                                base_dilation=(1, 1, 1), window_dilation=(1, 1, 1))(x)
        ref = fn(jnp.pad(x, ((0, 0), (0, 1), (0, 0)),
                         constant_values=L._identity(name[-3:], dtype)).reshape(2, 3, 2, 3, 2),
                 axis=(2, 4))
        np.testing.assert_array_equal(got, ref)


def test_lowered_rem_values():
    rng = np.random.default_rng(2)
    for dt in (jnp.int32, jnp.int64):
        a = jnp.asarray(rng.integers(-20, 20, 300), dt)
        b = jnp.asarray(rng.integers(-5, 6, 300), dt)  # with division by zero
        np.testing.assert_array_equal(L.LOWERINGS["rem"]()(a, b), lax.rem(a, b))
    a = jnp.asarray(rng.standard_normal(2000) * 10)
    b = jnp.asarray(rng.standard_normal(2000))
    err = np.abs(np.asarray(L.LOWERINGS["rem"]()(a, b)) - np.asarray(lax.rem(a, b)))
    assert np.all(err <= 8 * EPS * np.maximum(np.abs(np.asarray(a)), 1.0))


# ----------------------------------------------------------------------------- top_k
def top2(x):
    return lax.top_k(x, 2)[0]


def test_top_k_tied_values_is_the_hull_of_the_orderings():
    x = np.array([3.0, 1.0, 3.0, 2.0])
    S = both(top2, x)
    e = np.eye(4)
    assert_same_set(S, [np.stack([e[0], e[2]]), np.stack([e[2], e[0]])])
    assert_same_set(S, limiting(top2, x, [0, 2]))
    assert_ad_in(S, top2, x)


def test_top_k_tie_block_across_the_cut():
    f = lambda x: lax.top_k(x, 2)[0]
    x = np.array([1.0, 1.0, 1.0, 0.0])
    S = both(f, x)
    e = np.eye(4)
    assert_same_set(S, [np.stack([e[i], e[j]]) for i, j in itertools.permutations(range(3), 2)])
    assert_same_set(S, limiting(f, x, [0, 1, 2]))
    assert_ad_in(S, f, x)
    # k = 1: eight tied entries are a simplex of 8 vertices (not 8! orderings), for the values
    # and for the entry read through the index
    for g in (lambda x: lax.top_k(x, 1)[0], lambda x: x[lax.top_k(x, 1)[1]]):
        assert_same_set(cv.jacobian(g)(jnp.zeros(8)), np.eye(8)[:, None, :])


def test_top_k_indices_share_the_choice_of_the_values():
    x = np.array([3.0, 1.0, 3.0, 2.0])
    gathered = lambda x: x[lax.top_k(x, 2)[1]]
    assert_same_set(both(gathered, x), both(top2, x).vertices)
    # the indices read another vector: the function jumps (y differs at the tied positions)
    y = jnp.array([0.0, 1.0, 5.0, 2.0])
    with pytest.raises(cv.JumpError):
        cv.jacobian(lambda x: x[0] * y[lax.top_k(x, 1)[1]], fast=False)(jnp.asarray(x))
    # ... and does not where y agrees there
    z = jnp.array([4.0, 1.0, 4.0, 2.0])
    S = both(lambda x: x * z[lax.top_k(x, 1)[1]], x)
    np.testing.assert_allclose(S.vertices[0], 4 * np.eye(4))


def test_top_k_batched_and_smooth():
    x = np.array([[0.5, 2.0, -1.0], [1.0, 1.0, 0.0]])
    f = lambda x: lax.top_k(x, 1)[0]
    S = both(f, x)
    e = np.eye(6)
    assert_same_set(S, [np.stack([e[1], e[3]]), np.stack([e[1], e[4]])])
    assert_ad_in(S, f, x)
    assert_smooth(lambda x: lax.top_k(x, 2)[0] ** 2, jnp.array([0.3, -1.2, 2.5, 0.7]))


# ----------------------------------------------------------------------------- cummax / cummin
def test_cummax_running_tie_is_the_hull_of_the_limiting_jacobians():
    x = np.array([1.0, 0.0, 1.0, 1.0, 2.0])
    S = both(lax.cummax, x)
    assert_same_set(S, limiting(lax.cummax, x, [0, 2, 3]))
    assert len(S.vertices) == 4  # rows 2, 3: (e0,e0), (e0,e3), (e2,e2), (e2,e3)
    assert_ad_in(S, lax.cummax, x)


@pytest.mark.parametrize("reverse", [False, True])
def test_cummin_reverse_and_axis(reverse):
    f = lambda x: lax.cummin(x, axis=0, reverse=reverse)
    x = np.array([[0.0, 2.0], [0.0, 1.0], [1.0, 1.0]])
    S = both(f, x)
    assert_same_set(S, limiting(f, x, [0, 2, 3, 5]))
    assert_ad_in(S, f, x, modes=(jax.jacfwd,))


def test_cummax_contains_jax_element_on_random_ties():
    # JAX differentiates cummax through a log-depth tree (½-½ at tied max): its element lies
    # in the hull of the limiting Jacobians; four independent lines of 0/1 entries at once
    x = np.random.default_rng(3).integers(0, 2, (4, 6)).astype(np.float64)
    f = lambda x: lax.cummax(x, axis=1)
    S = cv.jacobian(f, fast=False)(jnp.asarray(x))
    assert_ad_in(S, f, x)


def test_cummax_smooth():
    assert_smooth(lambda x: lax.cummax(jnp.sin(x), axis=1), jnp.array([[0.1, 0.5, 0.2], [0.9, -0.4, 1.2]]))


# ----------------------------------------------------------------------------- pooling
def maxpool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (2, 2), (2, 2), "VALID")


IMAGE = np.array([[1.0, 0.0, 2.0, 3.0],
                  [0.0, 1.0, 4.0, 1.0],
                  [5.0, 6.0, 7.0, 8.0],
                  [1.0, 2.0, 3.0, 4.0]])


def test_max_pool_with_one_tied_window():
    S = both(maxpool, IMAGE)  # the top-left window has a tie between (0, 0) and (1, 1)
    e = np.eye(16)
    rest = [e[6], e[9], e[11]]
    assert_same_set(S, [np.stack([e[0]] + rest), np.stack([e[5]] + rest)])
    assert_same_set(S, limiting(maxpool, IMAGE, [0, 5]))
    assert_ad_in(S, maxpool, IMAGE)


def test_min_pool_overlapping_windows_and_padding():
    f = lambda x: lax.reduce_window(x, jnp.inf, lax.min, (2, 2), (1, 1), "SAME")
    x = np.array([[1.0, 2.0, 3.0], [4.0, 1.0, 5.0], [6.0, 7.0, 8.0]])
    S = both(f, x)  # the first window {1, 2, 4, 1} ties; the others are strict
    assert len(S.vertices) == 2
    assert_same_set(S, limiting(f, x, [0, 4]))
    assert_ad_in(S, f, x, modes=(jax.jacfwd,))
    assert_smooth(f, x + np.arange(9.0).reshape(3, 3) * 0.01)


def test_generic_reduce_window_max_with_a_zero_init():
    # init 0 is not the identity of max: the generic reduce_window primitive, max(0, window)
    f = lambda x: lax.reduce_window(x, 0.0, lax.max, (2,), (2,), "VALID")
    x = np.array([0.0, -1.0, 2.0, 2.0, -3.0, -4.0])
    S = both(f, x)
    e, z = np.eye(6), np.zeros(6)
    # window 0: max(0, x0, x1) at x0 = 0: {0, e0}; window 1: {e2, e3}; window 2: 0
    gens = [np.stack([a, b, z]) for a in (z, e[0]) for b in (e[2], e[3])]
    assert_same_set(S, gens)
    # flax-style pooling with explicit padding also lowers to the generic primitive
    g = lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (2,), (1,), ((1, 0),))
    (eqn,) = jax.make_jaxpr(g)(jnp.zeros(6)).jaxpr.eqns
    assert eqn.primitive.name in L.LOWERINGS
    Sg = both(g, x)
    assert_same_set(Sg, limiting(g, x, [2, 3]))


def test_pooling_smooth_matches_jacfwd():
    x = jnp.asarray(np.random.default_rng(4).standard_normal((5, 5)))
    pool = lambda x: lax.reduce_window(jnp.tanh(x), -jnp.inf, lax.max, (3, 3), (2, 2), "SAME")
    assert_smooth(pool, x)


# ----------------------------------------------------------------------------- rem / mod
def test_rem_smooth_points_and_zero():
    # fmod(z0, z1) * z and mod(z, 0.7): smooth away from the jumps
    assert_smooth(lambda z: jnp.concatenate([jnp.fmod(z[0], z[1]) * z, jnp.mod(z, 0.7)]), jnp.array([-2.3, 0.8]))
    # fmod(x, y) = x for |x| < |y|: smooth at x = 0 (derivatives 1 in x, 0 in y)
    S = both(lambda z: jnp.fmod(z[0], z[1])[None], jnp.array([0.0, 0.7]))
    np.testing.assert_array_equal(S.vertices, [[[1.0, 0.0]]])


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize(
    "f, x",
    [
        (lambda x: jnp.fmod(x, 0.5), [1.0]),  # x/y = 2
        (lambda x: jnp.fmod(1.0, x), [0.25]),  # jumps in y too
        (lambda x: jnp.mod(x, 0.7), [0.0]),  # Python mod jumps at 0 (from 0.7 to 0)
        (lambda x: jnp.remainder(x, 2.0), [-4.0]),  # x/y = -2
    ],
)
def test_rem_at_a_jump_raises(f, x, fast):
    x = jnp.asarray(x)
    lo, hi = (float(f(x + s * 1e-9)[0]) for s in (-1.0, 1.0))
    assert abs(hi - lo) > 0.1  # the one-sided limits differ: a jump
    with pytest.raises(cv.JumpError):
        cv.jacobian(f, fast=fast)(x)


def test_integer_rem_and_floor_divide():
    k = jnp.arange(5)
    S = both(lambda x: x * lax.rem(k, 2) + jnp.floor_divide(x, 3.0), jnp.array([0.5, 1.0, 2.5, 4.0, 7.0]))
    np.testing.assert_array_equal(S.vertices[0], np.diag([0.0, 1.0, 0.0, 1.0, 0.0]))


# ----------------------------------------------------------------------------- conv (smooth)
def test_conv_general_dilated_is_smooth_in_both_operands():
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((1, 2, 4, 4)))
    w = jnp.asarray(rng.standard_normal((2, 2, 2, 2)))
    f = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", rhs_dilation=(2, 1))
    assert_smooth(f, (x, w), argnums=(0, 1))


# ----------------------------------------------------------------------------- spectral
def rotation(n, seed=6):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q


def svdvals(A):
    return jnp.linalg.svd(A, compute_uv=False)


DEGENERATE = [
    (svdvals, np.zeros((3, 3)), "svd"),  # σ = ‖A‖-like kink at 0
    (lambda A: jnp.linalg.norm(A, 2), np.zeros((2, 3)), "svd"),
    (svdvals, np.outer([1.0, 2.0], [1.0, 0.0, -1.0]), "svd"),  # rank 1: σ_2 = 0
    (svdvals, rotation(3) @ np.diag([2.0, 2.0, 1.0]) @ rotation(3, 7).T, "svd"),  # repeated σ
    (jnp.linalg.eigvalsh, np.eye(3), "eigh"),
    (jnp.linalg.eigvalsh, rotation(3) @ np.diag([1.0, 1.0, 2.0]) @ rotation(3).T, "eigh"),  # equal up to rounding
    (lambda A: jnp.linalg.eigh(A)[1] ** 2, np.eye(2), "eigh"),
]


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("f, A, name", DEGENERATE)
def test_degenerate_spectrum_raises(f, A, name, fast):
    with pytest.raises(cv.NoRuleError, match=rf"spectrum of primitive '{name}' is degenerate") as err:
        cv.jacobian(f, fast=fast)(jnp.asarray(A))
    assert "Move the point" in str(err.value)


def test_spectrum_degenerate_threshold():
    w = jnp.array([[1.0, 1.0 + 1e-3, 3.0]])
    assert not bool(L._degenerate_values(w, 3, 0.0, zero=False))
    assert bool(L._degenerate_values(w, 3, 1e-2, zero=False))  # tol enlarges the test
    assert bool(L._degenerate_values(jnp.array([1.0, 1.0 + 4 * EPS]), 2, 0.0, zero=False))
    assert bool(L._degenerate_values(jnp.array([2.0, 1e-17]), 2, 0.0, zero=True))
    assert not bool(L._degenerate_values(jnp.array([2.0, 1e-17]), 2, 0.0, zero=False))


def test_spectral_smooth_points_match_jacfwd():
    rng = np.random.default_rng(8)
    B = rng.standard_normal((3, 3))
    sym = jnp.asarray(B + B.T)
    # eigenvalues and squared eigenvectors (independent of the sign convention)
    assert_smooth(lambda A: jnp.concatenate([jnp.linalg.eigvalsh(A), jnp.linalg.eigh(A)[1].ravel() ** 2]), sym,
                  fast=False)
    # singular values of a wide matrix, |U| and the spectral norm of a square one
    C = jnp.asarray(rng.standard_normal((2, 4)))
    U = lambda A: jnp.concatenate([svdvals(A[:, :2] @ C), jnp.abs(jnp.linalg.svd(A, full_matrices=False)[0]).ravel(),
                                   jnp.linalg.norm(A, 2)[None]])
    assert_smooth(U, jnp.asarray(B[:2, :2]))


def test_lowerings_outside_their_cases_raise_clear_errors():
    from conservative import _lowerings as L

    with pytest.raises(NotImplementedError, match="reduce_window_max of dtype complex128"):
        L._identity("max", jnp.complex128)
    with pytest.raises(NotImplementedError, match="window_strides"):
        L._window_slices(jnp.zeros((2, 2)), 0.0, (1, 1), (1,), ((0, 0), (0, 0)), (1, 1), (1, 1))

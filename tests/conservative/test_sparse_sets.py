"""Structured (sparse) Jacobian sets: sparse reps in ``jacobian``, sparse queries of ``MatrixSet``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

jax.config.update("jax_enable_x64", True)

import conservative  # noqa: E402
from conservative import MatrixSet, SetTooLargeError  # noqa: E402
from conservative import _sparse_reps as S  # noqa: E402

EPS = np.finfo(np.float64).eps
LAM = 0.5


def soft(x, lam=LAM):
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - lam, 0.0)


def tied_point(n, t, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    idx = rng.choice(n, t, replace=False)
    x[idx] = np.where(rng.random(t) < 0.5, LAM, -LAM)
    return x, np.sort(idx)


def soft_support(x, tied_mask, d):
    """Closed form of σ(D) for the conservative Jacobian of soft-thresholding: diagonal entries
    1 off the dead zone, [0, 1] at the ties, 0 inside."""
    return float(np.sum(np.where(tied_mask, np.maximum(d, 0.0), 0.0)) + np.sum(d[np.abs(x) > LAM]))


def floor(err, scale, c=64):
    return max(err, c * EPS * scale)


# ------------------------------------------------------------------ MatrixSet: sparse vs dense queries
def random_set(rng, m=6, n=7, groups=5):
    center = rng.standard_normal((m, n)) * (rng.random((m, n)) < 0.4)
    gs = []
    for _ in range(groups):
        k = int(rng.integers(2, 4))
        mask = rng.random((m, n)) < 0.15  # sparse groups; some share entries
        gs.append(rng.standard_normal((k, m, n)) * mask)
    return MatrixSet.minkowski_sum_of_hulls(center, gs)


@pytest.mark.parametrize("seed", range(6))
def test_sparse_and_dense_queries_agree(seed):
    rng = np.random.default_rng(seed)
    Sset = random_set(rng)
    D = rng.standard_normal(Sset.shape) * (rng.random(Sset.shape) < 0.5)
    scale = 1 + np.abs(D).sum() * 10
    assert abs(Sset.support(D) - Sset.support(sp.csr_array(D))) <= floor(0, scale)
    assert np.allclose(Sset.argsupport(D), Sset.argsupport(sp.coo_array(D)), atol=64 * EPS * scale)
    M = rng.standard_normal(Sset.shape)
    lo_d, hi_d = Sset.distance_bounds(M)
    lo_s, hi_s = Sset.distance_bounds(sp.csr_array(M))
    assert lo_d <= hi_d and lo_s <= hi_s
    # both are certified brackets of the same number: they overlap
    assert max(lo_d, lo_s) <= min(hi_d, hi_s) + 1e-9
    P = Sset.project(sp.csr_array(M))
    assert Sset.contains(P, tol=1e-7)
    assert abs(np.linalg.norm(M - P) - hi_s) <= 1e-9 * max(1.0, hi_s)


def test_distance_bounds_certified_against_vertices():
    """The distance to the set is the distance to the hull of its vertices (checked with a fine
    brute force over convex weights on a 2-group set with disjoint entries)."""
    rng = np.random.default_rng(3)
    C = np.zeros((3, 3))
    g1 = np.zeros((2, 3, 3))
    g1[1, 0, 0] = 2.0
    g2 = np.zeros((3, 3, 3))
    g2[1, 1, 1], g2[2, 1, 2] = 1.0, -1.0
    Sset = MatrixSet.minkowski_sum_of_hulls(C, [g1, g2])
    M = rng.standard_normal((3, 3))
    # exact: first coordinate clipped to [0, 2]; (x11, x12) projected on the triangle, others 0
    lams = np.linspace(0, 1, 401)
    best = np.inf
    for a in lams:
        for b in lams[: int(len(lams) * (1 - a)) + 1]:
            X = np.zeros((3, 3))
            X[0, 0] = np.clip(M[0, 0], 0, 2)
            X[1, 1], X[1, 2] = a, -b
            best = min(best, np.linalg.norm(M - X))
    lo, hi = Sset.distance_bounds(sp.csr_array(M))
    assert lo <= best + 1e-12 and hi <= best + 1e-4  # the grid gives an upper bound within its step
    assert hi - lo <= 1e-9 * max(1, hi)


# ------------------------------------------------------------------ jacobian: sparse reps = dense reps
PROGRAMS = {
    "soft": soft,
    "relu_minus": lambda x: jax.nn.relu(x) - jax.nn.relu(-x),
    "where": lambda x: jnp.where(x > 0.5, 2 * x, x + 0.5),
    "clamp": lambda x: jnp.clip(x, -0.5, 0.5) * jnp.exp(x),
    "abs_sum": lambda x: jnp.sum(jnp.abs(x - 0.5)) + x * 3.0,
    "matrix": lambda x: jnp.asarray(np.random.default_rng(1).standard_normal((5, 40))) @ jnp.maximum(x, 0.5),
    "moves": lambda x: jnp.concatenate([jnp.maximum(x[::2], 0.5), jnp.minimum(x[1:5], -0.5), x.reshape(4, 10).sum(0)]),
    "twice": lambda x: jnp.maximum(x, 0.5) + 2 * jnp.maximum(x, 0.5),
    "sort": lambda x: jnp.sort(jnp.maximum(x, 0.5) + 0.01 * jnp.arange(40.0)),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_sparse_reps_give_the_dense_set(name, monkeypatch):
    f = PROGRAMS[name]
    x, _ = tied_point(40, 12, seed=7)
    x[3] = -0.5
    x = jnp.asarray(x)
    J_dense = conservative.jacobian(f, fast=False)(x)
    monkeypatch.setattr(S, "SPARSE_MIN_ENTRIES", 0)
    J_sparse = conservative.jacobian(f, fast=False)(x)
    assert J_sparse.shape == J_dense.shape
    rng = np.random.default_rng(0)
    for _ in range(5):
        D = rng.standard_normal(J_dense.shape)
        a, b = J_dense.support(D), J_sparse.support(D)
        assert abs(a - b) <= floor(0, np.abs(D).sum() * 10)
    Jad = np.asarray(jax.jacfwd(f)(x))
    assert J_sparse.contains(Jad) and J_sparse.contains(sp.csr_array(Jad))
    assert J_dense.num_candidate_vertices == J_sparse.num_candidate_vertices


# ------------------------------------------------------------------ closed forms at moderate sizes
def test_soft_threshold_closed_form_20000():
    n, t = 20_000, 2_000
    x, idx = tied_point(n, t, seed=1)
    tied = np.zeros(n, bool)
    tied[idx] = True
    J = conservative.jacobian(soft)(jnp.asarray(x))
    assert J.shape == (n, n) and J.num_groups == t
    rng = np.random.default_rng(2)
    d = rng.standard_normal(n)
    r, c = rng.integers(0, n, 500), rng.integers(0, n, 500)
    keep = r != c  # off-diagonal entries of D meet zeros of every member
    off = sp.csr_array((rng.standard_normal(keep.sum()), (r[keep], c[keep])), shape=(n, n))
    D = sp.diags_array(d, format="csr") + off
    s = J.support(D)
    ref = soft_support(x, tied, d)
    assert abs(s - ref) <= floor(0, np.abs(d).sum())
    # JAX's element (a diagonal: jvp with ones) is in the set, a tied entry at 1.5 is at distance 0.5
    _, jd = jax.jvp(soft, (jnp.asarray(x),), (jnp.ones(n),))
    Jad = sp.diags_array(np.asarray(jd), format="csr")
    assert J.contains(Jad)
    out = np.asarray(jd).copy()
    out[idx[0]] = 1.5
    lo, hi = J.distance_bounds(sp.diags_array(out, format="csr"))
    assert lo <= 0.5 <= hi and hi - lo <= floor(0, 1.0)
    assert not J.contains(sp.diags_array(out, format="csr"))
    # the argmax of a support is a member and attains it; above the dense limit it is sparse
    A = J.argsupport(D)
    assert sp.issparse(A)
    assert abs(float((A.multiply(D)).sum()) - s) <= floor(0, np.abs(d).sum())


def test_gradient_box_closed_form():
    """Σ soft(x) + ½‖x‖²: the gradient set is the box x_i + soft'(x_i) with [0, 1] at the ties."""
    n, t = 50_000, 5_000
    x, idx = tied_point(n, t, seed=4)

    def loss(z):
        return jnp.sum(soft(z)) + 0.5 * jnp.sum(z**2)

    G = conservative.jacobian(loss)(jnp.asarray(x))
    lo = x + (np.abs(x) > LAM)
    hi = lo.copy()
    hi[idx] += 1.0
    d = np.random.default_rng(5).standard_normal((1, n))
    ref = float(np.sum(np.maximum(d[0] * lo, d[0] * hi)))
    assert abs(G.support(d) - ref) <= floor(0, float(np.abs(d).sum() * np.abs(hi).max()))
    assert G.contains(np.asarray(jax.grad(loss)(jnp.asarray(x)))[None])
    # a point of the box's corner is in, one just outside a face at distance 0.25 is not
    corner = hi.copy()
    assert G.contains(corner[None])
    corner[idx[1]] += 0.25
    lo_b, hi_b = G.distance_bounds(sp.csr_array(corner[None]))
    assert lo_b <= 0.25 <= hi_b and hi_b - lo_b <= floor(0, 1.0)


# ------------------------------------------------------------------ memory shape and clear errors
def test_large_elementwise_is_stored_by_nonzeros():
    n, t = 20_000, 2_000
    x, _ = tied_point(n, t, seed=6)
    J = conservative.jacobian(soft)(jnp.asarray(x))
    # center: one diagonal entry per coordinate outside the dead zone; groups: one number per tie (+ its zero)
    assert J.nnz <= n + 2 * t
    with pytest.raises(ValueError, match="sparse_center"):
        J.center
    C = J.sparse_center
    assert sp.issparse(C) and C.shape == (n, n) and C.nnz <= n


def test_dense_fallback_raises_a_clear_error_at_size():
    n = 20_000
    x, _ = tied_point(n, 10, seed=8)
    with pytest.raises(SetTooLargeError, match="primitive 'sort'.*MAX_DENSE_ENTRIES"):
        conservative.jacobian(lambda z: jnp.sort(jnp.maximum(z, LAM) + z), fast=False)(jnp.asarray(x))

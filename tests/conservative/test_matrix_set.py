"""MatrixSet algebra against brute force (numpy / scipy LP / cvxpy QP)."""

from __future__ import annotations

import itertools

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from scipy.spatial import ConvexHull

from conservative import DEFAULT_MAX_VERTICES, MatrixSet, SetTooLargeError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)


# ----------------------------------------------------------------------------- brute force
def lp_in_hull(P, p, tol=1e-9):
    """Is p (flat) a convex combination of the rows of P (flat)?  Minimises the ℓ∞ residual."""
    k, d = P.shape
    # variables: lam (k), t; minimise t s.t. -t <= P^T lam - p <= t, sum lam = 1, lam >= 0
    c = np.zeros(k + 1)
    c[-1] = 1.0
    A_ub = np.block([[P.T, -np.ones((d, 1))], [-P.T, -np.ones((d, 1))]])
    b_ub = np.concatenate([p, -p])
    A_eq = np.concatenate([np.ones(k), [0.0]])[None]
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=[1.0], bounds=[(0, None)] * k + [(0, None)],
                  method="highs")
    assert res.status == 0
    return res.fun <= tol


def cvx_distance(groups, M):
    """dist_F(M, Σ_g conv(groups[g])) and the nearest point, by cvxpy (Clarabel)."""
    y = np.asarray(M, dtype=np.float64).ravel()
    lams = [cp.Variable(len(G), nonneg=True) for G in groups]
    expr = sum(np.asarray(G).reshape(len(G), -1).T @ lam for G, lam in zip(groups, lams))
    prob = cp.Problem(cp.Minimize(cp.sum_squares(y - expr)), [cp.sum(lam) == 1 for lam in lams])
    # tight tolerances first; the interior-point solver may fail on them for degenerate hulls,
    # then default tolerances and another solver (the tests compare with a 1e-5 margin)
    for solver, opts in ((cp.CLARABEL, dict(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)),
                         (cp.CLARABEL, {}), (cp.SCS, dict(eps=1e-9, max_iters=100_000))):
        try:
            prob.solve(solver=solver, **opts)
        except cp.error.SolverError:
            continue
        if prob.status in ("optimal", "optimal_inaccurate") and expr.value is not None:
            break
    else:
        raise RuntimeError("reference QP: no solver succeeded")
    x = np.asarray(expr.value).ravel()
    return float(np.linalg.norm(y - x)), x.reshape(np.shape(M))


def random_gens(rng, k=None, m=None, n=None, kind="general"):
    k = k or int(rng.integers(1, 7))
    m = m or int(rng.integers(1, 4))
    n = n or int(rng.integers(1, 4))
    G = rng.standard_normal((k, m, n))
    if kind == "integer":
        G = rng.integers(-2, 3, (k, m, n)).astype(float)
    elif kind == "interior" and k >= 2:
        w = rng.dirichlet(np.ones(k))
        G = np.concatenate([G, np.einsum("k,kij->ij", w, G)[None], G[:1]])
    elif kind == "flat" and k >= 2:
        # points on a segment inside a high-dimensional matrix space
        a, b = G[0], G[1]
        t = rng.uniform(-1, 2, k)
        G = np.stack([a + ti * (b - a) for ti in t])
    return G


def support_brute(G, D):
    return float(np.max(np.einsum("kij,ij->k", G, D)))


kinds = st.sampled_from(["general", "integer", "interior", "flat"])


# ----------------------------------------------------------------------------- vertices
@SETTINGS
@given(seeds, kinds)
def test_vertices_are_extreme_generators_spanning_the_hull(seed, kind):
    rng = np.random.default_rng(seed)
    G = random_gens(rng, kind=kind)
    S = MatrixSet(G)
    V = S.vertices
    assert V.shape[1:] == G.shape[1:]
    Gf, Vf = G.reshape(len(G), -1), V.reshape(len(V), -1)
    # subset of the generators
    for v in Vf:
        assert np.min(np.abs(Gf - v).max(axis=1)) <= 1e-12
    # every generator is in the hull of the vertices
    for g in Gf:
        assert lp_in_hull(Vf, g, tol=1e-9)
    # every vertex is extreme: not a convex combination of the other vertices
    if len(Vf) > 1:
        for i in range(len(Vf)):
            assert not lp_in_hull(np.delete(Vf, i, axis=0), Vf[i], tol=1e-9), (i, Vf)
    # vertices are distinct
    assert len(np.unique(Vf, axis=0)) == len(Vf)


def test_vertices_of_known_polytopes():
    square = np.array([[[0, 0]], [[1, 0]], [[0, 1]], [[1, 1]], [[0.5, 0.5]], [[0.2, 0.9]], [[1, 1]]], float)
    V = MatrixSet(square).vertices.reshape(-1, 2)
    assert sorted(map(tuple, V)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    seg = np.array([[[0.0]], [[0.3]], [[-2.0]], [[5.0]]])
    assert sorted(MatrixSet(seg).vertices.ravel()) == [-2.0, 5.0]
    assert MatrixSet(np.ones((3, 2, 2))).vertices.shape == (1, 2, 2)


@SETTINGS
@given(seeds, st.integers(1, 5), st.sampled_from([(1, 2), (2, 1), (1, 3)]))
def test_zonotope_vertices_equal_brute_force_hull(seed, p, shape):
    rng = np.random.default_rng(seed)
    C = rng.standard_normal(shape)
    Z = rng.standard_normal((p,) + shape)
    S = MatrixSet.zonotope(C, Z)
    sums = np.array([C + sum(Z[j] for j in range(p) if mask[j]) for mask in itertools.product([0, 1], repeat=p)])
    flat = sums.reshape(len(sums), -1)
    d = flat.shape[1]
    if p >= d:
        hull = flat[ConvexHull(flat).vertices] if d > 1 else flat[[np.argmin(flat), np.argmax(flat)]]
    else:  # lower-dimensional: every sum of a generic zonotope with p < d segments is a vertex
        hull = flat
    V = S.vertices.reshape(-1, d)
    assert len(V) == len(hull), (V, hull)
    for h in hull:
        assert np.min(np.abs(V - h).max(axis=1)) <= 1e-12
    # all 2^p sums lie in the set
    for s in sums:
        assert S.contains(s, tol=1e-9)
    assert S.num_candidate_vertices == 2**p
    if d == 2 and p >= 2:
        assert len(V) == 2 * p  # a generic planar zonotope is a 2p-gon


def test_zonotope_square_and_cube():
    S = MatrixSet.zonotope(np.zeros((1, 2)), np.array([[[1.0, 0.0]], [[0.0, 1.0]]]))
    assert sorted(map(tuple, S.vertices.reshape(-1, 2))) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    cube = MatrixSet.zonotope(np.zeros((1, 3)), np.eye(3)[:, None, :])
    assert len(cube.vertices) == 8
    assert not cube.contains(np.array([[1.0, 1.0, 1.1]]), tol=1e-6)
    # 5 segments in the plane, as in the zonotope of 5 independent ties
    segs = np.array([[[np.cos(t), np.sin(t)]] for t in np.linspace(0, np.pi, 5, endpoint=False)])
    assert len(MatrixSet.zonotope(np.zeros((1, 2)), segs).vertices) == 10


# ----------------------------------------------------------------------------- support / contains / distance
@SETTINGS
@given(seeds, kinds)
def test_support_is_max_over_generators(seed, kind):
    rng = np.random.default_rng(seed)
    G = random_gens(rng, kind=kind)
    S = MatrixSet(G)
    for _ in range(5):
        D = rng.standard_normal(G.shape[1:])
        assert S.support(D) == pytest.approx(support_brute(G, D), abs=1e-12)
        X = S.argsupport(D)
        assert float(np.sum(D * X)) == pytest.approx(support_brute(G, D), abs=1e-12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seeds, kinds)
def test_contains_agrees_with_lp_membership(seed, kind):
    rng = np.random.default_rng(seed)
    G = random_gens(rng, kind=kind)
    S = MatrixSet(G)
    Gf = G.reshape(len(G), -1)
    w = rng.dirichlet(np.ones(len(G)))
    inside = np.einsum("k,kij->ij", w, G)
    assert S.contains(inside, tol=1e-8)
    assert lp_in_hull(Gf, inside.ravel(), tol=1e-9)
    for g in G:
        assert S.contains(g, tol=1e-8)
    for _ in range(3):
        M = rng.standard_normal(G.shape[1:]) * 2
        lp = lp_in_hull(Gf, M.ravel(), tol=1e-9)
        dist, _ = cvx_distance([G], M)
        if dist > 1e-5 or lp:
            assert S.contains(M, tol=1e-8) == lp, (M, dist)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seeds, kinds)
def test_distance_project_bounds_agree_with_cvxpy(seed, kind):
    rng = np.random.default_rng(seed)
    G = random_gens(rng, kind=kind)
    S = MatrixSet(G)
    for _ in range(2):
        M = rng.standard_normal(G.shape[1:]) * 2
        dist, x = cvx_distance([G], M)
        lo, hi = S.distance_bounds(M)
        assert 0.0 <= lo and lo <= hi + 1e-7  # exact ordering: test_distance_bounds_are_ordered
        assert abs(lo - dist) <= 1e-7 and abs(hi - dist) <= 1e-7, (lo, hi, dist)
        assert S.distance(M) == pytest.approx(dist, abs=1e-7)
        P = S.project(M)
        assert P.shape == G.shape[1:]
        np.testing.assert_allclose(P, x, atol=1e-5)  # the projection is unique
        assert np.linalg.norm(M - P) == pytest.approx(S.distance(M), abs=1e-12)
        assert lp_in_hull(G.reshape(len(G), -1), P.ravel(), tol=1e-8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seeds)
def test_minkowski_sum_of_hulls_distance_and_support(seed):
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    groups = [rng.standard_normal((int(rng.integers(1, 4)), m, n)) for _ in range(int(rng.integers(1, 4)))]
    C = rng.standard_normal((m, n))
    S = MatrixSet.minkowski_sum_of_hulls(C, groups)
    D = rng.standard_normal((m, n))
    assert S.support(D) == pytest.approx(float(np.sum(C * D)) + sum(support_brute(G, D) for G in groups), abs=1e-12)
    M = rng.standard_normal((m, n)) * 3
    dist, _ = cvx_distance([C[None]] + groups, M)
    lo, hi = S.distance_bounds(M)
    assert abs(lo - dist) <= 1e-7 and abs(hi - dist) <= 1e-7
    # every sum of one generator per group is in the set and the vertices are such sums
    allsums = np.array([C + sum(c) for c in itertools.product(*groups)])
    for V in S.vertices:
        assert np.min(np.abs(allsums - V).reshape(len(allsums), -1).max(axis=1)) <= 1e-12
    for s in allsums[:8]:
        assert S.contains(s, tol=1e-8)


# ----------------------------------------------------------------------------- algebra
@SETTINGS
@given(seeds)
def test_minkowski_sum_support_is_sum_of_supports(seed):
    rng = np.random.default_rng(seed)
    m, n = 2, 3
    A = MatrixSet(random_gens(rng, m=m, n=n))
    B = MatrixSet(random_gens(rng, m=m, n=n))
    S = A + B
    assert S.shape == (m, n)
    for _ in range(5):
        D = rng.standard_normal((m, n))
        assert S.support(D) == pytest.approx(A.support(D) + B.support(D), abs=1e-12)
    T = rng.standard_normal((m, n))
    D = rng.standard_normal((m, n))
    assert (A + T).support(D) == pytest.approx(A.support(D) + float(np.sum(D * T)), abs=1e-12)
    assert (2.5 * A).support(D) == pytest.approx(2.5 * A.support(D), abs=1e-12)
    assert (-A).support(D) == pytest.approx(A.support(-D), abs=1e-12)


@SETTINGS
@given(seeds)
def test_left_right_multiplication_support_against_vertex_images(seed):
    rng = np.random.default_rng(seed)
    G = random_gens(rng, m=2, n=3)
    S = MatrixSet(G)
    A = rng.standard_normal((4, 2))
    B = rng.standard_normal((3, 1))
    L, R = S.left_multiply(A), S @ B
    assert L.shape == (4, 3) and R.shape == (2, 1)
    assert S.right_multiply(B).shape == (2, 1)
    for _ in range(4):
        D = rng.standard_normal((4, 3))
        assert L.support(D) == pytest.approx(support_brute(np.einsum("ij,kjl->kil", A, G), D), abs=1e-12)
        E = rng.standard_normal((2, 1))
        assert R.support(E) == pytest.approx(support_brute(np.einsum("kij,jl->kil", G, B), E), abs=1e-12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seeds)
def test_product_contains_all_pairwise_products_and_nothing_more(seed):
    rng = np.random.default_rng(seed)
    X = random_gens(rng, m=2, n=2, k=int(rng.integers(1, 4)))
    Y = random_gens(rng, m=2, n=3, k=int(rng.integers(1, 4)))
    P = MatrixSet(X) @ MatrixSet(Y)
    assert P.shape == (2, 3)
    prods = np.einsum("aij,bjk->abik", X, Y).reshape(-1, 2, 3)
    for Q in prods:
        assert P.contains(Q, tol=1e-8)
    for _ in range(5):
        D = rng.standard_normal((2, 3))
        assert P.support(D) == pytest.approx(support_brute(prods, D), abs=1e-10)


def test_numpy_array_on_the_left():
    S = MatrixSet(np.array([[[0.0, 1.0]], [[1.0, 0.0]]]))
    A = np.array([[1.0], [2.0]])
    L = A @ S
    assert L.shape == (2, 2)
    assert L.support(np.ones((2, 2))) == pytest.approx(3.0)
    T = np.ones((1, 2))
    assert (T + S).support(np.ones((1, 2))) == pytest.approx(3.0)


def test_distance_bounds_are_ordered():
    bad = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        G = random_gens(rng)
        S = MatrixSet(G)
        M = rng.standard_normal(G.shape[1:]) * 2
        lo, hi = S.distance_bounds(M)
        if not lo <= hi:
            bad.append((seed, lo, hi))
    assert not bad, bad


@SETTINGS
@given(seeds)
def test_transpose(seed):
    rng = np.random.default_rng(seed)
    G = random_gens(rng, m=2, n=3)
    S = MatrixSet(G)
    T = S.T
    assert T.shape == (3, 2)
    D = rng.standard_normal((3, 2))
    assert T.support(D) == pytest.approx(S.support(D.T), abs=1e-12)
    VT = T.vertices
    V = S.vertices
    assert len(VT) == len(V)
    for v in V:
        assert np.min(np.abs(VT - v.T).reshape(len(VT), -1).max(axis=1)) <= 1e-12


@SETTINGS
@given(seeds)
def test_hstack_coupled_and_uncoupled(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 5))
    A = rng.standard_normal((k, 2, 2))
    B = rng.standard_normal((k, 2, 1))
    SA, SB = MatrixSet(A), MatrixSet(B)
    Hc = MatrixSet.hstack([SA, SB], coupled=True)
    Hu = MatrixSet.hstack([SA, SB], coupled=False)
    assert Hc.shape == Hu.shape == (2, 3)
    joint = np.concatenate([A, B], axis=2)
    for _ in range(4):
        D = rng.standard_normal((2, 3))
        assert Hc.support(D) == pytest.approx(support_brute(joint, D), abs=1e-12)
        assert Hu.support(D) == pytest.approx(SA.support(D[:, :2]) + SB.support(D[:, 2:]), abs=1e-12)
    # split_columns inverts hstack (projections)
    L, Rr = Hc.split_columns(2)
    D = rng.standard_normal((2, 2))
    assert L.support(D) == pytest.approx(SA.support(D), abs=1e-12)


def test_hstack_coupled_keeps_pairs_together():
    A = MatrixSet(np.array([[[0.0]], [[1.0]]]))
    B = MatrixSet(np.array([[[0.0]], [[-1.0]]]))
    Hc = MatrixSet.hstack([A, B])
    assert not Hc.contains(np.array([[1.0, 0.0]]), tol=1e-6)
    Hu = MatrixSet.hstack([A, B], coupled=False)
    assert Hu.contains(np.array([[1.0, 0.0]]))
    assert len(Hu.vertices) == 4 and len(Hc.vertices) == 2


def test_hstack_coupled_with_repeated_generators_pairs_by_index():
    """Pairing by index (len() counts stored generators, repeats included) must survive repeats:
    conv{[A_i, B_i]} with A = (1, 2, 1), B = (10, 10, 20) is the triangle
    {[1,10], [2,10], [1,20]}."""
    A = MatrixSet([np.array([[1.0]]), np.array([[2.0]]), np.array([[1.0]])])
    B = MatrixSet([np.array([[10.0]]), np.array([[10.0]]), np.array([[20.0]])])
    assert len(A) == len(B) == 3
    H = MatrixSet.hstack([A, B], coupled=True)
    for pair in ([1.0, 10.0], [2.0, 10.0], [1.0, 20.0]):
        assert H.contains(np.array([pair]), tol=1e-9), pair
    assert not H.contains(np.array([[2.0, 20.0]]), tol=1e-6)


def test_hstack_coupled_repeated_generator_in_one_block():
    A = MatrixSet([np.array([[1.0]]), np.array([[1.0]])])  # a singleton stored twice
    B = MatrixSet([np.array([[0.0]]), np.array([[5.0]])])
    H = MatrixSet.hstack([A, B], coupled=True)
    assert H.contains(np.array([[1.0, 0.0]])) and H.contains(np.array([[1.0, 5.0]]))


# ----------------------------------------------------------------------------- structure
def test_len_counts_stored_generators():
    rng = np.random.default_rng(1)
    assert len(MatrixSet(rng.standard_normal((5, 2, 2)))) == 5
    assert len(MatrixSet(rng.standard_normal((2, 2)))) == 1
    assert len(MatrixSet([np.eye(2), np.zeros((2, 2)), np.ones((2, 2))])) == 3


def test_singleton_and_shape():
    M = np.arange(6.0).reshape(2, 3)
    S = MatrixSet(M)
    assert S.shape == (2, 3) and S.is_singleton
    np.testing.assert_array_equal(S.vertices, M[None])
    assert S.contains(M) and not S.contains(M + 1e-3, tol=1e-6)
    assert S.distance(M + 1.0) == pytest.approx(np.sqrt(6.0))
    assert S.diameter() == 0.0


def test_diameter():
    S = MatrixSet(np.array([[[0.0, 0.0]], [[3.0, 4.0]], [[1.0, 1.0]]]))
    assert S.diameter() == pytest.approx(5.0)


def test_immutability():
    G = np.random.default_rng(0).standard_normal((3, 2, 2))
    S = MatrixSet(G)
    with pytest.raises(AttributeError):
        S.shape = (3, 3)
    with pytest.raises(AttributeError):
        S.foo = 1
    with pytest.raises(AttributeError):
        S.max_vertices = 3
    D = np.ones((2, 2))
    before = S.support(D)
    G[:] = 100.0  # mutate the input after construction
    assert S.support(D) == before
    V = S.vertices
    try:
        V[:] = 100.0  # returned arrays are copies or read-only
    except ValueError:
        pass
    assert S.support(D) == before
    assert not np.any(S.vertices == 100.0)
    C = S.center
    try:
        C[:] = 100.0
    except ValueError:
        pass
    assert S.support(D) == before
    for g in S.groups:
        try:
            g[:] = 100.0
        except ValueError:
            pass
    assert S.support(D) == before


def test_operations_return_new_sets():
    S = MatrixSet(np.array([[[0.0]], [[1.0]]]))
    T = S + MatrixSet(np.array([[[2.0]], [[3.0]]]))
    assert S.support(np.ones((1, 1))) == 1.0 and T.support(np.ones((1, 1))) == 4.0
    U = S.scale(3.0)
    assert S.support(np.ones((1, 1))) == 1.0 and U.support(np.ones((1, 1))) == 3.0


def test_set_too_large_error_names_limit():
    Z = np.random.default_rng(0).standard_normal((13, 1, 20))
    S = MatrixSet.zonotope(np.zeros((1, 20)), Z)
    assert S.num_candidate_vertices == 2**13 > DEFAULT_MAX_VERTICES
    with pytest.raises(SetTooLargeError, match="max_vertices=4096"):
        S.vertices
    with pytest.raises(SetTooLargeError, match="max_vertices=100"):
        S.enumerate_vertices(max_vertices=100)
    # queries that do not enumerate vertices still work
    D = np.ones((1, 20))
    assert S.support(D) == pytest.approx(float(np.sum(np.maximum(Z.reshape(13, 20) @ D.ravel(), 0))))
    assert S.contains(Z.sum(axis=0) * 0.5, tol=1e-8)


def test_set_too_large_is_a_value_error():
    assert issubclass(SetTooLargeError, ValueError)


def test_split_columns_and_argsupport_against_vertices():
    rng = np.random.default_rng(7)
    G = rng.standard_normal((5, 2, 3))
    S = MatrixSet(G)
    L, R = S.split_columns(1)
    for part, cols in ((L, slice(0, 1)), (R, slice(1, 3))):
        D = rng.standard_normal(part.shape)
        assert abs(part.support(D) - max(np.sum(D * g[:, cols]) for g in G)) < 1e-12
    D = rng.standard_normal((2, 3))
    X = S.argsupport(D)
    assert abs(np.sum(D * X) - S.support(D)) < 1e-12 and S.contains(X)


def test_piggyback_diameter_bound_when_vertices_are_too_many():
    """Above max_vertices the reported diameter is the bound Σ_g diam(conv G_g), flagged as inexact."""
    import jax.numpy as jnp

    from conservative import piggyback

    F = lambda x, th: jnp.maximum(x + th, 0.0)  # noqa: E731  every coordinate tied at 0: 𝒥_1 = {diag(d)}
    r = piggyback(F, jnp.zeros(6), jnp.zeros(6), 1, max_vertices=16)
    assert not r.diameter_exact[1] and r.diameter_exact[0]
    np.testing.assert_allclose(r.diameters[1], 6.0)  # six unit segments; the exact diameter is √6

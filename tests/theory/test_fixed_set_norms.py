"""fixed_set from any certified contraction: products, invariant-polytope norms, jsr's certificate."""

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from conservative import MatrixSet
from theory import contraction_factor, fixed_set, fixed_set_iteration, hausdorff, jsr
from theory._contraction import ProductContraction, product_contraction
from theory._polytope_norm import PolytopeContraction, polytope_contraction

M1 = np.array([[0.75, -0.75], [1.0, 0.0]])  # heavy-ball, α = 1, β = 3/4 (JSR 1.0321)
M2 = np.array([[1.5, -0.75], [1.0, 0.0]])
b = np.array([[1.0], [0.0]])


def heavy_ball(s):
    return MatrixSet(np.array([np.hstack([s * M1, b]), np.hstack([s * M2, b])]))


def image(fam, X):
    """conv 𝒥(X) (exact vertex candidates A_i X_j + B_i)."""
    V, n = fam.vertices, fam.shape[0]
    A, B = V[:, :, :n], V[:, :, n:]
    return MatrixSet((A[:, None] @ X.vertices[None] + B[:, None]).reshape(-1, *B.shape[1:]))


def lipschitz_F(fam):
    n = fam.shape[0]
    return max(np.linalg.norm(v[:, :n], 2) for v in fam.vertices)


def polytope_norm(V, x):
    res = linprog(np.ones(2 * len(V)), A_eq=np.hstack([V.T, -V.T]), b_eq=x, bounds=(0, None), method="highs")
    return res.fun


def test_heavy_ball_095_has_a_fixed_set_without_an_ellipsoidal_contraction():
    fam = heavy_ball(0.95)
    A = 0.95 * np.array([M1, M2])
    assert not contraction_factor(A).contracts  # best ellipsoid ≈ 1.09
    res = jsr(A)
    assert res.upper < 1
    X, err = fixed_set(fam, tol=1e-3, contraction=res)
    assert err <= 1e-3
    # fixed-set property in the Frobenius norm: h(conv 𝒥(X), X) ≤ h(𝒦X, 𝒦 fix) + h(fix, X) ≤ (L + 1)·err
    assert float(hausdorff(image(fam, X), X)) <= (lipschitz_F(fam) + 1) * err
    # brute force: the set recursion from {0}, 400 steps, certified in the same polytope norm
    it = fixed_set_iteration(fam, 400, X0=np.zeros((1, 2, 1)), contraction=res)
    assert isinstance(it.contraction, PolytopeContraction)
    assert float(hausdorff(X, it.sets[-1])) <= err + it.error_bound
    assert it.error_bound < 0.5


def test_default_search_finds_a_product_contraction():
    fam = heavy_ball(0.9)  # best ellipsoid 1.03; products of length 2 contract in it
    A = 0.9 * np.array([M1, M2])
    assert not contraction_factor(A).contracts
    it = fixed_set_iteration(fam, 4)
    assert isinstance(it.contraction, ProductContraction) and it.contraction.length == 2
    X1, e1 = fixed_set(fam, tol=1e-6)
    X2, e2 = fixed_set(fam, tol=1e-6, contraction=jsr(A))  # a second, independent norm
    assert e1 <= 1e-6 and e2 <= 1e-6
    assert float(hausdorff(X1, X2)) <= e1 + e2
    assert float(hausdorff(image(fam, X1), X1)) <= (lipschitz_F(fam) + 1) * e1


def test_scaled_heavy_ball_reaches_tight_tolerance_with_exact_distances():
    # its hull has many extreme points on short edges: nearest-vertex distances plateau near 0.3
    fam = heavy_ball(0.85)
    X, err = fixed_set(fam, tol=1e-6)
    assert err <= 1e-6
    assert float(hausdorff(image(fam, X), X)) <= (lipschitz_F(fam) + 1) * err


def test_product_contraction_bounds_every_product():
    A = 0.9 * np.array([M1, M2])
    pc = product_contraction(A, max_length=6)
    assert pc.contracts and pc.length == 2
    R, Ri = pc.R, np.linalg.inv(pc.R)
    for k, r in enumerate(pc.rhos, start=1):
        true = max(np.linalg.norm(R @ np.linalg.multi_dot([np.eye(2), *(A[i] for i in w)]) @ Ri, 2)
                   for w in itertools.product(range(2), repeat=k))
        assert true <= r <= true * (1 + 1e-10)
    assert not product_contraction(np.array([M1, M2]), max_length=4).contracts
    with pytest.raises(ValueError, match="P"):
        product_contraction(A, P=-np.eye(2))


def test_polytope_norm_constants_and_contraction_are_certified():
    A = 0.95 * np.array([M1, M2])
    V = jsr(A).upper_certificate.vertices
    pc = polytope_contraction(A, V)
    assert pc.contracts and pc.rho < 0.981
    rng = np.random.default_rng(0)
    P = pc.vertices
    for x in rng.standard_normal((20, 2)):
        nx = polytope_norm(P, x)
        assert np.linalg.norm(x) <= pc.norm_to_2 * nx * (1 + 1e-9)
        assert nx <= pc.two_to_norm * np.linalg.norm(x) * (1 + 1e-9)
        for a in A:  # operator norm bound on random vectors
            assert polytope_norm(P, a @ x) <= pc.rho * nx * (1 + 1e-9)
    square = np.array([[1.0, 0.0], [0.0, 1.0]])  # absconv = the ℓ1 ball: not invariant
    with pytest.raises(ValueError, match="do not contract in the given norm"):
        fixed_set(heavy_ball(0.95), contraction=polytope_contraction(A, square))
    with pytest.raises(ValueError, match="full-dimensional"):
        polytope_contraction(A, np.array([[1.0, 1.0]]))


def test_non_contracting_family_error_says_what_was_proved():
    with pytest.raises(ValueError, match=r"family: .*JSR ∈ \[1\.03.*≥ 1"):
        fixed_set(heavy_ball(1.0))
    with pytest.raises(ValueError, match="spectral radius ≥ 1"):
        fixed_set(MatrixSet(np.array([[[1.0, 1.0]]])))  # x ↦ x + 1
    with pytest.raises(TypeError, match="contraction"):
        fixed_set(heavy_ball(0.5), contraction="ellipsoid")

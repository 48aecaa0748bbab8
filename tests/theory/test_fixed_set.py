"""Fixed sets of contracting families: known answers, the slides' bounds, bad input."""

import numpy as np
import pytest

from conservative import MatrixSet
from theory import contraction_factor, fixed_set, fixed_set_iteration, hausdorff
from theory._fixed_set import _hausdorff_upper


def blocks(A, B):
    return MatrixSet(np.concatenate([np.asarray(A, float), np.asarray(B, float)], axis=2))


B3 = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[-1.0, -1.0]]])  # n = 1, m = 2
HALF = blocks(np.full((3, 1, 1), 0.5), B3)  # X ↦ X/2 + B_i


def test_half_maps_fixed_set_is_conv_2B():
    X, err = fixed_set(HALF, tol=1e-8)
    assert err <= 1e-8
    assert float(hausdorff(X, MatrixSet(2 * B3))) <= 1e-8 + err


def test_from_zero_start_converges_with_certified_error():
    X, err = fixed_set(HALF, tol=1e-6, X0=np.zeros((1, 1, 2)))
    assert 0 < err <= 1e-6
    assert float(hausdorff(X, MatrixSet(2 * B3))) <= err


def test_matrix_family_with_2x2_blocks():
    A = np.array([0.5 * np.eye(2), np.array([[0.0, 0.4], [-0.4, 0.0]])])
    B = np.array([[[1.0], [0.0]], [[0.0], [1.0]]])
    X, err = fixed_set(blocks(A, B), tol=1e-5)
    assert err <= 1e-5
    # fixed-set property: conv 𝒥(X) = X up to the error bounds
    V = X.vertices
    image = MatrixSet((A[:, None] @ V[None] + B[:, None]).reshape(-1, 2, 1))
    assert float(hausdorff(image, X)) <= 2 * err + 1e-9


def test_scalar_family_by_hand():
    # conv{[1/2, 1], [-1/2, 1]}: [l, u] = [min(l/2+1, 1-u/2), max(u/2+1, 1-l/2)] = [0, 2]
    X, err = fixed_set(MatrixSet([[[0.5, 1.0]], [[-0.5, 1.0]]]), tol=1e-9)
    assert sorted(X.vertices.ravel()) == pytest.approx([0.0, 2.0], abs=1e-9)
    # conv{[1/4, 1], [1/2, -1]}: u = max(u/4 + 1, u/2 - 1) → 4/3, l = min(l/4 + 1, l/2 - 1) → -2
    X, err = fixed_set(MatrixSet([[[0.25, 1.0]], [[0.5, -1.0]]]), tol=1e-9)
    assert sorted(X.vertices.ravel()) == pytest.approx([-2.0, 4 / 3], abs=1e-8)


def test_a_priori_bound_holds_along_the_iteration():
    it = fixed_set_iteration(HALF, 8, X0=np.zeros((1, 1, 2)))
    limit = MatrixSet(2 * B3)
    for t, S in enumerate(it.sets):
        true = float(hausdorff(S, limit))
        assert true <= it.a_priori[t] + 1e-9
        assert true <= it.a_posteriori[t] + 1e-9
    assert np.all(np.diff(it.a_priori) < 0)
    assert "steps" in repr(it)


def test_a_priori_bound_in_an_ellipsoidal_norm():
    # ‖A_1‖₂ ≈ 1.3 > 1: Assumption A fails in the 2-norm but holds in an ellipsoidal norm
    A = np.array([[[0.3, 1.2], [0.0, 0.3]], [[0.5, 0.0], [0.0, 0.4]]])
    B = np.array([[[1.0], [0.0]], [[0.0], [1.0]]])
    fam = blocks(A, B)
    cert = contraction_factor(A)
    assert cert.rho_2norm > 1 and cert.norm == "ellipsoidal" and cert.contracts
    Xstar, err = fixed_set(fam, tol=1e-5)
    it = fixed_set_iteration(fam, 6, X0=np.zeros((1, 2, 1)), contraction=cert)
    for t, S in enumerate(it.sets):  # certified upper bound on the true distance (fast projections)
        assert _hausdorff_upper(S, Xstar, np.eye(2)) <= it.error_bounds[t] + err + 1e-9


def test_non_contracting_family_is_rejected_with_rho():
    M1 = np.array([[0.75, -0.75], [1.0, 0.0]])
    M2 = np.array([[1.5, -0.75], [1.0, 0.0]])
    fam = blocks([M1, M2], np.ones((2, 2, 1)))
    with pytest.raises(ValueError, match=r"do not contract: best ρ found = 1\.1"):
        fixed_set(fam)
    with pytest.raises(ValueError, match="do not contract"):
        fixed_set(blocks(np.full((1, 1, 1), 1.0), np.ones((1, 1, 1))))


def test_bad_input():
    with pytest.raises(ValueError, match="n×\\(n\\+m\\)"):
        fixed_set(MatrixSet(np.zeros((1, 2, 2))))  # no B block
    with pytest.raises(ValueError, match="tol"):
        fixed_set(HALF, tol=0.0)
    with pytest.raises(ValueError, match="tol"):
        fixed_set(HALF, tol=1e-14)  # below the certified resolution
    with pytest.raises(ValueError, match="X0"):
        fixed_set(HALF, X0=np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        fixed_set(np.array([[[0.5, np.nan]]]))
    with pytest.raises(ValueError, match="empty"):
        fixed_set([])
    with pytest.raises(TypeError, match="contraction"):
        fixed_set(HALF, contraction=0.5)
    with pytest.raises(ValueError, match="steps"):
        fixed_set_iteration(HALF, 0)


def test_max_iter_warns_with_honest_bound():
    with pytest.warns(RuntimeWarning, match="max_iter"):
        X, err = fixed_set(HALF, tol=1e-9, X0=np.zeros((1, 1, 2)), max_iter=3)
    assert err > 1e-9
    assert float(hausdorff(X, MatrixSet(2 * B3))) <= err

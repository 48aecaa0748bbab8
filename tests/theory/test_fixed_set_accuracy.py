"""fixed_set reaches ordinary accuracy on small exact families; unreachable tolerances state the floor."""

import re

import numpy as np
import pytest

from conservative import MatrixSet
from theory import fixed_set, fixed_set_iteration, hausdorff

# A_1, A_2 strictly upper triangular: every product of two A blocks is 0, so the fixed set is
# 𝒦²(anything) = conv{A_i B_j + B_i}; the SDP norm of this family is badly conditioned (κ ~ 5e4)
A1, A2 = np.array([[0.0, 0.5], [0.0, 0.0]]), np.array([[0.0, 0.9], [0.0, 0.0]])
B1, B2 = np.eye(2), np.array([[0.0, 1.0], [1.0, 1.0]])
NILPOTENT = MatrixSet(np.array([np.hstack([A1, B1]), np.hstack([A2, B2])]))
NIL_FIX = np.array([a @ bj + bi for a, bi in ((A1, B1), (A2, B2)) for bj in (B1, B2)])

# x ↦ a x + 1, a ∈ [-1/2, 1/2]: the set-valued fixed set is [0, 2] (u = 1 + u/2, l = 1 - u/2);
# the fixed points of the single maps, 1/(1 - a) ∈ [2/3, 2], form the (smaller) implicit set
INTERVAL = MatrixSet(np.array([[[-0.5, 1.0]], [[0.5, 1.0]]]))


@pytest.mark.parametrize("tol", [1e-8, 1e-10])
def test_nilpotent_family_reaches_tol(tol):
    X, err = fixed_set(NILPOTENT, tol=tol)
    assert 0 <= err <= tol
    assert float(hausdorff(X, MatrixSet(NIL_FIX))) <= err + 1e-15


def test_interval_family_reaches_1e_10():
    X, err = fixed_set(INTERVAL, tol=1e-10)
    assert 0 <= err <= 1e-10
    v = np.sort(X.vertices.ravel())
    assert len(v) == 2
    assert abs(v[0] - 0.0) <= err and abs(v[1] - 2.0) <= err
    assert X.contains(np.array([[2 / 3]]), tol=0) and X.contains(np.array([[2.0]]), tol=err)


def test_unreachable_tolerance_states_the_floor():
    B3 = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[-1.0, -1.0]]])
    half = MatrixSet(np.concatenate([np.full((3, 1, 1), 0.5), B3], axis=2))
    with pytest.raises(ValueError, match="floor") as info:
        fixed_set(half, tol=1e-15)
    msg = str(info.value)
    assert "tol" in msg and "below the resolution" in msg
    floor = float(re.search(r"tol ≥ ([0-9.e+-]+)", msg).group(1))
    assert floor > 1e-15
    X, err = fixed_set(half, tol=2 * floor)  # the stated floor is achievable
    assert err <= 2 * floor
    assert float(hausdorff(X, MatrixSet(2 * B3))) <= err + 1e-15


def test_iteration_bounds_include_rounding_and_hold():
    it = fixed_set_iteration(INTERVAL, 6)
    assert np.all(it.error_bounds[1:] > 0)  # never a bare 0: rounding of the iterates counts
    truth = MatrixSet(np.array([[[0.0]], [[2.0]]]))
    for t, S in enumerate(it.sets):
        assert float(hausdorff(S, truth)) <= it.error_bounds[t] + 1e-15


@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e-160, 1e-100, 1e100, 1e200, 1e300])
def test_fixed_set_is_homogeneous_in_b_at_every_scale(scale):
    # fix(A, cB) = c·fix(A, B): the same set and the same relative bound from 1e-300 to 1e300
    fam = np.array([[[0.5, 0.0, 1.0], [0.0, 0.25, 1.0]], [[0.25, 0.1, 0.0], [0.0, 0.5, 1.0]]])
    X1, err1 = fixed_set(MatrixSet(fam), tol=1e-6)
    scaled = fam.copy()
    scaled[:, :, 2:] *= scale
    Xc, errc = fixed_set(MatrixSet(scaled), tol=1e-6 * scale)
    assert 0 < errc <= 1e-6 * scale
    # both are within their bounds of the same set, so within err1 + errc/scale of each other
    V1, Vc = X1.vertices, Xc.vertices / scale
    from theory import hausdorff
    h = float(hausdorff(MatrixSet(V1), MatrixSet(Vc)))
    assert h <= err1 + errc / scale + 1e-12
    it = fixed_set_iteration(MatrixSet(scaled), 30)
    it1 = fixed_set_iteration(MatrixSet(fam), 30)
    # the data differ by the rounding of ·scale (not a power of two): bounds agree where they are
    # far above that rounding's effect, and stay finite and positive everywhere
    b, b1 = it.error_bounds[1:] / scale, it1.error_bounds[1:]
    big = b1 > 1e-4
    np.testing.assert_allclose(b[big], b1[big], rtol=1e-6)
    assert big.sum() >= 10 and np.all(np.isfinite(b)) and np.all(b > 0)

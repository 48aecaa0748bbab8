"""JSR = 0 exactly: joint nilpotency decided in rational arithmetic."""

import itertools

import numpy as np
import pytest

from theory import is_jointly_nilpotent, jsr, nilpotency_index, word_product


def conjugated_strictly_triangular(seed, k=3, n=5):
    """T N_i T⁻¹ with N_i strictly upper-triangular integer matrices and T unimodular (exact
    integer inverse): a jointly nilpotent family that is not triangular in the given basis."""
    rng = np.random.default_rng(seed)
    N = np.triu(rng.integers(-3, 4, (k, n, n)), 1).astype(float)
    T = (np.eye(n) + np.triu(rng.integers(-2, 3, (n, n)), 1))[::-1]
    Ti = np.round(np.linalg.inv(T))
    assert np.array_equal(Ti @ T, np.eye(n))
    return np.array([T @ a @ Ti for a in N])


def test_conjugated_nilpotent_family_has_jsr_zero_exactly():
    A = conjugated_strictly_triangular(0)
    assert np.tril(A[0], -1).any()  # not triangular as given
    cert = nilpotency_index(A)
    assert cert is not None and cert.length <= A.shape[1] and cert.dims[-1] == 0
    # Levitzki: every product of length cert.length is zero (brute force, exact for integers)
    for w in itertools.product(range(len(A)), repeat=cert.length):
        assert not np.any(word_product(A, w))
    res = jsr(A)
    assert res.lower == 0.0 and res.upper == 0.0 and res.exact
    assert "nilpotent" in res.upper_method


def test_single_jordan_block_and_index():
    J = np.diag(np.ones(3), 1)  # 4×4 nilpotent Jordan block: J³ ≠ 0, J⁴ = 0
    cert = nilpotency_index([J])
    assert cert.length == 4 and cert.dims == (4, 3, 2, 1, 0)


@pytest.mark.parametrize("family", [
    [np.array([[0.0, 1.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [1.0, 0.0]])],  # each nilpotent, product is not
    [np.diag([0.5, 0.0])],
    [np.array([[0.0, 1.0], [1e-300, 0.0]])],  # nilpotent only after rounding 1e-300 away: must say no
])
def test_not_nilpotent(family):
    assert not is_jointly_nilpotent(family)
    assert nilpotency_index(family) is None
    assert jsr(family).upper > 0

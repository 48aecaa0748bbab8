"""Reducibility preprocessing: block triangularization, JSR = max over diagonal blocks."""

import numpy as np
import pytest

from theory import BlockCertificate, block_triangularize, jsr, word_product

M1 = np.array([[0.75, -0.75], [1.0, 0.0]])  # heavy-ball (slides, α = 1, β = 3/4)
M2 = np.array([[1.5, -0.75], [1.0, 0.0]])


def test_permuted_upper_triangular_family_splits_into_scalars():
    rng = np.random.default_rng(0)
    A = np.triu(rng.standard_normal((3, 5, 5)))
    p = rng.permutation(5)
    Ap = A[:, p][:, :, p]
    split = block_triangularize(Ap)
    assert len(split.blocks) == 5
    assert not np.any(np.tril(split.permuted(Ap), -1))  # block (here: fully) upper triangular
    res = jsr(Ap)
    # JSR of a triangular family = max over the diagonal of max_i |a_i,jj| (products are triangular)
    true = np.abs(np.diagonal(A, axis1=1, axis2=2)).max()
    assert res.exact and res.lower == true and res.upper == true
    assert isinstance(res.upper_certificate, BlockCertificate)


def test_heavy_ball_block_with_a_coupled_scalar_is_exact():
    # [[M_i, c_i], [0, d_i]]: JSR = max(JSR{M1, M2}, max|d_i|) = JSR{M1, M2} ≈ 1.0321 (exact by its polytope)
    B = np.zeros((2, 3, 3))
    B[:, :2, :2] = [M1, M2]
    B[:, :2, 2] = [[3.0, 1.0], [-2.0, 0.5]]
    B[:, 2, 2] = [0.5, -0.9]
    res = jsr(B)
    block = jsr([M1, M2])
    assert res.exact and block.exact
    assert res.lower == pytest.approx(block.lower, rel=1e-15)
    assert res.upper <= res.lower * (1 + 1e-9)
    # the certificate word works on the whole family
    w = res.certificate
    rho = np.abs(np.linalg.eigvals(word_product(B, w))).max() ** (1 / len(w))
    assert rho == pytest.approx(res.lower, rel=1e-12)
    assert [len(b) for b in res.upper_certificate.split.blocks] == [2, 1]


def test_irreducible_pattern_is_one_block_and_reduce_off_matches():
    A = np.random.default_rng(1).standard_normal((2, 3, 3))
    assert len(block_triangularize(A).blocks) == 1
    rng = np.random.default_rng(2)
    T = np.triu(rng.standard_normal((2, 3, 3)))
    on, off = jsr(T), jsr(T, reduce=False)
    assert on.lower <= off.upper * (1 + 1e-12) and off.lower <= on.upper * (1 + 1e-12)


def test_reduce_must_be_bool():
    with pytest.raises(TypeError, match="reduce"):
        jsr([np.eye(2)], reduce=1)

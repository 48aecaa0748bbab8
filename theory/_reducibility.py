"""Reducibility preprocessing for the joint spectral radius: exact block triangularization.

If a permutation P makes every member block upper-triangular,

    Pᵀ A_i P = [[B_i^{(1)}, *, …], [0, B_i^{(2)}, …], …],

then JSR(𝒜) = max_b JSR({B_i^{(b)}}_i) (Jungers, "The Joint Spectral Radius", Springer LNCIS 385,
2009, Prop. 1.5; Berger & Wang 1992): products stay block triangular, their spectra are the
union of the blocks' spectra, and the off-diagonal parts only contribute polynomial factors.
Lower bounds (a word w with ρ(B_w^{(b)})^{1/|w|}) are lower bounds for the family — the same
word, since member i of every block comes from member i — and the upper bound is the max of
the blocks' upper bounds, each certified on its own block.

The permutation found here is *structural*: the strongly connected components of the graph with
an edge j → l whenever some member has A_i[l, j] ≠ 0 (l depends on j), in topological order.
No arithmetic is done on the data, so the blocks are exact sub-matrices of the floats and every
block certificate is a certificate for the data.  This catches upper- and lower-triangular and
permuted block-triangular families (the common case for Jacobians of coordinate-wise
algorithms).  A common invariant subspace that is not spanned by coordinate vectors needs a
change of basis whose result is in general not exactly representable in floating point; such
splits are not attempted (the unsplit family keeps its own certificates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from conservative import MatrixSet

from ._contraction import as_square_family

__all__ = ["BlockTriangularization", "block_triangularize", "BlockCertificate"]


@dataclass(frozen=True)
class BlockTriangularization:
    """``order``: the permutation (new index → old index) making every member block upper
    triangular; ``blocks``: the index sets (old indices, in ``order``) of the diagonal blocks."""

    order: np.ndarray
    blocks: tuple

    def block(self, family: MatrixSet | ArrayLike, b: int) -> np.ndarray:
        """The members restricted to block b (exact sub-matrices), shape (k, m, m)."""
        A = as_square_family(family)
        idx = np.asarray(self.blocks[b])
        return A[:, idx[:, None], idx[None, :]]

    def permuted(self, family: MatrixSet | ArrayLike) -> np.ndarray:
        """Pᵀ A_i P for every member (block upper triangular)."""
        A = as_square_family(family)
        o = self.order
        return A[:, o[:, None], o[None, :]]


@dataclass(frozen=True)
class BlockCertificate:
    """JSR bounds from diagonal blocks: ``results[b]`` is the ``JSRResult`` of block b (with its
    own ``scale_exponent`` and ``upper_certificate``); JSR = max_b over the blocks."""

    split: BlockTriangularization
    results: tuple

    def __repr__(self) -> str:
        sizes = [len(b) for b in self.split.blocks]
        return f"BlockCertificate({len(sizes)} diagonal blocks of sizes {sizes})"


def block_triangularize(family: MatrixSet | ArrayLike) -> BlockTriangularization:
    """The finest structural block upper-triangular form of the family (see the module docstring).

    One block (the identity order) when the union of the sparsity patterns is irreducible.
    """
    A = as_square_family(family)
    n = A.shape[1]
    pattern = np.any(A != 0, axis=0)  # pattern[l, j]: l depends on j
    # edge j → l when l depends on j; the SCC condensation is a DAG
    ncomp, labels = connected_components(csr_matrix(pattern.T.astype(np.int8)), directed=True, connection="strong")
    if ncomp == 1:
        return BlockTriangularization(np.arange(n), (tuple(range(n)),))
    comps = [np.flatnonzero(labels == c) for c in range(ncomp)]
    # block c must come *before* block d (upper triangular) when some row of c depends on a
    # column of d: order the DAG "c depends on d" so that dependencies come later
    dep = np.zeros((ncomp, ncomp), dtype=bool)
    rows, cols = np.nonzero(pattern)
    for r, c in zip(rows, cols):
        if labels[r] != labels[c]:
            dep[labels[r], labels[c]] = True
    order, placed = [], np.zeros(ncomp, dtype=bool)
    while len(order) < ncomp:
        # a block that depends on no unplaced block goes last among those left
        for c in range(ncomp):
            if not placed[c] and not np.any(dep[c] & ~placed):
                placed[c] = True
                order.append(c)
                break
        else:  # pragma: no cover - the condensation of a graph is acyclic
            raise RuntimeError("strongly connected components did not form a DAG")
    order = order[::-1]
    blocks = tuple(tuple(int(i) for i in comps[c]) for c in order)
    perm = np.concatenate([comps[c] for c in order])
    return BlockTriangularization(perm, blocks)

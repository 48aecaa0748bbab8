"""Sparse storage of matrix sets: flat index/value vectors and packs of equally shaped groups.

A matrix X of shape m×n is addressed by its flat (C-order) entries i·n + j.  ``MatrixSet`` keeps

* its center C as sorted unique flat indices with their (nonzero) values, and
* its groups in *packs*: t groups that each have k points on w entries are one array of flat
  indices (t, w) and one of values (t, k, w), so that queries over thousands of groups (one per
  tie of an elementwise program) are a few vectorized operations.

Queries accept matrices as dense arrays or ``scipy.sparse`` matrices; both are read through
:class:`Flat` (values at any flat positions, its squared norm outside a set of positions).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["Flat", "Pack", "as_flat", "flat_to_output", "MAX_DENSE_ENTRIES", "components"]

#: results and accessors return dense arrays up to this many entries (m·n), sparse ones above
MAX_DENSE_ENTRIES = 2**25


def _check_finite(vals, name):
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"{name}: contains non-finite values (NaN or inf)")


class Flat:
    """A matrix of ``shape`` read by flat entries: ``dense`` (flat array) or ``idx``/``vals`` (sorted
    unique flat indices and their values; absent entries are 0)."""

    __slots__ = ("shape", "dense", "idx", "vals")

    def __init__(self, shape, dense=None, idx=None, vals=None):
        self.shape = shape
        self.dense, self.idx, self.vals = dense, idx, vals

    @property
    def values(self) -> np.ndarray:
        """Every stored number (for the scale of the data)."""
        return self.dense if self.dense is not None else self.vals

    def gather(self, pos: np.ndarray) -> np.ndarray:
        """Values at flat positions ``pos`` (any shape)."""
        pos = np.asarray(pos, dtype=np.int64)
        if self.dense is not None:
            return self.dense[pos]
        if len(self.idx) == 0:
            return np.zeros(pos.shape)
        loc = np.minimum(np.searchsorted(self.idx, pos), len(self.idx) - 1)
        return np.where(self.idx[loc] == pos, self.vals[loc], 0.0)

    def minus(self, idx: np.ndarray, vals: np.ndarray, inplace: bool = False) -> Flat:
        """self - (the sparse matrix idx/vals); ``inplace`` reuses a dense array the caller owns."""
        if self.dense is not None:
            d = self.dense if inplace else self.dense.copy()
            d[idx] -= vals
            return Flat(self.shape, dense=d)
        i = np.concatenate([self.idx, idx])
        v = np.concatenate([self.vals, -vals])
        u, inv = np.unique(i, return_inverse=True)
        out = np.zeros(len(u))
        np.add.at(out, inv, v)
        return Flat(self.shape, idx=u, vals=out)

    def outside(self, touched: np.ndarray) -> np.ndarray:
        """The values at the entries not in ``touched`` (sorted unique), nonzeros only for sparse;
        for a dense matrix (owned by the caller: ``MatrixSet`` passes its scaled copy) the entries
        ``touched`` are set to 0 in place instead of copying the rest."""
        if self.dense is not None:
            self.dense[touched] = 0.0
            return self.dense
        return self.vals[~np.isin(self.idx, touched, assume_unique=True)]


def as_flat(M, shape, name: str) -> Flat:
    """Read a query matrix: a dense array of ``shape`` or a ``scipy.sparse`` matrix/array of ``shape``.

    Non-finite, complex or wrongly shaped input raises a ``ValueError``/``TypeError`` naming ``name``."""
    m, n = shape
    if sp.issparse(M):
        if tuple(M.shape) != (m, n):
            raise ValueError(f"{name}: expected a matrix of shape {(m, n)}, got a sparse matrix of shape {M.shape}")
        if np.iscomplexobj(M.data):
            raise TypeError(f"{name}: complex matrices are not supported")
        C = sp.coo_array(M)
        C.sum_duplicates()
        vals = np.asarray(C.data, dtype=np.float64)
        _check_finite(vals, name)
        idx = np.asarray(C.row, np.int64) * n + np.asarray(C.col, np.int64)
        order = np.argsort(idx, kind="stable")
        return Flat(shape, idx=idx[order], vals=vals[order])
    from ._matrix_set import _as_matrix

    if isinstance(M, np.ndarray) and M.dtype == np.float64 and M.shape == tuple(shape):
        # read-only use: no copy of a large query (its values are checked like any other)
        _check_finite(M, name)
        return Flat(shape, dense=M.ravel())
    return Flat(shape, dense=_as_matrix(M, shape, name).ravel())


def flat_to_output(shape, idx, vals):
    """A matrix from flat entries (duplicates summed): dense (m, n) up to ``MAX_DENSE_ENTRIES``
    entries, else a ``scipy.sparse.csr_array``."""
    m, n = shape
    if m * n <= MAX_DENSE_ENTRIES:
        out = np.zeros(m * n)
        np.add.at(out, idx, vals)
        return out.reshape(m, n)
    return sp.csr_array((vals, (idx // n, idx % n)), shape=(m, n))


class Pack:
    """t groups with k points each on w flat entries: ``idx`` (t, w), ``vals`` (t, k, w)."""

    __slots__ = ("idx", "vals")

    def __init__(self, idx: np.ndarray, vals: np.ndarray):
        self.idx, self.vals = idx, vals

    @property
    def t(self) -> int:
        return self.idx.shape[0]

    @property
    def k(self) -> int:
        return self.vals.shape[1]


def components(packs):
    """Groups linked by shared entries (their distance problems do not separate).

    Returns ``(touched, comp, entry_comp)``: the sorted touched flat entries, per pack an array
    (t,) with the component of each group, and the component of each touched entry.  A component
    of one group with k = 2 points is a segment (closed form); others need a QP."""
    from scipy.sparse.csgraph import connected_components

    all_idx = [p.idx.ravel() for p in packs]
    touched, inv = np.unique(np.concatenate(all_idx), return_inverse=True) if all_idx else (np.zeros(0, np.int64), None)
    n_groups = sum(p.t for p in packs)
    gid = np.concatenate([np.repeat(np.arange(p.t) + off, p.idx.shape[1])
                          for p, off in zip(packs, np.cumsum([0] + [p.t for p in packs[:-1]]))])
    # bipartite graph groups ↔ entries
    G = sp.coo_array((np.ones(len(gid)), (gid, n_groups + inv)), shape=(n_groups + len(touched),) * 2)
    _, labels = connected_components(G, directed=False)
    comp, off = [], 0
    for p in packs:
        comp.append(labels[off : off + p.t])
        off += p.t
    return touched, comp, labels[n_groups:]

"""``MatrixSet``: compact convex sets of m×n matrices, as Minkowski sums of convex hulls.

A ``MatrixSet`` represents

    S = C + conv(G_1) + ... + conv(G_p)        (Minkowski sum)

with a center matrix C and finite groups G_g = {G_g,1, ..., G_g,k_g} of m×n matrices.  The
plain convex hull conv{M_1, ..., M_k} is the case p = 1; a zonotope C + Σ_j [0, 1]·Z_j is the
case of p groups {0, Z_j}.  Conservative Jacobians of piecewise-smooth programs are naturally
of this form: each independent tie of the program contributes one group, so a function with
t elementwise ties is stored with O(t) matrices instead of 2^t vertices (Bolte & Pauwels'
conservative calculus; slides "Conservative gradients", Vaiter 2023).

Storage is sparse throughout: the center keeps its nonzeros (flat C-order indices and values),
a group keeps only the flat matrix entries on which its points differ (so a tie that changes
one diagonal entry of a 10^5×10^5 Jacobian costs two numbers), and groups of equal shape are
packed into arrays so that thousands of them are queried in a few vectorized operations
(``_sparse_flat``).  Accepted and returned forms:

* queries ``support``, ``argsupport``, ``contains``, ``distance``, ``distance_bounds``, ``project``
  and ``translate`` accept a dense (m, n) array or any ``scipy.sparse`` matrix of shape (m, n);
* ``argsupport`` and ``project`` return a dense (m, n) array up to ``MAX_DENSE_ENTRIES`` = 2^25
  entries, a ``scipy.sparse.csr_array`` above;
* ``center`` and ``groups`` are dense and raise a ``ValueError`` above that size; ``sparse_center``
  (a ``csr_array``), ``nnz`` and ``num_groups`` work at any size.  ``vertices``, products and the
  other dense operations keep their size limits.

Queries never enumerate vertices unless asked to:

* ``support(D) = max_{X∈S} ⟨D, X⟩ = ⟨D, C⟩ + Σ_g max_i ⟨D, G_g,i⟩``  (exact);
* ``distance(M)`` / ``project(M)`` / ``contains(M)``: the touched entries split into components
  (groups linked by shared entries) whose squared distances add up; a segment alone on its
  entries is projected in closed form with its duality bound, other components by a small QP
  over the group weights with a certified lower bound from duality (see ``_qp``);
* ``vertices``: extreme points of the sum, enumerated from the extreme points of each
  group and pruned by certified linear programs, up to ``max_vertices`` candidates (a clear
  ``SetTooLargeError`` otherwise).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from ._hull import extreme_points, unique_rows
from ._qp import feasible_combination, ldexp_down, ldexp_up, min_norm_point, pow2_exponent, rescale_exactly, safe_norm
from ._sparse_flat import Flat, Pack, as_flat, components, flat_to_output

__all__ = ["MatrixSet", "SetTooLargeError", "DEFAULT_MAX_VERTICES", "as_matrix_stack"]

DEFAULT_MAX_VERTICES = 4096


class SetTooLargeError(ValueError):
    """A query would need more vertices than the configured limit."""


def _as_float_array(x, name: str) -> np.ndarray:
    if isinstance(x, MatrixSet):
        raise TypeError(f"{name}: expected an array of matrices, got a MatrixSet")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"{name}: expected an array-like of numbers, got {type(x).__name__}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name}: expected numeric data, got dtype {arr.dtype} ({type(x).__name__})")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name}: complex matrices are not supported")
    if arr.dtype in (np.float32, np.float16):
        warnings.warn(
            f"{name}: received {arr.dtype} data; set computations run in float64 but the input "
            "rounding (about 1e-7 relative) limits their accuracy. Enable float64 with "
            "jax.config.update('jax_enable_x64', True).",
            UserWarning,
            stacklevel=3,
        )
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
    return arr


def as_matrix_stack(x: Any, name: str = "generators") -> np.ndarray:
    """Validate a family of m×n matrices and return it as float64 (k, m, n).

    Accepts an array (k, m, n), a single m×n matrix (k = 1) or a sequence of equally shaped
    matrices.  Empty families, ragged shapes, non-numeric, complex or non-finite data raise
    errors naming ``name``; float32 data warns.
    """
    if isinstance(x, Sequence) and not isinstance(x, str):
        if len(x) == 0:
            raise ValueError(f"{name}: empty family; expected at least one matrix")
        shapes = {np.shape(g) for g in x}
        if len(shapes) != 1:
            raise ValueError(f"{name}: matrices of different shapes {sorted(shapes)}")
    arr = _as_float_array(x, name)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected shape (k, m, n) or a sequence of m×n matrices, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: empty family; expected at least one matrix")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"{name}: matrices must be non-empty, got shape {arr.shape[1:]}")
    return arr


def _check_tol(tol, name: str) -> float:
    """A finite nonnegative real tolerance, or a TypeError/ValueError naming ``name``."""
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a finite nonnegative number, got {type(tol).__name__} {tol!r}")
    tol = float(tol)
    if not math.isfinite(tol) or tol < 0:
        raise ValueError(f"{name}: expected a finite nonnegative number, got {tol!r}")
    return tol


def _check_count(value, name: str, minimum: int = 1) -> int:
    """An int ≥ ``minimum``; bools, floats and strings are a TypeError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name}: expected an integer ≥ {minimum}, got {int(value)}")
    return int(value)


def _as_matrix(M, shape, name: str) -> np.ndarray:
    arr = _as_float_array(M, name)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected a matrix of shape {tuple(shape)}, got {arr.shape}")
    return arr


class _Group:
    """Points of one group, stored on the flat entries ``idx`` where they differ."""

    __slots__ = ("idx", "vals")

    def __init__(self, idx: np.ndarray, vals: np.ndarray):
        self.idx = idx
        self.vals = vals

    @property
    def k(self) -> int:
        return self.vals.shape[0]

    def dense(self, size: int) -> np.ndarray:
        out = np.zeros((self.k, size))
        out[:, self.idx] = self.vals
        return out


def _normalize(center: np.ndarray, dense_groups) -> tuple[np.ndarray, tuple]:
    """Fold each group's first point into the center; keep entries where points differ."""
    center = center.copy()
    groups = []
    for G in dense_groups:
        G = unique_rows(G)
        if G.shape[0] == 1:
            center += G[0]
            continue
        center += G[0]
        D = G - G[0]
        idx = np.flatnonzero(np.any(D != 0, axis=0))
        groups.append(_Group(idx, D[:, idx]))
    return center, tuple(groups)


def _check_dense(entries: int, what: str) -> None:
    """A clear error instead of allocating a huge dense array."""
    from . import _sparse_flat

    if entries > _sparse_flat.MAX_DENSE_ENTRIES:
        raise ValueError(
            f"MatrixSet: {what} would need {entries} dense entries, above MAX_DENSE_ENTRIES="
            f"{_sparse_flat.MAX_DENSE_ENTRIES} (conservative._sparse_flat). Use the sparse accessors "
            "(sparse_center, support/contains/distance/project with scipy.sparse queries), or raise the limit."
        )


def _center_parts(center, shape):
    """(sorted unique flat indices, values) of the nonzeros of a center given dense (flat or (m, n)),
    as a pair (indices, values) or as a ``scipy.sparse`` matrix."""
    import scipy.sparse as sp

    m, n = shape
    if isinstance(center, tuple):
        idx, vals = center
        idx = np.asarray(idx, dtype=np.int64)
        vals = np.asarray(vals, dtype=np.float64)
        if len(idx) > 1 and not np.all(idx[1:] > idx[:-1]):
            u, inv = np.unique(idx, return_inverse=True)
            acc = np.zeros(len(u))
            np.add.at(acc, inv, vals)
            idx, vals = u, acc
    elif sp.issparse(center):
        C = sp.coo_array(center)
        C.sum_duplicates()
        idx = np.asarray(C.row, np.int64) * n + np.asarray(C.col, np.int64)
        order = np.argsort(idx)
        idx, vals = idx[order], np.asarray(C.data, np.float64)[order]
    else:
        c = np.asarray(center, dtype=np.float64).ravel()
        if c.size != m * n:
            raise ValueError(f"center: expected {m * n} entries, got {c.size}")
        idx = np.flatnonzero(c)
        vals = c[idx]
    keep = vals != 0
    if not np.all(keep):
        idx, vals = idx[keep], vals[keep]
    return np.array(idx), np.array(vals)


class MatrixSet:
    """The compact convex set C + conv(G_1) + ... + conv(G_p) of m×n matrices (immutable).

    ``MatrixSet(generators)`` builds the convex hull conv{M_1, ..., M_k} of an array of shape
    (k, m, n), a sequence of m×n matrices, or a single m×n matrix (a singleton).  Use
    ``MatrixSet.minkowski_sum_of_hulls`` or ``MatrixSet.zonotope`` for the structured forms.
    All data is float64; float32 input triggers a warning, non-finite input a ``ValueError``.
    """

    __slots__ = ("_shape", "_cidx", "_cval", "_groups_c", "_packs_c", "_n_generators", "_vertex_cache", "_raw",
                 "_dense_c", "_decomp")
    max_vertices = DEFAULT_MAX_VERTICES
    __array_ufunc__ = None  # so that ``ndarray @ S`` and ``ndarray + S`` reach MatrixSet's operators

    def __init__(self, generators: Any) -> None:
        if isinstance(generators, MatrixSet):
            g = generators
            self._init_from(g._shape, (g._cidx, g._cval), g._groups_c, len(g), packs=g._packs_c)
            object.__setattr__(self, "_raw", g._raw)
            return
        arr = as_matrix_stack(generators, "generators")
        k, m, n = arr.shape
        center, groups = _normalize(np.zeros(m * n), [arr.reshape(k, m * n)])
        self._init_from((m, n), center, groups, k)
        arr.flags.writeable = False
        object.__setattr__(self, "_raw", arr)  # generators as given (for coupled hstack)

    def _init_from(self, shape, center, groups, n_generators, packs=None):
        """``center``: a dense flat array (m·n,), a pair (sorted unique flat indices, values) or a
        ``scipy.sparse`` matrix (m, n); ``groups`` a sequence of ``_Group`` or ``packs`` of ``Pack``."""
        m, n = int(shape[0]), int(shape[1])
        object.__setattr__(self, "_shape", (m, n))
        cidx, cval = _center_parts(center, (m, n))
        if not np.all(np.isfinite(cval)):
            raise ValueError("MatrixSet: the set has non-finite entries (an operation overflowed float64)")
        if groups is not None:
            groups = tuple(groups)
            if not all(np.all(np.isfinite(g.vals)) for g in groups):
                raise ValueError("MatrixSet: the set has non-finite entries (an operation overflowed float64)")
            for g in groups:
                g.idx.flags.writeable = False
                g.vals.flags.writeable = False
        if packs is not None:
            packs = tuple(p for p in packs if p.t)
            if not all(np.all(np.isfinite(p.vals)) for p in packs):
                raise ValueError("MatrixSet: the set has non-finite entries (an operation overflowed float64)")
            for p in packs:
                p.idx.flags.writeable = False
                p.vals.flags.writeable = False
        for a in (cidx, cval):
            a.flags.writeable = False
        object.__setattr__(self, "_cidx", cidx)
        object.__setattr__(self, "_cval", cval)
        object.__setattr__(self, "_groups_c", groups)
        object.__setattr__(self, "_packs_c", packs)
        object.__setattr__(self, "_n_generators", int(n_generators))
        object.__setattr__(self, "_vertex_cache", None)
        object.__setattr__(self, "_raw", None)
        object.__setattr__(self, "_dense_c", None)
        object.__setattr__(self, "_decomp", None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("MatrixSet is immutable")

    # ----------------------------------------------------------------- storage
    @property
    def _groups(self) -> tuple:
        """The groups as ``_Group`` objects (built from the packs on first use)."""
        if self._groups_c is None:
            groups = tuple(_Group(p.idx[i], p.vals[i]) for p in self._packs_c for i in range(p.t))
            object.__setattr__(self, "_groups_c", groups)
        return self._groups_c

    @property
    def _packs(self) -> tuple:
        """The groups as packs of equally shaped groups (vectorized queries)."""
        if self._packs_c is None:
            by_shape: dict = {}
            for g in self._groups_c:
                by_shape.setdefault((g.k, len(g.idx)), []).append(g)
            packs = tuple(Pack(np.stack([g.idx for g in gs]), np.stack([g.vals for g in gs]))
                          for gs in by_shape.values())
            object.__setattr__(self, "_packs_c", packs)
        return self._packs_c

    @property
    def _center(self) -> np.ndarray:
        """The center as a dense flat array (m·n,), for the dense operations; a clear error when m·n
        exceeds ``MAX_DENSE_ENTRIES``."""
        if self._dense_c is None:
            m, n = self._shape
            _check_dense(m * n, "the dense center")
            c = np.zeros(m * n)
            c[self._cidx] = self._cval
            c.flags.writeable = False
            object.__setattr__(self, "_dense_c", c)
        return self._dense_c

    # ----------------------------------------------------------------- constructors
    @classmethod
    def _from_parts(cls, shape, center, dense_groups) -> MatrixSet:
        center, groups = _normalize(np.asarray(center, dtype=np.float64).ravel(), dense_groups)
        obj = object.__new__(cls)
        n_gen = sum(g.k for g in groups) or 1
        obj._init_from(shape, center, groups, n_gen)
        return obj

    @classmethod
    def _from_sparse(cls, shape, center, groups) -> MatrixSet:
        """Internal constructor from already-normalized sparse groups (``_Group``, no copies).

        ``center`` is a dense flat array (m·n,), a pair (sorted unique flat indices, values) or a
        ``scipy.sparse`` matrix (m, n)."""
        obj = object.__new__(cls)
        obj._init_from(shape, center, groups, sum(g.k for g in groups) or 1)
        return obj

    @classmethod
    def _from_packs(cls, shape, center, packs) -> MatrixSet:
        """Internal constructor from packs of groups (``Pack``); ``center`` as in ``_from_sparse``."""
        packs = tuple(packs)
        obj = object.__new__(cls)
        obj._init_from(shape, center, None, sum(p.t * p.k for p in packs) or 1, packs=packs)
        return obj

    @classmethod
    def minkowski_sum_of_hulls(cls, center: Any, groups: Sequence[Any]) -> MatrixSet:
        """C + conv(G_1) + ... + conv(G_p) from a center (m, n) and arrays G_g of shape (k_g, m, n)."""
        C = _as_float_array(center, "center")
        if C.ndim != 2:
            raise ValueError(f"center: expected an m×n matrix, got shape {C.shape}")
        dense = []
        for i, G in enumerate(groups):
            G = _as_float_array(G, f"groups[{i}]")
            if G.ndim != 3 or G.shape[1:] != C.shape or G.shape[0] == 0:
                raise ValueError(f"groups[{i}]: expected shape (k, {C.shape[0]}, {C.shape[1]}) with k ≥ 1, "
                                 f"got {G.shape}")
            dense.append(G.reshape(G.shape[0], -1))
        return cls._from_parts(C.shape, C, dense)

    @classmethod
    def zonotope(cls, center: Any, segments: Any) -> MatrixSet:
        """The zonotope C + Σ_j [0, 1]·Z_j for segments Z of shape (p, m, n)."""
        Z = _as_float_array(segments, "segments")
        if Z.ndim != 3:
            raise ValueError(f"segments: expected shape (p, m, n), got {Z.shape}")
        zero = np.zeros_like(Z[:1])
        return cls.minkowski_sum_of_hulls(center, [np.concatenate([zero, Z[j : j + 1]]) for j in range(len(Z))])

    # ----------------------------------------------------------------- basic properties
    @property
    def shape(self) -> tuple[int, int]:
        """(m, n): the shape of every matrix in the set."""
        return self._shape

    def __len__(self) -> int:
        """Number of stored generators (Σ_g k_g; 1 for a singleton)."""
        return self._n_generators

    @property
    def center(self) -> np.ndarray:
        """The center C as a dense (m, n) array (a member of the set: every group's first point is
        folded into it).  Above ``MAX_DENSE_ENTRIES`` = 2^25 entries this raises a ``ValueError``:
        use ``sparse_center``."""
        return self._center.reshape(self._shape).copy()

    @property
    def sparse_center(self) -> Any:
        """The center C as a ``scipy.sparse.csr_array`` (m, n), at any size."""
        import scipy.sparse as sp

        m, n = self._shape
        return sp.csr_array((self._cval, (self._cidx // n, self._cidx % n)), shape=(m, n))

    @property
    def nnz(self) -> int:
        """Stored numbers: nonzeros of the center plus the entries of every group's points."""
        return len(self._cval) + sum(p.vals.size for p in self._packs)

    @property
    def num_groups(self) -> int:
        """p, the number of hulls in the Minkowski sum."""
        return sum(p.t for p in self._packs)

    @property
    def groups(self) -> list[np.ndarray]:
        """The groups G_g - (first point) as dense arrays (k_g, m, n): S = C + Σ_g conv(G_g).
        Raises a ``ValueError`` when they need more than ``MAX_DENSE_ENTRIES`` numbers in all."""
        size = self._shape[0] * self._shape[1]
        _check_dense(size * sum(p.t * p.k for p in self._packs), "the dense groups")
        return [g.dense(size).reshape((g.k,) + self._shape) for g in self._groups]

    @property
    def is_singleton(self) -> bool:
        return not self._packs

    @property
    def num_candidate_vertices(self) -> int:
        """Π_g k_g: an upper bound on the number of vertices of the Minkowski sum."""
        return math.prod(p.k ** p.t for p in self._packs)

    def __repr__(self) -> str:
        m, n = self._shape
        if self.is_singleton:
            return f"MatrixSet(singleton {m}×{n})"
        from collections import Counter

        sizes = Counter()
        for p in self._packs:
            sizes[p.k] += p.t
        if sum(sizes.values()) == 1:
            return f"MatrixSet(conv of {next(iter(sizes))} matrices {m}×{n})"
        desc = ", ".join(f"{c}×{k}" if c > 1 else f"{k}" for k, c in sorted(sizes.items()))
        total = sum(sizes.values())
        return f"MatrixSet({m}×{n}: center + Minkowski sum of {total} hulls of sizes [{desc}])"

    # ----------------------------------------------------------------- vertices
    def enumerate_vertices(self, max_vertices: int | None = None) -> np.ndarray:
        """Extreme points of S as an array (k', m, n).

        The vertices of a Minkowski sum are sums of vertices of the summands, so each group is
        pruned to its extreme points first, then the Π_g k_g candidate sums are pruned by
        certified LPs (``_hull.extreme_points``).  Raises ``SetTooLargeError`` when the number of
        candidates exceeds ``max_vertices`` (default ``MatrixSet.max_vertices`` = 4096).
        """
        limit = self.max_vertices if max_vertices is None else _check_count(max_vertices, "max_vertices")
        if self._vertex_cache is not None:
            return self._vertex_cache.copy()
        m, n = self._shape
        if self.is_singleton:
            V = self._center.reshape(1, m, n).copy()
            object.__setattr__(self, "_vertex_cache", V)
            return V.copy()
        pruned = [extreme_points(g.vals) for g in self._groups]
        count = math.prod(len(p) for p in pruned)
        if count > limit:
            raise SetTooLargeError(
                f"MatrixSet.vertices: the set is a Minkowski sum of {len(pruned)} polytopes with up to "
                f"{count} candidate vertices, above max_vertices={limit}. Raise the limit with "
                "S.enumerate_vertices(max_vertices=...) or MatrixSet.max_vertices, or use support(), "
                "contains(), distance() and project(), which never enumerate vertices."
            )
        size = m * n
        sums = np.tile(self._center, (1, 1))
        for g, P in zip(self._groups, pruned):
            dense = np.zeros((len(P), size))
            dense[:, g.idx] = P
            sums = (sums[:, None, :] + dense[None, :, :]).reshape(-1, size)
        if len(pruned) > 1:
            touched = np.unique(np.concatenate([g.idx for g in self._groups]))
            keep = extreme_points(sums[:, touched])
            # map back: rows of sums whose touched part is an extreme point (deduplicated)
            _, first = np.unique(sums[:, touched], axis=0, return_index=True)
            lookup = {tuple(sums[i, touched]): i for i in first}
            sums = sums[[lookup[tuple(row)] for row in keep]]
        V = sums.reshape(-1, m, n)
        object.__setattr__(self, "_vertex_cache", V)
        return V.copy()

    @property
    def vertices(self) -> np.ndarray:
        """The extreme points (k', m, n); see ``enumerate_vertices`` for the size limit."""
        return self.enumerate_vertices()

    # ----------------------------------------------------------------- queries
    def _exponent(self) -> int:
        """e with every stored number (center, group entries) below 2^e in magnitude."""
        return pow2_exponent(self._cval, *(p.vals for p in self._packs))

    def _support_flat(self, d: Flat, with_arg: bool = False):
        """σ_S(D) (and, with ``with_arg``, the maximising point as flat entries) on D/2^a and S/2^b."""
        a, b = pow2_exponent(d.values), self._exponent()
        C, _ = rescale_exactly(self._cval, b)
        dc, _ = rescale_exactly(d.gather(self._cidx), a)
        val = float(dc @ C)
        args = []
        for p in self._packs:
            v, _ = rescale_exactly(p.vals, b)
            dp, _ = rescale_exactly(d.gather(p.idx), a)
            scores = np.einsum("tkw,tw->tk", v, dp)
            best = np.argmax(scores, axis=1)
            val += float(np.sum(scores[np.arange(p.t), best]))
            if with_arg:
                args.append((p.idx.ravel(), p.vals[np.arange(p.t), best].ravel()))
        return float(np.ldexp(val, a + b)), args

    def support(self, D: Any) -> float:
        """σ_S(D) = max_{X∈S} ⟨D, X⟩ = ⟨D, C⟩ + Σ_g max_i ⟨D, G_g,i⟩ (Frobenius inner product).

        ``D``: a dense (m, n) array or a ``scipy.sparse`` matrix (only its entries on the center's
        nonzeros and the groups' entries are read).  Evaluated on D/2^a and S/2^b (powers of two
        near their largest entries, exact) and scaled back by 2^(a+b), so that no intermediate
        product over- or underflows.
        """
        return self._support_flat(as_flat(D, self._shape, "D"))[0]

    def argsupport(self, D: Any) -> Any:
        """A maximiser of ⟨D, X⟩ over S (one vertex per group, summed).  ``D`` as for ``support``;
        the result is a dense (m, n) array, or a ``scipy.sparse.csr_array`` above
        ``MAX_DENSE_ENTRIES`` entries."""
        _, args = self._support_flat(as_flat(D, self._shape, "D"), with_arg=True)
        idx = np.concatenate([self._cidx] + [i for i, _ in args])
        vals = np.concatenate([self._cval] + [v for _, v in args])
        return flat_to_output(self._shape, idx, vals)

    def _touched(self):
        return self._decomposition()[0]

    def _decomposition(self):
        """(touched entries, per pack the component of each group, per pack a mask of the groups that
        are segments alone on their entries, the other components as lists of (pack, row))."""
        if self._decomp is None:
            packs = self._packs
            touched, comp, _ = components(packs)
            labels = np.concatenate(comp)
            counts = np.bincount(labels)
            lone, others = [], {}
            for pi, (p, c) in enumerate(zip(packs, comp)):
                mask = (counts[c] == 1) & (p.k == 2)
                lone.append(mask)
                for r in np.flatnonzero(~mask):
                    others.setdefault(int(c[r]), []).append((pi, int(r)))
            object.__setattr__(self, "_decomp", (touched, tuple(lone), tuple(others.values())))
        return self._decomp

    def _scaled(self, Mflat: Flat):
        """Divide the query and the set by one power of two 2^e near their largest entry (exact
        unless ``loss`` > 0): (e, residual y = M - C as Flat, packs' values, loss)."""
        e = pow2_exponent(Mflat.values, self._cval, *(p.vals for p in self._packs))
        C, loss = rescale_exactly(self._cval, e)
        if Mflat.dense is not None:
            Mv, lm = rescale_exactly(Mflat.dense, e)
            Mn = Flat(self._shape, dense=Mv)
        else:
            Mv, lm = rescale_exactly(Mflat.vals, e)
            Mn = Flat(self._shape, idx=Mflat.idx, vals=Mv)
        vals = []
        loss = max(loss, lm)
        for p in self._packs:
            v, lv = rescale_exactly(p.vals, e)
            vals.append(v)
            loss = max(loss, lv)
        return e, Mn.minus(self._cidx, C, inplace=Mflat.dense is not None), vals, loss

    def _solve_parts(self, y: Flat, vals, exact: bool = False, tol_n: float = 0.0):
        """Nearest point (as flat entries on the touched set) and per-component bounds.

        The touched entries split into components (groups linked by shared entries); S restricted
        to them is the product of the components' sets, so the squared distance is the sum over
        components.  A segment alone on its entries is projected in closed form, with the duality
        bound (⟨u, r⟩ - max(0, ⟨u, v⟩))/‖u‖ for u = r - λv; other components go to ``min_norm_point``
        (``exact``: to the exact LP membership test, which returns None when it fails)."""
        touched, lone, others = self._decomposition()
        xt = np.zeros(len(touched))  # the found point minus the center, on touched entries
        lows, highs = [], []
        for p, v, mask in zip(self._packs, vals, lone):
            if not mask.any():
                continue
            idx, a, b = p.idx[mask], v[mask, 0], v[mask, 1]
            r = y.gather(idx) - a
            s = b - a
            ss = np.einsum("tw,tw->t", s, s)
            lam = np.clip(np.divide(np.einsum("tw,tw->t", r, s), ss, out=np.zeros(len(ss)), where=ss > 0), 0.0, 1.0)
            u = r - lam[:, None] * s
            un = np.sqrt(np.einsum("tw,tw->t", u, u))
            lo = np.divide(np.einsum("tw,tw->t", u, r) - np.maximum(0.0, np.einsum("tw,tw->t", u, s)), un,
                           out=np.zeros(len(un)), where=un > 0)
            lows.append(np.maximum(lo, 0.0))
            highs.append(un)
            xt[np.searchsorted(touched, idx.ravel())] += (a + lam[:, None] * s).ravel()
        for comp in others:
            ent = np.unique(np.concatenate([self._packs[pi].idx[r] for pi, r in comp]))
            A = []
            for pi, r in comp:
                Ag = np.zeros((len(ent), self._packs[pi].k))
                Ag[np.searchsorted(ent, self._packs[pi].idx[r]), :] = vals[pi][r].T
                A.append(Ag)
            yc = y.gather(ent)
            if exact:
                lams = feasible_combination(yc, A, tol_n)
                if lams is None:
                    return None
                pt = sum((Ag @ lam for Ag, lam in zip(A, lams)), np.zeros(len(ent)))
                res_norm = safe_norm(yc - pt)
                lo_c = hi_c = res_norm
            else:
                res = min_norm_point(yc, A)
                pt, lo_c, hi_c = res.point, res.lower, res.upper
            lows.append(np.array([lo_c]))
            highs.append(np.array([hi_c]))
            xt[np.searchsorted(touched, ent)] += pt
        lo = np.concatenate(lows) if lows else np.zeros(0)
        hi = np.concatenate(highs) if highs else np.zeros(0)
        return touched, xt, lo, hi

    def _distance(self, M):
        """(nearest point as flat entries (idx, vals), lower, upper) for the Frobenius distance.

        The query and the set are divided together by a power of two 2^e near their largest
        entry (exact in binary floating point): dist(M, S) = 2^e·dist(M/2^e, S/2^e), so the QP
        and every squared norm work on numbers ≤ 1 and neither overflow nor underflow; the bounds
        are scaled back with outward rounding.  Entries rounded in the subnormal range (only
        when the data spans more than 2^1022) move the distance, which is 1-Lipschitz in the
        query and in each summand, by at most (2 + #groups)·√(mn)·2^-1074 (scaled units): the
        bounds are widened by that.
        """
        Mflat = as_flat(M, self._shape, "M")
        e, y, vals, loss = self._scaled(Mflat)
        if self.is_singleton:
            lo = hi = safe_norm(y.values)
            pidx, pval = self._cidx, self._cval
        else:
            touched, xt, lows, highs = self._solve_parts(y, vals)
            r_out = safe_norm(y.outside(touched))
            lo = math.hypot(safe_norm(lows), r_out)
            hi = math.hypot(safe_norm(highs), r_out)
            pidx = np.concatenate([self._cidx, touched])
            pval = np.concatenate([self._cval, np.ldexp(xt, e)])
        if loss > 0:
            m, n = self._shape
            slack = (2 + self.num_groups) * math.sqrt(m * n) * loss
            lo = max(0.0, float(np.nextafter(lo - slack, -np.inf)))
            hi = float(np.nextafter(hi + slack, np.inf))
        lo, hi = ldexp_down(lo, e), ldexp_up(hi, e)
        return (pidx, pval), min(lo, hi), hi

    def _feasible(self, M, tol) -> bool:
        """Exact LP membership test (certified by the residual of the LP's combination), component by
        component, on the query and the set divided by the same power of two as ``_distance``."""
        e, y, vals, loss = self._scaled(as_flat(M, self._shape, "M"))
        if loss > 0:
            return False  # the scaled data is not the data: no exact certificate
        tol_n = float(np.ldexp(tol, -e))
        if self.is_singleton:
            return safe_norm(y.values) <= tol_n
        parts = self._solve_parts(y, vals, exact=True, tol_n=tol_n)
        if parts is None:
            return False
        r_out = safe_norm(y.outside(parts[0]))  # after the touched entries were read
        return math.hypot(safe_norm(parts[3]), r_out) <= tol_n

    def distance_bounds(self, M: Any) -> tuple[float, float]:
        """Certified (lower, upper) bounds on the Frobenius distance from M to S.  ``M``: a dense
        (m, n) array or a ``scipy.sparse`` matrix."""
        _, lo, hi = self._distance(M)
        return lo, hi

    def distance(self, M: Any) -> float:
        """Frobenius distance from M to S (the upper bound, attained by ``project(M)``); ``M`` dense
        or ``scipy.sparse``."""
        return self._distance(M)[2]

    def project(self, M: Any) -> Any:
        """The nearest point of S to M in the Frobenius norm (closed forms for segments alone on their
        entries, a QP per component otherwise; see ``_qp``).  ``M`` dense or ``scipy.sparse``; the
        result is dense (m, n), or a ``scipy.sparse.csr_array`` above ``MAX_DENSE_ENTRIES`` entries."""
        (idx, vals), _, _ = self._distance(M)
        return flat_to_output(self._shape, idx, vals)

    def contains(self, M: Any, tol: float = 1e-9) -> bool:
        """Is dist_F(M, S) ≤ tol?  Decided from certified distance bounds.

        ``M``: a dense (m, n) array or a ``scipy.sparse`` matrix.  ``tol`` is a finite nonnegative
        number (absolute, Frobenius norm).  In the rare case where the bounds straddle ``tol``
        (solver inaccuracy) an exact LP membership test is tried; if it does not confirm
        membership the answer is ``lower ≤ tol`` and a warning reports both bounds.
        """
        tol = _check_tol(tol, "tol")
        _, lo, hi = self._distance(M)
        if hi <= tol:
            return True
        if lo > tol:
            return False
        if self._feasible(M, tol):
            return True
        warnings.warn(
            f"MatrixSet.contains: inconclusive, distance in [{lo:.3e}, {hi:.3e}] straddles tol={tol:.3e}",
            RuntimeWarning,
            stacklevel=2,
        )
        return True

    def diameter(self) -> float:
        """max_{X,Y∈S} ‖X - Y‖_F (attained at a pair of vertices)."""
        V = self.vertices.reshape(-1, self._shape[0] * self._shape[1])
        if len(V) == 1:
            return 0.0
        e = pow2_exponent(V)
        V = np.ldexp(V, -e)  # entries ≤ 1: the squares neither overflow nor underflow
        sq = np.sum(V**2, axis=1)
        d2 = sq[:, None] + sq[None, :] - 2 * V @ V.T
        i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
        return float(np.ldexp(safe_norm(V[i] - V[j]), e))

    # ----------------------------------------------------------------- algebra
    def _check_set(self, other, name="other") -> MatrixSet:
        if not isinstance(other, MatrixSet):
            raise TypeError(f"{name}: expected a MatrixSet, got {type(other).__name__}")
        return other

    def _dense_groups(self):
        size = self._shape[0] * self._shape[1]
        _check_dense(size * sum(p.t * p.k for p in self._packs), "the dense groups")
        return [g.dense(size) for g in self._groups]

    def linear_image(self, fn: Callable[[np.ndarray], Any], out_shape: tuple[int, int]) -> MatrixSet:
        """Image under a *linear* map X ↦ fn(X) (m×n → out_shape): fn(C) + Σ_g conv(fn(G_g)).

        ``fn`` must be linear (not affine); it receives a stack (k, m, n) and returns (k, p, q).
        """
        m, n = self._shape
        C = np.asarray(fn(self._center.reshape(1, m, n)), dtype=np.float64).reshape(1, -1)
        dense = [np.asarray(fn(G.reshape(-1, m, n)), dtype=np.float64).reshape(G.shape[0], -1)
                 for G in self._dense_groups()]
        return MatrixSet._from_parts(out_shape, C[0], dense)

    def minkowski_sum(self, other: MatrixSet) -> MatrixSet:
        """S + T = {X + Y : X ∈ S, Y ∈ T}: centers add, groups are concatenated (exact)."""
        other = self._check_set(other)
        if other.shape != self.shape:
            raise ValueError(f"other: Minkowski sum needs equal shapes, got {self.shape} and {other.shape}")
        center = (np.concatenate([self._cidx, other._cidx]), np.concatenate([self._cval, other._cval]))
        if self._groups_c is not None and other._groups_c is not None:
            return MatrixSet._from_sparse(self._shape, center, self._groups + other._groups)
        return MatrixSet._from_packs(self._shape, center, self._packs + other._packs)

    def translate(self, M: Any) -> MatrixSet:
        """S + M = {X + M : X ∈ S} (``M`` dense or ``scipy.sparse``)."""
        Mf = as_flat(M, self._shape, "M")
        if Mf.dense is not None:
            Mf = Flat(self._shape, idx=np.flatnonzero(Mf.dense), vals=Mf.dense[Mf.dense != 0])
        center = (np.concatenate([self._cidx, Mf.idx]), np.concatenate([self._cval, Mf.vals]))
        if self._groups_c is not None:
            return MatrixSet._from_sparse(self._shape, center, self._groups)
        return MatrixSet._from_packs(self._shape, center, self._packs)

    def __add__(self, other: Any) -> MatrixSet:
        if isinstance(other, MatrixSet):
            return self.minkowski_sum(other)
        return self.translate(other)

    __radd__ = __add__

    def scale(self, c: float) -> MatrixSet:
        """c·S = {cX : X ∈ S}."""
        c = float(c)
        if not math.isfinite(c):
            raise ValueError(f"c: expected a finite scalar, got {c}")
        with np.errstate(over="ignore"):  # an overflow is reported by the constructor
            center = (self._cidx, c * self._cval)
            if self._groups_c is None:
                packs = tuple(Pack(p.idx, c * p.vals) for p in self._packs) if c != 0 else ()
                return MatrixSet._from_packs(self._shape, center, packs)
            groups = tuple(type(g)(g.idx, c * g.vals) for g in self._groups) if c != 0 else ()
        return MatrixSet._from_sparse(self._shape, center, groups)

    def __mul__(self, c: float) -> MatrixSet:
        if np.ndim(c) != 0:
            raise TypeError("MatrixSet * x needs a scalar x; use A @ S or S @ B for matrix products")
        return self.scale(c)

    __rmul__ = __mul__

    def __neg__(self) -> MatrixSet:
        return self.scale(-1.0)

    def left_multiply(self, A: Any) -> MatrixSet:
        """A·S = {A X : X ∈ S} (a linear image: exact, no vertex enumeration)."""
        A = _as_float_array(A, "A")
        if A.ndim != 2 or A.shape[1] != self._shape[0]:
            raise ValueError(f"A: expected a matrix with {self._shape[0]} columns, got shape {A.shape}")
        return self.linear_image(lambda X: A @ X, (A.shape[0], self._shape[1]))

    def right_multiply(self, B: Any) -> MatrixSet:
        """S·B = {X B : X ∈ S} (a linear image: exact, no vertex enumeration)."""
        B = _as_float_array(B, "B")
        if B.ndim != 2 or B.shape[0] != self._shape[1]:
            raise ValueError(f"B: expected a matrix with {self._shape[1]} rows, got shape {B.shape}")
        return self.linear_image(lambda X: X @ B, (self._shape[0], B.shape[1]))

    def product(self, other: MatrixSet) -> MatrixSet:
        """conv{X Y : X ∈ S, Y ∈ T}, the set the chain rule needs.

        (X, Y) ↦ XY is bilinear, so the hull of the products is the hull of products of
        vertices: conv{V_i W_j}.  Enumerates vertices (subject to ``max_vertices``).
        """
        other = self._check_set(other)
        if self._shape[1] != other.shape[0]:
            raise ValueError(f"other: cannot multiply sets of shapes {self.shape} and {other.shape}")
        if self.is_singleton:
            return other.left_multiply(self.center)
        if other.is_singleton:
            return self.right_multiply(other.center)
        V, W = self.vertices, other.vertices
        P = np.einsum("imk,jkn->ijmn", V, W).reshape(-1, self._shape[0], other.shape[1])
        return MatrixSet(P)

    def __matmul__(self, other: Any) -> MatrixSet:
        if isinstance(other, MatrixSet):
            return self.product(other)
        return self.right_multiply(other)

    def __rmatmul__(self, other: Any) -> MatrixSet:
        return self.left_multiply(other)

    def transpose(self) -> MatrixSet:
        """Sᵀ = {Xᵀ : X ∈ S}."""
        m, n = self._shape
        return self.linear_image(lambda X: np.swapaxes(X, 1, 2), (n, m))

    @property
    def T(self) -> MatrixSet:
        return self.transpose()

    @staticmethod
    def hstack(sets: Sequence[MatrixSet], *, coupled: bool = True) -> MatrixSet:
        """Horizontal concatenation of blocks.

        ``coupled=True`` (blocks of the same selections): all sets must be plain hulls built from
        the same number k of generators, paired by index *as given to the constructor*
        (duplicates included): conv{[X¹_i, X²_i, ...] : i ≤ k}.
        ``coupled=False`` (independent blocks): {[X¹, X², ...] : Xʲ ∈ Sʲ}, the Minkowski sum of
        the embedded blocks (exact, no enumeration).
        """
        sets = list(sets)
        if not sets:
            raise ValueError("sets: expected at least one MatrixSet")
        for i, s in enumerate(sets):
            if not isinstance(s, MatrixSet):
                raise TypeError(f"sets[{i}]: expected a MatrixSet, got {type(s).__name__}")
        m = sets[0].shape[0]
        if any(s.shape[0] != m for s in sets):
            raise ValueError(f"sets: blocks must have the same number of rows, got {[s.shape for s in sets]}")
        widths = [s.shape[1] for s in sets]
        N = sum(widths)
        offsets = np.cumsum([0] + widths[:-1])

        def embed(X, off, w):
            out = np.zeros(X.shape[:-2] + (m, N))
            out[..., off : off + w] = X
            return out

        if not coupled:
            total = None
            for s, off, w in zip(sets, offsets, widths):
                e = s.linear_image(lambda X, off=off, w=w: embed(X, off, w), (m, N))
                total = e if total is None else total + e
            return total
        gens = []
        for i, s in enumerate(sets):
            if s._raw is None and len(s._groups) > 1:
                raise ValueError(
                    f"sets[{i}]: coupled concatenation pairs generators by index and needs plain hulls "
                    "(MatrixSet(generators)), not Minkowski sums"
                )
            gens.append(s._raw if s._raw is not None else s.generators)
        k = {len(g) for g in gens}
        if len(k) != 1:
            raise ValueError(f"sets: coupled blocks need the same number of generators, got {[len(g) for g in gens]}")
        return MatrixSet(np.concatenate(gens, axis=2))

    @property
    def generators(self) -> np.ndarray:
        """The stored generators of a plain hull, as (k, m, n): C + G_1,i for each i.

        For a Minkowski sum of several hulls use ``groups``/``center`` or ``vertices``.
        """
        m, n = self._shape
        if self.is_singleton:
            return self._center.reshape(1, m, n).copy()
        if len(self._groups) > 1:
            raise ValueError("generators: the set is a Minkowski sum of several hulls; use vertices or groups")
        return (self._center + self._dense_groups()[0]).reshape(-1, m, n)

    def split_columns(self, n1: int) -> tuple[MatrixSet, MatrixSet]:
        """The projections {X[:, :n1]} and {X[:, n1:]} (e.g. the ∂ₓF and ∂_θF blocks)."""
        m, n = self._shape
        n1 = _check_count(n1, "n1")
        if not 0 < n1 < n:
            raise ValueError(f"n1: expected 0 < n1 < {n}, got {n1}")
        return (self.linear_image(lambda X: X[..., :n1], (m, n1)),
                self.linear_image(lambda X: X[..., n1:], (m, n - n1)))

"""Extreme points of finite point clouds, with certified pruning.

``extreme_points(P)`` keeps every vertex of conv(P) and removes a point only when it has
been *verified* to lie in the convex hull of the points that are kept (a feasible convex
combination whose residual is below ``tol``).  Keeping a non-extreme point is harmless (the
hull does not change); removing a vertex would shrink the set, so it never happens silently.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from ._qp import pow2_exponent

__all__ = ["unique_rows", "affine_coordinates", "extreme_points"]


def unique_rows(P: np.ndarray) -> np.ndarray:
    """Exact deduplication of the rows of ``P`` (first occurrence order)."""
    if len(P) <= 1:
        return P
    _, idx = np.unique(P, axis=0, return_index=True)
    return P[np.sort(idx)]


def affine_coordinates(P: np.ndarray, rtol: float = 1e-13):
    """Coordinates of the rows of ``P`` in an orthonormal basis of their affine hull.

    Returns ``(Y, origin, basis)`` with ``P ≈ origin + Y @ basis`` (``basis`` has orthonormal
    rows).  Directions whose singular value is below ``rtol · max|P| · max(P.shape)`` are dropped
    (a relative test: scaling P by c > 0 scales the coordinates by c and keeps the same basis).
    """
    origin = P[0]
    D = P - origin
    if D.shape[0] <= 1 or not np.any(D):
        return np.zeros((P.shape[0], 0)), origin, np.zeros((0, P.shape[1]))
    _, s, vt = np.linalg.svd(D, full_matrices=False)
    scale = float(np.abs(P).max())  # relative to the data: the rank decision is scale-invariant
    r = int(np.sum(s > rtol * scale * max(D.shape)))
    basis = vt[:r]
    return D @ basis.T, origin, basis


def _in_hull_lp(Q: np.ndarray, p: np.ndarray, tol: float) -> bool:
    """Is ``p`` a convex combination of the rows of ``Q`` (verified residual ≤ tol)?"""
    k = Q.shape[0]
    A_eq = np.vstack([Q.T, np.ones((1, k))])
    b_eq = np.concatenate([p, [1.0]])
    res = linprog(np.zeros(k), A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if res.status != 0:
        return False
    lam = np.clip(res.x, 0.0, None)
    lam /= lam.sum()
    return float(np.max(np.abs(lam @ Q - p))) <= tol


def _qhull_vertices(Y: np.ndarray, tol: float):
    """Vertices by Qhull in low dimension; every dropped point is verified against the facets."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(Y)
    except (QhullError, ValueError):
        return None
    kept = np.zeros(len(Y), dtype=bool)
    kept[hull.vertices] = True
    A, b = hull.equations[:, :-1], hull.equations[:, -1]
    # facet normals are unit vectors: A y + b is the signed distance to each facet plane
    if np.any(A @ Y[~kept].T + b[:, None] > tol):
        return None
    return np.flatnonzero(kept)


def extreme_points(P: np.ndarray, tol: float | None = None) -> np.ndarray:
    """Rows of ``P`` that are extreme points of conv(P) (after exact deduplication).

    The computation happens in coordinates of the affine hull.  Dimension 0 and 1 are
    closed-form; otherwise each point is tested by a linear program, and it is removed only
    if a convex combination of the remaining points reproduces it within ``tol`` (default
    ``1e-12 * max|P|``).  The tests run on P/2^e, a power of two near max|P| (exact), because
    LP solvers work with absolute tolerances: the kept rows do not depend on the scale of P.
    """
    P = unique_rows(np.asarray(P, dtype=np.float64))
    if len(P) <= 2:
        return P
    e = pow2_exponent(P)
    if tol is None:
        tol = 1e-12 * float(np.abs(P).max())
    tol = float(np.ldexp(tol, -e))
    Y, _, _ = affine_coordinates(np.ldexp(P, -e))
    r = Y.shape[1]
    if r == 0:
        return P[:1]
    if r == 1:
        y = Y[:, 0]
        i, j = int(np.argmin(y)), int(np.argmax(y))
        return P[sorted({i, j})]
    if 2 <= r <= 4 and len(P) > r + 2:
        kept = _qhull_vertices(Y, tol)
        if kept is not None:
            return P[kept]
    # A point that uniquely maximises a linear functional is a vertex: skip its LP.
    rng = np.random.default_rng(0)
    sure = set()
    for d in rng.standard_normal((min(4 * len(P), 64), r)):
        v = Y @ d
        i = int(np.argmax(v))
        if np.sum(v >= v[i] - 1e-9 * max(1.0, abs(v[i]))) == 1:
            sure.add(i)
    keep = np.ones(len(P), dtype=bool)
    for i in range(len(P)):
        if i in sure:
            continue
        others = keep.copy()
        others[i] = False
        if _in_hull_lp(Y[others], Y[i], tol):
            keep[i] = False
    return P[keep]

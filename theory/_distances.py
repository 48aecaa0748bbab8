"""Distances between compact convex sets of matrices, in the Frobenius norm.

For compact sets 𝒳, 𝒴 of matrices (slides "Main result", Vaiter 2023; Bolte, Pauwels & Vaiter 2022)

    d(x, 𝒴)       = min_{y∈𝒴} ‖x - y‖_F,
    gap(𝒳, 𝒴)     = max_{x∈𝒳} d(x, 𝒴)                (the excess of 𝒳 over 𝒴),
    hausdorff(𝒳,𝒴) = max(gap(𝒳, 𝒴), gap(𝒴, 𝒳)).

For ``MatrixSet``s these are exact up to solver tolerance and *certified*: x ↦ d(x, 𝒴) is convex
when 𝒴 is convex, so its maximum over the polytope 𝒳 is attained at a vertex of 𝒳, and each
d(v, 𝒴) is a small QP solved by ``MatrixSet.distance_bounds`` with a duality certificate.
gap(𝒳, 𝒴) = 0 iff 𝒳 ⊆ 𝒴; hausdorff is a metric on compact convex sets.

Every value is returned as a ``CertifiedDistance``: a ``float`` equal to the certified *upper*
bound (attained by a feasible point), carrying ``.lower`` (a certified lower bound) and
``.witness`` (the point of 𝒳 attaining the excess, for gap/hausdorff).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from conservative import MatrixSet

__all__ = ["CertifiedDistance", "distance", "project", "gap", "hausdorff", "as_matrix_set"]


class CertifiedDistance(float):
    """A distance d, stored as its certified upper bound, with ``lower ≤ d ≤ upper``.

    Behaves as a float (the upper bound).  ``witness`` is the point of the first set where the
    excess is attained (``None`` for point-to-set distances); ``accuracy`` = upper - lower.
    """

    def __new__(cls, upper: float, lower: float, witness=None):
        obj = super().__new__(cls, float(upper))
        object.__setattr__(obj, "lower", float(min(lower, upper)))
        object.__setattr__(obj, "witness", witness)
        return obj

    def __setattr__(self, name, value):
        raise AttributeError("CertifiedDistance is immutable")

    @property
    def upper(self) -> float:
        return float(self)

    @property
    def accuracy(self) -> float:
        return float(self) - self.lower

    def __repr__(self) -> str:
        return f"CertifiedDistance({float(self):.12g}, lower={self.lower:.12g})"

    def __reduce__(self):
        return (CertifiedDistance, (float(self), self.lower, self.witness))


def as_matrix_set(X: MatrixSet | ArrayLike, name: str) -> MatrixSet:
    """A ``MatrixSet`` from a ``MatrixSet``, one matrix, or a stack (k, m, n) of generators."""
    if isinstance(X, MatrixSet):
        return X
    try:
        return MatrixSet(X)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from exc


def _check_shapes(X: MatrixSet, Y: MatrixSet, what: str):
    if X.shape != Y.shape:
        raise ValueError(f"{what}: sets of matrices of different shapes {X.shape} and {Y.shape}")


def distance(M: ArrayLike, S: MatrixSet | ArrayLike) -> CertifiedDistance:
    """d(M, S) = min_{X∈S} ‖M - X‖_F with certified bounds (a QP; see ``MatrixSet.distance_bounds``)."""
    S = as_matrix_set(S, "S")
    lo, hi = S.distance_bounds(M)
    return CertifiedDistance(hi, lo)


def project(M: ArrayLike, S: MatrixSet | ArrayLike) -> np.ndarray:
    """argmin_{X∈S} ‖M - X‖_F (the feasible point whose distance is ``distance(M, S)``)."""
    return as_matrix_set(S, "S").project(M)


def gap(X: MatrixSet | ArrayLike, Y: MatrixSet | ArrayLike) -> CertifiedDistance:
    """gap(𝒳, 𝒴) = max_{x∈𝒳} d(x, 𝒴) in the Frobenius norm, certified.

    Exact for convex 𝒴 up to the QP certificates: the maximum of the convex function d(·, 𝒴)
    over the polytope 𝒳 is attained at a vertex, so only the vertices of 𝒳 are visited (this
    enumerates them; ``SetTooLargeError`` above ``MatrixSet.max_vertices``).  The result's
    ``witness`` is the vertex of 𝒳 farthest from 𝒴.
    """
    X = as_matrix_set(X, "X")
    Y = as_matrix_set(Y, "Y")
    _check_shapes(X, Y, "gap")
    best_lo, best_hi, witness = 0.0, 0.0, None
    for v in X.vertices:
        lo, hi = Y.distance_bounds(v)
        best_lo = max(best_lo, lo)
        if witness is None or hi > best_hi:
            best_hi, witness = hi, v
    return CertifiedDistance(best_hi, best_lo, witness)


def hausdorff(X: MatrixSet | ArrayLike, Y: MatrixSet | ArrayLike) -> CertifiedDistance:
    """Hausdorff distance max(gap(𝒳, 𝒴), gap(𝒴, 𝒳)) in the Frobenius norm, certified.

    The witness is the point (of 𝒳 or of 𝒴) attaining the larger excess.
    """
    X = as_matrix_set(X, "X")
    Y = as_matrix_set(Y, "Y")
    _check_shapes(X, Y, "hausdorff")
    g1, g2 = gap(X, Y), gap(Y, X)
    top = g1 if float(g1) >= float(g2) else g2
    return CertifiedDistance(max(float(g1), float(g2)), max(g1.lower, g2.lower), top.witness)

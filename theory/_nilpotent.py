"""Exact test of JSR = 0: a family is jointly nilpotent iff every product of length n vanishes.

For a finite family 𝒜 of n×n matrices, JSR(𝒜) = 0 iff 𝒜 is simultaneously similar to strictly
upper-triangular matrices iff every product of length n is zero (Levitzki's theorem for
semigroups of nilpotent matrices; Jungers, "The Joint Spectral Radius", Springer LNCIS 385, 2009,
Sec. 2.3.1; Gurvits 1995).  The products need not be enumerated: with

    V_0 = ℝⁿ,    V_{j+1} = Σ_i A_i V_j = span{A_w x : |w| = j+1},

the V_j decrease, V_{j+1} = V_j means V_j ≠ 0 is mapped onto itself (not nilpotent), and
V_n = 0 iff every product of length n vanishes.  Each step is a column-space computation, done
here in exact rational arithmetic on the floats of the data (``fractions.Fraction``), so the
answer is a theorem about the computed data, not a rank decision with a tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike

from conservative import MatrixSet

from ._contraction import as_square_family

__all__ = ["NilpotencyCertificate", "is_jointly_nilpotent", "nilpotency_index"]

_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class NilpotencyCertificate:
    """Every product of ``length`` members is exactly zero (checked in rational arithmetic), and
    ``dims[j]`` = dim span{A_w x : |w| = j} for j = 0..length (ending with 0)."""

    length: int
    dims: tuple


def _echelon(vectors: list, n: int) -> list:
    """A basis (row-echelon, exact) of the span of ``vectors`` (lists of n Fractions)."""
    basis = []  # (pivot, vector) with vector[pivot] = 1
    for v in vectors:
        v = list(v)
        for p, b in basis:
            if v[p] != 0:
                f = v[p]
                v = [x - f * y for x, y in zip(v, b)]
        piv = next((i for i in range(n) if v[i] != 0), None)
        if piv is None:
            continue
        f = v[piv]
        v = [x / f for x in v]
        # keep the basis reduced at the new pivot
        basis = [(p, [x - b[piv] * y for x, y in zip(b, v)]) if b[piv] != 0 else (p, b) for p, b in basis]
        basis.append((piv, v))
        if len(basis) == n:
            break
    return [b for _, b in basis]


def nilpotency_index(family: MatrixSet | ArrayLike) -> NilpotencyCertificate | None:
    """The smallest L with every product of length L exactly zero (a ``NilpotencyCertificate``),
    or None when the family is not jointly nilpotent (JSR > 0).  Exact rational arithmetic."""
    A = as_square_family(family)
    k, n = A.shape[0], A.shape[1]
    # cheap exit: [A_1 ... A_k] of numerically full rank with a margin far above rounding has
    # exact rank n, so V_1 = ℝⁿ and the family is not nilpotent
    s = np.linalg.svd(np.hstack(list(A)), compute_uv=False)
    if s[0] == 0:
        return NilpotencyCertificate(1, (n, 0))
    if s[-1] > 1e3 * n * k * _EPS * s[0]:
        return None
    # every product of a nilpotent family is nilpotent, so tr(A_i) = tr(A_i²) = 0 exactly
    for a in A:
        if sum(Fraction(float(a[i, i])) for i in range(n)) != 0:
            return None
    Aq = [[[Fraction(float(x)) for x in row] for row in a] for a in A]
    for a in Aq:
        if sum((a[i][j] * a[j][i] for i in range(n) for j in range(n) if a[i][j] and a[j][i]), Fraction(0)) != 0:
            return None
    basis = [[Fraction(int(i == j)) for j in range(n)] for i in range(n)]
    dims = [n]
    for _ in range(n):
        images = [[sum((a[r][c] * v[c] for c in range(n) if v[c] != 0), Fraction(0)) for r in range(n)]
                  for a in Aq for v in basis]
        new = _echelon(images, n)
        dims.append(len(new))
        if not new:
            return NilpotencyCertificate(len(dims) - 1, tuple(dims))
        if len(new) == len(basis):
            return None
        basis = new
    return None


def is_jointly_nilpotent(family: MatrixSet | ArrayLike) -> bool:
    """JSR(family) = 0 exactly: every product of length n vanishes (see ``nilpotency_index``)."""
    return nilpotency_index(family) is not None

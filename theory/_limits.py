"""Implicit vs piggyback limits: J_imp ⊆ J_pb, and the inclusion can be strict.

For a family 𝒥 = conv{[A_i, B_i]} of [A, B] blocks at the limit point x̄ (slides "Nonsmooth
implicit differentiation", Vaiter 2023; Bolte, Pauwels & Vaiter 2022):

    J_imp = {(I - A)⁻¹ B : [A, B] ∈ 𝒥}        (the implicit conservative Jacobian)
    J_pb  = fix(𝒥)                           (the limit of the set-valued piggyback recursion)

Every M = (I - A)⁻¹B satisfies M = AM + B, so J_imp ⊆ fix 𝒥; the converse fails in general
(products A_1 A_2 of different selections create limits no single selection has).

J_imp is the image of a polytope under a rational map, not a polytope.  ``implicit_set``
represents it by the images of a grid of convex weights of resolution r (all λ ∈ Δ_k with rλ
integer; the family's vertices are among them), together with a *certified covering radius*
δ: every point of J_imp lies within δ (Frobenius) of a sample.  With c ≥ ‖(I - A)⁻¹‖₂ on 𝒥
(c = κ(R)/(1-ρ) from an ellipsoidal contraction certificate; for a norm in which only the k-step
map contracts, c = c_F c_N ‖L‖₂ Σ_{i<k} lip_i/(1-ρ), see ``_step_norm``) the identity
M' - M = (I - A')⁻¹[(A' - A)M + (B' - B)] gives ‖M' - M‖_F ≤ c √(‖M‖₂² + 1) ‖[A'-A, B'-B]‖_F,
and every λ is within ℓ₁-distance k/r of a grid point.  ``compare_limits`` uses J_pb :=
conv fix 𝒥 as computed by ``fixed_set``.

Worked example (scalar, strict inclusion): 𝒥 = conv{[1/2, 1], [-1/2, 1]}.  Then
J_imp = {1/(1 - a) : a ∈ [-1/2, 1/2]} = [2/3, 2], while J_pb = [l, u] solves
u = max(u/2 + 1, 1 - l/2), l = min(l/2 + 1, 1 - u/2), i.e. J_pb = [0, 2]:
gap(J_pb, J_imp) = 2/3, attained at the witness 0 = (-1/2)·2 + 1 (the map of the second
selection applied to the fixed point of the first).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conservative import MatrixSet

from ._fixed_set import as_block_family, fixed_set
from ._step_norm import step_norms
from ._validate import check_count, check_tolerance

__all__ = ["ImplicitSet", "implicit_set", "LimitComparison", "compare_limits"]


def _row_norms(D: np.ndarray) -> np.ndarray:
    """Euclidean norms of the rows of D without underflow or overflow of the squares (rows are
    divided by their largest entry first), so distances stay true at scales like 1e-200 or 1e200."""
    D = np.asarray(D, dtype=np.float64)
    m = np.max(np.abs(D), axis=1, initial=0.0)
    safe = np.where((m > 0) & np.isfinite(m), m, 1.0)
    return np.where((m > 0) & np.isfinite(m), safe * np.linalg.norm(D / safe[:, None], axis=1), m)


def _simplex_grid(k: int, r: int) -> np.ndarray:
    """All λ ∈ Δ_k with r·λ integer: C(r+k-1, k-1) points."""
    pts = []
    for bars in itertools.combinations(range(r + k - 1), k - 1):
        prev, parts = -1, []
        for b in bars:
            parts.append(b - prev - 1)
            prev = b
        parts.append(r + k - 1 - prev - 1)
        pts.append(parts)
    return np.array(pts, dtype=np.float64) / r


@dataclass(frozen=True)
class ImplicitSet:
    """Samples of J_imp = {(I - A)⁻¹B : [A, B] ∈ conv family} with a certified covering radius.

    ``samples[j]`` = (I - A(λ_j))⁻¹ B(λ_j) for the grid weights ``weights[j]`` (resolution r);
    ``vertex_images[i]`` = (I - A_i)⁻¹ B_i (exact).  Every point of J_imp is within
    ``covering_radius`` of a sample (``inf`` when no contraction certificate bounds (I - A)⁻¹).
    """

    samples: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    vertex_images: np.ndarray = field(repr=False)
    resolution: int
    covering_radius: float
    max_condition: float  # max cond₂(I - A) over the samples

    def distance(self, M: Any) -> tuple[float, float]:
        """(lower, upper) bounds on d(M, J_imp): d(M, samples) - δ ≤ d ≤ d(M, samples)."""
        d = float(np.min(_row_norms((self.samples - np.asarray(M)).reshape(len(self.samples), -1))))
        return max(0.0, d - self.covering_radius), d

    def __repr__(self) -> str:
        return (f"ImplicitSet({len(self.samples)} samples, resolution 1/{self.resolution}, "
                f"covering radius {self.covering_radius:.3e})")


def implicit_set(family: Any, *, resolution: int = 50, contraction: Any = None, max_samples: int = 100_000,
                 max_condition: float = 1e12) -> ImplicitSet:
    """Sample J_imp on the grid of convex weights with denominator ``resolution``.

    Raises ``ValueError`` if I - A is (numerically) singular at a sample (condition number above
    ``max_condition``) or the grid exceeds ``max_samples`` points.
    """
    A, B = as_block_family(family)
    k, n = A.shape[0], A.shape[1]
    r = check_count(resolution, "resolution")
    max_samples = check_count(max_samples, "max_samples")
    max_condition = check_tolerance(max_condition, "max_condition")
    count = math.comb(r + k - 1, k - 1)
    if count > max_samples:
        raise ValueError(f"resolution: {count} grid points for {k} vertices at resolution {r} exceed "
                         f"max_samples={max_samples}; lower the resolution or raise max_samples")
    W = _simplex_grid(k, r)
    Al = np.einsum("jk,kab->jab", W, A)
    Bl = np.einsum("jk,kab->jab", W, B)
    IA = np.eye(n) - Al
    conds = np.linalg.cond(IA)
    worst = float(np.max(conds))
    if not np.isfinite(worst) or worst > max_condition:
        j = int(np.argmax(conds))
        raise ValueError(f"family: I - A is singular or ill-conditioned at weights {W[j]} "
                         f"(condition number {worst:.3e} > max_condition={max_condition:g}); "
                         "the implicit Jacobian (I - A)⁻¹B is not defined there")
    samples = np.linalg.solve(IA, Bl)
    vimg = np.linalg.solve(np.eye(n) - A, B)
    if contraction is None:
        try:  # the covering radius needs some certified norm; without one it is reported infinite
            norm = step_norms(A, None, jsr_time_limit=10.0)[0]
        except ValueError:
            norm = None
    else:
        norm = step_norms(A, contraction, name="contraction")[0]
    if norm is not None:
        # ‖A^{qk+i}‖_N ≤ ρ^q lip_i on the hull (the bounds hold for products of members of conv family),
        # so ‖(I - A)⁻¹‖₂ ≤ c_F c_N ‖L‖₂ Σ_{i<k} lip_i / (1 - ρ) (= κ/(1 - ρ) for an ellipsoidal norm)
        c = norm.condition * norm.lip_sum / (1 - norm.rho)
        msup = c * max(float(np.linalg.norm(b, 2)) for b in B)
        V = np.concatenate([A, B], axis=2).reshape(k, -1)
        spread = float(np.max(_row_norms(V - V.mean(axis=0))))
        delta = c * math.hypot(msup, 1.0) * (k / r) * spread
    else:
        delta = math.inf
    return ImplicitSet(samples, W, vimg, r, float(delta), worst)


@dataclass(frozen=True)
class LimitComparison:
    """J_imp (sampled) against J_pb = conv fix 𝒥 (``fixed_set``).

    ``excess``: max over vertices v of J_pb of d(v, samples of J_imp), attained at ``witness`` (an
    estimate, not a bound: J_imp need not be convex, so gap(J_pb, J_imp) can exceed it at
    non-vertex points of J_pb);
    ``excess_lower``: a certified lower bound on gap(J_pb, J_imp) (excess - covering radius -
    fixed-set error), so ``strict`` (= excess_lower > 0) proves J_imp ⊊ J_pb.
    ``inclusion_residual``: max over the checked samples of d(sample, J_pb) (certified upper
    bounds); ``includes`` says it is within the fixed-set error (+``tol``), as theory predicts.
    """

    pb: MatrixSet = field(repr=False)
    pb_error: float
    implicit: ImplicitSet = field(repr=False)
    excess: float
    excess_lower: float
    witness: np.ndarray = field(repr=False)
    inclusion_residual: float
    includes: bool
    checked_samples: int

    @property
    def strict(self) -> bool:
        return self.excess_lower > 0

    def summary(self) -> str:
        rel = "⊊" if self.strict else ("⊆" if self.includes else "⊄?")
        return (f"J_imp {rel} J_pb: gap(J_pb, J_imp) ≈ {self.excess:.6g} (certified ≥ {self.excess_lower:.6g}), "
                f"witness {np.array2string(self.witness, precision=4)}; J_imp ⊆ J_pb up to "
                f"{self.inclusion_residual:.2e} ({self.checked_samples} samples checked, fixed-set error "
                f"{self.pb_error:.1e})")

    def __repr__(self) -> str:
        return f"LimitComparison({self.summary()})"


def compare_limits(family: Any, *, resolution: int = 50, tol: float = 1e-8, max_inclusion_checks: int = 64,
                   fixed: Any = None, contraction: Any = None, **fixed_set_kwargs: Any) -> LimitComparison:
    """Compare J_imp and J_pb = conv fix 𝒥 for a contracting family of [A, B] blocks.

    Returns the excess gap(J_pb, J_imp) with a witness in J_pb far from J_imp (see
    ``LimitComparison``) and checks J_imp ⊆ J_pb on the vertex images and up to
    ``max_inclusion_checks`` evenly spread samples (each a certified QP distance).
    ``fixed`` (the pair returned by ``fixed_set(family, ...)``) and ``contraction`` (any certificate
    ``fixed_set`` accepts: ellipsoidal, product length, invariant polytope, ``JSRResult``; re-checked)
    reuse earlier computations.
    """
    A, B = as_block_family(family)
    resolution = check_count(resolution, "resolution")
    tol = check_tolerance(tol, "tol")
    max_inclusion_checks = check_count(max_inclusion_checks, "max_inclusion_checks")
    cert = step_norms(A, contraction)[0].cert  # any certified contraction (re-checked), or a clear ValueError
    if fixed is None:
        X, err = fixed_set(family, tol=tol, contraction=cert, **fixed_set_kwargs)
    else:
        X, err = fixed
        if not isinstance(X, MatrixSet) or X.shape != (A.shape[1], B.shape[2]) or not err >= 0:
            raise ValueError("fixed: expected the (MatrixSet, error_bound) pair returned by fixed_set(family, ...)")
    imp = implicit_set(family, resolution=resolution, contraction=cert)
    flat = imp.samples.reshape(len(imp.samples), -1)
    excess, witness = -1.0, None
    for v in X.vertices:
        d = float(np.min(_row_norms(flat - v.ravel())))
        if d > excess:
            excess, witness = d, v
    excess_lower = max(0.0, excess - imp.covering_radius - err)
    idx = np.unique(np.linspace(0, len(imp.samples) - 1, min(max_inclusion_checks, len(imp.samples))).astype(int))
    pts = np.concatenate([imp.vertex_images, imp.samples[idx]])
    residual = max(X.distance_bounds(p)[1] for p in pts)
    includes = residual <= err + max(tol, 1e-9)
    return LimitComparison(X, err, imp, excess, excess_lower, witness, float(residual), bool(includes), len(pts))

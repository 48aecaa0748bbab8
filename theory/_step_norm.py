"""The certified norm in which a power 𝒦^k of the fixed-set map contracts, from any certificate.

The fixed-set iteration 𝒳 ↦ 𝒦(𝒳) = conv{A X + B : [A, B] ∈ 𝒥, X ∈ 𝒳} needs a norm ‖·‖_N on
n×m matrices and k ≥ 1 with Lip_N(𝒦^k) ≤ ρ < 1 in the Hausdorff distance h_N.  Since
𝒦^k(𝒳) = conv{A_{w_k}⋯A_{w_1} X + b_w}, Lip_N(𝒦^k) ≤ max_{|w|=k} ‖A_w‖ for a columnwise norm
(‖AX‖_N ≤ ‖A‖‖X‖_N), and the contraction mapping theorem for 𝒦^k gives the unique fixed set
and, for every compact 𝒳,

    h_N(𝒦^k 𝒳, fix) ≤ ρ/(1-ρ) · h_N(𝒳, 𝒦^k 𝒳).

Accepted certificates (each re-checked on the family, never trusted):

* ``ContractionCertificate`` (2-norm or ellipsoidal ‖x‖_P = ‖Rx‖₂): k = 1, ‖X‖_N = ‖RX‖_F;
* ``ProductContraction`` (max_{|w|=k} ‖A_w‖_P < 1): the k-fold map, same norm;
* ``PolytopeContraction`` / ``InvariantPolytope`` (an extremal polytope norm, k = 1) with
  ‖X‖_N = (Σ_j ‖x_j‖_𝒫²)^½;
* ``JSRResult`` (whatever ``jsr`` proved: its invariant polytope or ellipsoidal norm).

Distances are computed as Frobenius distances between L·𝒳 and L·𝒴 (L = R for ellipsoidal
norms, where h_N = h_F(L·) exactly; L = I for polytope norms, where h_N ≤ c_N h_F), and bounds
are converted back with ‖X‖_F ≤ c_F ‖X‖_N.  ``step_norms(A, None)`` tries, in this order, the SDP
ellipsoidal norm, products of length ≤ 12 in that norm, and ``jsr``'s certificate, and raises a
``ValueError`` saying what was proved when none contracts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ._contraction import (
    ContractionCertificate,
    ProductContraction,
    certify_norm,
    contraction_factor,
    product_contraction,
)
from ._invariant_polytope import InvariantPolytope
from ._jsr import JSRResult
from ._polytope_norm import PolytopeContraction, polytope_contraction

__all__ = ["StepNorm", "step_norms"]


@dataclass(frozen=True)
class StepNorm:
    """Lip_N(𝒦^k) ≤ ``rho`` with ‖X‖_N ≤ ``c_N``‖L X‖_F, ‖X‖_F ≤ ``c_F``‖X‖_N, ``lip[i]`` ≥ Lip_N(𝒦^i)
    (i < k; lip[0] = 1) and ``L_norm`` = ‖L‖₂ (rounding in Frobenius δ is ≤ c_N L_norm δ in N)."""

    cert: object = field(repr=False)
    rho: float
    k: int
    L: np.ndarray = field(repr=False)
    c_N: float
    c_F: float
    L_norm: float
    lip: tuple

    @property
    def exact(self) -> bool:
        """h_N = h_F(L·) exactly (ellipsoidal norms), not only ≤ c_N·h_F."""
        return self.c_N == 1.0

    @property
    def lip_sum(self) -> float:
        """Σ_{i<k} lip[i]: the rounding of k consecutive steps adds up to this times the largest."""
        return float(sum(self.lip))

    @property
    def condition(self) -> float:
        return self.c_N * self.c_F * self.L_norm


def _from_ellipsoid(cert: ContractionCertificate) -> StepNorm:
    return StepNorm(cert, cert.rho, 1, cert.R, 1.0, cert.norm_to_2, cert.two_to_norm, (1.0,))


def _from_product(cert: ProductContraction) -> StepNorm:
    k = cert.length
    return StepNorm(cert, cert.rho, k, cert.R, 1.0, cert.norm_to_2, cert.two_to_norm, (1.0,) + tuple(cert.rhos[:k - 1]))


def _from_polytope(cert: PolytopeContraction) -> StepNorm:
    n = cert.vertices.shape[1]
    return StepNorm(cert, cert.rho, 1, np.eye(n), cert.two_to_norm, cert.norm_to_2, 1.0, (1.0,))


def _recheck(A, contraction):
    """The certificate ``contraction`` re-verified on the data A (a ContractionCertificate,
    ProductContraction or PolytopeContraction), or ``None`` for an unsupported JSR certificate."""
    from ._invariant_polytope import InvariantPolytope
    from ._jsr import JSRResult

    if isinstance(contraction, ContractionCertificate):
        return certify_norm(A, contraction.P)
    if isinstance(contraction, ProductContraction):
        return product_contraction(A, P=contraction.P, max_length=contraction.length,
                                   max_products=max(contraction.words, len(A)))
    if isinstance(contraction, PolytopeContraction):
        return polytope_contraction(A, contraction.vertices, source=contraction.source)
    if isinstance(contraction, InvariantPolytope):
        if contraction.kind == "complex":
            raise ValueError("contraction: a complex invariant polytope defines a norm on Cⁿ, not one this "
                             "fixed-set iteration can use; pass a ProductContraction or None (search automatically)")
        if not contraction.success or len(contraction.vertices) == 0:
            raise ValueError(f"contraction: the invariant polytope did not close ({contraction.reason}): no norm")
        return polytope_contraction(A, contraction.vertices, source=f"invariant polytope of word {contraction.word}")
    if isinstance(contraction, JSRResult):
        up = contraction.upper_certificate
        # the real polytope norm absconv(V), re-checked on the data (complex polytopes live on Cⁿ: no)
        if (isinstance(up, InvariantPolytope) and up.kind != "complex" and up.success
                and up.vertices.shape[1:] == A.shape[1:2]):
            return polytope_contraction(A, up.vertices, source=f"jsr: invariant polytope of word {up.word}")
        if isinstance(up, ContractionCertificate) and up.P.shape == A.shape[1:]:
            return certify_norm(A, up.P)
        return None
    raise TypeError("contraction: expected a ContractionCertificate, ProductContraction, PolytopeContraction, "
                    f"InvariantPolytope, JSRResult or None, got {type(contraction).__name__}")


def _two_norm_extra(A, main) -> list[StepNorm]:
    """The 2-norm as a second, perfectly conditioned norm when it contracts too."""
    if isinstance(main, ContractionCertificate) and main.norm == "2":
        return []
    two = contraction_factor(A, method="2-norm")
    return [_from_ellipsoid(two)] if two.contracts else []


def _as_step_norm(cert) -> StepNorm:
    if isinstance(cert, ContractionCertificate):
        return _from_ellipsoid(cert)
    if isinstance(cert, ProductContraction):
        return _from_product(cert)
    return _from_polytope(cert)


def step_norms(A: np.ndarray,
               contraction: ContractionCertificate | ProductContraction | PolytopeContraction
               | InvariantPolytope | JSRResult | None = None, name: str = "family",
               jsr_time_limit: float = 30.0) -> list[StepNorm]:
    """Certified norms (best first) in which some power of the fixed-set map of the A blocks contracts.

    Raises ``ValueError`` naming ``name`` (the family) when no certificate with ρ < 1 is found,
    saying what was proved (the best ellipsoidal ρ, the product norms, the JSR bounds), and
    when a given ``contraction`` does not contract on this family.
    """
    if contraction is not None:
        cert = _recheck(A, contraction)
        if cert is None:
            raise ValueError(f"contraction: the JSRResult's upper bound comes from {contraction.upper_method}, "
                             "which is not a norm on Rⁿ; pass the JSRResult of a run that closed an invariant "
                             "polytope, a ProductContraction, or None (search automatically)")
        if not cert.contracts:
            raise ValueError(f"{name}: the A blocks do not contract in the given norm: re-checked ρ = {cert.rho:.6g} "
                             f"≥ 1 ({cert!r}). fix(𝒥) is only guaranteed (and computed) for ρ < 1.")
        return [_as_step_norm(cert)] + _two_norm_extra(A, cert)
    ell = contraction_factor(A)
    if ell.contracts:
        return [_from_ellipsoid(ell)] + _two_norm_extra(A, ell)
    said = (f"{name}: the A blocks do not contract: best ρ found = {ell.rho:.6g} ≥ 1 ({ell.norm} norm; 2-norm "
            f"{ell.rho_2norm:.6g}, max spectral radius {ell.spectral_radius:.6g})")
    if ell.spectral_radius >= 1:
        raise ValueError(said + "; a member has spectral radius ≥ 1, so no norm and no product contracts. "
                         "fix(𝒥) is only guaranteed (and computed) for ρ < 1.")
    prod = product_contraction(A, P=ell.P, max_length=12, max_products=20_000)
    if prod.contracts:
        return [_from_product(prod)]
    from ._jsr import jsr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = jsr(A, time_limit=jsr_time_limit)
    said += (f"; products of length ≤ {prod.length}: max ‖A_w‖ ≥ {min(prod.rhos):.6g}; "
             f"JSR ∈ [{res.lower:.10g}, {res.upper:.10g}] (jsr, upper from {res.upper_method})")
    if res.lower >= 1:
        raise ValueError(said + f": the JSR is ≥ {res.lower:.10g} ≥ 1 (certified by the word "
                         f"{''.join(map(str, res.certificate)) if len(res.certificate) < 40 else res.certificate}), "
                         "so no norm contracts. fix(𝒥) is only guaranteed (and computed) for JSR < 1.")
    if res.upper < 1:
        cert = _recheck(A, res)
        if cert is not None and cert.contracts:
            return [_as_step_norm(cert)]
        longer = product_contraction(A, P=ell.P, max_length=24, max_products=2_000_000)
        if longer.contracts:
            return [_from_product(longer)]
        raise ValueError(said + ": JSR < 1 is proved, but by a certificate that is not a norm usable for the "
                         f"fixed set, and products up to length {longer.length} do not contract in the ellipsoidal "
                         "norm; pass a contraction= certificate (e.g. a PolytopeContraction).")
    raise ValueError(said + ": no certificate of JSR < 1 was found. fix(𝒥) is only guaranteed (and computed) "
                     "for a contracting family.")


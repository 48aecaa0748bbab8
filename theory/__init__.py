"""Theory as computations, with certificates.

* distances between compact convex sets of matrices (Frobenius): ``distance``, ``project``,
  ``gap`` (excess max_{x∈𝒳} d(x, 𝒴)) and ``hausdorff``, returned as ``CertifiedDistance``
  (a float equal to the certified upper bound, with ``.lower``);
* contraction checks (Assumption A): ``max_singular_value`` and ``contraction_factor`` (an
  ellipsoidal norm from an SDP, re-checked numerically), ``certify_norm``;
* joint spectral radius: ``jsr`` → ``JSRResult`` with certified ``lower``/``upper`` and the
  ``certificate`` word; ``invariant_polytope`` (exact JSR proofs, balanced over several products,
  re-checked in rational arithmetic; ``verify_polytope``); ``sos_jsr_bound`` (Parrilo-Jadbabaie
  sum-of-squares bounds); ``nilpotency_index`` (exact JSR = 0 test); ``block_triangularize``
  (reducibility preprocessing); ``exact_eigenvalues`` (sympy);
* fixed sets of contracting families of [A, B] blocks: ``fixed_set`` → (MatrixSet, error bound),
  ``fixed_set_iteration`` (iterates with the a-priori and a-posteriori bounds), from any certified
  contraction: an ellipsoidal norm, ``product_contraction`` (‖A_{w_1}⋯A_{w_k}‖ < 1 for all words of
  length k, ``ProductContraction``), ``polytope_contraction`` (an extremal invariant-polytope norm,
  ``PolytopeContraction``) or a ``JSRResult``;
* implicit vs piggyback limits: ``implicit_set``, ``compare_limits`` (J_imp ⊆ J_pb, strictness);
* the one-call check ``derivative_convergence(F, x0, theta)`` → ``DerivativeConvergence`` (x̄, the
  family at x̄ with a derived tie tolerance, Assumption A or JSR bounds, fix 𝒥, J_imp, predicted
  and observed rates, verdict converge / diverge / inconclusive);
* parameter sweeps on ``dask.distributed``: ``sweep(fn, grid, client=..., store=...)`` → ``SweepResult``
  (a ``LocalCluster`` or a scheduler address; results stored cell by cell in Parquet, so a sweep
  resumes), ``load_sweep(store)``; needs the ``sweep`` extra;
* the papers' error bounds: ``one_step_error_bound`` (one-step paper, Cor. 1),
  ``one_step_error_bound_superlinear`` (Cor. 3), ``implicit_error_bound_one_step_paper``
  (Remark 2), ``implicit_jacobian_error_bound`` (jaxopt paper, Theorem 1), and
  ``estimator_error_bounds`` to put them next to ``algorithms.estimator_errors``' measurements.

Every bound printed is a bound for the computed data: solver outputs are re-checked with numpy
and enlarged by a rounding margin; see each function's docstring for the mathematics.
"""

from conservative._version import __version__

from ._bounds import (
    estimator_error_bounds,
    implicit_error_bound_one_step_paper,
    implicit_jacobian_error_bound,
    one_step_error_bound,
    one_step_error_bound_superlinear,
)
from ._contraction import (
    ContractionCertificate,
    ProductContraction,
    certify_norm,
    contraction_factor,
    max_singular_value,
    product_contraction,
)
from ._convergence_report import VERDICTS, DerivativeConvergence
from ._derivative_convergence import derivative_convergence, fit_rate
from ._distances import CertifiedDistance, distance, gap, hausdorff, project
from ._fixed_set import FixedSetIteration, fixed_set, fixed_set_iteration
from ._fixed_set_bounds import FixedSetBounds, fixed_set_bounds
from ._invariant_polytope import InvariantPolytope, invariant_polytope, verify_polytope
from ._jsr import JSRResult, exact_eigenvalues, exact_product, jsr, symmetric_lift, word_product
from ._limits import ImplicitSet, LimitComparison, compare_limits, implicit_set
from ._nilpotent import NilpotencyCertificate, is_jointly_nilpotent, nilpotency_index
from ._polytope_norm import PolytopeContraction, polytope_contraction
from ._reducibility import BlockCertificate, BlockTriangularization, block_triangularize
from ._sos import SOSCertificate, sos_jsr_bound
from ._sweep import SweepResult, load_sweep, sweep

__all__ = [
    "CertifiedDistance", "distance", "project", "gap", "hausdorff",
    "ContractionCertificate", "max_singular_value", "contraction_factor", "certify_norm",
    "JSRResult", "jsr", "exact_eigenvalues", "exact_product", "symmetric_lift", "word_product",
    "InvariantPolytope", "invariant_polytope", "verify_polytope",
    "NilpotencyCertificate", "nilpotency_index", "is_jointly_nilpotent",
    "BlockTriangularization", "BlockCertificate", "block_triangularize",
    "SOSCertificate", "sos_jsr_bound",
    "FixedSetIteration", "fixed_set", "fixed_set_iteration",
    "FixedSetBounds", "fixed_set_bounds",
    "ProductContraction", "product_contraction", "PolytopeContraction", "polytope_contraction",
    "ImplicitSet", "implicit_set", "LimitComparison", "compare_limits",
    "one_step_error_bound", "one_step_error_bound_superlinear", "implicit_error_bound_one_step_paper",
    "estimator_error_bounds",
    "implicit_jacobian_error_bound",
    "derivative_convergence", "DerivativeConvergence", "VERDICTS", "fit_rate",
    "sweep", "load_sweep", "SweepResult",
]

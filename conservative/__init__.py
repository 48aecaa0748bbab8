"""Set-valued calculus for conservative Jacobians of piecewise-smooth JAX programs.

* ``MatrixSet``: compact convex sets of matrices (Minkowski sums of convex hulls), stored by their
  nonzeros (a sparse center, packed groups) and queried with dense or ``scipy.sparse`` matrices;
* ``jacobian`` / ``value_and_jacobian``: the whole conservative Jacobian of a JAX program at a
  point, as a ``MatrixSet`` (JAX's ``jacfwd`` returns one element of it), in forward (JVP) or
  reverse (VJP) form (``mode=``; reverse for losses of many parameters);
* ``clarke_jacobian``: the Clarke Jacobian of the function (the hull of the essentially active
  selections), the smallest conservative Jacobian; ``directional_derivative`` / ``ld_derivative`` /
  ``lexicographic_jacobian``: f′(x; d) and Khan & Barton's LD-derivatives, derivatives of the
  *function* (not of the program's choices);
  ``audit_ad``: JAX's ``jacfwd``/``jacrev`` elements against the Clarke set and the program's set;
* ``piggyback``: the set-valued piggyback recursion along the iterates of x_{k+1} = F(x_k, θ).

The exact semantics of ``jacobian`` (ties, shared comparison choices, jumps, removable
singularities) are in the module docstring of ``conservative._jacobian`` and in the documentation
(``mkdocs serve``: Concepts › Program semantics).
"""

from ._audit import ADAudit, AuditedElement, audit_ad
from ._clarke import ClarkeSet, clarke_jacobian
from ._jacobian import JumpError, NoRuleError, jacobian, register_smooth, value_and_jacobian
from ._lexicographic import AmbiguousTieError, directional_derivative, ld_derivative, lexicographic_jacobian
from ._matrix_set import DEFAULT_MAX_VERTICES, MatrixSet, SetTooLargeError, as_matrix_stack
from ._piggyback import PiggybackResult, PiggybackVJPResult, piggyback, piggyback_vjp
from ._version import __version__

__all__ = [
    "MatrixSet",
    "SetTooLargeError",
    "DEFAULT_MAX_VERTICES",
    "as_matrix_stack",
    "jacobian",
    "value_and_jacobian",
    "register_smooth",
    "JumpError",
    "NoRuleError",
    "piggyback",
    "piggyback_vjp",
    "PiggybackResult",
    "PiggybackVJPResult",
    "clarke_jacobian",
    "directional_derivative",
    "ld_derivative",
    "lexicographic_jacobian",
    "AmbiguousTieError",
    "ClarkeSet",
    "audit_ad",
    "ADAudit",
    "AuditedElement",
]

"""``audit_ad``: is the Jacobian automatic differentiation returned a generalized derivative of the
*function*, or only an element of the *program's* conservative Jacobian?

At a point x where a piecewise-smooth program f is not differentiable, ``jax.jacfwd`` and
``jax.jacrev`` return one element of the program's conservative Jacobian J_f(x)
(``conservative.jacobian``: every occurrence of a nonsmooth primitive chooses independently,
Bolte & Pauwels 2021; slides "Conservative gradients", Vaiter 2023).  The Clarke Jacobian
∂ᶜf(x) = conv{lim ∇f(x_k) : x_k → x, f differentiable at x_k} (``clarke_jacobian``) is the
smallest conservative Jacobian of the function, ∂ᶜf(x) ⊆ conv J_f(x).  An AD element M is then

* **inside Clarke**: d(M, ∂ᶜf(x)) ≤ tol, a true generalized derivative (e.g. ``jnp.abs`` at 0);
* **spurious**: d(M, conv J_f(x)) ≤ tol < d(M, ∂ᶜf(x)), in the program's set but a derivative of no
  nearby piece of f (``relu(x) - relu(-x)`` at 0 gives 0 or 2 for the identity; ``softplus`` at 0
  gives 1 only through its ``where``);
* **outside both**: d(M, conv J_f(x)) > tol, which contradicts the conservative calculus (a bug in
  the program's rules or in AD).

The distances are Frobenius distances with certified (lower, upper) bounds
(``MatrixSet.distance_bounds``); a verdict is given only when the bounds are on one side of
``tol``, else it is "undecided" (the bounds straddle tol).  When the Clarke set is an outer
approximation (``clarke_jacobian(..., undecided="outer")``, ``exact=False``) "inside" cannot be
certified and is reported as "inside the outer Clarke set (not certified)"; "spurious" and
"outside" stay certified (outside a superset of ∂ᶜf(x) is outside ∂ᶜf(x)).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpy.typing import ArrayLike

from ._clarke import ClarkeSet, clarke_jacobian
from ._jacobian import jacobian
from ._lexicographic import _argnums
from ._matrix_set import MatrixSet, SetTooLargeError

__all__ = ["audit_ad", "ADAudit", "AuditedElement", "INSIDE", "SPURIOUS", "OUTSIDE", "UNDECIDED"]

INSIDE = "inside Clarke"
INSIDE_OUTER = "inside the outer Clarke set (not certified)"
SPURIOUS = "spurious (in the program's set, not Clarke)"
OUTSIDE = "outside both"
UNDECIDED = "undecided (distance bounds straddle tol)"

_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class AuditedElement:
    """One audited matrix: ``name`` (``"jacfwd"``, ``"jacrev"`` or the user's), ``matrix`` (m × n,
    flattened like ``conservative.jacobian``), certified bounds ``clarke_distance`` and
    ``conservative_distance`` (lower, upper) on its Frobenius distance to ∂ᶜf(x) and to
    conv J_f(x), and the ``verdict``."""

    name: str
    matrix: np.ndarray = field(repr=False)
    clarke_distance: tuple[float, float]
    conservative_distance: tuple[float, float]
    verdict: str

    @property
    def inside_clarke(self) -> bool:
        return self.verdict == INSIDE

    @property
    def spurious(self) -> bool:
        return self.verdict == SPURIOUS

    def line(self) -> str:
        c, p = self.clarke_distance, self.conservative_distance
        return (f"{self.name:>10s}: {self.verdict}; d(·, Clarke) ∈ [{c[0]:.3g}, {c[1]:.3g}], "
                f"d(·, conservative) ∈ [{p[0]:.3g}, {p[1]:.3g}]")


@dataclass(frozen=True)
class ADAudit:
    """The audit of AD elements at one point (``audit_ad``).

    ``clarke`` (a ``ClarkeSet``, ``exact`` says whether it is ∂ᶜf(x) itself), ``conservative`` (the
    program's conservative Jacobian, a ``MatrixSet``), ``elements`` (``AuditedElement``s, in the
    order audited), ``tol`` (the verdict tolerance, absolute Frobenius).  ``element(name)`` looks
    one up; ``assert_clarke()`` / ``assert_conservative()`` raise ``AssertionError`` with the
    numbers when an element is not certified inside the set.
    """

    clarke: ClarkeSet = field(repr=False)
    conservative: MatrixSet = field(repr=False)
    elements: tuple[AuditedElement, ...]
    tol: float

    @property
    def exact(self) -> bool:
        """Is ``clarke`` the Clarke Jacobian itself (not an outer approximation)?"""
        return self.clarke.exact

    def element(self, name: str) -> AuditedElement:
        for e in self.elements:
            if e.name == name:
                return e
        raise KeyError(f"name: no audited element {name!r}; audited: {[e.name for e in self.elements]}")

    @property
    def verdicts(self) -> dict[str, str]:
        return {e.name: e.verdict for e in self.elements}

    def __str__(self) -> str:
        m, n = self.clarke.shape
        kind = "exact" if self.exact else f"outer approximation ({self.clarke.undecided} undecided patterns)"
        lines = [f"AD audit ({m}×{n} Jacobian, tol {self.tol:.3g}): Clarke Jacobian {kind} with "
                 f"{_size_text(self.clarke)}, program's conservative set with {_size_text(self.conservative)}"]
        lines += ["  " + e.line() for e in self.elements]
        return "\n".join(lines)

    def _fail(self, bad, where):
        raise AssertionError(f"AD elements not certified inside {where} (tol {self.tol:.3g}):\n"
                             + "\n".join("  " + e.line() for e in bad) + f"\n{self}")

    def assert_clarke(self, names: str | Iterable[str] | None = None) -> None:
        """Raise ``AssertionError`` unless every audited element (or those in ``names``) is
        certified inside the Clarke Jacobian (requires an exact Clarke set)."""
        chosen = self._chosen(names)
        bad = [e for e in chosen if e.verdict != INSIDE]
        if bad:
            self._fail(bad, "the Clarke Jacobian")

    def assert_conservative(self, names: str | Iterable[str] | None = None) -> None:
        """Raise ``AssertionError`` unless every audited element (or those in ``names``) is
        certified inside the program's conservative Jacobian (spurious elements pass)."""
        bad = [e for e in self._chosen(names) if not e.conservative_distance[1] <= self.tol]
        if bad:
            self._fail(bad, "the program's conservative Jacobian")

    def _chosen(self, names):
        if names is None:
            return self.elements
        if isinstance(names, str):
            names = [names]
        return tuple(self.element(nm) for nm in names)


def _size_text(S: MatrixSet) -> str:
    try:
        return f"{len(S.vertices)} vertices"
    except SetTooLargeError:  # too many to enumerate: describe the stored structure instead
        return f"a Minkowski sum of {S.num_groups} hulls"


def _norm_bound(S: MatrixSet) -> float:
    """An upper bound on ‖X‖_F over S = C + Σ_g conv(G_g), without enumerating vertices."""
    return float(np.linalg.norm(S.center)) + sum(float(np.max(np.linalg.norm(G.reshape(len(G), -1), axis=1)))
                                                 for G in S.groups)


def _verdict(clarke_db, cons_db, tol, exact):
    (c_lo, c_hi), (p_lo, p_hi) = clarke_db, cons_db
    if c_hi <= tol:
        return INSIDE if exact else INSIDE_OUTER
    if p_lo > tol:
        return OUTSIDE
    if c_lo > tol and p_hi <= tol:
        return SPURIOUS
    return UNDECIDED


def _flat_jacobians(fun, argnums, args, kwargs):
    """jax.jacfwd / jax.jacrev of fun at args as (m, n) matrices, rows and columns flattened like
    ``conservative.jacobian`` (argnums order, pytree leaves, C order)."""
    nums, _ = _argnums(argnums, len(args), "audit_ad")
    z0, unravel = ravel_pytree(tuple(args[a] for a in nums))

    def flat(z):
        parts = unravel(z)
        full = list(args)
        for a, p in zip(nums, parts):
            full[a] = p
        return ravel_pytree(fun(*full, **kwargs))[0]

    z0 = jnp.asarray(z0, jnp.float64)
    return {"jacfwd": np.asarray(jax.jacfwd(flat)(z0), np.float64),
            "jacrev": np.asarray(jax.jacrev(flat)(z0), np.float64)}


def audit_ad(fun: Callable[..., Any], argnums: int | Sequence[int] = 0, *, tol: float | None = None,
             elements: dict[str, ArrayLike] | None = None, modes: str | Iterable[str] = ("jacfwd", "jacrev"),
             **clarke_kwargs: Any) -> Callable[..., ADAudit]:
    """Audit the Jacobians automatic differentiation returns against the Clarke Jacobian and the
    program's conservative Jacobian (module docstring: the math and the three verdicts).

    ``audit_ad(fun, argnums)(*args, **kwargs)`` → ``ADAudit``.  At the point ``args`` it computes
    ∂ᶜf(x) (``clarke_jacobian``, keyword arguments ``clarke_kwargs`` such as ``max_patterns``,
    ``margin``, ``undecided``), conv J_f(x) (``conservative.jacobian``) and, for each of JAX's
    ``modes`` (``"jacfwd"``, ``"jacrev"``) and each extra matrix in ``elements`` (a dict name → m × n
    array, flattened like ``conservative.jacobian``), the certified distances to both sets and a verdict.

    * ``tol``: verdict tolerance on Frobenius distances; default 1e3·eps·max(1, ‖M‖, sup ‖X‖ over the
      program's set) (the accuracy of the distance bounds, scaled to the data).

    Errors: ``TypeError``/``ValueError`` for bad arguments; the errors of ``clarke_jacobian`` and
    ``conservative.jacobian`` (``JumpError``, ``NotImplementedError`` where higher order decides,
    ``SetTooLargeError``) pass through.

    Examples:
        >>> import jax, jax.numpy as jnp; jax.config.update("jax_enable_x64", True)
        >>> from conservative import audit_ad
        >>> a = audit_ad(lambda x: jax.nn.relu(x) - jax.nn.relu(-x))(jnp.zeros(1))
        >>> a.verdicts["jacfwd"]
        "spurious (in the program's set, not Clarke)"
        >>> a.element("jacfwd").clarke_distance[0] > 0.99   # AD returns 0 or 2, the derivative is 1
        True
        >>> audit_ad(jnp.abs)(jnp.zeros(1)).assert_clarke()   # passes: ±1 are limits of ∇|x|
    """
    if not callable(fun):
        raise TypeError(f"fun: expected a callable, got {type(fun).__name__}")
    if tol is not None and not (isinstance(tol, (int, float)) and not isinstance(tol, bool)
                                and np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol: expected a finite number ≥ 0 or None, got {tol!r}")
    if isinstance(modes, str):
        modes = (modes,)
    modes = tuple(modes)
    for md in modes:
        if md not in ("jacfwd", "jacrev"):
            raise ValueError(f"modes: expected 'jacfwd' and/or 'jacrev', got {md!r}")
    if elements is not None and not isinstance(elements, dict):
        raise TypeError(f"elements: expected a dict name -> matrix, got {type(elements).__name__}")
    extra = dict(elements or {})
    for name in extra:
        if not isinstance(name, str) or name in modes:
            raise ValueError(f"elements: names must be strings other than {modes}, got {name!r}")
    clarke_fn = clarke_jacobian(fun, argnums, **clarke_kwargs)
    cons_fn = jacobian(fun, argnums)

    def wrapped(*args, **kwargs):
        C = clarke_fn(*args, **kwargs)
        P = cons_fn(*args, **kwargs)
        shape = C.shape
        mats = {}
        if modes:
            ad = _flat_jacobians(fun, argnums, args, kwargs)
            mats.update({md: ad[md] for md in modes})
        for name, M in extra.items():
            M = np.asarray(M, dtype=np.float64)
            if M.shape != shape:
                raise ValueError(f"elements[{name!r}]: expected shape {shape} (outputs × flattened inputs), "
                                 f"got {M.shape}")
            if not np.all(np.isfinite(M)):
                raise ValueError(f"elements[{name!r}]: contains non-finite values")
            mats[name] = M
        scale = max([1.0, _norm_bound(P)]
                    + [float(np.linalg.norm(M)) for M in mats.values()])
        t = 1e3 * _EPS * scale if tol is None else float(tol)
        audited = []
        for name, M in mats.items():
            if M.shape != shape:
                raise ValueError(f"{name}: JAX returned shape {M.shape}, the sets have shape {shape}")
            cd = tuple(float(v) for v in C.distance_bounds(M))
            pd = tuple(float(v) for v in P.distance_bounds(M))
            audited.append(AuditedElement(name, M, cd, pd, _verdict(cd, pd, t, C.exact)))
        return ADAudit(C, P, tuple(audited), t)

    return wrapped

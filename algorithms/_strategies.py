"""Linear-solver strategies for implicit differentiation: small frozen dataclasses.

Implicit differentiation solves one linear system per derivative (jaxopt paper, eq. (2)),

    A u = b,   A = ∂₁G(x*, θ) (root form)  or  A = I - ∂ₓF(x*, θ) (fixed-point form),

and ``solve=`` says how. It takes a strategy object (the style of optimistix/lineax) or, for
backward compatibility, one of the strings ``'auto' | 'lu' | 'cholesky' | 'cg' | 'gmres' |
'bicgstab' | 'normal_cg'`` or a callable:

==============================  ===========================================================
``Auto(threshold=DENSE_THRESHOLD)``  the default (``'auto'``): dense LU when n ≤ ``threshold``
                                (n JVPs build A, one factorization, a condition estimate);
                                above it matrix-free: CG when A is known symmetric positive
                                definite (a ``symmetric=True`` hint, a gradient-descent or
                                lasso map, ``stationarity(f)``), GMRES otherwise. A CG solve
                                that does not converge (a wrong hint) is redone by GMRES.
``LU()`` / ``Cholesky()``       dense factorization, κ(A) checked (singular → ValueError)
``CG(tol, maxiter, preconditioner)``       conjugate gradient, A symmetric definite
``GMRES(tol, maxiter, restart, preconditioner)``  restarted GMRES(m); a cycle stops at convergence
``BiCGSTAB(tol, maxiter, preconditioner)`` BiCGSTAB, general A
``NormalCG(tol, maxiter)``      CG on AᵀA x = Aᵀb (squares κ; any nonsingular A)
``Custom(solver, tol)``         ``solver(matvec, b) -> x`` (a plain callable is wrapped so)
==============================  ===========================================================

``tol``/``maxiter`` left at None take the values passed next to ``solve=`` (``tol=1e-10``).
A ``preconditioner`` is a *linear* JAX function ``v ↦ P v ≈ A⁻¹ v`` on the flat (raveled)
vector; reverse mode solves Aᵀ u = w with its transpose (``jax.linear_transpose``). The custom
solver gets the same treatment as the built-in ones: it is used for the transposed system too
(with the transposed matvec), and its relative residual ‖A x - b‖/‖b‖ is checked against
10·``tol`` (:class:`LinearSolveWarning` above it).

The threshold: ``benchmarks/bench_implicit_scale.py`` times the linear-solve part of jit(grad)
of the implicit hypergradient with LU and with the matrix-free solvers on a ridge operator for
n = 8 … 512 in one run. Measured (2-core CPU, time / LU time, median of 9 rounds):

    n        8     16    32    48    64    128   256   512
    CG     0.78  0.88  0.80  0.55  0.41  0.21  0.16  0.18
    GMRES  1.56  1.69  1.57  0.93  0.64  0.27  0.19  0.21

so LU (n JVPs, an O(n³) factorization and a condition estimate) is ahead of GMRES up to
n ≈ 40 and behind both from n = 48; :data:`DENSE_THRESHOLD` = 40. CG is cheaper than LU at
every size, but small systems keep LU for its condition check (a singular system raises with
its condition number, where a Krylov method can only report that it did not converge).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Union

#: ``Auto`` uses a dense LU for systems of at most this many unknowns, matrix-free above.
#: Measured crossover of LU and GMRES (``benchmarks/bench_implicit_scale.py``, section 1).
DENSE_THRESHOLD = 40

STRINGS = ("auto", "lu", "cholesky", "cg", "gmres", "bicgstab", "normal_cg")


def _check_tol(tol, name="tol"):
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0
                            or tol != tol or tol == float("inf")):
        raise ValueError(f"`{name}` must be a positive finite float or None, got {tol!r}")


def _check_maxiter(maxiter, name="maxiter"):
    if maxiter is not None and (isinstance(maxiter, bool) or not isinstance(maxiter, int) or maxiter <= 0):
        raise ValueError(f"`{name}` must be a positive int or None, got {maxiter!r}")


def _check_preconditioner(p):
    if p is not None and not callable(p):
        raise TypeError(f"`preconditioner` must be a linear callable v -> P v (≈ A⁻¹ v) or None, got {p!r}")


@dataclasses.dataclass(frozen=True)
class LU:
    """Dense LU of A (materialized by n JVPs), factored once, κ₂(A) estimated and checked."""

    name = "lu"

    def describe(self) -> str:
        return "LU()"


@dataclasses.dataclass(frozen=True)
class Cholesky:
    """Dense Cholesky of a symmetric positive definite A (checked), κ₂(A) estimated."""

    name = "cholesky"

    def describe(self) -> str:
        return "Cholesky()"


@dataclasses.dataclass(frozen=True)
class _Krylov:
    tol: float | None = None
    maxiter: int | None = None

    def __post_init__(self) -> None:
        _check_tol(self.tol)
        _check_maxiter(self.maxiter)
        _check_preconditioner(getattr(self, "preconditioner", None))

    def describe(self) -> str:
        fields = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                  if getattr(self, f.name) is not None]
        return f"{type(self).__name__}({', '.join(fields)})"


@dataclasses.dataclass(frozen=True)
class CG(_Krylov):
    """Preconditioned conjugate gradient (Hestenes & Stiefel, 1952): A symmetric definite."""

    preconditioner: Callable | None = None
    name = "cg"


@dataclasses.dataclass(frozen=True)
class GMRES(_Krylov):
    """Restarted GMRES(m) (Saad & Schultz, 1986), right-preconditioned; ``restart`` = m.

    Each cycle runs at most m Arnoldi steps and stops as soon as the Givens-rotated residual
    estimate reaches the tolerance; ``maxiter`` counts Arnoldi steps over all cycles.
    """

    restart: int = 30
    preconditioner: Callable | None = None
    name = "gmres"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.restart, bool) or not isinstance(self.restart, int) or self.restart <= 0:
            raise ValueError(f"`restart` must be a positive int, got {self.restart!r}")


@dataclasses.dataclass(frozen=True)
class BiCGSTAB(_Krylov):
    """Right-preconditioned BiCGSTAB (van der Vorst, 1992) for a general nonsingular A."""

    preconditioner: Callable | None = None
    name = "bicgstab"


@dataclasses.dataclass(frozen=True)
class NormalCG(_Krylov):
    """CG on the normal equation AᵀA x = Aᵀb (jaxopt paper, §2.1); squares κ(A)."""

    name = "normal_cg"


@dataclasses.dataclass(frozen=True)
class Custom:
    """A user solver ``solver(matvec, b) -> x`` for A x = b (flat vectors; e.g. jaxopt's ``solve_cg``).

    It must be JAX-traceable. It is also called on the transposed system (reverse mode). Its
    relative residual is checked against 10·``tol`` (None: the ``tol`` given next to ``solve=``).
    """

    solver: Callable
    tol: float | None = None
    name = "custom"

    def __post_init__(self) -> None:
        if not callable(self.solver):
            raise TypeError("`solve` as a custom solver must be a callable solver(matvec, b) -> x, "
                            f"got {self.solver!r}")
        _check_tol(self.tol)

    def describe(self) -> str:
        return f"Custom({getattr(self.solver, '__name__', repr(self.solver))})"


@dataclasses.dataclass(frozen=True)
class Auto:
    """The default: LU for n ≤ ``threshold``, else CG (A known SPD) or GMRES(``restart``).

    ``symmetric``: None takes the hint from the call (``symmetric=`` of ``iterate``/
    ``custom_root``, a ``symmetric`` attribute of the map); True/False overrides it.
    ``tol``, ``maxiter``, ``restart`` and ``preconditioner`` go to the Krylov method chosen.
    ``support_dense``: for a support-restricted system (``algorithms._restricted``), factor the
    block on the free set S densely when |S| ≤ max(``SUPPORT_DENSE_SIZES``), built from batched
    JVPs (cheaper than a Krylov solve with a small support, at the price of a dense copy of the
    operator's data in the compiled program); None (default) does so for maps that declare a
    prox/projection structure (``forward_backward``, or a ``sparse_support=True`` attribute).
    """

    threshold: int = DENSE_THRESHOLD
    symmetric: bool | None = None
    tol: float | None = None
    maxiter: int | None = None
    restart: int = 30
    preconditioner: Callable | None = None
    support_dense: bool | None = None
    name = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int) or self.threshold < 0:
            raise ValueError(f"`threshold` must be a nonnegative int, got {self.threshold!r}")
        if self.symmetric is not None and not isinstance(self.symmetric, bool):
            raise TypeError(f"`symmetric` must be a bool or None, got {self.symmetric!r}")
        _check_tol(self.tol)
        _check_maxiter(self.maxiter)
        _check_preconditioner(self.preconditioner)
        GMRES(restart=self.restart)  # validates restart
        if self.support_dense is not None and not isinstance(self.support_dense, bool):
            raise TypeError(f"`support_dense` must be a bool or None, got {self.support_dense!r}")

    def choose(self, n: int, symmetric: bool = False) -> CG | GMRES | LU:
        """The strategy used for a system of n unknowns (``symmetric``: the call's SPD hint)."""
        sym = symmetric if self.symmetric is None else self.symmetric
        if n <= self.threshold:
            return LU()
        if sym:
            return CG(tol=self.tol, maxiter=self.maxiter, preconditioner=self.preconditioner)
        return GMRES(tol=self.tol, maxiter=self.maxiter, restart=self.restart, preconditioner=self.preconditioner)

    def describe(self) -> str:
        return f"Auto(threshold={self.threshold})"


STRATEGIES = (Auto, LU, Cholesky, CG, GMRES, BiCGSTAB, NormalCG, Custom)
_BY_NAME = {"auto": Auto, "lu": LU, "cholesky": Cholesky, "cg": CG, "gmres": GMRES,
            "bicgstab": BiCGSTAB, "normal_cg": NormalCG}

# Annotation aliases: one strategy object, and what a ``solve=`` argument accepts.
_Strategy = Union[Auto, LU, Cholesky, CG, GMRES, BiCGSTAB, NormalCG, Custom]
_Solve = Union[str, _Strategy, Callable]


def as_strategy(solve: _Solve) -> _Strategy:
    """``solve`` (a strategy, one of :data:`STRINGS`, or a callable) as a strategy object."""
    if isinstance(solve, STRATEGIES):
        return solve
    if isinstance(solve, str):
        if solve not in _BY_NAME:
            raise ValueError(f"`solve` must be one of {STRINGS}, a strategy object "
                             f"(Auto, LU, Cholesky, CG, GMRES, BiCGSTAB, NormalCG, Custom) or a callable "
                             f"solver(matvec, b) -> x; got {solve!r}")
        return _BY_NAME[solve]()
    if callable(solve) and not isinstance(solve, type):
        return Custom(solve)
    raise TypeError(f"`solve` must be one of {STRINGS}, a strategy object or a callable solver(matvec, b) -> x; "
                    f"got {solve!r}")


def choose_solver(solve: _Solve, n: int, symmetric: bool = False) -> _Strategy:
    """The concrete strategy ``solve`` uses on a system of n unknowns (resolves ``Auto``).

    This is what "the default" means, stated: ``choose_solver('auto', 30)`` is ``LU()``,
    ``choose_solver('auto', 2000, symmetric=True)`` is ``CG()``, otherwise ``GMRES(restart=30)``.
    """
    s = as_strategy(solve)
    return s.choose(n, symmetric) if isinstance(s, Auto) else s

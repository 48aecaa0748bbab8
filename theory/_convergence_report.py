"""The report of ``derivative_convergence``: a frozen record with ``summary``, ``to_json``, ``plot``.

The computation lives in ``_derivative_convergence``; this module only holds the result and
renders it.  Every number it prints is one of the report's fields, with the qualifier that field
carries (certified bound, rounding model, fitted observation).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conservative import MatrixSet

from ._contraction import ContractionCertificate
from ._files import atomic_write
from ._jsr import JSRResult
from ._limits import ImplicitSet, LimitComparison

__all__ = ["DerivativeConvergence", "VERDICTS"]

#: the three possible verdicts
VERDICTS = ("converge", "diverge", "inconclusive")


def _fmt(v, spec=".4g") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return format(v, spec)


def _jsonable(x):
    """Plain JSON types; non-finite floats become the strings "inf", "-inf", "nan"."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else str(x)
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        return _jsonable(np.asarray(x).tolist())
    if x is None or isinstance(x, str):
        return x
    return str(x)


@dataclass(frozen=True)
class DerivativeConvergence:
    """Do the derivatives of x_{k+1} = F(x_k, θ) converge, and to what (see ``derivative_convergence``).

    Flat coordinates: x and θ are raveled with ``jax.flatten_util.ravel_pytree`` (leaves in
    ``tree_leaves`` order, each in C order); matrices are n × p (state × parameters) and the
    joint family n × (n + p).

    Limit point: ``xbar`` (a pytree like x0) and ``xbar_flat``; ``residual`` = ‖F(x̄) - x̄‖₂ as
    computed; ``rounding_floor`` the modelled rounding of one evaluation of F (64 (n+1) eps ‖x̄‖₂);
    ``distance_bound`` ≥ ‖x̄ - x*‖₂ = κ(R)(residual + rounding_floor)/(1 - ρ) when a contraction
    certificate (ρ, R) holds for the family (``inf`` otherwise), valid under ``distance_note``.

    Family: ``family`` = J_F(x̄, θ) with pieces active within ``tie_tolerance`` = ``tie_lipschitz``
    × (distance bound); ``ties`` lists the independent tie groups (rows of [A, B] they move,
    number of pieces, whether the tie is exact); ``tolerance_derivation`` the steps that fixed the
    tolerance and ``tolerance_consistent`` whether tie_lipschitz·distance_bound ≤ tie_tolerance holds.

    Assumption A: ``contraction`` (a ``ContractionCertificate`` with ρ < 1, or the best one found),
    ``jsr`` (a ``JSRResult`` of the A-family, when computed) and ``jsr_exact`` (sympy check of the
    lower bound's word: the exact spectral radius of the word's product, to 20 digits).

    Limits: ``fixed_set`` ≈ conv fix 𝒥 with Hausdorff error ≤ ``fixed_set_error`` (Frobenius),
    ``implicit`` the sampled J_imp with its covering radius, ``limits`` the ``LimitComparison``;
    ``gap_lower`` ≤ gap(J_pb, J_imp) (certified), ``gap_at_vertices`` the largest distance from a
    vertex of conv J_pb to the J_imp samples, attained at ``witness``.

    Rates: ``predicted_rate`` (spectral radius of ∂ₓF(x̄) for a single piece; for several pieces
    under Assumption A that of the piece the iterates settle on; else the JSR upper bound of the
    A-family), ``predicted_rate_bounds`` (JSR bounds of the A-family: the rate of the set-valued
    recursion at x̄), ``predicted_rate_jax``
    (spectral radius of JAX's own ∂ₓF at the last iterate of the run: the rate of JAX's derivative
    once the iterates stay on that piece); ``observed`` fitted rates exp(slope of log error) with
    their windows (observations, not bounds); ``curves`` the per-iteration data behind them.

    Verdict: ``verdict`` ∈ {"converge", "diverge", "inconclusive"} with ``reason``; ``notes`` says
    what is approximate and by how much.
    """

    verdict: str
    reason: str
    xbar: Any = field(repr=False)
    xbar_flat: np.ndarray = field(repr=False)
    state_size: int
    theta_size: int
    residual: float
    residual_tolerance: float | None
    steps_to_xbar: int | None
    rounding_floor: float
    distance_bound: float
    distance_note: str
    tie_tolerance: float
    tie_lipschitz: float
    tolerance_derivation: tuple = field(repr=False)
    tolerance_consistent: bool = False
    ties: tuple = field(default=(), repr=False)
    family: MatrixSet | None = field(default=None, repr=False)
    family_exact_vertices: int = 0
    jax_element_in_family: bool = True
    contraction: ContractionCertificate | None = field(default=None, repr=False)
    jsr: JSRResult | None = field(default=None, repr=False)
    jsr_exact: dict | None = field(default=None, repr=False)
    fixed_set: MatrixSet | None = field(default=None, repr=False)
    fixed_set_error: float = math.inf
    implicit: ImplicitSet | None = field(default=None, repr=False)
    limits: LimitComparison | None = field(default=None, repr=False)
    gap_lower: float | None = None
    gap_at_vertices: float | None = None
    witness: np.ndarray | None = field(default=None, repr=False)
    implicit_note: str = ""
    predicted_rate: float | None = None
    predicted_rate_bounds: tuple = (None, None)
    predicted_rate_jax: float | None = None
    observed: dict = field(default_factory=dict, repr=False)
    curves: dict = field(default_factory=dict, repr=False)
    notes: tuple = field(default=(), repr=False)
    seconds: float = 0.0

    # ------------------------------------------------------------------ accessors
    @property
    def rho(self) -> float | None:
        """The certified contraction factor of the family (None without a certificate ρ < 1)."""
        c = self.contraction
        return c.rho if c is not None and c.contracts else None

    @property
    def jsr_bounds(self) -> tuple:
        """(lower, upper) bounds on the JSR of the A-family (from ``jsr``, or (None, ρ) from a contraction)."""
        if self.jsr is not None:
            return self.jsr.lower, self.jsr.upper
        return None, self.rho

    @property
    def jsr_word(self) -> tuple | None:
        """The word (vertex indices of the A-family) whose product gives the JSR lower bound."""
        return None if self.jsr is None else tuple(int(i) for i in self.jsr.certificate)

    @property
    def A_family(self) -> np.ndarray | None:
        """The ∂ₓF blocks of the family's vertices (k, n, n), in the order ``jsr_word`` indexes."""
        if self.family is None:
            return None
        return _unique_blocks(self.family.vertices[:, :, : self.state_size])

    @property
    def J_pb(self) -> MatrixSet | None:
        """conv fix 𝒥 (the limit of the set-valued piggyback), within ``fixed_set_error``."""
        return self.fixed_set

    # ------------------------------------------------------------------ rendering
    def summary(self) -> str:
        """The report as readable text (every number labelled with what it is)."""
        L = [f"derivative_convergence: {self.verdict.upper()}: {self.reason}"]
        how = (f"run to ‖F(x)-x‖ ≤ {_fmt(self.residual_tolerance, '.1e')}·max(1, ‖x‖) in {self.steps_to_xbar} steps"
               if self.steps_to_xbar is not None else "given")
        L.append(f"  x̄ ({self.state_size} numbers, θ: {self.theta_size}): {how}; residual ‖F(x̄)-x̄‖ = "
                 f"{self.residual:.3e} (rounding floor {self.rounding_floor:.1e})")
        if math.isfinite(self.distance_bound):
            L.append(f"  ‖x̄ - x*‖ ≤ {self.distance_bound:.3e} ({self.distance_note})")
        else:
            L.append(f"  no certified distance to the limit: {self.distance_note}")
        if self.family is not None:
            nv = len(self.family.vertices)
            L.append(f"  J_F(x̄, θ): {nv} vertex(es) with pieces active within tol = {self.tie_tolerance:.3e} "
                     f"(= {self.tie_lipschitz:.3g} × distance; consistent: {self.tolerance_consistent}); "
                     f"{self.family_exact_vertices} vertex(es) with exact ties only")
            for t in self.ties:
                rows = t["rows"] if len(t["rows"]) <= 8 else f"{t['rows'][:8]}…({len(t['rows'])} rows)"
                L.append(f"    tie: {t['pieces']} pieces moving rows {rows} of [A, B] "
                         f"({'exact tie' if t['exact'] else 'active within the tolerance only'})")
            L.append(f"  JAX's jacfwd element at x̄ lies in J_F(x̄, θ): {self.jax_element_in_family}")
        c = self.contraction
        if c is not None:
            L.append("  Assumption A: " + c.summary())
        if self.jsr is not None:
            L.append("  A-family: " + self.jsr.summary())
            if self.jsr_exact:
                L.append("    exact (sympy) spectral radius of the word's product: "
                         f"{self.jsr_exact['spectral_radius']} "
                         f"→ lower bound {self.jsr_exact['lower']}; eigenvalues {self.jsr_exact['eigenvalues']}")
        if self.fixed_set is not None:
            L.append(f"  fix(𝒥) = J_pb: {len(self.fixed_set.vertices)} vertex(es), Hausdorff error ≤ "
                     f"{self.fixed_set_error:.2e} (Frobenius)")
        if self.limits is not None:
            L.append(f"  J_imp: {len(self.implicit.samples)} sample(s), covering radius "
                     f"{self.implicit.covering_radius:.2e}; gap(J_pb, J_imp) ≥ {self.gap_lower:.3e} (certified), "
                     f"{self.gap_at_vertices:.3e} at the vertices of J_pb; J_imp "
                     f"{'⊊' if self.limits.strict else '⊆'} J_pb")
        if self.implicit_note:
            L.append(f"  J_imp: {self.implicit_note}")
        lo, hi = self.predicted_rate_bounds
        L.append(f"  predicted local rate {_fmt(self.predicted_rate)} (set-valued recursion at x̄: "
                 f"[{_fmt(lo)}, {_fmt(hi)}]); "
                 f"JAX's piece at the end of the run: {_fmt(self.predicted_rate_jax)}")
        obs = ", ".join(f"{k} {_fmt(v['rate'])}" for k, v in self.observed.items())
        if obs:
            L.append(f"  observed (fitted) rates: {obs}")
        for n in self.notes:
            L.append(f"  note: {n}")
        L.append(f"  ({self.seconds:.2f} s)")
        return "\n".join(L)

    def __repr__(self) -> str:
        return (f"DerivativeConvergence(verdict={self.verdict!r}, predicted_rate={_fmt(self.predicted_rate)}, "
                f"residual={self.residual:.2e}, tie_tolerance={self.tie_tolerance:.2e})")

    def to_dict(self) -> dict:
        """The report as plain data (what ``to_json`` writes)."""
        c = self.contraction
        d = dict(
            verdict=self.verdict, reason=self.reason,
            state_size=self.state_size, theta_size=self.theta_size,
            xbar=self.xbar_flat, residual=self.residual, residual_tolerance=self.residual_tolerance,
            steps_to_xbar=self.steps_to_xbar, rounding_floor=self.rounding_floor,
            distance_bound=self.distance_bound, distance_note=self.distance_note,
            tie_tolerance=self.tie_tolerance, tie_lipschitz=self.tie_lipschitz,
            tolerance_derivation=list(self.tolerance_derivation), tolerance_consistent=self.tolerance_consistent,
            ties=list(self.ties),
            family_vertices=None if self.family is None else self.family.vertices,
            family_exact_vertices=self.family_exact_vertices,
            jax_element_in_family=self.jax_element_in_family,
            contraction=None if c is None else dict(rho=c.rho, norm=c.norm, contracts=c.contracts,
                                                    rho_2norm=c.rho_2norm, spectral_radius=c.spectral_radius,
                                                    condition=c.condition, message=c.message),
            jsr=None if self.jsr is None else dict(lower=self.jsr.lower, upper=self.jsr.upper,
                                                   word=list(self.jsr_word), exact=self.jsr.exact,
                                                   upper_method=self.jsr.upper_method, cut=list(self.jsr.cut)),
            jsr_exact=self.jsr_exact,
            fixed_set_vertices=None if self.fixed_set is None else self.fixed_set.vertices,
            fixed_set_error=self.fixed_set_error,
            implicit=None if self.implicit is None else dict(
                samples=len(self.implicit.samples), resolution=self.implicit.resolution,
                covering_radius=self.implicit.covering_radius, vertex_images=self.implicit.vertex_images),
            implicit_strictly_smaller=None if self.limits is None else bool(self.limits.strict),
            gap_lower=self.gap_lower, gap_at_vertices=self.gap_at_vertices, witness=self.witness,
            implicit_note=self.implicit_note,
            predicted_rate=self.predicted_rate, predicted_rate_bounds=list(self.predicted_rate_bounds),
            predicted_rate_jax=self.predicted_rate_jax,
            observed=self.observed, curves=self.curves, notes=list(self.notes), seconds=self.seconds,
        )
        return _jsonable(d)

    def to_json(self, path: str | os.PathLike | None = None, *, indent: int = 2) -> str:
        """The report as a JSON string (non-finite floats as "inf"/"nan" strings); written
        atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False, ensure_ascii=False) + "\n"
        if path is not None:
            atomic_write(Path(path), text.encode("utf-8"))
        return text

    def plot(self, path: str | os.PathLike | None = None, *, title: str | None = None) -> Any:
        """Iterate errors, derivative errors (JAX, set-valued piggyback), set diameters and the
        predicted rate against k (matplotlib, Agg backend).  Saves to ``path`` (atomically, format
        from the extension) when given and returns the figure."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cv = self.curves
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        pos = lambda v: np.where(np.asarray(v, float) > 0, np.asarray(v, float), np.nan)  # noqa: E731
        # along the run from x0 the iterates and JAX's derivative follow one piece: its rate, drawn
        # when Assumption A holds (otherwise the set-valued rate says nothing about this one run)
        rate = self.predicted_rate_jax if self.verdict == "converge" else None

        def predicted_line(ax, ks, vals, key):
            vals = np.asarray(vals, float)
            if rate is None or not len(vals) or not math.isfinite(rate) or rate <= 0:
                return
            window = self.observed.get(key, {}).get("window") or [0]
            s = min(int(window[0]), len(vals) - 1)
            if vals[s] > 0:
                ks = np.asarray(ks)
                ax.semilogy(ks[s:], vals[s] * rate ** (ks[s:] - ks[s]), "k--", lw=0.9,
                            label=f"predicted local rate {rate:.4g}")

        ax = axes[0]
        k = np.arange(len(cv.get("iterate_error", [])))
        if len(k):
            ax.semilogy(k, pos(cv["iterate_error"]), label=r"$\|x_k-\bar x\|$")
            ax.semilogy(k, pos(cv["step"]), ":", label=r"$\|x_{k+1}-x_k\|$")
            predicted_line(ax, k, cv["iterate_error"], "iterates")
        ax.set_title("iterates", fontsize=9)
        ax.set_xlabel("k")
        ax.legend(fontsize=7)

        ax = axes[1]
        if len(cv.get("jax_error", [])):
            kj = np.arange(len(cv["jax_error"]))
            ax.semilogy(kj, pos(cv["jax_error"]), label=r"JAX: $\|J_k - J_\infty\|$")
            ax.semilogy(kj, pos(cv["jax_increment"]), ":", label=r"JAX: $\|J_{k+1} - J_k\|$")
            predicted_line(ax, kj, cv["jax_error"], "jax")
        if len(cv.get("piggyback_gap", [])):
            ax.semilogy(cv["piggyback_gap_steps"], pos(cv["piggyback_gap"]), "o", ms=3, mfc="none",
                        label=r"gap$(\mathcal{J}_k$, fix $\mathcal{J})$ (certified)")
        ax.set_title("derivatives along the run from $x_0$", fontsize=9)
        ax.set_xlabel("k")
        ax.legend(fontsize=7)

        ax = axes[2]
        drawn = False
        if np.any(np.asarray(cv.get("piggyback_diameter", []), float) > 0):
            ax.semilogy(np.arange(len(cv["piggyback_diameter"])), pos(cv["piggyback_diameter"]),
                        label=r"diam $\mathcal{J}_k$ from $x_0$")
            drawn = True
        if np.any(np.asarray(cv.get("at_xbar_diameter", []), float) > 0):
            kd = np.arange(len(cv["at_xbar_diameter"]))
            ax.semilogy(kd, pos(cv["at_xbar_diameter"]), label=r"diam $\mathcal{J}_k$, recursion at $\bar x$")
            lo, hi = self.predicted_rate_bounds
            d = np.asarray(cv["at_xbar_diameter"], float)
            if hi is not None and len(d) > 2 and d[1] > 0 and math.isfinite(hi):
                ax.semilogy(kd[1:], d[1] * hi ** (kd[1:] - 1), "k--", lw=0.9, label=f"JSR upper {hi:.4g}")
            drawn = True
        if self.fixed_set is not None and len(self.fixed_set.vertices) > 1:
            ax.axhline(self.fixed_set.diameter(), color="gray", ls=":", label=r"diam fix $\mathcal{J}$")
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "every set J_k is a single matrix (no tie along the run)", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_title("set-valued piggyback: diameters", fontsize=9)
        ax.set_xlabel("k")
        if drawn:
            ax.legend(fontsize=7)
        # plain letters in the title: the default font has no script capitals
        fig.suptitle(title or f"verdict: {self.verdict} — {self.reason[:140]}".replace("𝒥", "J"), fontsize=9)
        fig.tight_layout()
        if path is not None:
            import io

            path = Path(path)
            fmt = path.suffix[1:].lower() or "png"
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=100)
            atomic_write(path, buf.getvalue())
            plt.close(fig)
        return fig


def _unique_blocks(A: np.ndarray) -> np.ndarray:
    """Distinct matrices of a stack, in order of first appearance."""
    out = []
    for a in A:
        if not any(np.array_equal(a, b) for b in out):
            out.append(a)
    return np.array(out)

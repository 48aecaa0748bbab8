"""Heavy-ball phase diagram: where the iterates converge but the derivatives do not.

f(x) = L x²/2 for x ≥ 0 and μ x²/2 for x < 0 (μ = L/κ; the slides' f has L = 1, κ = 4).
Heavy-ball x_{k+1} = x_k - α f'(x_k) + β (x_k - x_{k-1}) in phase space z = (x_k, x_{k-1}) is the
conewise linear map F(z) = M_{σ(z)} z with

    M1 = [[1 + β - αL, -β], [1, 0]]  (x ≥ 0),      M2 = [[1 + β - αμ, -β], [1, 0]]  (x < 0),

which agree on x = 0. The conservative Jacobian of F at the fixed point 0 is conv{M1, M2}, so the
set-valued derivative recursion at the limit is governed by the joint spectral radius of {M1, M2}.
Per cell (α, β), computed with ``theory.sweep`` on Dask:

* derivatives: ``theory.jsr`` bounds; lower > 1 (with its word) ⇒ the set-valued derivative
  recursion diverges, upper < 1 ⇒ it converges (certified), else inconclusive;
* iterates: JSR upper < 1 certifies convergence under any switching; otherwise a piecewise-quadratic
  Lyapunov function V(z) = zᵀ P_p z on N angular sectors (an SDP with the S-procedure on the wedges
  {z ∈ K_p : M_p z ∈ K_q}, re-checked in numpy with a rounding margin) certifies
  V(F(z)) ≤ ρ² V(z) with ρ < 1; a periodic ray with growth ≥ 1 (an eigenvector of a product whose
  sign pattern follows its word, re-checked) certifies non-convergence; otherwise the iteration is
  simulated from many starts on the unit circle (F is positively homogeneous) and marked
  *simulated*. β = 0 is gradient descent, decided exactly (1-D).

The slides' point α = 1, β = 3/4 lies in every grid: there M1 M1 M2 M2 has the eigenvalue -9/8.
A side panel shows gradient descent x ↦ x - α f'(x) on the same f (exact: its derivative family
{1 - αL, 1 - αμ} is scalar).

Writes ``heavy_ball_phase.png`` and ``heavy_ball_phase.json`` (every cell with ``alpha``, ``beta``,
``jsr_lower``, ``jsr_upper`` and both verdicts) to ``--out``; the cells are stored in
``--out``/heavy_ball_phase_cells[_quick]/ (Parquet), so an interrupted run resumes.
``--scheduler tcp://host:8786`` runs the cells on a Dask cluster, ``--workers N`` sizes the local one,
``--grid N`` sets the N×N grid (default 200).
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import theory  # noqa: E402
from examples._common import (  # noqa: E402
    check_run_args,
    output_dir,
    parse_args,
    parser,
    pyplot,
    save_figure,
    write_json,
)

EPS = np.finfo(np.float64).eps
SLIDES_POINT = (1.0, 0.75)
#: how a cell's iterate verdict was obtained; the first three are certificates
IT_METHODS = ("jsr", "piecewise quadratic Lyapunov", "exact 1-D", "periodic ray", "simulated")


# ----------------------------------------------------------------------------- the map
def pieces(alpha, beta, mu, L):
    """(M1, M2): the heavy-ball map's linear pieces on x ≥ 0 (curvature L) and x < 0 (curvature μ)."""
    def piece(c):
        return np.array([[1.0 + beta - alpha * c, -beta], [1.0, 0.0]])
    return piece(L), piece(mu)


def _det(u, v):
    return u[0] * v[1] - u[1] * v[0]


def _in_wedge(z, u, v):
    return _det(u, z) >= 0 and _det(z, v) >= 0


def _rotate(u, angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * u[0] - s * u[1], s * u[0] + c * u[1]])


def _intersect(u1, v1, u2, v2):
    """Edges of cone(u1, v1) ∩ cone(u2, v2) (counterclockwise wedges of angle < π), or None."""
    s = u1 if _in_wedge(u1, u2, v2) else (u2 if _in_wedge(u2, u1, v1) else None)
    e = v1 if _in_wedge(v1, u2, v2) else (v2 if _in_wedge(v2, u1, v1) else None)
    if s is None or e is None or _det(s, e) <= 0:
        return None
    return s, e


def _sectors(n):
    """n ≥ 4 (a multiple of 4) closed sectors cone(E_j, E_{j+1}); the axes are exact edges."""
    E = [np.array([math.cos(2 * math.pi * j / n), math.sin(2 * math.pi * j / n)]) for j in range(n)]
    for j, axis in zip((0, n // 4, n // 2, 3 * n // 4), ([1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0])):
        E[j] = np.array(axis)
    return [(E[j], E[(j + 1) % n]) for j in range(n)]


def _wedge_form(u, v):
    """S with zᵀ S z = (n1·z)(n2·z) ≥ 0 on cone(u, v) (n1, n2 its inward normals)."""
    n1, n2 = np.array([-u[1], u[0]]), np.array([v[1], -v[0]])
    return (np.outer(n1, n2) + np.outer(n2, n1)) / 2


def _nonneg_on_wedge(Q, e1, e2, scale):
    """True if zᵀ Q z ≥ 0 on cone(e1, e2), with a margin covering the rounding of Q's entries (``scale``).

    q(s e1 + t e2) = A s² + 2B st + C t² is ≥ 0 for s, t ≥ 0 iff A ≥ 0, C ≥ 0 and B ≥ -√(AC)."""
    tau = 64 * EPS * scale * float(np.linalg.norm(e1) * np.linalg.norm(e2) + e1 @ e1 + e2 @ e2)
    A, B, C = float(e1 @ Q @ e1) - tau, float(e1 @ Q @ e2) - tau, float(e2 @ Q @ e2) - tau
    return A >= 0 and C >= 0 and B + math.sqrt(A * C) >= 0


#: angle by which the target sectors are widened when their preimages are formed: covers the rounding
#: of M⁻¹ (angular error ≈ eps·cond(M), refused above 1e-9), so no transition is missed
_WIDEN = 1e-7


def piecewise_quadratic_certificate(M1, M2, n=4, solver="CLARABEL"):
    """Certified rate ρ < 1 of a piecewise-quadratic Lyapunov function of z ↦ M_{σ(z)} z, or None.

    V(z) = min_{p: z ∈ K_p} zᵀ P_p z on n sectors K_p; the SDP asks zᵀ P_p z ≥ |z|² on K_p and
    zᵀ(P_p - M_pᵀ P_q M_p) z ≥ |z|² on every wedge {z ∈ K_p : M_p z ∈ K_q} (S-procedure, lossless
    in the plane). Re-checked with half the margins: V ≥ |z|²/2, V(F z) ≤ V(z) - |z|²/2 ≤
    (1 - 1/(2C)) V(z) with C ≥ max ‖P_p‖, so |z_k| ≤ √(2C) ρᵏ |z_0| with ρ = √(1 - 1/(2C)).
    """
    import cvxpy as cp

    secs = _sectors(n)
    Ms = [M1 if (u + v)[0] > 0 else M2 for u, v in secs]
    if any(np.linalg.cond(M) * EPS > 1e-9 for M in Ms):
        return None
    inv = [np.linalg.inv(M) for M in Ms]
    P = [cp.Variable((2, 2), symmetric=True) for _ in secs]
    t = cp.Variable()
    cons, checks = [], []
    I2 = np.eye(2)
    for p, (u, v) in enumerate(secs):
        lam = cp.Variable(nonneg=True)
        cons.append(P[p] - I2 - lam * _wedge_form(u, v) >> 0)
        checks.append((p, None, u, v))
        for q, (uq, vq) in enumerate(secs):
            a, b = inv[p] @ _rotate(uq, -_WIDEN), inv[p] @ _rotate(vq, _WIDEN)
            w = _intersect(u, v, a, b)
            if w is None:
                continue
            s = cp.Variable(nonneg=True)
            cons.append(P[p] - Ms[p].T @ P[q] @ Ms[p] - I2 - s * _wedge_form(*w) >> 0)
            checks.append((p, q, *w))
    cons += [x << t * I2 for x in P] + [x >> -t * I2 for x in P]
    prob = cp.Problem(cp.Minimize(t), cons)
    try:
        with warnings.catch_warnings():  # "inaccurate" solutions are fine: the numpy re-check decides
            warnings.simplefilter("ignore")
            prob.solve(solver=solver)
    except cp.error.SolverError:
        return None
    if P[0].value is None:
        return None
    Pv = [np.asarray(x.value, dtype=np.float64) for x in P]
    Pv = [(x + x.T) / 2 for x in Pv]
    for p, q, e1, e2 in checks:
        if q is None:
            Q, scale = Pv[p] - 0.5 * I2, float(np.abs(Pv[p]).sum()) + 1
        else:
            M = Ms[p]
            Q = Pv[p] - M.T @ Pv[q] @ M - 0.5 * I2
            scale = float(np.abs(Pv[p]).sum() + (np.abs(M).T @ np.abs(Pv[q]) @ np.abs(M)).sum()) + 1
        if not _nonneg_on_wedge(Q, e1, e2, scale):
            return None
    C = max(float(np.linalg.norm(x)) for x in Pv) * (1 + 1e-12)
    rho = math.sqrt(1 - 1 / (2 * C)) * (1 + 4 * EPS)
    return rho if rho < 1 else None


def periodic_ray(M1, M2, max_length=6):
    """A certificate that some iterates do not converge: (word, growth ≥ 1) or None.

    A real eigenvector v of M_{w_L}⋯M_{w_1} with eigenvalue λ ≥ 1 whose partial products have
    x-components of the signs the word prescribes (strictly, with a margin) is a periodic ray:
    F^L(v) = λ v, so |z_{kL}| = λᵏ |v| does not tend to 0.
    """
    Ms = (M1, M2)
    for length in range(1, max_length + 1):
        for word in itertools.product((0, 1), repeat=length):
            P = np.eye(2)
            for i in word:
                P = Ms[i] @ P
            vals, vecs = np.linalg.eig(P)
            for lam, v in zip(vals, vecs.T):
                if abs(lam.imag) > 0 or lam.real < 1 + 1e-9:
                    continue
                v = np.real(v)
                z, ok = v.copy(), True
                for i in word:
                    margin = 1e-8 * np.linalg.norm(z)
                    if (i == 0 and z[0] < margin) or (i == 1 and z[0] > -margin):
                        ok = False
                        break
                    z = Ms[i] @ z
                # the ray returns to itself, stretched by λ (residual re-checked)
                if ok and np.linalg.norm(z - lam.real * v) <= 1e-8 * np.linalg.norm(z):
                    return word, float(lam.real) ** (1 / length)
    return None


def simulate(M1, M2, starts=64, steps=3000, seed=0):
    """'converge' / 'diverge' / 'inconclusive' from ``starts`` unit starts (angles: a grid plus random)."""
    rng = np.random.default_rng(seed)
    th = np.concatenate([np.linspace(0, 2 * np.pi, starts // 2, endpoint=False),
                         rng.uniform(0, 2 * np.pi, starts - starts // 2)])
    Z = np.stack([np.cos(th), np.sin(th)])
    for _ in range(steps):
        Z = np.where(Z[0] >= 0, M1 @ Z, M2 @ Z)
        r = np.abs(Z).max()
        if r > 1e12 or not np.isfinite(r):
            return "diverge"
        if r < 1e-12:
            return "converge"
    return "inconclusive"


def gradient_descent_exact(alpha, mu, L):
    """GD x ↦ (1 - αL)x (x ≥ 0), (1 - αμ)x (x < 0): (iterates converge?, derivative JSR), exactly."""
    a, b = 1 - alpha * L, 1 - alpha * mu  # a ≤ b < 1 for α > 0, μ ≤ L
    # from x0 > 0: factor a while x ≥ 0; a sign change leads to factor b; two sign changes in a row
    # multiply by ab. From x0 < 0 likewise with the roles swapped.
    converge = b >= 0 or a * b < 1
    return converge, max(abs(a), abs(b))


# ----------------------------------------------------------------------------- one cell
def phase_cell(alpha, beta, mu, L, *, sectors=(4, 16), starts=64, steps=3000, jsr_time_limit=20.0):
    """Both verdicts for one (α, β): certified JSR bounds and the iterates' convergence."""
    M1, M2 = pieces(alpha, beta, mu, L)
    r = theory.jsr([M1, M2], time_limit=jsr_time_limit)
    deriv = "diverge" if r.lower > 1 else ("converge" if r.upper < 1 else "inconclusive")
    out = {"jsr_lower": r.lower, "jsr_upper": r.upper, "jsr_exact": bool(r.exact),
           "jsr_word": [int(i) for i in r.certificate], "derivatives": deriv,
           "iterates_rate_bound": None, "iterates_certificate": None}
    if r.upper < 1:
        out.update(iterates="converge", iterates_method="jsr", iterates_rate_bound=r.upper)
        return out
    if beta == 0:
        conv, _ = gradient_descent_exact(alpha, mu, L)
        out.update(iterates="converge" if conv else "diverge", iterates_method="exact 1-D")
        return out
    for n in sectors:
        rho = piecewise_quadratic_certificate(M1, M2, n)
        if rho is not None:
            out.update(iterates="converge", iterates_method="piecewise quadratic Lyapunov",
                       iterates_rate_bound=rho, iterates_certificate=f"{n} sectors")
            return out
    ray = periodic_ray(M1, M2)
    if ray is not None:
        out.update(iterates="diverge", iterates_method="periodic ray", iterates_rate_bound=ray[1],
                   iterates_certificate="".join(str(i + 1) for i in ray[0]))
        return out
    out.update(iterates=simulate(M1, M2, starts, steps), iterates_method="simulated")
    return out


def classify(cell) -> str:
    if cell.get("status", "ok") != "ok":
        return "error"
    it, de = cell["iterates"], cell["derivatives"]
    if it == "converge" and de == "diverge":
        return "iterates converge, derivatives diverge"
    if it == "converge" and de == "converge":
        return "both converge"
    if it == "diverge":
        return "iterates diverge"
    return "inconclusive"


CLASSES = ("both converge", "iterates converge, derivatives diverge", "iterates diverge", "inconclusive", "error")


def grids(quick: bool, n: int = 200):
    """α and β values; both grids contain the slides' point (1, 3/4) exactly.

    Full: α = 8k/n (k = 1..n), β = j/n (j = 0..n-1), n a multiple of 8 (α = 1 at k = n/8, β = 3/4 at
    j = 3n/4, exact divisions). β = 0 is gradient descent."""
    if quick:
        return [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.0, 0.25, 0.5, 0.625, 0.75, 0.875]
    return [8 * k / n for k in range(1, n + 1)], [j / n for j in range(n)]


def _cell_function():
    """``phase_cell`` of the module ``examples.heavy_ball_phase`` (also when this file runs as a script, so
    that the store names the same function either way), registered with cloudpickle to travel by value:
    the workers of a separate cluster need not be able to import ``examples``."""
    import importlib

    import cloudpickle

    mod = importlib.import_module("examples.heavy_ball_phase")
    cloudpickle.register_pickle_by_value(mod)
    return mod.phase_cell


# ----------------------------------------------------------------------------- run
def run(out_dir="out", quick=False, seed=0, *, kappa=4.0, workers=None, scheduler=None, grid=200,
        progress=True) -> dict:
    seed, quick = check_run_args(seed, quick)
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 8 or grid % 8:
        raise ValueError(f"grid: expected a positive multiple of 8 (the grid then holds α = 1, β = 3/4), got {grid!r}")
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not math.isfinite(kappa) or kappa < 1:
        raise ValueError(f"kappa: expected a finite number ≥ 1 (κ = L/μ), got {kappa!r}")
    if workers is not None and scheduler is not None:
        raise ValueError("workers: not used with scheduler (the cluster has its own workers)")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers: expected a positive integer, got {workers!r}")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise ValueError(f"scheduler: expected an address such as 'tcp://host:8786', got {scheduler!r}")
    out = output_dir(out_dir)
    t0 = time.perf_counter()
    L, mu = 1.0, 1.0 / float(kappa)
    alphas, betas = grids(quick, grid)
    settings = dict(sectors=(4, 16), starts=32 if quick else 64, steps=2000 if quick else 3000)
    fn = functools.partial(_cell_function(), **settings)
    if workers is None and scheduler is None:
        workers = 2 if quick else None
    store = out / ("heavy_ball_phase_cells_quick" if quick else f"heavy_ball_phase_cells_{grid}")
    res = theory.sweep(fn, {"alpha": alphas, "beta": betas, "mu": [mu], "L": [L]}, client=scheduler,
                       workers=workers, store=store, progress=progress)
    cells = []
    for rec in res.records:
        c = {k: rec.get(k) for k in ("alpha", "beta", "jsr_lower", "jsr_upper", "jsr_exact", "jsr_word",
                                     "iterates", "iterates_method", "iterates_certificate", "iterates_rate_bound",
                                     "derivatives", "status", "error_type", "error_message", "seconds")}
        c["class"] = classify(rec)
        c["certified"] = c["class"] != "error" and rec.get("iterates_method") != "simulated" and \
            rec.get("derivatives") != "inconclusive"
        cells.append(c)
    n = len(cells)
    counts = {k: sum(c["class"] == k for c in cells) for k in CLASSES}
    flagship = [c for c in cells if c["class"] == CLASSES[1]]
    flagship_cert = [c for c in flagship if c["certified"]]
    slides = next(c for c in cells if (c["alpha"], c["beta"]) == SLIDES_POINT)

    # gradient descent on the same f, exact
    ga = np.linspace(0, 2.2 * kappa / L, 441)[1:]
    gd = [gradient_descent_exact(float(a), mu, L) for a in ga]
    gd_it = np.array([g[0] for g in gd])
    gd_jsr = np.array([g[1] for g in gd])
    gd_flag = ga[gd_it & (gd_jsr > 1)]

    _plot(out, cells, alphas, betas, ga, gd_it, gd_jsr, kappa, quick)
    per_cell = [c["seconds"] for c in cells if c["seconds"] is not None]
    summary = {
        "kappa": float(kappa), "L": L, "mu": mu,
        "grid": {"alpha": alphas, "beta": betas, "cells": n},
        "counts": counts,
        "fractions": {k: v / n for k, v in counts.items()},
        "iterate_methods": {m: sum(c["iterates_method"] == m for c in cells) for m in IT_METHODS},
        "derivatives_inconclusive": sum(c["derivatives"] == "inconclusive" for c in cells),
        "flagship_cells": len(flagship),
        "flagship_cells_certified": len(flagship_cert),
        "flagship_fraction": len(flagship) / n,
        "flagship_certified_fraction": len(flagship_cert) / n,
        "slides_point": slides,
        "slides_point_flagship_certified": bool(slides["class"] == CLASSES[1] and slides["certified"]),
        "gradient_descent": {
            "alpha": ga, "iterates_converge": gd_it, "derivative_jsr": gd_jsr,
            "iterates_converge_derivatives_diverge_alpha_range":
                [float(gd_flag.min()), float(gd_flag.max())] if gd_flag.size else None,
        },
        "sweep": {"computed": res.computed, "from_store": res.stored, "errors": len(res.errors),
                  "store": str(store), "scheduler": scheduler, "workers": workers,
                  "median_cell_seconds": float(np.median(per_cell)) if per_cell else None,
                  "seconds": res.seconds},
        "cells": cells,
        "seconds": time.perf_counter() - t0,
    }
    write_json(out / "heavy_ball_phase.json", summary, seed=seed, quick=quick)
    return summary


def _plot(out, cells, alphas, betas, ga, gd_it, gd_jsr, kappa, quick):
    plt = pyplot()
    from matplotlib.colors import ListedColormap

    code = {k: i for i, k in enumerate(CLASSES)}
    C = np.array([code[c["class"]] for c in cells], dtype=float).reshape(len(alphas), len(betas))
    cert = np.array([c["certified"] for c in cells]).reshape(len(alphas), len(betas))
    cmap = ListedColormap(["#4c9f70", "#d1495b", "#444444", "#edae49", "#8e44ad"])
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    def edges(v):  # cell edges halfway between grid values (the quick grid is not uniform)
        v = np.asarray(v, dtype=float)
        mid = (v[1:] + v[:-1]) / 2
        return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])

    be, ae = edges(betas), edges(alphas)
    ax = axes[0]
    ax.pcolormesh(be, ae, C, cmap=cmap, vmin=-0.5, vmax=4.5)
    B, A = np.meshgrid(betas, alphas)
    if (~cert).any():  # uncertified cells hatched with dots
        ax.scatter(B[~cert], A[~cert], s=6 if not quick else 24, c="white", edgecolors="black", linewidths=0.4,
                   marker="o", label="not certified")
    ax.plot(SLIDES_POINT[1], SLIDES_POINT[0], "k*", ms=14, mec="white", label="slides' point (1, 3/4)")
    for i, k in enumerate(CLASSES[:4]):
        ax.plot([], [], "s", color=cmap(i), label=k)
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel(r"$\alpha$")
    ax.set_title(f"heavy-ball on f (L = 1, μ = 1/{kappa:g}): phase diagram")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
    ax = axes[1]
    J = np.array([c["jsr_lower"] if c["jsr_lower"] is not None else np.nan for c in cells]).reshape(C.shape)
    im = ax.pcolormesh(be, ae, np.log10(J), cmap="coolwarm", vmin=-0.5, vmax=0.5)
    if len(alphas) > 2 and len(betas) > 2:
        ax.contour(B, A, J, levels=[1.0], colors="k", linewidths=1)  # JSR = 1
    ax.plot(SLIDES_POINT[1], SLIDES_POINT[0], "k*", ms=14, mec="white")
    fig.colorbar(im, ax=ax, label=r"$\log_{10}$ certified JSR lower bound of $\{M_1, M_2\}$")
    ax.set_xlabel(r"$\beta$")
    ax.set_title("derivative family at the fixed point")
    ax = axes[2]
    ax.semilogy(ga, gd_jsr, label="JSR{1-αL, 1-αμ} (exact)")
    ax.axhline(1, color="k", lw=0.8)
    ax.fill_between(ga, 1e-3, 1e3, where=gd_it & (gd_jsr > 1), color="#d1495b", alpha=0.3,
                    label="iterates converge, derivatives diverge")
    ax.fill_between(ga, 1e-3, 1e3, where=~gd_it, color="#444444", alpha=0.3, label="iterates diverge")
    ax.set_ylim(1e-2, 1e1)
    ax.set_xlabel(r"$\alpha$")
    ax.set_title("gradient descent on the same f")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "heavy_ball_phase.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--kappa", type=_kappa_arg, default=4.0, help="condition number L/μ (default 4: μ = 1/4)")
    p.add_argument("--workers", type=_workers_arg, default=None, help="local Dask workers (default: the CPUs)")
    p.add_argument("--grid", type=_grid_arg, default=200, metavar="N",
                   help="N×N cells, N a multiple of 8 (default 200; ignored with --quick, 6×6)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", type=_scheduler_arg,
                   help="Dask scheduler address, e.g. tcp://host:8786 (default: a LocalCluster)")
    args = parse_args(p, argv)
    if args.workers is not None and args.scheduler is not None:
        p.error("argument --workers: not allowed with --scheduler (the cluster has its own workers)")
    s = run(args.out, quick=args.quick, seed=args.seed, kappa=args.kappa, workers=args.workers,
            scheduler=args.scheduler, grid=args.grid)
    g = s["grid"]
    print(f"heavy-ball phase diagram, κ = {s['kappa']:g}: {len(g['alpha'])}×{len(g['beta'])} cells "
          f"({s['sweep']['computed']} computed, {s['sweep']['from_store']} from the store) in {s['seconds']:.1f} s")
    for k, v in s["counts"].items():
        print(f"  {k:40s} {v:6d}  ({100 * s['fractions'][k]:.1f}%)")
    print(f"  iterate verdicts by method: {s['iterate_methods']}")
    print(f"  iterates converge, derivatives diverge: {s['flagship_cells']} cells, "
          f"{s['flagship_cells_certified']} certified (JSR lower > 1 and a convergence certificate)")
    sp = s["slides_point"]
    if s["sweep"]["errors"]:
        first = next(c for c in s["cells"] if c["class"] == "error")
        print(f"  {s['sweep']['errors']} cells failed, e.g. α = {first['alpha']}, β = {first['beta']}: "
              f"{first['error_type']}: {first['error_message']} (see heavy_ball_phase.json)")
    if sp["class"] == "error":
        print("  slides' point α = 1, β = 3/4: failed (see above)")
        return 1
    print(f"  slides' point α = 1, β = 3/4: {sp['class']} (JSR ∈ [{sp['jsr_lower']:.10f}, {sp['jsr_upper']:.10f}], "
          f"word {sp['jsr_word']} (0-based indices into [M1, M2]); "
          f"iterates by {sp['iterates_method']} {sp['iterates_certificate'] or ''}, "
          f"rate ≤ {sp['iterates_rate_bound']:.6f})")
    rng = s["gradient_descent"]["iterates_converge_derivatives_diverge_alpha_range"]
    print(f"  gradient descent: iterates converge, derivatives diverge for α in {rng} (exact)")
    print(f"  wrote {Path(args.out) / 'heavy_ball_phase.png'} and heavy_ball_phase.json")


def _kappa_arg(text):
    import argparse

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number ≥ 1, got {text!r}") from None
    if not math.isfinite(v) or v < 1:
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 1, got {text!r}")
    return v


def _workers_arg(text):
    import argparse

    try:
        v = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


def _grid_arg(text):
    import argparse

    try:
        v = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 8, got {text!r}") from None
    if v < 8 or v % 8:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 8, got {text!r}")
    return v


def _scheduler_arg(text):
    import argparse

    if not text.strip():
        raise argparse.ArgumentTypeError("must be a scheduler address such as tcp://host:8786")
    return text


if __name__ == "__main__":
    sys.exit(main())

"""Weighted ridge by gradient descent: autodiff, implicit, one-step and K-step truncated Jacobians
(one-step paper, Bolte, Pauwels & Vaiter 2023, §4 "Weighted ridge using gradient descent", Figure 4).

    x̄(θ) = argmin_x f_θ(x) = ½ Σ_i θ_i (y_i - ⟨a_i, x⟩)² + (λ/2)‖x‖²,   F(x, θ) = x - α∇f_θ(x),  x_0 = 0,

θ ∈ R^N the sample weights. J_θ x̄ = H⁻¹ Aᵀ diag(y - Ax̄) with H = Aᵀ diag(θ) A + λI (closed form,
the reference). For k on a grid, each estimator of ``algorithms.iterate`` computes (x_k, J x_k)
(reverse mode, compiled, compile time excluded) and we record the paper's two quantities
‖x_k - x̄‖² (dotted) and ‖J x_k - J_θx̄‖₂² (solid, squared spectral norm) against wall time and k.

Settings as in the paper: condition number κ(H) ∈ {1000, 100} (rows), step α ∈ {1/L, 2/(μ+L)}
(columns). Estimators: full autodiff, implicit, one-step (K = 1) and truncated K = 10.

DATA: the paper uses LIBSVM's ``cpusmall`` (N = 8192, n = 12), which cannot be downloaded here.
We use SYNTHETIC data of the same shape: A = Q S Vᵀ (Q, V random orthonormal) with S chosen so that
H at the weights θ = 1 has eigenvalues geometrically spaced in [μ, L] = [1, κ] (κ exact), and
y = A x_true + noise. Timings are therefore of the same problem size as the paper's, not its data.

The dashed horizontal lines are the asymptotic (k → ∞) Corollary 1 bound of the one-step paper,
eq. (5), applied to F^K (discussion after Corollary 1): ‖J^K-step - J_θx̄‖ ≤ ρ^K L_F/(1-ρ), with
ρ = ‖∂ₓF‖ = max(1 - αμ, αL - 1) (Example 1) and L_F = ‖∂_θF(x̄, θ)‖ evaluated at the solution.

Writes ``weighted_ridge.png`` (errors vs time), ``weighted_ridge_vs_k.png`` and ``weighted_ridge.json``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples._common import (
    Progress,
    check_run_args,
    enable_x64,
    output_dir,
    parse_args,
    parser,
    pyplot,
    save_figure,
    write_json,
)

enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import theory  # noqa: E402
from algorithms import iterate  # noqa: E402

KAPPAS = (1000.0, 100.0)
STEPS = ("1/L", "2/(mu+L)")
TRUNCATE = 10
#: name -> (iterate mode, keyword arguments, label, K of the one-step bound or None)
ESTIMATORS = {
    "autodiff": ("autodiff", {}, "autodiff (full)", None),
    # the figure measures the implicit estimator before convergence on purpose: no residual warning
    "implicit": ("implicit", {"residual_rtol": None}, "implicit", None),
    "one_step": ("one_step", {}, "one-step (K = 1)", 1),
    f"truncated_{TRUNCATE}": ("truncated", {"truncate": TRUNCATE}, f"truncated (K = {TRUNCATE})", TRUNCATE),
}
COLORS = {"autodiff": "C0", "implicit": "C2", "one_step": "C3", f"truncated_{TRUNCATE}": "C1"}
LAM = 0.5  # ridge parameter λ; μ = 1 is the smallest eigenvalue of H, so λ < μ
NOISE = 0.3  # noise level relative to the signal's standard deviation


def make_data(N: int, n: int, kappa: float, rng):
    """Synthetic (A, y, θ) with H = Aᵀdiag(θ)A + λI having eigenvalues geomspace(1, κ) at θ = 1."""
    h = np.geomspace(1.0, kappa, n)
    s = np.sqrt(h - LAM)
    Q, _ = np.linalg.qr(rng.normal(size=(N, n)))
    V, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = (Q * s) @ V.T
    x_true = rng.normal(size=n)
    signal = A @ x_true
    y = signal + NOISE * signal.std() * rng.normal(size=N)
    theta = np.ones(N)
    return A, y, theta


def ridge_step(x, theta, data):
    """One gradient step F(x, θ) = x - α(Aᵀ(θ ∘ (Ax - y)) + λx); data = (A, y, λ, α) are traced
    arguments so that one compiled program serves every setting of the same shape."""
    A, y, lam, alpha = data
    return x - alpha * (A.T @ (theta * (A @ x - y)) + lam * x)


def closed_form(A, y, theta):
    """x̄ = H⁻¹Aᵀ(θ∘y) and J_θx̄ = H⁻¹Aᵀ diag(y - Ax̄) (NumPy, independent of the code under test)."""
    H = A.T @ (theta[:, None] * A) + LAM * np.eye(A.shape[1])
    x_bar = np.linalg.solve(H, A.T @ (theta * y))
    J = np.linalg.solve(H, A.T * (y - A @ x_bar))
    return H, x_bar, J


class _Compiled:
    """One compiled (x_k, J x_k) program per (estimator, k), shared across settings."""

    def __init__(self, n: int, theta, data):
        self.x0 = jnp.zeros(n)
        self.spec = (theta, data)
        self.cache = {}
        self.compile_seconds = 0.0

    def get(self, name: str, k: int):
        key = (name, k)
        if key not in self.cache:
            mode, kw, _, _ = ESTIMATORS[name]
            kw = dict(kw)
            if "truncate" in kw:
                kw["truncate"] = min(kw["truncate"], k)  # K ≥ k: truncation is full autodiff
            x0 = self.x0

            def xk(t, data):
                x = iterate(lambda x, th: ridge_step(x, th, data), x0, t, k, mode=mode, **kw)
                return x, x

            t0 = time.perf_counter()
            self.cache[key] = jax.jit(jax.jacrev(xk, has_aux=True)).lower(*self.spec).compile()
            self.compile_seconds += time.perf_counter() - t0
        return self.cache[key]


def _timed(fn, *args, budget: float = 0.2, max_repeats: int = 5):
    """Best-of-r wall time of a compiled call (r = 1 when one call exceeds ``budget`` seconds)."""
    best, out, r = np.inf, None, 0
    while r < max_repeats:
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        dt = time.perf_counter() - t0
        best, r = min(best, dt), r + 1
        if dt > budget:
            break
    return best, out


def k_grid(kmin: int, kmax: int, points: int):
    """Geometric grid of iteration counts, shared by the settings (one compilation per point)."""
    return sorted({int(round(v)) for v in np.geomspace(kmin, kmax, points)})


def run(out_dir="out", quick=False, seed=0) -> dict:
    seed, quick = check_run_args(seed, quick)
    out = output_dir(out_dir)
    t_start = time.perf_counter()
    N, n = (500, 12) if quick else (8192, 12)
    # each setting runs until ρ^k ≈ tol (iterate error ≈ tol·‖x̄‖), on a geometric grid of k
    tol, points, kmin = (1e-3, 3, 10) if quick else (1e-8, 15, 1)
    rng = np.random.default_rng(seed)

    settings = []
    for kappa in KAPPAS:
        A, y, theta = make_data(N, n, kappa, rng)
        H, x_bar, J_bar = closed_form(A, y, theta)
        ev = np.linalg.eigvalsh(H)
        mu, L = float(ev[0]), float(ev[-1])
        for step in STEPS:
            alpha = 1.0 / L if step == "1/L" else 2.0 / (mu + L)
            rho = max(1 - alpha * mu, alpha * L - 1)  # one-step paper, Example 1
            kmax = int(np.ceil(np.log(tol) / np.log(rho)))
            # L_F = ‖∂_θF(x̄, θ)‖_op = α‖Aᵀ diag(y - Ax̄)‖_op (the local constant at the solution)
            L_F = float(alpha * np.linalg.norm(A.T * (y - A @ x_bar), 2))
            settings.append(dict(name=f"kappa={kappa:g}, step={step}", kappa=kappa, step=step, alpha=alpha,
                                 mu=mu, L=L, rho=rho, kmax=kmax, L_F=L_F, A=A, y=y, theta=theta,
                                 x_bar=x_bar, J_bar=J_bar))
    grid = k_grid(kmin, max(s["kmax"] for s in settings), points)
    for s in settings:  # the grid points up to this setting's kmax, and one beyond it
        ks = [k for k in grid if k <= s["kmax"]]
        ks += [k for k in grid if k > s["kmax"]][:1]
        s["ks"] = ks

    th0 = jnp.asarray(settings[0]["theta"])
    data0 = tuple(jnp.asarray(v) for v in (settings[0]["A"], settings[0]["y"], LAM, settings[0]["alpha"]))
    progs = _Compiled(n, th0, data0)
    bar = Progress(sum(len(s["ks"]) for s in settings) * len(ESTIMATORS), "weighted ridge")
    results = {}
    for s in settings:
        th = jnp.asarray(s["theta"])
        data = tuple(jnp.asarray(v) for v in (s["A"], s["y"], LAM, s["alpha"]))
        rec = {"k": s["ks"], "iterate_error_sq": [], "time": {e: [] for e in ESTIMATORS},
               "jacobian_error_sq": {e: [] for e in ESTIMATORS}}
        for k in s["ks"]:
            for e in ESTIMATORS:
                fn = progs.get(e, k)
                dt, (J, xk) = _timed(fn, th, data, max_repeats=2 if quick else 10)
                J, xk = np.asarray(J), np.asarray(xk)
                rec["time"][e].append(dt)
                rec["jacobian_error_sq"][e].append(float(np.linalg.norm(J - s["J_bar"], 2) ** 2))
                if e == "autodiff":
                    rec["iterate_error_sq"].append(float(np.sum((xk - s["x_bar"]) ** 2)))
                bar.update()
        # Corollary 1 of the one-step paper (eq. (5)) for F^K as k → ∞ (‖x_{k-K} - x̄‖ → 0): F^K has
        # contraction ρ^K and ‖∂_θF^K(x̄)‖ ≤ L_F(1-ρ^K)/(1-ρ), so the bound is ρ^K L_F/(1-ρ)
        rho = s["rho"]
        rec["corollary1_floor"] = {
            e: theory.one_step_error_bound(rho ** K, s["L_F"] * (1 - rho ** K) / (1 - rho), 0.0, 0.0)
            for e, (_, _, _, K) in ESTIMATORS.items() if K is not None}
        rec["final_over_floor"] = {e: float(np.sqrt(rec["jacobian_error_sq"][e][-1]) / rec["corollary1_floor"][e])
                                   for e in rec["corollary1_floor"]}
        rec.update({key: s[key] for key in ("kappa", "step", "alpha", "mu", "L", "rho", "kmax", "L_F")})
        rec["norm_x_bar"] = float(np.linalg.norm(s["x_bar"]))
        rec["norm_J_bar"] = float(np.linalg.norm(s["J_bar"], 2))
        results[s["name"]] = rec
    bar.close()

    plt = pyplot()
    for xaxis, fname in (("time", "weighted_ridge.png"), ("k", "weighted_ridge_vs_k.png")):
        fig, axes = plt.subplots(2, 2, figsize=(12, 9), squeeze=False)
        for i, kappa in enumerate(KAPPAS):
            for j, step in enumerate(STEPS):
                ax = axes[i][j]
                rec = results[f"kappa={kappa:g}, step={step}"]
                for e, (_, _, label, K) in ESTIMATORS.items():
                    xs = rec["time"][e] if xaxis == "time" else rec["k"]
                    ax.loglog(xs, rec["jacobian_error_sq"][e], "-o", ms=3, color=COLORS[e], label=label)
                    if xaxis == "time" or e == "autodiff":
                        ax.loglog(xs, rec["iterate_error_sq"], ":", color=COLORS[e] if xaxis == "time" else "k",
                                  label=None if xaxis == "time" else r"$\|x_k-\bar x\|^2$")
                    if K is not None:
                        ax.axhline(rec["corollary1_floor"][e] ** 2, color=COLORS[e], ls="--", lw=0.8)
                ax.set_xlabel("time (s), compilation excluded" if xaxis == "time" else "iteration k")
                ax.set_ylabel(r"$\|J x_k - J\bar x\|_2^2$ (solid),  $\|x_k-\bar x\|^2$ (dotted)")
                ax.set_title(f"κ = {kappa:g}, step {'1/L' if step == '1/L' else '2/(μ+L)'}  (ρ = {rec['rho']:.4f})")
                if i == 0 and j == 0:
                    ax.legend(fontsize=7)
        fig.suptitle("Weighted ridge by gradient descent (synthetic data, cpusmall's shape "
                     f"{N}×{n}); dashed: Corollary 1 floor ρ^K L_F/(1-ρ), squared", fontsize=10)
        fig.tight_layout()
        save_figure(fig, out / fname, dpi=110)
        plt.close(fig)

    final_errors = {name: {e: rec["jacobian_error_sq"][e][-1] for e in ESTIMATORS} for name, rec in results.items()}
    summary = {
        "data": (f"SYNTHETIC stand-in for LIBSVM cpusmall (not downloadable here): N = {N} samples, n = {n} "
                 "features, A = Q S Vᵀ with the Hessian's eigenvalues geomspace(1, κ) at weights θ = 1, "
                 f"λ = {LAM}, y = A x_true + noise ({NOISE} × signal std)"),
        "error_measure": "squared: ‖x_k - x̄‖² (Euclidean) and ‖J x_k - J_θx̄‖₂² (spectral norm), as in the paper",
        "reference": "closed form J_θx̄ = H⁻¹Aᵀdiag(y - Ax̄) (NumPy)",
        "timing": "best-of-r wall time of one compiled (x_k, J x_k) evaluation by jax.jacrev, compilation excluded",
        "bound_source": "theory.one_step_error_bound (one-step paper Corollary 1, eq. (5)) applied to F^K, k → ∞",
        "N": N, "n": n, "lambda": LAM, "truncate_K": TRUNCATE, "seed": seed, "quick": quick,
        "final_errors": final_errors,
        "settings": results,
        "compile_seconds": progs.compile_seconds,
        "seconds": time.perf_counter() - t_start,
    }
    write_json(out / "weighted_ridge.json", summary, seed=seed, quick=quick)
    return summary


def main(argv=None):
    args = parse_args(parser(__doc__.splitlines()[0]), argv)
    s = run(args.out, quick=args.quick, seed=args.seed)
    print("weighted ridge by gradient descent (one-step paper, Figure 4)")
    print(f"  data: {s['data']}")
    print("  squared Jacobian error ‖J x_k - J_θx̄‖₂² at the last k (and time of that evaluation):")
    for name, rec in s["settings"].items():
        k = rec["k"][-1]
        print(f"  {name} (ρ = {rec['rho']:.5f}, k = {k}, ‖x_k - x̄‖² = {rec['iterate_error_sq'][-1]:.2e}, "
              f"‖J_θx̄‖₂² = {rec['norm_J_bar'] ** 2:.3e})")
        for e, (_, _, label, K) in ESTIMATORS.items():
            extra = ""
            if K is not None:
                extra = (f"   Corollary 1 floor² {rec['corollary1_floor'][e] ** 2:.3e} "
                         f"(error/floor = {rec['final_over_floor'][e]:.3f})")
            print(f"      {label:20s} {rec['jacobian_error_sq'][e][-1]:.3e}  in {rec['time'][e][-1]:.3f} s{extra}")
    print(f"  compilation {s['compile_seconds']:.1f} s (excluded from the time axis); total {s['seconds']:.1f} s")
    print(f"  wrote {Path(args.out) / 'weighted_ridge.png'}, weighted_ridge_vs_k.png and weighted_ridge.json")


if __name__ == "__main__":
    main()

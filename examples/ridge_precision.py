"""Jacobian error versus iterate error: implicit differentiation and unrolling on ridge regression
(jaxopt paper, Blondel et al. 2022, §3, Figure 2, with the bound of Theorem 1).

    x*(θ) = argmin_x f(x, θ) = ‖Φx - y‖² + Σ_i θ_i x_i²,   θ ∈ R^d (one regularization per feature),

Φ, y: the diabetes data (Efron et al. 2004, ``sklearn.datasets.load_diabetes``, 442 × 10), as in
the paper. Gradient descent x_{t+1} = x_t - η∇₁f(x_t, θ), η = 1/L, x_0 = 0. For each t:

* iterate error ‖x_t - x*(θ)‖₂;
* implicit: the Jacobian estimate J(x̂, θ) = -∇²₁f(x̂, θ)⁻¹ ∂₂∇₁f(x̂, θ) at x̂ = x_t (Definition 1,
  optimality map G = ∇₁f), computed by ``algorithms.custom_root(stationarity(f))``;
* unrolling: ∂_θ x_t by forward-mode autodiff through the t steps (``algorithms.run``);

and the error to the closed form ∂x*(θ) = -(ΦᵀΦ + diag θ)⁻¹ diag(x*) in spectral norm.
A spot check compares both with ``algorithms.iterate(mode="implicit"/"autodiff")``.

Theorem 1 (``theory.implicit_jacobian_error_bound``) with A = -∂₁G = -∇²f, B = ∂₂G = 2 diag(x):
α = λ_min(∇²f) = 2 λ_min(ΦᵀΦ + diag θ); γ = 0 (∇²f does not depend on x); β = 2 (‖2 diag(x - x*)‖_op
= 2‖x - x*‖_∞ ≤ 2‖x - x*‖₂); R = ‖2 diag(x*)‖_op = 2‖x*‖_∞, so the bound is (2/α)‖x̂ - x*‖ for
every x̂ (ε = ∞). It is linear: the implicit error should follow it with log-log slope 1.

Writes ``ridge_precision.png`` and ``ridge_precision.json``.
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
from sklearn.datasets import load_diabetes  # noqa: E402

import theory  # noqa: E402
from algorithms import custom_root, gradient_descent, iterate, stationarity  # noqa: E402
from algorithms import run as run_iterations  # noqa: E402

REG = 0.1  # θ_i = 0.1 for every feature (the paper does not state its θ)
#: slopes are fitted where the iterate error is above the rounding floor and below this
FIT_RANGE = (1e-9, 1e-1)


def objective(Phi, y):
    def f(x, theta):
        r = Phi @ x - y
        return r @ r + jnp.sum(theta * x**2)

    return f


def closed_form(Phi, y, theta):
    """x* = (ΦᵀΦ + diag θ)⁻¹Φᵀy and ∂x* = -(ΦᵀΦ + diag θ)⁻¹ diag(x*) (NumPy)."""
    M = Phi.T @ Phi + np.diag(theta)
    x_star = np.linalg.solve(M, Phi.T @ y)
    return M, x_star, -np.linalg.solve(M, np.diag(x_star))


def fitted_slope(iterate_error, jacobian_error, lo=FIT_RANGE[0], hi=FIT_RANGE[1]):
    """Least-squares slope of log(Jacobian error) on log(iterate error), for lo ≤ iterate error ≤ hi."""
    x, y = np.asarray(iterate_error), np.asarray(jacobian_error)
    keep = (x >= lo) & (x <= hi) & (y > 0)
    if keep.sum() < 3:
        return float("nan")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def run(out_dir="out", quick=False, seed=0) -> dict:
    seed, quick = check_run_args(seed, quick)
    out = output_dir(out_dir)
    t_start = time.perf_counter()
    Phi, y = load_diabetes(return_X_y=True)  # deterministic: `seed` is recorded but not used
    d = Phi.shape[1]
    theta = np.full(d, REG)
    M, x_star, J_star = closed_form(Phi, y, theta)
    ev = np.linalg.eigvalsh(2 * M)  # ∇²f = 2(ΦᵀΦ + diag θ)
    mu, L = float(ev[0]), float(ev[-1])
    eta = 1.0 / L
    rho = 1.0 - mu / L
    # t from 1 until ρ^t ≈ 1e-16 (the rounding floor); a geometric grid of t (all t ≤ T are computed)
    T = int(np.ceil(np.log(1e-16) / np.log(rho))) if not quick else int(np.ceil(np.log(1e-11) / np.log(rho)))
    ts = np.unique(np.round(np.geomspace(1, T, 60 if not quick else 25)).astype(int))

    f = objective(jnp.asarray(Phi), jnp.asarray(y))
    G = stationarity(f)
    F = gradient_descent(G, eta)
    x0, th = jnp.zeros(d), jnp.asarray(theta)
    bar = Progress(4, "ridge precision")

    # unrolling: J^AD x_t for every t ≤ T from one forward-mode pass through the trajectory
    traj_fn = jax.jit(lambda t: run_iterations(F, x0, t, T))
    traj = np.asarray(traj_fn(th))  # (T+1, d), row t = x_t
    J_unrolled = np.asarray(jax.jit(jax.jacfwd(lambda t: run_iterations(F, x0, t, T)))(th))  # (T+1, d, d)
    bar.update()

    # implicit: Jacobian estimate J(x̂, θ) at each x̂ = x_t (jaxopt paper, Definition 1)
    at_point = custom_root(G, solve="cholesky")(lambda init, t: init)  # returns x̂; derivative: implicit at x̂
    J_implicit = np.asarray(jax.jit(jax.vmap(lambda xh: jax.jacfwd(lambda t: at_point(xh, t))(th)))(jnp.asarray(traj)))
    bar.update()

    rows = ts
    iterate_error = np.linalg.norm(traj[rows] - x_star, axis=1)
    jac_err = {
        "implicit": np.array([np.linalg.norm(J_implicit[t] - J_star, 2) for t in rows]),
        "unrolling": np.array([np.linalg.norm(J_unrolled[t] - J_star, 2) for t in rows]),
    }

    # Theorem 1 (jaxopt paper) for G = ∇f, constants derived in the module docstring
    alpha, beta, gamma, R = mu, 2.0, 0.0, 2.0 * float(np.max(np.abs(x_star)))
    bound = np.asarray(theory.implicit_jacobian_error_bound(alpha, beta, gamma, R, iterate_error))
    under = jac_err["implicit"] <= bound * (1 + 1e-9) + 1e-12
    slopes = {name: fitted_slope(iterate_error, e) for name, e in jac_err.items()}

    # spot check against algorithms.iterate at two t's (compiled per t)
    spot = {}
    for t in sorted({int(ts[len(ts) // 2]), int(ts[-1])} if not quick else {int(ts[len(ts) // 2])}):
        J_it = {m: np.asarray(jax.jit(jax.jacfwd(lambda s: iterate(F, x0, s, t, mode=m, **kw)))(th))
                for m, kw in (("implicit", {"optimality_fun": G, "solve": "cholesky", "residual_rtol": None}),
                                ("autodiff", {}))}
        spot[str(t)] = {"implicit": float(np.abs(J_it["implicit"] - J_implicit[t]).max()),
                        "autodiff": float(np.abs(J_it["autodiff"] - J_unrolled[t]).max())}
    bar.update()

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.loglog(iterate_error, bound, "k--", lw=1.2,
              label="Theorem 1 bound $(\\beta/\\alpha + \\gamma R/\\alpha^2)\\|\\hat x - x^*\\|$")
    ax.loglog(iterate_error, jac_err["implicit"], "o-", ms=3, color="C2",
              label=f"implicit differentiation (slope {slopes['implicit']:.2f})")
    ax.loglog(iterate_error, jac_err["unrolling"], "s-", ms=3, color="C0",
              label=f"unrolling (slope {slopes['unrolling']:.2f})")
    ax.set_xlabel(r"iterate error $\|x^\star(\theta) - \hat x\|_2$")
    ax.set_ylabel(r"Jacobian error $\|\partial x^\star(\theta) - J\|_2$")
    ax.set_title(f"Ridge regression, diabetes data (442×10), θ = {REG}·1\ngradient descent, step 1/L, t = 1…{T}",
                 fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out / "ridge_precision.png", dpi=110)
    plt.close(fig)
    bar.update()
    bar.close()

    summary = {
        "data": "sklearn.datasets.load_diabetes (442 samples, 10 features), as in the paper",
        "problem": "x*(θ) = argmin ‖Φx - y‖² + Σ θ_i x_i², θ_i = %g" % REG,
        "solver": f"gradient descent, step 1/L = {eta:.6g}, x_0 = 0, t = 1..{T}",
        "norms": "spectral norm for Jacobians, Euclidean for iterates",
        "bound_source": "theory.implicit_jacobian_error_bound (jaxopt paper, Theorem 1)",
        "theorem1_constants": {"alpha": alpha, "beta": beta, "gamma": gamma, "R": R,
                               "C": beta / alpha + gamma * R / alpha**2},
        "hessian_condition_number": L / mu,
        "x_star_norm": float(np.linalg.norm(x_star)),
        "jacobian_star_norm": float(np.linalg.norm(J_star, 2)),
        "rho": rho,
        "t": rows,
        "iterate_error": iterate_error,
        "jacobian_error": jac_err,
        "bound": bound,
        "implicit_under_bound": bool(under.all()),
        "max_implicit_over_bound": float(np.max(jac_err["implicit"] / bound)),
        "fit_range_iterate_error": FIT_RANGE,
        "slopes": slopes,
        "spot_check_vs_iterate_max_abs_diff": spot,
        "seed": seed, "quick": quick,
        "seconds": time.perf_counter() - t_start,
    }
    write_json(out / "ridge_precision.json", summary, seed=seed, quick=quick)
    return summary


def main(argv=None):
    args = parse_args(parser(__doc__.splitlines()[0]), argv)
    s = run(args.out, quick=args.quick, seed=args.seed)
    print("Jacobian error vs iterate error on ridge regression (jaxopt paper, Figure 2)")
    print(f"  {s['data']}; {s['problem']}; {s['solver']} (κ(∇²f) = {s['hessian_condition_number']:.1f})")
    c = s["theorem1_constants"]
    print(f"  Theorem 1: α = {c['alpha']:.4g}, β = {c['beta']:g}, γ = {c['gamma']:g}, R = {c['R']:.4g} → "
          f"‖J(x̂) - ∂x*‖ ≤ {c['C']:.4g} ‖x̂ - x*‖")
    lo, hi = s["fit_range_iterate_error"]
    print(f"  fitted log-log slopes (iterate error in [{lo:g}, {hi:g}]):")
    for name, v in s["slopes"].items():
        print(f"      {name:10s} {v:.3f}")
    print(f"  implicit error under the bound at every t: {s['implicit_under_bound']} "
          f"(max error/bound = {s['max_implicit_over_bound']:.3f})")
    k = len(s["t"]) // 2
    print(f"  at t = {s['t'][k]}: iterate error {s['iterate_error'][k]:.2e}, "
          f"implicit {s['jacobian_error']['implicit'][k]:.2e}, "
          f"unrolling {s['jacobian_error']['unrolling'][k]:.2e}")
    print(f"  agreement with algorithms.iterate (max abs diff): {s['spot_check_vs_iterate_max_abs_diff']}")
    print(f"  {s['seconds']:.1f} s; wrote {Path(args.out) / 'ridge_precision.png'} and ridge_precision.json")


if __name__ == "__main__":
    main()

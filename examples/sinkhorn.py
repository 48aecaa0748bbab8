"""Sinkhorn derivatives converge (slides "(Automatic) Iterative Differentiation", Vaiter 2023;
Pauwels & Vaiter, "The derivatives of Sinkhorn-Knopp converge", SIAM J. Optim. 2023).

Entropic OT between n and m random points of [0, 1]² (squared Euclidean cost C, temperature ε,
uniform b, a = softmax(α)); log-domain Sinkhorn on the column potential,
g_{t+1} = F(g_t, θ) (``algorithms.sinkhorn_map``), plan P_t = P(g_t, θ), with θ = (C, α)
(the cost and the logits of the first marginal: n·m + n parameters, α = 0 is uniform).

F commutes with g ↦ g + c1, so ∂₁F has the eigenvalue 1 and σ_max(∂₁F) = 1 at the solution
(uniform b makes ∂₁F symmetric): the classical "autodiff = implicit" argument needs
σ_max(∂₁F) < 1 and does not apply. Yet the forward-mode autodiff Jacobian dP_t/dθ through t
Sinkhorn steps converges linearly to the implicit Jacobian dP̄/dθ, computed here with
``iterate(sinkhorn_anchored_map, ..., mode="implicit")`` (the anchored map g ↦ F(g) - F(g)ₘ1 has
the same plan and an invertible I - ∂₁F). The script plots ‖dP_t/dθ - dP̄/dθ‖_F and ‖P_t - P̄‖_F
vs t, fits the linear rate, and compares it with λ₂, the second eigenvalue of ∂₁F at the
solution (the rate of Sinkhorn itself). The per-iteration autodiff Jacobians are the forward-mode
(piggyback) recursion run in one scan; at t = T it is checked against ``jax.jacfwd`` of
``iterate(sinkhorn_map, ..., mode="autodiff")``.

Writes ``sinkhorn.png`` and ``sinkhorn.json`` to ``--out``.
"""

from __future__ import annotations

import math
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
from jax import lax  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import algorithms as alg  # noqa: E402

FULL = dict(n=30, m=30, epsilon=0.05)
QUICK = dict(n=8, m=8, epsilon=0.1)
REFERENCE_STEPS = 5000   # anchored Sinkhorn run for the reference fixed point
MAX_STEPS = 2000


def fitted_rate(values, start):
    """exp(slope) of a least-squares fit of log(values) on t over t ≥ start where values are resolved."""
    v = np.asarray(values, dtype=np.float64)
    t = np.arange(len(v))
    keep = (t >= start) & (v > 1e3 * max(v.min(), 1e-300))
    if keep.sum() < 3:
        return float("nan"), []
    slope = np.polyfit(t[keep], np.log(v[keep]), 1)[0]
    return float(np.exp(slope)), [int(t[keep][0]), int(t[keep][-1])]


def run(out_dir="out", quick=False, seed=0) -> dict:
    seed, quick = check_run_args(seed, quick)
    out = output_dir(out_dir)
    t0 = time.perf_counter()
    cfg = QUICK if quick else FULL
    n, m, eps = cfg["n"], cfg["m"], cfg["epsilon"]
    rng = np.random.default_rng(seed)
    X, Y = rng.uniform(0, 1, (n, 2)), rng.uniform(0, 1, (m, 2))
    C = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    b = jnp.full(m, 1.0 / m)
    theta = {"cost": jnp.asarray(C), "logits_a": jnp.zeros(n)}
    flat0, unravel = ravel_pytree(theta)
    d = flat0.size

    def ot(th):
        return alg.EntropicOT(cost=th["cost"], a=jax.nn.softmax(th["logits_a"]), b=b, epsilon=jnp.asarray(eps))

    F = lambda g, th: alg.sinkhorn_map(g, ot(th))  # noqa: E731
    F_anchored = lambda g, th: alg.sinkhorn_anchored_map(g, ot(th))  # noqa: E731
    plan = lambda g, th: alg.sinkhorn_plan(g, ot(th)).ravel()  # noqa: E731
    g0 = jnp.zeros(m)
    prog = Progress(3, "sinkhorn")

    # Reference: the library's implicit Jacobian of the plan at the anchored fixed point.
    @jax.jit
    def reference(flat):
        g_bar = alg.iterate(F_anchored, g0, unravel(flat), REFERENCE_STEPS, mode="implicit")
        return g_bar, plan(g_bar, unravel(flat))

    g_bar, P_bar = map(np.asarray, reference(flat0))
    JP_bar = np.asarray(jax.jit(jax.jacfwd(lambda f: reference(f)[1]))(flat0))
    residual = float(np.max(np.abs(np.asarray(F_anchored(g_bar, theta)) - g_bar)))
    D1F = np.asarray(jax.jacfwd(F, 0)(jnp.asarray(g_bar), theta))      # ∂₁F at the solution (m × m)
    sv = np.linalg.svd(D1F, compute_uv=False)
    eig = np.sort(np.abs(np.linalg.eigvals(D1F)))[::-1]
    lam2 = float(eig[1])
    rho_anchored = float(np.max(np.abs(np.linalg.eigvals(
        np.asarray(jax.jacfwd(F_anchored, 0)(jnp.asarray(g_bar), theta))))))
    T = int(min(MAX_STEPS, math.ceil(math.log(1e-15) / math.log(lam2)) + 50))
    prog.update()

    # Forward-mode autodiff through t steps = the piggyback recursion J_t = ∂₁F J_{t-1} + ∂₂F.
    @jax.jit
    def ad_curves(flat):
        th = unravel(flat)
        eye = jnp.eye(d)

        def tangents(g, Jg):  # dP_t/dθ and the next (g, Jg), by JVPs along every θ direction
            push = lambda u, e: jax.jvp(lambda gg, ff: F(gg, unravel(ff)), (g, flat), (u, e))[1]  # noqa: E731
            pplan = lambda u, e: jax.jvp(lambda gg, ff: plan(gg, unravel(ff)), (g, flat), (u, e))[1]  # noqa: E731
            return (jax.vmap(pplan, in_axes=(1, 1), out_axes=1)(Jg, eye),
                    jax.vmap(push, in_axes=(1, 1), out_axes=1)(Jg, eye))

        def body(carry, _):
            g, Jg = carry
            JP, Jg_next = tangents(g, Jg)
            err = jnp.linalg.norm(JP - JP_bar)
            perr = jnp.linalg.norm(plan(g, th) - P_bar)
            return (F(g, th), Jg_next), (err, perr)

        (gT, JgT), (errs, perrs) = lax.scan(body, (g0, jnp.zeros((m, d))), None, length=T + 1)
        return errs, perrs, tangents(gT, JgT)[0], gT

    # errs[t] is the error of P_t, t = 0..T (the last carry holds g_{T+1}; P_T uses g_T)
    errs, perrs, JP_T, _ = map(np.asarray, ad_curves(flat0))
    prog.update()

    # The library: forward-mode autodiff of iterate(..., mode="autodiff") at t = T.
    JP_lib = np.asarray(jax.jit(jax.jacfwd(
        lambda f: plan(alg.iterate(F, g0, unravel(f), T, mode="autodiff"), unravel(f))))(flat0))
    prog.update()
    prog.close()

    rate, window = fitted_rate(errs, start=max(5, T // 10))
    plan_rate, _ = fitted_rate(perrs, start=max(5, T // 10))
    final_error = float(np.linalg.norm(JP_lib - JP_bar))
    ref_norm = float(np.linalg.norm(JP_bar))

    plt = pyplot()
    fig, ax = plt.subplots(1, 1, figsize=(6.5, 4.5))
    ts = np.arange(T + 1)
    pos = lambda v: np.where(np.asarray(v) > 0, v, np.nan)  # noqa: E731
    ax.semilogy(ts, pos(errs), label=r"autodiff: $\|dP_t/d\theta - d\bar P/d\theta\|_F$")
    ax.semilogy(ts, pos(perrs), "--", label=r"$\|P_t - \bar P\|_F$")
    if window:
        a0 = errs[window[0]]
        tt = np.arange(window[0], window[1] + 1)
        ax.semilogy(tt, a0 * rate ** (tt - window[0]), "k:", lw=1.2, label=f"fitted rate {rate:.4f}")
    ax.set_xlabel("Sinkhorn iteration t")
    ax.set_ylabel("error (Frobenius)")
    ax.set_title(f"Sinkhorn (n=m={n}, ε={eps}): autodiff → implicit although σ_max(∂₁F) = {sv[0]:.3f}\n"
                 f"λ₂(∂₁F) = {lam2:.4f}, fitted rate of the derivative error = {rate:.4f}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "sinkhorn.png", dpi=110)
    plt.close(fig)

    summary = {
        "fitted_rate": rate,
        "final_error": final_error,
        "final_relative_error": final_error / ref_norm,
        "jacobian_error": errs,
        "plan_error": perrs,
        "plan_fitted_rate": plan_rate,
        "fit_window": window,
        "iterations": T,
        "sigma_max_d1F_at_solution": float(sv[0]),
        "singular_values_d1F_top3": sv[:3],
        "lambda2_d1F": lam2,
        "anchored_map_spectral_radius": rho_anchored,
        "reference": {"method": "iterate(sinkhorn_anchored_map, mode='implicit'), jax.jacfwd of the plan",
                      "steps": REFERENCE_STEPS, "fixed_point_residual": residual, "jacobian_frobenius_norm": ref_norm},
        "scan_vs_iterate_api_max_abs": float(np.max(np.abs(JP_lib - JP_T))),
        "problem": {"n": n, "m": m, "epsilon": eps, "cost": "squared Euclidean, points uniform in [0,1]^2",
                    "theta": "cost matrix C (n*m) and logits of a (n); a = softmax, b uniform", "parameters": d},
        "seconds": time.perf_counter() - t0,
    }
    write_json(out / "sinkhorn.json", summary, seed=seed, quick=quick)
    return summary


def main(argv=None):
    args = parse_args(parser(__doc__.splitlines()[0]), argv)
    s = run(args.out, quick=args.quick, seed=args.seed)
    p = s["problem"]
    print(f"Sinkhorn (n={p['n']}, m={p['m']}, epsilon={p['epsilon']}), "
          "derivative of the plan in θ = (cost, logits of a), "
          f"{p['parameters']} parameters, {s['iterations']} iterations")
    print(f"  at the solution: sigma_max(d1F) = {s['sigma_max_d1F_at_solution']:.12f}, "
          f"lambda2(d1F) = {s['lambda2_d1F']:.6f}")
    print(f"  autodiff Jacobian error: {s['jacobian_error'][0]:.2e} at t = 0 -> {s['final_error']:.2e} "
          f"at t = {s['iterations']} "
          f"(relative {s['final_relative_error']:.1e})")
    print(f"  fitted linear rate {s['fitted_rate']:.6f} on t in {s['fit_window']} "
          f"(plan error rate {s['plan_fitted_rate']:.6f})")
    print(f"  scan recursion vs jax.jacfwd(iterate(mode='autodiff')): {s['scan_vs_iterate_api_max_abs']:.1e}")
    print(f"  wrote {Path(args.out) / 'sinkhorn.png'} and sinkhorn.json ({s['seconds']:.1f} s)")


if __name__ == "__main__":
    main()

"""Time of one hypergradient vs problem size (one-step paper, Figure 3): autodiff, implicit, one-step.

For two fast solvers, the time of (solve + gradient of θ ↦ ‖x(θ)‖²/2) with each estimator of
``algorithms.iterate`` is compared with the time of the solve alone ("None" in the paper):

* interior-point QP (paper eq. (12)): min ½xᵀQx + qᵀx s.t. Ax = θ, Gx ≤ h, θ = b ∈ ℝᵐ;
  Q = MᵀM, M, A, G uniform in [-1, 1] (paper, Appendix B.1), m = n/4, p = n/2; q uniform in
  [-1, 1] and h = G x_f + U(0.1, 1) for a random x_f (strictly feasible; the paper does not say
  how it draws q and h). Implicit: KKT root form ``qp_optimality`` (dense LU).
* Newton on logistic regression (paper eq. (11)), θ = sample weights ∈ ℝᴺ, n = N/10, data as in
  ``examples/newton_logistic.py``. Implicit: root form ∇f = 0 (Cholesky; paper Remark 3).

Every estimator runs the same number of steps K = k* + 1, where k* is the first step at which
the library's own stopping test holds (``newton_solve``: ‖∇f‖ ≤ 1e-10; ``qp_solve``: residuals
and μ ≤ 1e-10) and the iterate has stopped moving (‖x_k - x_{k-1}‖_∞ ≤ 1e-10(1 + ‖x_k‖_∞)),
i.e. the solve is run to convergence and one more step is the one differentiated.
Each function is jitted, compiled and warmed up, then the functions are timed side by side
(interleaved, ``block_until_ready``, enough inner calls for ≥ 10 ms per sample); the median over
repeats is reported with its interquartile range (the paper shows mean ± std over 10 runs). The
x-axis is the number of numbers describing the problem, as in the paper: (n+1)N for logistic
regression, n(n+1) + (n+1)m + (n+1)p for the QP. Divergence checks are off (check_finite=False)
for every function alike.

Writes ``timing.png`` and ``timing.json`` to ``--out``.
"""

from __future__ import annotations

import dataclasses
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
import jax.flatten_util  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import algorithms as alg  # noqa: E402
from examples.newton_logistic import make_data  # noqa: E402

PROBLEMS = ("qp", "newton_logistic")
TITLES = {"qp": "interior-point QP (θ = b)", "newton_logistic": "Newton, logistic regression (θ = weights)"}
ESTIMATORS = ("autodiff", "implicit", "one_step")
LABELS = {"solve": "None (solve only)", "autodiff": "Autodiff", "implicit": "Implicit", "one_step": "One step"}
FULL_SIZES = {"qp": [10, 20, 40, 80, 160], "newton_logistic": [100, 200, 400, 800, 1600]}
QUICK_SIZES = {"qp": [8], "newton_logistic": [60]}  # one tiny size each: compilation dominates
LAM = 1.0
TOL = 1e-10
MAX_STEPS = 100


def _qp_problem(n, rng):
    m, p = max(1, n // 4), max(1, n // 2)
    M = rng.uniform(-1, 1, (n, n))
    A, G = rng.uniform(-1, 1, (m, n)), rng.uniform(-1, 1, (p, n))
    x_f = rng.uniform(-1, 1, n)
    qp = alg.QP(*map(jnp.asarray, (M.T @ M, rng.uniform(-1, 1, n), A, A @ x_f, G, G @ x_f + rng.uniform(0.1, 1, p))))
    ip = alg.interior_point_map()
    F = lambda w, b: ip(w, dataclasses.replace(qp, b=b))  # noqa: E731
    opt = lambda w, b: alg.qp_optimality(w, dataclasses.replace(qp, b=b))  # noqa: E731
    scale = 1.0 + float(jnp.max(jnp.abs(jnp.concatenate([qp.q, qp.b, qp.h]))))

    def converged(w):  # qp_solve's stopping test
        rd, rp, ri, mu = alg.qp_residuals(w, qp)
        res = jnp.max(jnp.abs(jnp.concatenate([rd, rp, ri])))
        return (res <= TOL * scale) & (mu <= max(TOL, 2e-12))

    return dict(F=F, x0=alg.qp_initial_state(qp), theta=qp.b, implicit=dict(optimality_fun=opt, solve="lu"),
                primal=lambda w: w.x, converged=converged, dims=dict(n=n, m=m, p=p),
                params=n * (n + 1) + (n + 1) * m + (n + 1) * p)


def _logistic_problem(N, rng):
    n = max(2, N // 10)
    A, y = make_data(N, n, int(rng.integers(2**31)))
    f = alg.logistic_regression_objective(A, y, LAM)
    G = alg.stationarity(f)
    theta = jnp.ones(N)
    return dict(F=alg.newton_map(f), x0=jnp.zeros(n), theta=theta,
                implicit=dict(optimality_fun=G, solve="cholesky"), primal=lambda x: x,
                converged=lambda x: jnp.linalg.norm(G(x, theta)) <= TOL,  # newton_solve's stopping test
                dims=dict(N=N, n=n), params=(n + 1) * N)


SETUP = {"qp": _qp_problem, "newton_logistic": _logistic_problem}


def _steps_to_converge(P):
    """First k where the library's stopping test holds AND the iterate has stopped moving,
    ‖x_k - x_{k-1}‖_∞ ≤ 1e-10 (1 + ‖x_k‖_∞): qp_solve's test alone can fire while a
    complementary pair is still ~1e-9 from the map's fixed point, where ∂_θF changes fast."""
    def step(x):
        x1 = P["F"](x, P["theta"])
        flat, flat1 = (jax.flatten_util.ravel_pytree(v)[0] for v in (x, x1))
        moved = jnp.max(jnp.abs(flat1 - flat)) <= 1e-10 * (1 + jnp.max(jnp.abs(flat1)))
        return x1, P["converged"](x1) & moved

    step = jax.jit(step)
    x = P["x0"]
    for k in range(1, MAX_STEPS + 1):
        x, done = step(x)
        if bool(done):
            return k
    raise RuntimeError(f"the solver did not converge in {MAX_STEPS} steps ({P['dims']})")


def _functions(P, K):
    F, x0, primal = P["F"], P["x0"], P["primal"]

    def hypergradient(mode, **kw):
        return jax.jit(jax.grad(
            lambda th: 0.5 * jnp.sum(primal(alg.iterate(F, x0, th, K, mode=mode, check_finite=False, **kw)) ** 2)))

    return {"solve": jax.jit(lambda th: primal(alg.iterate(F, x0, th, K, check_finite=False))),
            "autodiff": hypergradient("autodiff"),
            "implicit": hypergradient("implicit", **P["implicit"]),
            "one_step": hypergradient("one_step")}


def _time_side_by_side(fns, theta, repeats, min_sample=0.01):
    compile_s, inner = {}, {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn(theta))
        compile_s[name] = time.perf_counter() - t0
        for _ in range(2):  # warm-up
            jax.block_until_ready(fn(theta))
        t0 = time.perf_counter()
        jax.block_until_ready(fn(theta))
        inner[name] = max(1, math.ceil(min_sample / max(time.perf_counter() - t0, 1e-7)))
    samples = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
            fn, n_in = fns[name], inner[name]
            t0 = time.perf_counter()
            for _ in range(n_in):
                out = fn(theta)
            jax.block_until_ready(out)
            samples[name].append((time.perf_counter() - t0) / n_in)
    return samples, compile_s, inner


def run(out_dir="out", quick=False, seed=0) -> dict:
    seed, quick = check_run_args(seed, quick)
    out = output_dir(out_dir)
    t_start = time.perf_counter()
    sizes = QUICK_SIZES if quick else FULL_SIZES
    repeats = 5 if quick else 15
    rng = np.random.default_rng(seed)
    prog = Progress(sum(len(v) for v in sizes.values()), "timing")
    results = {}
    for prob in PROBLEMS:
        rows = []
        for size in sizes[prob]:
            P = SETUP[prob](size, rng)
            k_star = _steps_to_converge(P)
            K = k_star + 1
            fns = _functions(P, K)
            samples, compile_s, inner = _time_side_by_side(fns, P["theta"], repeats)
            grads = {e: np.asarray(fns[e](P["theta"])) for e in ESTIMATORS}
            med = {k: float(np.median(v)) for k, v in samples.items()}
            rows.append({
                "size": P["dims"], "params": P["params"], "steps_to_converge": k_star, "steps": K,
                "median_s": med,
                "q25_s": {k: float(np.percentile(v, 25)) for k, v in samples.items()},
                "q75_s": {k: float(np.percentile(v, 75)) for k, v in samples.items()},
                "mean_s": {k: float(np.mean(v)) for k, v in samples.items()},
                "std_s": {k: float(np.std(v)) for k, v in samples.items()},
                "ratio_to_solve": {e: med[e] / med["solve"] for e in ESTIMATORS},
                "one_step_minus_implicit_max_abs": float(np.max(np.abs(grads["one_step"] - grads["implicit"]))),
                "autodiff_minus_implicit_max_abs": float(np.max(np.abs(grads["autodiff"] - grads["implicit"]))),
                "hypergradient_max_abs": float(np.max(np.abs(grads["implicit"]))),
                "compile_s": compile_s, "inner_calls": inner, "repeats": repeats,
            })
            prog.update()
        results[prob] = rows
    prog.close()

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex="col")
    for j, prob in enumerate(PROBLEMS):
        rows = results[prob]
        x = [r["params"] for r in rows]
        for name, style in zip(("solve", *ESTIMATORS), ("k-D", "C0-o", "C1-s", "C2-^")):
            med = [r["median_s"][name] for r in rows]
            axes[0, j].loglog(x, med, style, ms=4, label=LABELS[name])
            axes[0, j].fill_between(x, [r["q25_s"][name] for r in rows], [r["q75_s"][name] for r in rows],
                                    color=style[:2] if style[0] == "C" else "k", alpha=0.2)
            if name != "solve":
                axes[1, j].loglog(x, [r["ratio_to_solve"][name] for r in rows], style, ms=4, label=LABELS[name])
        axes[1, j].axhline(1.0, color="k", lw=0.8)
        axes[0, j].set_title(f"{TITLES[prob]}\nmax |one step - implicit| = "
                             f"{max(r['one_step_minus_implicit_max_abs'] for r in rows):.1e}", fontsize=9)
        axes[0, j].set_ylabel("time of solve + hypergradient (s)\nmedian, IQR shaded")
        axes[1, j].set_ylabel("ratio to solve alone")
        axes[1, j].set_xlabel("number of problem parameters")
        axes[0, j].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "timing.png", dpi=110)
    plt.close(fig)

    summary = {
        "ratios_at_largest": {p: results[p][-1]["ratio_to_solve"] for p in PROBLEMS},
        "agreement": {p: max(r["one_step_minus_implicit_max_abs"] for r in results[p]) for p in PROBLEMS},
        "results": results,
        "device": str(jax.devices()[0]),
        "note": "ratios = median(solve + hypergradient) / median(solve alone), same K steps, measured side by side",
        "seconds": time.perf_counter() - t_start,
    }
    write_json(out / "timing.json", summary, seed=seed, quick=quick)
    return summary


def main(argv=None):
    args = parse_args(parser(__doc__.splitlines()[0]), argv)
    s = run(args.out, quick=args.quick, seed=args.seed)
    for prob in PROBLEMS:
        print(f"{TITLES[prob]}: time of solve + hypergradient / time of solve "
              f"(median of {s['results'][prob][0]['repeats']})")
        print("      params  steps   solve (ms)   autodiff   implicit   one-step   |OS - ID|")
        for r in s["results"][prob]:
            q = r["ratio_to_solve"]
            print(f"  {r['params']:10d}  {r['steps']:5d}  {1e3 * r['median_s']['solve']:11.3f}  {q['autodiff']:9.2f}  "
                  f"{q['implicit']:9.2f}  {q['one_step']:9.2f}  {r['one_step_minus_implicit_max_abs']:.1e}")
    print(f"  device: {s['device']}; wrote {Path(args.out) / 'timing.png'} and timing.json ({s['seconds']:.1f} s)")


if __name__ == "__main__":
    main()

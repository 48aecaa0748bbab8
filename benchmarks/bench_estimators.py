"""Cost of a hypergradient relative to the solve (one-step paper, Figure 3).

For Newton's method on weighted ℓ2-regularized logistic regression (eq. (11), θ = sample weights)
and the interior-point QP (eq. (12), θ = b), at growing sizes, we time

    solve:     θ ↦ ½‖x_k(θ)‖²                                  (no derivative)
    estimator: θ ↦ ∇_θ ½‖x_k(θ)‖² via iterate(..., mode=...)  (solve + hypergradient)

and print time(estimator) / time(solve), measured side by side in one run (jit, warm-up,
block_until_ready; interleaved rounds with the ratio formed within each round, median and
interquartile range over rounds, wall clock as the paper; see ``_timing.py``). Implicit uses the
cheap root form (one-step paper, Remark 3): G = ∇f for Newton, the KKT map for the QP. Target:
one-step and implicit within 1.5×
of the solve at the largest size. The machine is shared: read the ratios, not the seconds.

Run: python benchmarks/bench_estimators.py [--quick]
"""

import dataclasses
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import compare  # noqa: E402

from algorithms import (  # noqa: E402
    QP,
    interior_point_map,
    iterate,
    logistic_regression_hessian,
    logistic_regression_objective,
    newton_map,
    qp_initial_state,
    qp_optimality,
    stationarity,
)

MODES = ("one_step", "implicit", "autodiff")


def ratios(F, x0, theta, steps, implicit_kw, rounds, out):
    def loss(th, mode=None, **kw):
        x = iterate(F, x0, th, steps) if mode is None else iterate(F, x0, th, steps, mode=mode, **kw)
        x = x.x if hasattr(x, "x") else x
        return 0.5 * jnp.sum(x ** 2)

    funs = {"solve": jax.jit(loss)}
    for mode in MODES:
        kw = implicit_kw if mode == "implicit" else {}
        funs[mode] = jax.jit(jax.grad(lambda th, mode=mode, kw=kw: loss(th, mode, **kw)))
    timing = compare({name: (lambda f=f: f(theta)) for name, f in funs.items()}, "solve", rounds=rounds)
    row = {"solve_ms": timing["solve"]["ms"]}
    row.update({mode: timing[mode] for mode in MODES})
    grads = {mode: funs[mode](theta) for mode in ("one_step", "implicit")}
    row["|os - imp|"] = float(jax.tree_util.tree_reduce(
        max, jax.tree_util.tree_map(lambda a, b: jnp.max(jnp.abs(a - b)), grads["one_step"], grads["implicit"])))
    out.append(row)
    return row


def logistic_problem(N, n, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice([-1.0, 1.0], size=N)
    A = np.concatenate([np.ones((N, 1)), rng.normal(size=(N, n - 1)) + 0.5 * labels[:, None]], axis=1)
    f = logistic_regression_objective(A, labels, 1.0)
    H = logistic_regression_hessian(A, labels, 1.0)
    return newton_map(f, hessian=H), jnp.zeros(n), jnp.ones(N), dict(optimality_fun=stationarity(f), solve="cholesky")


def qp_problem(n, seed=0):
    rng = np.random.default_rng(seed)
    m, p = max(1, n // 4), max(1, n // 2)
    M = rng.uniform(-1, 1, (n, n))
    qp = QP(Q=jnp.asarray(M.T @ M + 1e-3 * np.eye(n)), q=jnp.asarray(rng.uniform(-1, 1, n)),
            A=jnp.asarray(rng.uniform(-1, 1, (m, n))), b=jnp.asarray(rng.uniform(-1, 1, m)),
            G=jnp.asarray(rng.uniform(-1, 1, (p, n))), h=jnp.asarray(rng.uniform(-1, 1, p)))
    F = interior_point_map()

    def F_b(w, b):  # θ = b, the right-hand side of Ax = b
        return F(w, dataclasses.replace(qp, b=b))

    opt = lambda w, b: qp_optimality(w, dataclasses.replace(qp, b=b))  # noqa: E731
    return F_b, qp_initial_state(qp), qp.b, dict(optimality_fun=opt, solve="lu")


def show(title, header, rows):
    print(f"\n{title}")
    print(f"{header:>14} {'solve [ms]':>10} " + " ".join(f"{m + ' × [IQR]':>22}" for m in MODES) + f" {'|os-imp|':>9}")
    for label, row in rows:
        print(f"{label:>14} {row['solve_ms']:10.2f} "
              + " ".join(f"{row[m]['ratio']:9.2f} [{row[m]['q25']:.2f}, {row[m]['q75']:.2f}]" for m in MODES)
              + f" {row['|os - imp|']:9.1e}")


def main(quick=False):
    rounds = 3 if quick else 15
    sizes = [(200, 10), (1000, 40), (4000, 100)] if not quick else [(200, 10), (1000, 40)]
    rows, out = [], []
    for N, n in sizes:
        F, x0, th, kw = logistic_problem(N, n)
        rows.append((f"N={N},n={n}", ratios(F, x0, th, 15, kw, rounds, out)))
    show("Newton, logistic regression (15 steps): time(solve + hypergradient) / time(solve)",
         "size", rows)
    rows = []
    for n in ([20, 60, 150] if not quick else [20, 60]):
        F, w0, b, kw = qp_problem(n)
        rows.append((f"n={n}", ratios(F, w0, b, 25, kw, rounds, out)))
    show("Interior-point QP (25 steps), θ = b: time(solve + hypergradient) / time(solve)", "size", rows)
    print("\ntarget: one_step and implicit ≤ 1.5 (wall clock, as the paper) at the largest size; "
          "autodiff for reference")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)

"""Implicit differentiation: ours (algorithms.custom_root) vs jaxopt.implicit_diff.custom_root.

Same solver, same optimality map, same linear-solver family on each problem; we compare the
hypergradient values (must agree to 1e-9) and the time of jit(grad) (interleaved rounds, ratio
ours / jaxopt formed within each round, median and interquartile range; see ``_timing.py``;
target ≤ 1). Ours runs its run-time checks (conditioning of ∂₁G, Krylov convergence) by
default; the ``checks=False`` column drops them, as jaxopt does not have them:

- ridge:    G = ∇₁f (stationarity), θ = per-feature penalties, CG on the Hessian;
- lasso:    G = prox-grad fixed point residual (jaxopt paper eq. (7)), θ = λ, dense LU;
- logistic: G = ∇₁f, θ = sample weights, CG.

jaxopt is only used here (``pip install jaxopt``); the script exits 0 with a message without it.
Run: python benchmarks/bench_vs_jaxopt.py
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import compare  # noqa: E402

from algorithms import custom_root, proximal_gradient  # noqa: E402


def problems(n_samples=400, n_features=60, seed=0):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.normal(size=(n_samples, n_features)) / np.sqrt(n_samples))
    y = jnp.asarray(X @ rng.normal(size=n_features) + 0.1 * rng.normal(size=n_samples))
    labels = jnp.sign(y)
    L = float(np.linalg.norm(np.asarray(X), 2)) ** 2

    ridge_f = lambda x, lam: 0.5 * jnp.sum((X @ x - y) ** 2) + 0.5 * jnp.sum(lam * x ** 2)  # noqa: E731

    def ridge_solver(init, lam):
        return jnp.linalg.solve(X.T @ X + jnp.diag(lam), X.T @ y)

    def soft(v, lam, scaling=1.0):
        return jnp.sign(v) * jnp.maximum(jnp.abs(v) - lam * scaling, 0.0)

    lasso_f = lambda x, _: 0.5 * jnp.sum((X @ x - y) ** 2)  # noqa: E731
    lasso_G = proximal_gradient(lasso_f, soft, stepsize=1.0 / L)
    lasso_G2 = lambda x, lam: lasso_G(x, (None, lam))  # noqa: E731

    def lasso_solver(init, lam):
        step = lambda _, x: soft(x - X.T @ (X @ x - y) / L, lam / L)  # noqa: E731
        return jax.lax.fori_loop(0, 2000, step, init)

    logi_f = lambda x, w: jnp.sum(w * jnp.logaddexp(0.0, -labels * (X @ x))) + 0.5 * jnp.sum(x ** 2)  # noqa: E731

    def logi_solver(init, w):
        g = jax.grad(logi_f)
        Hf = jax.hessian(logi_f)
        return jax.lax.fori_loop(0, 20, lambda _, x: x - jnp.linalg.solve(Hf(x, w), g(x, w)), init)

    x0 = jnp.zeros(n_features)
    return [
        ("ridge", jax.grad(ridge_f), ridge_solver, jnp.full(n_features, 0.1), x0, "cg"),
        ("lasso", lasso_G2, lasso_solver, jnp.asarray(0.05), x0, "lu"),
        ("logistic", jax.grad(logi_f), logi_solver, jnp.ones(n_samples), x0, "cg"),
    ]


def main():
    try:
        import jaxopt
        from jaxopt import linear_solve
    except ImportError:
        print("jaxopt is not installed: nothing to compare (pip install jaxopt). Exiting.")
        return 0
    theirs_solve = {"cg": linear_solve.solve_cg, "lu": linear_solve.solve_lu}
    print(f"{'problem':>9} {'solver':>6} {'max |Δgrad|':>12} {'ours [ms]':>10} {'jaxopt [ms]':>12} "
          f"{'ours/jaxopt':>12} {'(IQR over rounds)':>18} {'checks=False':>14} {'(IQR)':>12}")
    ok = True
    for name, G, solver, theta, x0, solve in problems():
        ours = custom_root(G, solve=solve, tol=1e-12)(solver)
        bare = custom_root(G, solve=solve, tol=1e-12, checks=False)(solver)
        jo = jaxopt.implicit_diff.custom_root(
            G, solve=lambda mv, b: theirs_solve[solve](mv, b, **({"tol": 1e-12} if solve == "cg" else {})))(solver)
        g_ours = jax.jit(jax.grad(lambda th: 0.5 * jnp.sum(ours(x0, th) ** 2)))
        g_jo = jax.jit(jax.grad(lambda th: 0.5 * jnp.sum(jo(x0, th) ** 2)))
        g_bare = jax.jit(jax.grad(lambda th: 0.5 * jnp.sum(bare(x0, th) ** 2)))
        diff = float(jnp.max(jnp.abs(g_ours(theta) - g_jo(theta))))
        diff = max(diff, float(jnp.max(jnp.abs(g_bare(theta) - g_jo(theta)))))
        t = compare({"ours": lambda: g_ours(theta), "bare": lambda: g_bare(theta), "jaxopt": lambda: g_jo(theta)},
                    "jaxopt", rounds=21)
        ok &= diff <= 1e-9
        print(f"{name:>9} {solve:>6} {diff:12.1e} {t['ours']['ms']:10.3f} {t['jaxopt']['ms']:12.3f} "
              f"{t['ours']['ratio']:12.2f}       [{t['ours']['q25']:.2f}, {t['ours']['q75']:.2f}] "
              f"{t['bare']['ratio']:13.2f}  [{t['bare']['q25']:.2f}, {t['bare']['q75']:.2f}]")
    print("values agree to 1e-9" if ok else "VALUES DISAGREE beyond 1e-9")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

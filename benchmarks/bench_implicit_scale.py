"""Implicit differentiation at scale: the default solver, the support-restricted lasso, cheap checks.

Every number is a ratio of wall times measured side by side in one run (interleaved rounds,
ratio formed within each round, median [IQR]; see ``_timing.py``):

1. threshold: the linear-solve part of the implicit hypergradient (jit(grad), the solver
   returns a precomputed x̄) on a matrix-free ridge operator H v = Xᵀ(X v) + θ∘v, dense LU vs
   matrix-free CG and GMRES for n = 8 … 512; the smallest n where LU is slower than both is the
   measured crossover behind ``algorithms.DENSE_THRESHOLD``.
2. ridge (matrix-free, n = 2000) and FFT deconvolution (n = 4000): default
   ``iterate(mode="implicit")`` hypergradient vs jaxopt ``custom_root`` + CG with the same
   forward iterations (target ≤ 1.1), and the temporary memory of both (O(n) expected).
3. lasso, 20 000 features × 200 samples, support ≈ 50: restricted implicit hypergradient /
   the forward solve (target ≤ 1.2), vs jaxopt's normal CG on the full system (target ≥ 10×
   faster), and the distance to the closed form -(X_Sᵀ X_S)⁻¹ sign(w_S) (target ≤ 1e-10).
4. deep-equilibrium fixed point x = tanh(W x + U θ), state 1000: default vs jaxopt
   ``custom_fixed_point`` + GMRES (target ≤ 1.2).
5. checks: 3000 forward-backward lasso steps with the divergence check on / off, under jit and
   eagerly (target < 5 %).

jaxopt is optional (``pip install jaxopt``): without it the comparisons are skipped with a message.
``--quick`` uses smaller sizes and fewer rounds. Run: python benchmarks/bench_implicit_scale.py
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import compare  # noqa: E402

import algorithms  # noqa: E402
from algorithms import CG, GMRES, LU, custom_fixed_point, implicit_plan, iterate  # noqa: E402

try:
    import jaxopt
    from jaxopt import linear_solve as jlin
except ImportError:  # the comparisons are optional
    jaxopt = None


def _fmt(r, name):
    return f"{r[name]['ratio']:.2f} [{r[name]['q25']:.2f}, {r[name]['q75']:.2f}]"


def _temp(fun, *args):
    return fun.lower(*args).compile().memory_analysis().temp_size_in_bytes


# ---------------------------------------------------------------------------------------------
def threshold(sizes, rounds):
    print("\n1. dense LU vs matrix-free, linear-solve part of jit(grad) of the implicit hypergradient")
    print(f"{'n':>6} {'LU [ms]':>9} {'CG/LU':>18} {'GMRES/LU':>18}")
    rng = np.random.default_rng(0)
    crossover = None
    for n in sizes:
        X = jnp.asarray(rng.normal(size=(2 * n, n)) / np.sqrt(2 * n))
        y = jnp.asarray(rng.normal(size=2 * n))
        th = jnp.linspace(0.5, 2.0, n)
        xbar = jnp.linalg.solve(X.T @ X + jnp.diag(th), X.T @ y)
        T = lambda x, t: x - 0.2 * (X.T @ (X @ x - y) + t * x)  # noqa: E731  (I - ∂T = 0.2 H)

        def grad_of(solve):
            sol = custom_fixed_point(T, solve=solve, tol=1e-10)(lambda init, t: xbar + 0.0 * t)
            return jax.jit(jax.grad(lambda t: jnp.sum(sol(jnp.zeros(n), t) ** 2)))

        funs = {"lu": grad_of(LU()), "cg": grad_of(CG()), "gmres": grad_of(GMRES())}
        r = compare({k: (lambda f=f: f(th)) for k, f in funs.items()}, "lu", rounds=rounds)
        print(f"{n:6d} {r['lu']['ms']:9.3f} {_fmt(r, 'cg'):>18} {_fmt(r, 'gmres'):>18}")
        if crossover is None and r["cg"]["ratio"] < 1 and r["gmres"]["ratio"] < 1:
            crossover = n
    print(f"   crossover (first n where LU is slower than CG and GMRES): {crossover}; "
          f"algorithms.DENSE_THRESHOLD = {algorithms.DENSE_THRESHOLD}")


# ---------------------------------------------------------------------------------------------
def _vs_jaxopt(label, F, grad_f, x0, theta, steps, rounds, jaxopt_solve):
    """Default iterate(mode="implicit") vs jaxopt custom_root(∇f) with the same forward loop."""
    ours = jax.jit(jax.grad(lambda t: jnp.sum(iterate(F, x0, t, steps, mode="implicit") ** 2)))
    plan = implicit_plan(F, x0, theta)
    funs = {"ours": lambda: ours(theta)}
    if jaxopt is not None:
        def forward(init, t):
            return jax.lax.fori_loop(0, steps, lambda _, x: F(x, t), init)

        jo = jaxopt.implicit_diff.custom_root(grad_f, solve=jaxopt_solve)(forward)
        theirs = jax.jit(jax.grad(lambda t: jnp.sum(jo(x0, t) ** 2)))
        funs["jaxopt"] = lambda: theirs(theta)
        diff = float(jnp.max(jnp.abs(ours(theta) - theirs(theta))) / jnp.max(jnp.abs(theirs(theta))))
    r = compare(funs, "jaxopt" if jaxopt is not None else "ours", rounds=rounds)
    mem = _temp(ours, theta)
    if jaxopt is None:
        print(f"{label}: ours {r['ours']['ms']:.2f} ms, temp {mem / 2**20:.2f} MiB ({plan['solver']}); "
              "jaxopt not installed: no comparison")
        return
    print(f"{label}: ours/jaxopt {_fmt(r, 'ours')} ({r['ours']['ms']:.2f} vs {r['jaxopt']['ms']:.2f} ms), "
          f"temp memory {mem / 2**20:.2f} MiB vs {_temp(theirs, theta) / 2**20:.2f} MiB, solver {plan['solver']}, "
          f"relative Δgrad {diff:.1e}")


def ridge(n, rounds):
    rng = np.random.default_rng(1)
    m = n // 2
    X = jnp.asarray(rng.normal(size=(m, n)) / np.sqrt(m))
    y = jnp.asarray(rng.normal(size=m))
    L = (1 + np.sqrt(n / m)) ** 2 + 2.0
    grad_f = lambda x, t: X.T @ (X @ x - y) + t * x  # noqa: E731
    F = algorithms.gradient_descent(grad_f, 1.0 / L)
    theta = jnp.linspace(1.0, 2.0, n)
    _vs_jaxopt(f"2. ridge n={n}", F, grad_f, jnp.zeros(n), theta, 400, rounds,
               lambda mv, b: jlin.solve_cg(mv, b, tol=1e-10))


def deconvolution(n, rounds):
    rng = np.random.default_rng(2)
    t = np.arange(n)
    kernel = np.exp(-0.5 * (np.minimum(t, n - t) / 3.0) ** 2)
    khat = jnp.asarray(np.fft.rfft(kernel / kernel.sum()))
    y = jnp.asarray(rng.normal(size=n))
    conv = lambda x: jnp.fft.irfft(khat * jnp.fft.rfft(x), n=n)  # noqa: E731  (circulant, symmetric)
    grad_f = lambda x, lam: conv(conv(x) - y) + lam * x  # noqa: E731  f = ½‖k∗x - y‖² + ½ Σ λᵢxᵢ²
    F = algorithms.gradient_descent(grad_f, 1.0 / 1.5)
    theta = jnp.full(n, 0.5)
    _vs_jaxopt(f"2. FFT deconvolution n={n}", F, grad_f, jnp.zeros(n), theta, 200, rounds,
               lambda mv, b: jlin.solve_cg(mv, b, tol=1e-10))


# ---------------------------------------------------------------------------------------------
def _lasso_solution(X, y, lam, F, theta):
    """An accurate lasso solution to warm-start from: scikit-learn's coordinate descent if it is
    installed (objective scaled by 1/n_samples), else 20 000 forward-backward steps."""
    try:
        from sklearn.linear_model import Lasso
    except ImportError:
        return np.asarray(iterate(F, jnp.zeros(X.shape[1]), theta, 20_000, check_finite=False))
    m = Lasso(alpha=lam / X.shape[0], fit_intercept=False, tol=1e-14, max_iter=200_000)
    return m.fit(X, y).coef_


def lasso(p, n_samples, support, rounds, steps):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n_samples, p)) / np.sqrt(n_samples)
    w_true = np.zeros(p)
    w_true[:support] = rng.choice([-1.0, 1.0], size=support) * (1 + rng.random(support))
    y = X @ w_true + 0.01 * rng.normal(size=n_samples)
    lam = 0.3 * float(np.max(np.abs(X.T @ y)))
    prob = algorithms.lasso(X, y, lam)
    F = prob.F
    Xj, yj = prob.theta["X"], prob.theta["y"]
    th = lambda l: dict(X=Xj, y=yj, lam=l)  # noqa: E731
    # warm start (as in hyperparameter search): the FB steps refine an accurate solution
    x0 = jnp.asarray(_lasso_solution(X, y, lam, F, prob.theta))
    kw = dict(residual_rtol=None, tol=1e-12)  # the warm start is already at round-off level
    solve = jax.jit(lambda l: iterate(F, x0, th(l), steps, check_finite=False))
    hyper = jax.jit(jax.grad(lambda l: jnp.sum(iterate(F, x0, th(l), steps, mode="implicit", **kw) ** 2)))
    l0 = jnp.asarray(lam)
    w = np.asarray(solve(l0))
    S = np.flatnonzero(w)
    XS = X[:, S]
    J_ref = np.zeros(p)
    J_ref[S] = -np.linalg.solve(XS.T @ XS, np.sign(w[S]))
    J = np.asarray(jax.jit(jax.jacfwd(lambda l: iterate(F, x0, th(l), steps, mode="implicit", **kw)))(l0))
    err = float(np.max(np.abs(J - J_ref)))
    residual = float(jnp.linalg.norm(F(jnp.asarray(w), th(l0)) - w))
    funs = {"solve": lambda: solve(l0), "restricted": lambda: hyper(l0)}
    r = compare(funs, "solve", rounds=rounds)
    print(f"\n3. lasso {p} features × {n_samples} samples, |S| = {S.size}, {steps} FB steps "
          f"(fixed-point residual {residual:.1e}), solver: {implicit_plan(F, x0, prob.theta)['solver']}")
    print(f"   (solve + restricted implicit hypergradient) / solve: {_fmt(r, 'restricted')} "
          f"({r['restricted']['ms']:.1f} vs {r['solve']['ms']:.1f} ms); max |J - closed form| = {err:.1e}")
    if jaxopt is None:
        print("   jaxopt not installed: no normal-CG comparison")
        return
    soft = lambda v, l, s=1.0: jnp.sign(v) * jnp.maximum(jnp.abs(v) - l * s, 0.0)  # noqa: E731
    G = algorithms.proximal_gradient(lambda w, _: 0.5 * jnp.sum((Xj @ w - yj) ** 2), soft,
                                     stepsize=1.0 / float(np.linalg.norm(X, 2) ** 2))

    def forward(init, l):
        return iterate(F, init, th(l), steps, check_finite=False)

    jo = jaxopt.implicit_diff.custom_root(
        lambda w, l: G(w, (None, l)), solve=lambda mv, b: jlin.solve_normal_cg(mv, b, tol=1e-10, maxiter=500))(forward)
    theirs = jax.jit(jax.grad(lambda l: jnp.sum(jo(x0, l) ** 2)))
    g_theirs = float(theirs(l0))
    r2 = compare({"solve": lambda: solve(l0), "restricted": lambda: hyper(l0), "jaxopt": lambda: theirs(l0)},
                 "solve", rounds=max(3, rounds // 2))
    # the derivative part alone: (solve + hypergradient) / solve - 1, theirs over ours
    part = (r2["jaxopt"]["ratio"] - 1) / max(r2["restricted"]["ratio"] - 1, 1e-9)
    print("   jaxopt normal CG (full system) / ours, solve included: "
          f"{r2['jaxopt']['ratio'] / r2['restricted']['ratio']:.2f} "
          f"({r2['jaxopt']['ms']:.1f} vs {r2['restricted']['ms']:.1f} ms); derivative part alone: {part:.1f}×; "
          "hypergradients "
          f"{float(hyper(l0)):.6e} vs {g_theirs:.6e} (closed form {float(2 * w @ J_ref):.6e})")


# ---------------------------------------------------------------------------------------------
def deq(n, rounds):
    rng = np.random.default_rng(4)
    W = rng.normal(size=(n, n))
    W = jnp.asarray(0.7 * W / np.linalg.norm(W, 2))
    U = jnp.asarray(rng.normal(size=(n, 50)) / np.sqrt(50))
    F = lambda x, t: jnp.tanh(W @ x + U @ t)  # noqa: E731
    theta = jnp.asarray(rng.normal(size=50))
    steps = 80
    ours = jax.jit(jax.grad(lambda t: jnp.sum(iterate(F, jnp.zeros(n), t, steps, mode="implicit") ** 2)))
    funs = {"ours": lambda: ours(theta)}
    plan = implicit_plan(F, jnp.zeros(n), theta)
    if jaxopt is None:
        r = compare(funs, "ours", rounds=rounds)
        print(f"\n4. DEQ n={n}: ours {r['ours']['ms']:.2f} ms ({plan['solver']}); jaxopt not installed: no comparison")
        return

    def forward(init, t):
        return jax.lax.fori_loop(0, steps, lambda _, x: F(x, t), init)

    jo = jaxopt.implicit_diff.custom_fixed_point(F, solve=lambda mv, b: jlin.solve_gmres(mv, b, tol=1e-10))(forward)
    theirs = jax.jit(jax.grad(lambda t: jnp.sum(jo(jnp.zeros(n), t) ** 2)))
    funs["jaxopt"] = lambda: theirs(theta)
    diff = float(jnp.max(jnp.abs(ours(theta) - theirs(theta))) / jnp.max(jnp.abs(theirs(theta))))
    r = compare(funs, "jaxopt", rounds=rounds)
    print(f"\n4. DEQ n={n}: ours/jaxopt GMRES {_fmt(r, 'ours')} ({r['ours']['ms']:.2f} vs "
          f"{r['jaxopt']['ms']:.2f} ms), solver {plan['solver']}, relative Δgrad {diff:.1e}")


# ---------------------------------------------------------------------------------------------
def checks(rounds):
    rng = np.random.default_rng(5)
    prob = algorithms.lasso(rng.normal(size=(50, 100)), rng.normal(size=50), 1.0)
    F, x0, th = prob.F, prob.x0, prob.theta
    on = jax.jit(lambda t: iterate(F, x0, t, 3000))
    off = jax.jit(lambda t: iterate(F, x0, t, 3000, check_finite=False))
    r = compare({"on": lambda: on(th), "off": lambda: off(th)}, "off", rounds=rounds)
    re = compare({"on": lambda: iterate(F, x0, th, 3000), "off": lambda: iterate(F, x0, th, 3000, check_finite=False)},
                 "off", rounds=rounds)
    # each call waited for: the checked eager loop must wait for its result before returning (it
    # raises on divergence), whereas back-to-back unchecked calls overlap Python with the compute
    rb = compare({"on": lambda: jax.block_until_ready(iterate(F, x0, th, 3000)),
                  "off": lambda: jax.block_until_ready(iterate(F, x0, th, 3000, check_finite=False))},
                 "off", rounds=rounds)
    print(f"\n5. divergence check, 3000 FB lasso steps (50 × 100): on/off under jit {_fmt(r, 'on')} "
          f"({r['off']['ms']:.2f} ms off); eager, each call waited for {_fmt(rb, 'on')} "
          f"({rb['off']['ms']:.2f} ms off); "
          f"eager back to back {_fmt(re, 'on')} ({re['off']['ms']:.2f} ms off)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    args = ap.parse_args(argv)
    if jaxopt is None:
        print("jaxopt is not installed (pip install jaxopt): the comparisons with it are skipped")
    q = args.quick
    rounds = 5 if q else 9
    threshold([8, 32, 128] if q else [8, 16, 32, 48, 64, 128, 256, 512], rounds)
    ridge(400 if q else 2000, rounds)
    deconvolution(800 if q else 4000, rounds)
    lasso(2000 if q else 20_000, 100 if q else 200, 20 if q else 50, 3 if q else 5, 300)
    deq(200 if q else 1000, rounds)
    checks(rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

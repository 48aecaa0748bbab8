"""Peak temporary memory of reverse-mode hypergradients vs. the number of steps.

Gradient descent on ridge regression (n = 500 features), θ ↦ ∇_θ ½‖x_k(θ)‖² through
``iterate(..., mode=...)`` for k = 10, 100, 1000. Memory is read from XLA's compiled memory
analysis (``jax.jit(f).lower(θ).compile().memory_analysis().temp_size_in_bytes``): flat in k for
implicit, one-step and truncated (the loop is not stored), linear in k for autodiff.

Run: python benchmarks/bench_memory.py
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from algorithms import iterate  # noqa: E402


def main(n=500, N=800):
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(N, n)) / np.sqrt(N))
    y = jnp.asarray(rng.normal(size=N))
    gamma = 1.0 / (float(np.linalg.norm(np.asarray(X), 2)) ** 2 + 1.0)
    F = lambda x, th: x - gamma * (X.T @ (X @ x - y) + th * x)  # noqa: E731
    theta, x0 = jnp.full(n, 0.5), jnp.zeros(n)
    modes = [("autodiff", {}), ("implicit", {"solve": "cg"}), ("one_step", {}), ("truncated", {"truncate": 5})]
    print(f"ridge GD, n={n}: temp memory of jit(grad) in KiB (one iterate = {n * 8 / 1024:.1f} KiB)")
    print(f"{'steps':>6} " + " ".join(f"{m:>10}" for m, _ in modes))
    for steps in (10, 100, 1000):
        row = []
        for mode, kw in modes:
            g = jax.jit(jax.grad(lambda th: 0.5 * jnp.sum(iterate(F, x0, th, steps, mode=mode, **kw) ** 2)))
            row.append(g.lower(theta).compile().memory_analysis().temp_size_in_bytes / 1024)
        print(f"{steps:>6} " + " ".join(f"{v:10.1f}" for v in row))


if __name__ == "__main__":
    main()

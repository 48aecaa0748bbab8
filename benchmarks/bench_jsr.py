"""Benchmark: certified joint spectral radius bounds (theory.jsr).

Run from the repository root:  python benchmarks/bench_jsr.py
Prints lower/upper bounds, their ratio, how the upper bound was certified and the time.
Targets: the golden-ratio pair to 1e-6; the heavy-ball family {M1, M2} (slides "Example where
heavy-ball fails") with upper/lower ≤ 1 + 1e-6 in under a minute; random 3×3 and 5×5 families
with the honest remaining gap when no exact certificate is found.
"""

import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from theory import exact_eigenvalues, jsr  # noqa: E402

GOLDEN = (1 + 5**0.5) / 2
M1 = np.array([[0.75, -0.75], [1.0, 0.0]])
M2 = np.array([[1.5, -0.75], [1.0, 0.0]])


def report(name, family, truth=None, **kw):
    t0 = time.perf_counter()
    res = jsr(family, **kw)
    dt = time.perf_counter() - t0
    line = (f"{name:<28} lower={res.lower:.12f} upper={res.upper:.12f} ratio-1={res.ratio - 1:.2e} "
            f"exact={res.exact!s:<5} word_len={len(res.certificate):<3} time={dt:6.2f}s  [{res.upper_method}]")
    if truth is not None:
        line += f"  |err| ≤ {max(abs(res.lower - truth), abs(res.upper - truth)):.1e}"
    print(line)
    return res


def main():
    report("golden pair", [np.array([[1.0, 1.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [1.0, 1.0]])], GOLDEN)
    res = report("heavy-ball {M1, M2}", [M1, M2], time_limit=60)
    print(f"{'':<28} slides' word M1M1M2M2: exact eigenvalues {exact_eigenvalues([M1, M2], (0, 0, 1, 1))}, "
          f"(9/8)^(1/4) = {(9 / 8) ** 0.25:.12f}; best word {''.join(str(i + 1) for i in res.certificate)}")
    rng = np.random.default_rng(2024)
    for n in (3, 5):
        for trial in range(2):
            A = rng.standard_normal((2, n, n)) / np.sqrt(n)
            report(f"random {n}x{n} pair #{trial}", A, time_limit=30)
        A = rng.standard_normal((3, n, n)) / np.sqrt(n)
        report(f"random {n}x{n} triple", A, time_limit=30)
    # complex leading eigenvalues: no (real) invariant polytope, an honest gap remains
    rot = np.array([[np.cos(1.0), -np.sin(1.0), 0], [np.sin(1.0), np.cos(1.0), 0], [0, 0, 0.3]])
    report("rotation + perturbation 3x3", [rot, rot + 0.3 * rng.standard_normal((3, 3))], time_limit=30)


if __name__ == "__main__":
    main()

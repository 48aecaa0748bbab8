"""Benchmark: certified fixed sets conv fix(𝒥) of families of [A, B] blocks (theory.fixed_set).

Run from the repository root:  python benchmarks/bench_fixed_set.py
Each line: the family, the certificate that made the set map contract (ellipsoidal norm,
product length k, invariant-polytope norm), the vertex count of the returned set, the time, the
certified Hausdorff error (Frobenius) and the independent check h(conv 𝒥(X), X) ≤ (L+1)·err
(L = max‖A_i‖₂).  Then fixed_set against brute-force iteration of the set recursion
(``fixed_set_iteration`` from {0}, no merging, every distance resolved) for the shortest doubled
step count whose certified bound reaches the same tolerance, timed in the same process: ratio
brute / fixed_set.  A family whose exact vertex sets exceed ``max_vertices`` is reported as such.

Families: heavy-ball {M1, M2} scaled by 0.85 (ellipsoidal norm), 0.9 (products of length 2),
0.95 (JSR 0.9805, no ellipsoid: invariant polytope from ``jsr``), and random 2×2 blocks with
2×1 and 2×2 right-hand sides (the fixed sets live in R² and R⁴) at JSR ≈ 0.5.
"""

import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conservative import MatrixSet, SetTooLargeError  # noqa: E402
from theory import fixed_set, fixed_set_bounds, fixed_set_iteration, hausdorff, jsr  # noqa: E402

M1 = np.array([[0.75, -0.75], [1.0, 0.0]])
M2 = np.array([[1.5, -0.75], [1.0, 0.0]])


def blocks(A, B):
    return MatrixSet(np.concatenate([A, B], axis=2))


def heavy_ball(s):
    return blocks(s * np.array([M1, M2]), np.array([[[1.0], [0.0]]] * 2))


def bounds_table():
    """fixed_set_bounds (inner hull + outer template polytope, no vertex enumeration) in 2-D, 4-D, 6-D."""
    print("\nfixed_set_bounds: template gap (certified, support values on the template) and full Hausdorff bound:")
    print(f"{'family':34s} {'dirs':>5s} {'inner':>6s} {'nodes':>9s} {'time s':>8s} {'error':>10s} {'full dH':>10s}")
    for name, fam, budget in (("random 2x2 | 2x1, JSR 0.5", random_family(1, 0.5, 0), 200_000),
                              ("random 2x2 | 2x2 (4-D), JSR 0.5", random_family(2, 0.5, 1), 200_000),
                              ("random 2x2 | 2x3 (6-D), JSR 0.5", random_family(3, 0.5, 2), 200_000),
                              ("random 2x2 | 2x2 (4-D), JSR 0.9", random_family(2, 0.9, 1), 5_000)):
        t = time.perf_counter()
        r = fixed_set_bounds(fam, tol=1e-6, max_nodes=budget)
        sec = time.perf_counter() - t
        lim = "" if r.complete else f" (node limit {budget}/direction)"
        print(f"{name:34s} {len(r.directions):5d} {len(r.inner):6d} {r.nodes:9d} {sec:8.2f} {r.error:10.2e} "
              f"{r.hausdorff_bound:10.2e}{lim}")


def random_family(m, target, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((2, 2, 2))
    A *= target / jsr(A).upper
    return blocks(A, rng.standard_normal((2, 2, m)))


def check(fam, X):
    n = fam.shape[0]
    V = fam.vertices
    A, B = V[:, :, :n], V[:, :, n:]
    img = MatrixSet((A[:, None] @ X.vertices[None] + B[:, None]).reshape(-1, *B.shape[1:]))
    return float(hausdorff(img, X)), max(np.linalg.norm(a, 2) for a in A)


def main():
    cases = [("heavy-ball x 0.85", heavy_ball(0.85), 1e-6, None),
             ("heavy-ball x 0.90", heavy_ball(0.90), 1e-6, None),
             ("heavy-ball x 0.95", heavy_ball(0.95), 1e-4, "jsr"),
             ("random 2x2 | 2x1, JSR 0.5", random_family(1, 0.5, 0), 1e-6, None),
             ("random 2x2 | 2x2 (4-D), JSR 0.5", random_family(2, 0.5, 1), 1e-6, None)]
    print(f"{'family':34s} {'certificate':28s} {'vertices':>8s} {'time s':>8s} {'error':>10s} {'h(K X, X)/(L+1)':>16s}")
    results = {}
    for name, fam, tol, how in cases:
        n = fam.shape[0]
        t = time.perf_counter()
        contraction = jsr(fam.vertices[:, :, :n]) if how == "jsr" else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                X, err = fixed_set(fam, tol=tol, contraction=contraction, max_iter=3000)
        except SetTooLargeError as exc:  # the exact-vertex method's limit, reported as such
            print(f"{name:34s} exact vertex sets exceed the limit after {time.perf_counter() - t:.2f} s: {exc}")
            continue
        sec = time.perf_counter() - t
        cert = fixed_set_iteration(fam, 1, contraction=contraction).contraction
        inv, L = check(fam, X)
        print(f"{name:34s} {type(cert).__name__ + ' (' + str(getattr(cert, 'norm', '')) + ')':28s} "
              f"{len(X.vertices):8d} {sec:8.2f} {err:10.2e} {inv / (L + 1):16.2e}")
        results[name] = (fam, tol, sec, contraction)
    print("\nfixed_set vs brute-force iteration of the set recursion from {0} (same tolerance, same run):")
    for name in ("heavy-ball x 0.85", "random 2x2 | 2x1, JSR 0.5"):
        fam, tol, sec, contraction = results[name]
        X0 = np.zeros((1, fam.shape[0], fam.shape[1] - fam.shape[0]))
        steps, bound = 10, np.inf
        while bound > tol and steps <= 640:  # the shortest doubling step count that reaches tol
            steps *= 2
            bound = fixed_set_iteration(fam, steps, X0=X0, contraction=contraction).error_bound
        t = time.perf_counter()  # timed: one run of that many steps
        it = fixed_set_iteration(fam, steps, X0=X0, contraction=contraction)
        brute = time.perf_counter() - t
        print(f"  {name:32s} brute force {brute:7.2f} s ({steps} steps, bound {it.error_bound:.1e}, "
              f"{len(it.sets[-1].vertices)} vertices) / fixed_set {sec:6.2f} s = {brute / sec:.1f}x")

if __name__ == "__main__":
    main()
    bounds_table()

"""Benchmark: certified joint spectral radius bounds (theory.jsr).

Run from the repository root:  python benchmarks/bench_jsr.py
Prints lower/upper bounds, their ratio, how the upper bound was certified and the time.
Targets: the golden-ratio pair to 1e-6; the heavy-ball family {M1, M2} (slides "Example where
heavy-ball fails") with upper/lower ≤ 1 + 1e-6 in under a minute; random 3×3 and 5×5 families
with the honest remaining gap when no exact certificate is found.

Second table (families from the literature, each line: time, polytope vertices, exact yes/no):
Kozyakin's pair (two spectrum-maximizing products, balanced polytope; JSR 1.21), Parrilo-Jadbabaie
Example 5.4 (JSR ρ(A1A3)^{1/2} = 8.9149), Daubechies D6/D8/D10 transition matrices (Hölder
exponents 1.0878/1.6179/1.9690), a conjugated nilpotent family (JSR 0), a permuted triangular
family and a heavy-ball block coupled to a scalar (reducibility), a nonnegative 10×10 family
(cone polytope).  Then the sum-of-squares bounds on Example 5.4 next to the lifted ellipsoid, and
the cost of the exact rational re-check measured side by side with the float-only check.
"""

import math
import sys
import time
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import compare  # noqa: E402

from theory import exact_eigenvalues, invariant_polytope, jsr, sos_jsr_bound  # noqa: E402

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


def kozyakin():
    th, k = 2 * np.pi / 3, 1.1**3
    return np.array([[[0.0, -1 / k], [k, 2 * np.cos(th)]], [[0.0, -k], [1 / k, 2 * np.cos(th)]]])


PJ54 = np.array([
    [[0, 1, 7, 4], [1, 6, -2, -3], [-1, -1, -2, -6], [3, 0, 9, 1]],
    [[-3, 3, 0, -2], [-2, 1, 4, 9], [4, -3, 1, 1], [1, -5, -1, -2]],
    [[1, 4, 5, 10], [0, 5, 1, -4], [0, -1, 4, 6], [-1, 5, 0, 1]]], dtype=float)


def daubechies(N):
    """T_0, T_1 of the Daubechies filter D2N on W = {Σ j^k x_j = 0, k < N} (finite-difference basis)."""
    from numpy.polynomial import polynomial as Pn

    q = np.zeros(2 * N - 1)
    y = np.array([-0.25, 0.5, -0.25])
    for k in range(N):
        term = np.array([1.0])
        for _ in range(k):
            term = Pn.polymul(term, y)
        term = np.concatenate([np.zeros(N - 1 - k), term])
        q[:len(term)] += math.comb(N - 1 + k, k) * term
    L = np.array([1.0 + 0j])
    for r in Pn.polyroots(q):
        if abs(r) < 1:
            L = Pn.polymul(L, np.array([-r, 1.0]))
    c = np.real(L) / np.real(Pn.polyval(1.0, L))
    for _ in range(N):
        c = Pn.polymul(c, np.array([0.5, 0.5]))
    c = 2 * c
    m = 2 * N - 1
    T = np.zeros((2, m, m))
    for e in range(2):
        for i in range(m):
            for j in range(m):
                k = 2 * (i + 1) - (j + 1) + e - 1
                if 0 <= k < len(c):
                    T[e, i, j] = c[k]
    D = np.zeros((m, N - 1))
    for j in range(N - 1):
        for k in range(N + 1):
            D[j + k, j] = (-1) ** k * math.comb(N, k)
    return np.array([np.linalg.lstsq(D, t @ D, rcond=None)[0] for t in T])


def nilpotent5():
    rng = np.random.default_rng(0)
    N = np.triu(rng.integers(-3, 4, (3, 5, 5)), 1).astype(float)
    T = (np.eye(5) + np.triu(rng.integers(-2, 3, (5, 5)), 1))[::-1]
    Ti = np.round(np.linalg.inv(T))
    return np.array([T @ a @ Ti for a in N])


def literature_table():
    rng = np.random.default_rng(0)
    tri = np.triu(rng.standard_normal((3, 6, 6)))
    p = rng.permutation(6)
    block = np.zeros((2, 3, 3))
    block[:, :2, :2] = [M1, M2]
    block[:, :2, 2] = [[3.0, 1.0], [-2.0, 0.5]]
    block[:, 2, 2] = [0.5, -0.9]
    fams = [("Kozyakin pair (JSR 1.21)", kozyakin(), 1.21),
            ("PJ08 Example 5.4", PJ54, None),
            ("Daubechies D6", daubechies(3), "Hölder 1.0878"),
            ("Daubechies D8", daubechies(4), "Hölder 1.6179"),
            ("Daubechies D10", daubechies(5), "Hölder 1.9690"),
            ("nilpotent 5x5 (conjugated)", nilpotent5(), 0.0),
            ("permuted triangular 6x6", tri[:, p][:, :, p], None),
            ("heavy-ball block + scalar", block, None),
            ("nonnegative 10x10 triple", np.random.default_rng(3).random((3, 10, 10)), None)]
    print(f"\n{'family':<28} {'lower':>16} {'upper':>16} {'exact':<5} {'vertices':>8} {'time':>7}  certificate")
    for name, A, truth in fams:
        t0 = time.perf_counter()
        res = jsr(A, time_limit=60)
        dt = time.perf_counter() - t0
        cert = res.upper_certificate
        nv = len(cert.vertices) if hasattr(cert, "vertices") else "-"
        if hasattr(cert, "kind") and cert.kind == "symmetric":
            nv = f"{2 * len(cert.vertices)}"  # absconv of N stored points has 2N vertices
        line = (f"{name:<28} {res.lower:16.12f} {res.upper:16.12f} {'yes' if res.exact else 'no':<5} {nv!s:>8} "
                f"{dt:6.2f}s  {res.upper_method[:70]}")
        if isinstance(truth, str):  # Daubechies: Hölder exponent -log2 JSR
            line += f"  (-log2 JSR = {-math.log2(res.lower):.4f}; published {truth})"
        elif truth is not None:
            line += f"  (published {truth:.6g})"
        print(line)


def sos_table():
    print("\nPJ08 Example 5.4: sum of squares vs the lifted ellipsoid (lower bound ρ(A1A3)^{1/2} = 8.914964)")
    t0 = time.perf_counter()
    lifted = jsr(PJ54, invariant_polytope_search=False, lift_degrees=(1, 2), time_limit=60)
    t_l = time.perf_counter() - t0
    print(f"  lifted ellipsoid, degree 2: {lifted.bounds['ellipsoidal norm, lift degree 2']:.6f}  "
          f"(jsr call {t_l:.2f}s; published 9.007)")
    for deg, pub in ((2, "9.7607"), (4, "8.92 (8.919820 in SwitchOnSafety.jl)")):
        t0 = time.perf_counter()
        b = sos_jsr_bound(PJ54, deg, lower=8.9)
        print(f"  SOS-{deg}: {b.bound:.6f}  ({time.perf_counter() - t0:.2f}s, re-verified margins "
              f"{min(b.margins):.2e}; published {pub})")


def recheck_cost():
    print("\nexact rational re-check vs float-only check (same polytope construction), ratio of wall time:")
    for name, A, w in (("Kozyakin (balanced)", kozyakin(), [(0, 0, 1), (0, 1, 1)]),
                       ("Daubechies D10", daubechies(5), (0,)),
                       ("heavy-ball", np.array([M1, M2]), (0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1))):
        out = compare({"float only": lambda A=A, w=w: invariant_polytope(A, w, exact_check=False),
                       "float + rational": lambda A=A, w=w: invariant_polytope(A, w, exact_check=True)},
                      baseline="float only", rounds=5, min_seconds=0.05)
        r = out["float + rational"]
        print(f"  {name:<22} float only {out['float only']['ms']:8.1f} ms, with rational re-check "
              f"{r['ms']:8.1f} ms: ratio {r['ratio']:.2f} [{r['q25']:.2f}, {r['q75']:.2f}]")


if __name__ == "__main__":
    main()
    literature_table()
    sos_table()
    recheck_cost()

"""The set-valued core at researchers' sizes: structured (sparse) Jacobian sets in forward mode.

Sections (each prints its numbers, ratios measured side by side in the same run, and whether
its targets are met):

* soft-threshold x ↦ sign(x)·max(|x| - λ, 0) on R^5000 with 1000 exact ties (|x_i| = λ):
  warm ``conservative.jacobian`` vs warm ``jit(jax.jacfwd)`` (target ≤ 5×); ``support(D)`` for a
  sparse and a dense D (target ≤ 1 s), checked against the closed form
  Σ_{tied i} max(0, D_ii) + Σ_{|x_i| > λ} D_ii; ``contains`` of JAX's element (target ≤ 2 s).
* the gradient set of Σ soft(x) + ½‖x‖² on R^100 000 with 10 000 ties, in forward mode through
  the sparse representation: time (target ≤ 10 s) and peak RSS above the process baseline
  (target ≤ 1 GB), checked against the closed form (a box: x_i + soft'(x_i), [x_i, x_i + 1] at
  the ties) by its support in random directions and membership of ``jax.grad``'s element.

Run: python benchmarks/bench_scale.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _timing import compare  # noqa: E402

import conservative  # noqa: E402

LAM = 0.5


def soft(x, lam=LAM):
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - lam, 0.0)


def tied_point(n, ties, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=n)
    idx = np.sort(rng.choice(n, size=ties, replace=False))
    x[idx] = np.where(rng.random(ties) < 0.5, LAM, -LAM)
    return x, idx


def best_of(f, repeat=3):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory above the value at entry, sampled every 2 ms by a thread."""

    def __enter__(self):
        self.base = _rss()
        self.peak = self.base
        self._stop = False

        def sample():
            while not self._stop:
                self.peak = max(self.peak, _rss())
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def above(self) -> int:
        return self.peak - self.base


def section_soft_threshold(quick=False):
    n, ties = (1000, 200) if quick else (5000, 1000)
    x_np, idx = tied_point(n, ties)
    x = jnp.asarray(x_np)
    tied = np.zeros(n, bool)
    tied[idx] = True
    print(f"soft-threshold on R^{n} with {ties} exact ties (|x_i| = {LAM})")
    jac = conservative.jacobian(soft)
    jf = jax.jit(jax.jacfwd(soft))
    J = jac(x)
    res = compare({"jacobian": lambda: jac(x), "jit(jacfwd)": lambda: jf(x)}, "jit(jacfwd)", rounds=7)
    r = res["jacobian"]
    print(f"  warm jacobian    {r['ms']:9.1f} ms   warm jit(jacfwd) {res['jit(jacfwd)']['ms']:.1f} ms   "
          f"ratio {r['ratio']:.2f}x (IQR {r['q25']:.2f}-{r['q75']:.2f})   target <= 5x")
    print(f"  set: {J}, stored numbers {J.nnz}")
    rng = np.random.default_rng(1)
    d = rng.standard_normal(n)
    Dd = rng.standard_normal((n, n))
    np.fill_diagonal(Dd, d)
    Ds = sp.diags_array(d, format="csr")
    t_sp, s_sp = best_of(lambda: J.support(Ds))
    t_de, s_de = best_of(lambda: J.support(Dd))
    ref = float(np.sum(np.where(tied, np.maximum(d, 0), 0)) + np.sum(d[np.abs(x_np) > LAM]))
    err = max(abs(s_sp - ref), abs(s_de - ref))
    ok_support = err <= 1e-10 * max(1.0, np.abs(d).sum())
    print(f"  support(sparse D) {t_sp * 1e3:8.1f} ms   support(dense D) {t_de * 1e3:8.1f} ms   target <= 1 s; "
          f"closed form {ref:.6f}, |diff| {err:.1e} ({'ok' if ok_support else 'WRONG'})")
    Jad = np.asarray(jf(x))
    t_in, inside = best_of(lambda: J.contains(Jad), repeat=2)
    _, jd = jax.jvp(soft, (x,), (jnp.ones(n),))
    t_in_sp, inside_sp = best_of(lambda: J.contains(sp.diags_array(np.asarray(jd), format="csr")), repeat=2)
    out = Jad.copy()
    out[idx[0], idx[0]] = 1.5
    t_out, outside = best_of(lambda: J.contains(out), repeat=2)
    print(f"  contains(JAX's element, dense) {t_in * 1e3:8.1f} ms -> {inside};  sparse {t_in_sp * 1e3:.1f} ms "
          f"-> {inside_sp};  entry 1.5 at a tie {t_out * 1e3:.1f} ms -> {outside}   target <= 2 s")
    met = (r["ratio"] <= 5 and max(t_sp, t_de) <= 1 and t_in <= 2 and ok_support and inside and inside_sp
           and not outside)
    print(f"  targets: {'met' if met else 'NOT met'}")
    return met


def section_gradient(quick=False):
    n, ties = (20_000, 2_000) if quick else (100_000, 10_000)
    x_np, idx = tied_point(n, ties, seed=2)
    x = jnp.asarray(x_np)

    def loss(z):
        return jnp.sum(soft(z)) + 0.5 * jnp.sum(z**2)

    print(f"gradient set of sum(soft(x)) + ||x||^2/2 on R^{n} with {ties} ties (forward mode, sparse reps)")
    jac = conservative.jacobian(loss, mode="forward")
    with PeakRSS() as mem_first:
        t_first, G = best_of(lambda: jac(x), repeat=1)
    with PeakRSS() as mem:
        t_warm, G = best_of(lambda: jac(x), repeat=1)
    g = jax.jit(jax.grad(loss))
    g(x).block_until_ready()
    res = compare({"jacobian": lambda: jac(x), "jit(grad)": lambda: g(x)}, "jit(grad)", rounds=3, min_seconds=0.0)
    print(f"  first call {t_first:.2f} s (peak RSS +{mem_first.above / 1e6:.0f} MB), warm call {t_warm:.2f} s "
          f"(peak RSS +{mem.above / 1e6:.0f} MB)   targets <= 10 s, <= 1 GB")
    print(f"  warm jacobian vs warm jit(grad): {res['jacobian']['ms']:.0f} ms vs {res['jit(grad)']['ms']:.2f} ms, "
          f"ratio {res['jacobian']['ratio']:.0f}x")
    print(f"  set: {G}")
    lo = x_np + (np.abs(x_np) > LAM)
    hi = lo.copy()
    hi[idx] += 1.0
    rng = np.random.default_rng(3)
    worst = 0.0
    for _ in range(5):
        d = rng.standard_normal(n)
        ref = float(np.sum(np.maximum(d * lo, d * hi)))
        worst = max(worst, abs(G.support(d[None]) - ref) / max(1.0, float(np.abs(d) @ np.abs(hi))))
    ok_support = worst <= 1e-12
    t_in, inside = best_of(lambda: G.contains(np.asarray(g(x))[None]), repeat=1)
    print(f"  support vs the box in 5 random directions: worst relative |diff| {worst:.1e} "
          f"({'ok' if ok_support else 'WRONG'}); contains(jax.grad) {t_in * 1e3:.0f} ms -> {inside}")
    met = max(t_first, t_warm) <= 10 and max(mem_first.above, mem.above) <= 1e9 and ok_support and inside
    print(f"  targets: {'met' if met else 'NOT met'}")
    return met


#: the sections this benchmark runs, in order. Reverse-mode sections (written in
#: benchmarks/bench_scale_gradient.py) are appended to this list: each is a function
#: (quick: bool) -> bool that prints its numbers and returns whether its targets are met.
def _reverse_sections():
    """The reverse-mode sections of ``bench_scale_gradient`` (they assert their targets)."""
    import bench_scale_gradient as G

    def section_gradient_reverse(quick=False):
        G.section_soft(20_000 if quick else 100_000, 2_000 if quick else 10_000)
        return True

    def section_classifier(quick=False):
        G.section_classifier(quick=quick)
        return True

    def section_reverse_vs_forward(quick=False):
        G.section_vs_forward(500 if quick else 2000, 50 if quick else 200)
        return True

    return [section_gradient_reverse, section_classifier, section_reverse_vs_forward]


SECTIONS = [section_soft_threshold, section_gradient, *_reverse_sections()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    args = parser.parse_args(argv)
    results = {}
    for section in SECTIONS:
        results[section.__name__] = section(quick=args.quick)
        print()
    print("summary: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in results.items()))
    return all(results.values())


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

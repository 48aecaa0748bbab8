"""Size control of ``conservative.jacobian``.

Soft-thresholding on R^1000 with 30 exact ties at ±λ: the conservative Jacobian has 2^30
vertices, stored as 30 independent groups (a zonotope of diagonal segments).  We time the
set construction and ``contains`` / ``support`` queries, next to ``jax.jacfwd`` of the same
function (the ratio is what to read: the machine is shared and noisy).

Run: python benchmarks/bench_soft_threshold.py
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import conservative  # noqa: E402


def soft_threshold(x, lam):
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - lam, 0.0)


def best_of(f, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(n=1000, ties=30, lam=0.5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=n)
    idx = rng.choice(n, size=ties, replace=False)
    x[idx] = np.where(rng.random(ties) < 0.5, lam, -lam)
    x = jnp.asarray(x)
    jac = conservative.jacobian(soft_threshold)
    t_build, J = best_of(lambda: jac(x, lam), repeat=3)
    jf = jax.jit(jax.jacfwd(soft_threshold))
    jf(x, lam).block_until_ready()
    t_jacfwd, Jad = best_of(lambda: jf(x, lam).block_until_ready())
    Jad = np.asarray(Jad)
    D = rng.standard_normal((n, n))
    t_support, s = best_of(lambda: J.support(D))
    brute = float(np.sum(np.diag(D) * ((np.abs(np.asarray(x)) > lam) | np.isin(np.arange(n), idx) & (np.diag(D) > 0))))
    t_in, inside = best_of(lambda: J.contains(Jad))
    outside_M = Jad.copy()
    outside_M[idx[0], idx[0]] = 1.5
    t_out, outside = best_of(lambda: J.contains(outside_M))
    print(f"soft-threshold on R^{n} with {ties} exact ties: {J}")
    print(f"  candidate vertices: 2^{ties} = {J.num_candidate_vertices}, stored generators: {len(J)}")
    print(f"  build set      {t_build * 1e3:8.1f} ms   (jax.jacfwd, jitted: {t_jacfwd * 1e3:.2f} ms; "
          f"ratio {t_build / t_jacfwd:.0f}x)")
    print(f"  support(D)     {t_support * 1e3:8.1f} ms   value {s:.6f} (closed form {brute:.6f}, "
          f"|diff| {abs(s - brute):.1e})")
    print(f"  contains(AD)   {t_in * 1e3:8.1f} ms   -> {inside} (JAX's element)")
    print(f"  contains(out)  {t_out * 1e3:8.1f} ms   -> {outside} (entry 1.5 on a tied coordinate)")
    ok = inside and not outside and abs(s - brute) < 1e-9 and max(t_support, t_in, t_out) < 1.0
    print(f"  target (queries well under a second, answers right): {'met' if ok else 'NOT met'}")
    return ok


if __name__ == "__main__":
    main()

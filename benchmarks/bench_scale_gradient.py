"""Reverse-mode conservative gradients at researchers' sizes (``jacobian_reverse``).

1. Σ soft(x) + ½‖x‖² on R^100 000 with 10 000 exact ties, soft(x) = sign(x)·max(|x| − λ, 0): the set
   is the box x_i + soft'(x_i), with soft' ∈ [0, 1] at |x_i| = λ; checked against that closed form
   (support in random directions = Σ_i center_i d_i + Σ_ties max(d_i, 0)).  Time, peak RSS above the
   baseline, ratio to jax.grad.
2. Two-layer ReLU classifier 784→96→10, batch 32, softmax cross-entropy, 20 hidden pre-activations
   exactly 0: the zonotope of gradients, contains(jax.grad), and per tie the segment equals the
   difference of jax.grad of the program with that unit's relu derivative forced to 1 and to 0.
3. Ratio to jax.grad and to the forward ``conservative.jacobian`` at a size where forward runs.
Run: ``python benchmarks/bench_scale_gradient.py`` (add ``--quick`` for smaller sizes).
"""

from __future__ import annotations

import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from _timing import compare  # noqa: E402

import conservative  # noqa: E402
from conservative._reverse import jacobian_reverse  # noqa: E402

LAM = 0.5


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def soft(x):
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - LAM, 0.0)


def loss_soft(x):
    return jnp.sum(soft(x)) + 0.5 * jnp.sum(x * x)


def soft_point(n, ties, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    x[np.abs(np.abs(x) - LAM) < 1e-3] += 0.01  # no accidental near-ties
    x[x == 0] = 1.0
    idx = rng.choice(n, ties, replace=False)
    x[idx] = LAM * rng.choice([-1.0, 1.0], ties)
    return jnp.asarray(x), idx


def check_soft_box(J, x, idx):
    x = np.asarray(x)
    center = x + (np.abs(x) > LAM)
    tied = np.zeros(len(x), bool)
    tied[idx] = True
    center[tied] = x[tied]
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(5):
        d = rng.standard_normal(len(x))
        exact = center @ d + np.maximum(d[tied], 0).sum()
        got = J.support(d[None, :])
        worst = max(worst, abs(got - exact) / max(1.0, abs(exact)))
    return worst


def section_soft(n, ties):
    x, idx = soft_point(n, ties)
    jr = jacobian_reverse(loss_soft)
    base = rss_mb()
    t = time.perf_counter()
    J = jr(x)
    first = time.perf_counter() - t
    peak = rss_mb() - base
    err = check_soft_box(J, x, idx)
    print(f"[soft] n={n} ties={ties}: first call {first:.2f} s ({jr.last_mode}), peak RSS +{peak:.0f} MB, "
          f"groups={len(J._groups) if hasattr(J, '_groups') else '?'}, closed-form support rel. err {err:.1e}")
    g = jax.jit(jax.grad(loss_soft))
    r = compare({"jax.grad(jit)": lambda: g(x), "jacobian_reverse": lambda: jr(x)}, "jax.grad(jit)",
                rounds=3, min_seconds=0.01)
    print(f"[soft] warm jacobian_reverse / jit(jax.grad): {r['jacobian_reverse']['ratio']:.0f}x "
          f"({r['jacobian_reverse']['ms']:.0f} ms vs {r['jax.grad(jit)']['ms']:.3f} ms)")
    assert err <= 1e-9 and jr.last_mode == "reverse"


def classifier(d_in=784, h=96, c=10, batch=32, ties=20, seed=0):
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((d_in, h)) / np.sqrt(d_in)
    b1 = rng.standard_normal(h) * 0.1
    W2 = rng.standard_normal((h, c)) / np.sqrt(h)
    b2 = np.zeros(c)
    X = rng.standard_normal((batch, d_in))
    y = rng.integers(0, c, batch)
    # dyadic data (8 fractional bits, small magnitudes): every product and partial sum of X @ W1 + b1
    # is exact in float64 whatever the summation order, so the ties constructed below are exact
    W1 = np.round(W1 * 2 ** 8) / 2 ** 8
    X = np.round(X * 2 ** 8) / 2 ** 8
    b1 = np.round(b1 * 2 ** 8) / 2 ** 8
    rows = rng.choice(batch, ties, replace=False)  # one tie per sample: the shifts do not interfere
    pairs = sorted((int(n), int(rng.integers(h))) for n in rows)
    ks = [int(rng.integers(d_in)) for _ in pairs]
    for (n, j), k in zip(pairs, ks):
        W1[k, j] = 0.5  # a power of two: the shift of X[n, k] below is exact
    H = X @ W1 + b1
    for (n, j), k in zip(pairs, ks):
        X[n, k] -= H[n, j] / W1[k, j]  # changes row n only
    H = X @ W1 + b1
    params = {"W1": jnp.asarray(W1), "b1": jnp.asarray(b1), "W2": jnp.asarray(W2), "b2": jnp.asarray(b2)}
    return params, jnp.asarray(X), jnp.asarray(y), pairs, H


def section_classifier(ties=20, quick=False):
    params, X, y, pairs, _ = classifier(ties=ties)

    def loss(p):
        h = X @ p["W1"] + p["b1"]
        a = jax.nn.relu(h)
        z = a @ p["W2"] + p["b2"]
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(X.shape[0]), y])

    H = np.asarray(X @ params["W1"] + params["b1"])
    exact_zero = [(n, j) for n, j in pairs if H[n, j] == 0.0]
    other = np.sum(np.abs(H) < 1e-12) - len(exact_zero)
    print(f"[classifier] 784→96→10 batch 32: {sum(v.size for v in params.values())} parameters, "
          f"{len(exact_zero)} exactly tied pre-activations (+{other} other near-zero)")
    jr = jacobian_reverse(loss)
    base = rss_mb()
    t = time.perf_counter()
    J = jr(params)
    first = time.perf_counter() - t
    print(f"[classifier] zonotope in {first:.2f} s ({jr.last_mode}, {jr.last_reason}), peak RSS "
          f"+{rss_mb() - base:.0f} MB, {len(J)} generators")
    g = jax.grad(loss)(params)
    gflat = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(g)])
    t = time.perf_counter()
    ok = J.contains(gflat[None, :], tol=1e-9)
    print(f"[classifier] contains(jax.grad) = {ok} ({time.perf_counter() - t:.2f} s)")

    # per tie: the segment is grad(relu' of unit (n,j) = 1) - grad(relu' = 0), all others as jax's
    def loss_forced(p, n, j, s):
        h = X @ p["W1"] + p["b1"]
        mask = jnp.zeros(h.shape).at[n, j].set(1.0)
        a_other = jax.nn.relu(h) * (1 - mask)
        a_tied = jax.lax.stop_gradient(h) * 0 + s * (h - jax.lax.stop_gradient(h))  # value 0, slope s
        a = a_other + mask * a_tied
        z = a @ p["W2"] + p["b2"]
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(X.shape[0]), y])

    def flat(t):
        return np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(t)])

    segs = [flat(jax.grad(loss_forced)(params, n, j, 1.0)) - flat(jax.grad(loss_forced)(params, n, j, 0.0))
            for n, j in exact_zero]
    # closed form of the whole set: (grad with every tied unit's slope 0) + Σ [0,1]·seg_t;
    # compare supports in random directions
    def loss_all0(p):
        h = X @ p["W1"] + p["b1"]
        mask = np.zeros(h.shape)
        for n, j in exact_zero:
            mask[n, j] = 1.0
        a = jax.nn.relu(h) * (1 - mask) + mask * (h - jax.lax.stop_gradient(h)) * 0
        z = a @ p["W2"] + p["b2"]
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(X.shape[0]), y])

    base0 = flat(jax.grad(loss_all0)(params))
    S = np.stack(segs)
    rng = np.random.default_rng(2)
    worst = 0.0
    for _ in range(10):
        d = rng.standard_normal(len(base0))
        exact = base0 @ d + np.maximum(S @ d, 0).sum()
        worst = max(worst, abs(J.support(d[None, :]) - exact) / max(1.0, abs(exact)))
    print(f"[classifier] per-tie closed form (jax.grad with each unit's slope switched 0↔1): support rel. err "
          f"{worst:.1e} over 10 directions")
    gj = jax.jit(jax.grad(loss))
    r = compare({"jax.grad(jit)": lambda: gj(params), "jacobian_reverse": lambda: jr(params)}, "jax.grad(jit)",
                rounds=3, min_seconds=0.01)
    print(f"[classifier] warm jacobian_reverse / jit(jax.grad): {r['jacobian_reverse']['ratio']:.0f}x "
          f"({r['jacobian_reverse']['ms']:.0f} ms vs {r['jax.grad(jit)']['ms']:.3f} ms)")
    assert ok and worst <= 1e-8 and jr.last_mode == "reverse"


def section_vs_forward(n=2000, ties=200):
    x, idx = soft_point(n, ties, seed=3)
    jr = jacobian_reverse(loss_soft)
    jf = conservative.jacobian(loss_soft, fast=False, mode="forward")
    g = jax.jit(jax.grad(loss_soft))
    Jr, Jf = jr(x), jf(x)
    rng = np.random.default_rng(4)
    err = max(abs(Jr.support(d) - Jf.support(d)) for d in rng.standard_normal((5, 1, n)))
    r = compare({"jax.grad(jit)": lambda: g(x), "reverse": lambda: jr(x), "forward": lambda: jf(x)},
                "forward", rounds=3, min_seconds=0.01)
    print(f"[vs forward] soft loss n={n}, {ties} ties: reverse/forward {r['reverse']['ratio']:.3f} "
          f"(reverse {r['reverse']['ms']:.0f} ms, forward {r['forward']['ms']:.0f} ms, jit(jax.grad) "
          f"{r['jax.grad(jit)']['ms']:.3f} ms), max support difference {err:.1e}")


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    section_soft(10_000 if quick else 100_000, 1000 if quick else 10_000)
    section_classifier()
    section_vs_forward(500 if quick else 2000, 50 if quick else 200)

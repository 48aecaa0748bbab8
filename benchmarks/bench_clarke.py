"""Cost of the function's generalized derivatives against the program's set and plain AD.

At the same points (kinks of relu networks, max/abs compositions, the duplicated-neuron program)
we time ``clarke_jacobian`` (hull of the essentially active selections: a search with one LP per
partial pattern), ``lexicographic_jacobian`` (one vector forward pass of the interpreter, Khan &
Barton 2015), ``conservative.jacobian`` (the program's conservative set) and ``jax.jacfwd``
(jitted), in interleaved rounds (``_timing.compare``), and print the ratios to ``jax.jacfwd``
measured side by side. Read the ratios, not the milliseconds: the machine is shared.

Run: python benchmarks/bench_clarke.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

from benchmarks._timing import compare  # noqa: E402
from conservative import clarke_jacobian, jacobian, lexicographic_jacobian  # noqa: E402


def relu_net(n, width, seed):
    """Two-layer relu network R^n → R^2 whose first-layer biases make ``ties`` neurons tied at 0."""
    rng = np.random.default_rng(seed)
    W1 = jnp.asarray(rng.integers(-2, 3, (width, n)).astype(float))
    W2 = jnp.asarray(rng.standard_normal((2, width)))
    return lambda x: W2 @ jax.nn.relu(W1 @ x)


def cases(quick):
    w = jnp.array([1.0, -2.0])
    k = 8 if quick else 32
    d = 4 if quick else 8  # 2^d orthants: every one is an essentially active pattern (same Jacobian)
    out = [
        ("max(|x|) on R^4 at 0", lambda x: jnp.max(jnp.abs(x)), jnp.zeros(4)),
        (f"duplicated neurons k={k} (R^2)", lambda x: (k + 1) * jax.nn.relu(w @ x)
         - sum(jax.nn.relu(w @ x) for _ in range(k)), jnp.zeros(2)),
        (f"relu(x)-relu(-x) on R^{d} at 0", lambda x: jax.nn.relu(x) - jax.nn.relu(-x), jnp.zeros(d)),
    ]
    n, width = (3, 6) if quick else (4, 10)
    out.append((f"relu net {n}->{width}->2 at 0 (all tied)", relu_net(n, width, 0), jnp.zeros(n)))
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal(16))
    out.append(("relu net 16->32->2, smooth point", relu_net(16, 32, 1), x))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller programs, fewer rounds")
    args = ap.parse_args(argv)
    rounds = 3 if args.quick else 9
    print(f"{'program':38s} {'clarke/jacfwd':>14s} {'lex/jacfwd':>11s} {'jacobian/jacfwd':>16s} "
          f"{'jacfwd ms':>10s}  Clarke vs program vertices")
    for name, f, x in cases(args.quick):
        cj, lj, pj = clarke_jacobian(f), lexicographic_jacobian(f), jacobian(f)
        jf = jax.jit(jax.jacfwd(f))
        C, P = cj(x), pj(x)
        # the Clarke set is inside the program's set at every benchmarked point
        assert all(P.contains(v, tol=1e-9) for v in C.vertices), name
        r = compare({"jacfwd": lambda: jf(x), "clarke": lambda: cj(x), "lexicographic": lambda: lj(x),
                     "jacobian": lambda: pj(x)}, "jacfwd", rounds=rounds, min_seconds=0.01)
        try:
            nv = str(len(P.vertices))
        except Exception:  # noqa: BLE001 (too many to enumerate: report the structure)
            nv = f"sum of {P.num_groups} hulls"
        print(f"{name:38s} {r['clarke']['ratio']:14.1f} {r['lexicographic']['ratio']:11.1f} "
              f"{r['jacobian']['ratio']:16.1f} {r['jacfwd']['ms']:10.3f}  {len(C.vertices)} vs {nv}")
    print("ratios: median over interleaved rounds of the within-round ratio to jit(jax.jacfwd)")


if __name__ == "__main__":
    main()

"""The heavy-ball counterexample (slides "Example where heavy-ball fails", Vaiter 2023).

f(x) = x²/2 for x ≥ 0 and x²/8 for x < 0; heavy-ball with α = 1, β = 3/4 in phase space

    F(x, y) = (x - α f'(x) + β (x - y), x).

(a) the iterates converge to 0;
(b) the conservative Jacobian of F at (0, 0) is conv{M1, M2} (``conservative.jacobian``);
(c) M1 M1 M2 M2 has the eigenvalue -9/8, verified exactly with sympy, so the joint spectral
    radius of {M1, M2} exceeds 1 and the derivative recursion J_{k+1} = M_{σ_k} J_k can diverge
    although every iterate is at the fixed point; ``jax.jacfwd`` picks one vertex.

Writes ``heavy_ball.png`` and ``heavy_ball.json`` to ``--out``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples._common import enable_x64, output_dir, parser, pyplot, write_json

enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import conservative  # noqa: E402

ALPHA, BETA = 1.0, 0.75


def grad_f(x):
    """f'(x) = x for x ≥ 0 and x/4 for x < 0 (a Lipschitz gradient selection)."""
    return jnp.where(x >= 0, x, x / 4)


def heavy_ball_map(z):
    """F(x, y) = (x - α f'(x) + β(x - y), x) on the phase-space state z = (x, y)."""
    x, y = z[0], z[1]
    return jnp.stack([x - ALPHA * grad_f(x) + BETA * (x - y), x])


def iterate(z0, steps):
    zs = [jnp.asarray(z0, dtype=jnp.float64)]
    F = jax.jit(heavy_ball_map)
    for _ in range(steps):
        zs.append(F(zs[-1]))
    return np.asarray(jnp.stack(zs))


def exact_product_eigenvalues(M1, M2):
    """Eigenvalues of M1 M1 M2 M2 in exact rational arithmetic (sympy)."""
    R1 = sp.Matrix(M1.tolist()).applyfunc(lambda v: sp.nsimplify(v, rational=True))
    R2 = sp.Matrix(M2.tolist()).applyfunc(lambda v: sp.nsimplify(v, rational=True))
    P = R1 * R1 * R2 * R2
    return R1, R2, P, P.eigenvals()


def run(out_dir="out", quick=False, seed=0) -> dict:
    out = output_dir(out_dir)
    t0 = time.perf_counter()
    steps = 60 if quick else 200
    rng = np.random.default_rng(seed)
    starts = [np.array([1.0, 1.0]), np.array([-2.0, -2.0])] + [rng.uniform(-3, 3, size=2) for _ in range(3)]
    trajectories = [iterate(z0, steps) for z0 in starts]
    final = max(float(np.abs(t[-1]).max()) for t in trajectories)

    J = conservative.jacobian(heavy_ball_map)(jnp.zeros(2))
    V = J.vertices
    # Order the vertices: M1 is the f'' = 1 selection (x ≥ 0 branch), M2 the f'' = 1/4 one.
    V = V[np.argsort(V[:, 0, 0])]
    M1, M2 = V[0], V[1]
    R1, R2, P, eig = exact_product_eigenvalues(M1, M2)
    has_minus_9_8 = sp.Rational(-9, 8) in eig
    rho_word = max(abs(complex(e)) for e in eig) ** 0.25
    jax_element = np.asarray(jax.jacfwd(heavy_ball_map)(jnp.zeros(2)))
    jax_vertex = [i + 1 for i, M in enumerate((M1, M2)) if np.array_equal(M, jax_element)]

    Pn = np.asarray(P, dtype=np.float64)
    ks = np.arange(0, 41 if quick else 81)
    norms = [float(np.linalg.norm(np.linalg.matrix_power(Pn, int(k)), 2)) for k in ks]

    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for t in trajectories:
        ax[0].semilogy(np.maximum(np.abs(t[:, 0]), 1e-300), lw=1)
    ax[0].set_xlabel("k")
    ax[0].set_ylabel("|x_k|")
    ax[0].set_title("heavy-ball iterates converge to 0")
    ax[1].semilogy(ks, norms, "o-", ms=3, label=r"$\|(M_1M_1M_2M_2)^k\|_2$")
    ax[1].semilogy(ks, (9 / 8) ** ks, "--", label=r"$(9/8)^k$")
    ax[1].set_xlabel("k")
    ax[1].set_title("products of Jacobian selections at 0 diverge")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(out / "heavy_ball.png", dpi=110)
    plt.close(fig)

    summary = {
        "alpha": ALPHA,
        "beta": BETA,
        "iterates_converge": final < 1e-6,
        "max_final_abs_iterate": final,
        "steps": steps,
        "conservative_jacobian_vertices": V,
        "M1": M1,
        "M2": M2,
        "M1M1M2M2_exact": [[str(v) for v in row] for row in P.tolist()],
        "M1M1M2M2_eigenvalues_exact": sorted(str(e) for e in eig),
        "eigenvalue_minus_9_8_verified": bool(has_minus_9_8),
        "jsr_lower_bound_from_word": rho_word,
        "jax_jacfwd_element": jax_element,
        "jax_element_is_vertex": jax_vertex,
        "product_norms": norms,
        "seconds": time.perf_counter() - t0,
    }
    write_json(out / "heavy_ball.json", summary)
    return summary


def main(argv=None):
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    s = run(args.out, quick=args.quick, seed=args.seed)
    print("heavy-ball counterexample (alpha = 1, beta = 3/4)")
    print(f"  (a) iterates converge to 0: {s['iterates_converge']} (max |x_k| after {s['steps']} steps = {s['max_final_abs_iterate']:.2e})")
    print(f"  (b) conservative Jacobian of F at (0, 0) = conv{{M1, M2}}:\n      M1 = {s['M1'].tolist()}\n      M2 = {s['M2'].tolist()}")
    print(f"  (c) M1 M1 M2 M2 = {s['M1M1M2M2_exact']} has eigenvalues {s['M1M1M2M2_eigenvalues_exact']} (exact, sympy)")
    print(f"      -9/8 verified: {s['eigenvalue_minus_9_8_verified']}; JSR ≥ (9/8)^(1/4) = {s['jsr_lower_bound_from_word']:.6f} > 1")
    print(f"      jax.jacfwd returns {s['jax_jacfwd_element'].tolist()} = vertex M{s['jax_element_is_vertex']}")
    print(f"  wrote {Path(args.out) / 'heavy_ball.png'} and heavy_ball.json")


if __name__ == "__main__":
    main()

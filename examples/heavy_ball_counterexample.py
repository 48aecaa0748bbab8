"""The heavy-ball counterexample (slides "Example where heavy-ball fails", Vaiter 2023).

f(x) = x²/2 for x ≥ 0 and x²/8 for x < 0; heavy-ball with α = 1, β = 3/4 in phase space

    F(x, y) = (x - α f'(x) + β (x - y), x).

(a) the iterates converge to 0;
(b) the conservative Jacobian of F at (0, 0) is conv{M1, M2} (``conservative.jacobian``);
(c) M1 M1 M2 M2 has the eigenvalue -9/8, verified exactly with sympy, so the joint spectral
    radius of {M1, M2} exceeds 1 (``theory.jsr`` brackets it with certificates) and the derivative
    recursion J_{k+1} = M_{σ_k} J_k can diverge although every iterate is at the fixed point;
    ``jax.jacfwd`` picks one vertex;
(d) the set-valued piggyback started at the fixed point: diam 𝒥_k grows geometrically (rate
    close to the JSR); for gradient descent the sets converge (to the fixed set [2, 8]);
(e) two equivalent programs for f' (``x >= 0`` vs ``x > 0`` in ``jnp.where``) pick different
    selections at 0; alternating them, the iterates stay exactly at 0 while JAX's derivative
    of the iterates diverges;
(f) the same alternation for gradient descent: JAX's derivative converges.

Writes ``heavy_ball.png`` and ``heavy_ball.json`` to ``--out``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples._common import (
    check_run_args,
    enable_x64,
    output_dir,
    parse_args,
    parser,
    pyplot,
    save_figure,
    write_json,
)

enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import conservative  # noqa: E402
import theory  # noqa: E402

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


def heavy_ball_closed(z):
    """The heavy-ball map written with ``grad_f_closed``: same function, other AD selection at 0."""
    x, y = z[0], z[1]
    return jnp.stack([x - ALPHA * grad_f_closed(x) + BETA * (x - y), x])


def grad_f_closed(x):
    """The same f' written with a strict comparison: JAX's derivative at 0 is the x < 0 piece."""
    return jnp.where(x > 0, x, x / 4)


def heavy_ball_theta(z, theta):
    """Heavy-ball perturbed by θ on the position: 0 is the fixed point at θ = 0."""
    return heavy_ball_map(z) + jnp.stack([theta[0], 0.0])


GD_STEP = 0.5


def gd_map(x):
    """Gradient descent x ↦ x - γ f'(x) with γ = 1/2: selections 1 - 1/2 and 1 - 1/8 at 0, both in (0, 1).

    (With γ = 1 the selection 1 - f''(0+) is exactly 0 and the derivative vanishes after two
    steps: it converges too, but the plot says less.)"""
    return x - GD_STEP * grad_f(x)


def gd_map_closed(x):
    return x - GD_STEP * grad_f_closed(x)


def gd_theta(x, theta):
    return gd_map(x) + theta


def alternating_ad_jacobians(step_maps, pattern, steps):
    """JAX's Jacobian ∂z_k/∂z_0 of the iterates started at 0, when step k uses
    ``step_maps[pattern[k % len(pattern)]]`` (equivalent programs, different AD selections)."""
    d = 2 if step_maps[0] is not gd_map else 1
    out, J = [], np.eye(d)
    z = jnp.zeros(d)
    jacs = [jax.jit(jax.jacfwd(F)) for F in step_maps]
    maps = [jax.jit(F) for F in step_maps]
    max_abs = 0.0
    for k in range(steps):
        i = pattern[k % len(pattern)]
        J = np.asarray(jacs[i](z)) @ J
        z = maps[i](z)
        max_abs = max(max_abs, float(jnp.abs(z).max()))
        out.append(float(np.linalg.norm(J, 2)))
    return np.array(out), max_abs


def _positive(v):
    """For log plots: exact zeros are not drawn (instead of being clipped to a tiny number)."""
    v = np.asarray(v, dtype=np.float64)
    return np.where(v > 0, v, np.nan)


def fitted_rate(values, start=None):
    """Geometric rate of a sequence from a least-squares fit of log(values) on k (second half)."""
    v = np.asarray(values, dtype=np.float64)
    k = np.arange(len(v))
    start = len(v) // 2 if start is None else start
    keep = (k >= start) & (v > 0)
    slope = np.polyfit(k[keep], np.log(v[keep]), 1)[0]
    return float(np.exp(slope))


def run(out_dir="out", quick=False, seed=0) -> dict:
    seed, quick = check_run_args(seed, quick)
    out = output_dir(out_dir)
    t0 = time.perf_counter()
    steps = 200
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
    # the vertices and JAX's element come from different programs: equal up to round-off (the two
    # vertices differ by 3/4 in one entry, so the match is unambiguous)
    atol = 64 * np.finfo(np.float64).eps * max(1.0, float(np.abs(V).max()))
    jax_vertex = [i + 1 for i, M in enumerate((M1, M2)) if np.allclose(M, jax_element, rtol=0.0, atol=atol)]

    # (c) joint spectral radius of the family {M1, M2}, with its certificates
    jsr = theory.jsr([M1, M2])
    gd_jsr = theory.jsr([np.array([[1 - GD_STEP]]), np.array([[1 - GD_STEP / 4]])])
    Pn = np.asarray(P, dtype=np.float64)
    ks = np.arange(0, 41 if quick else 81)
    norms = [float(np.linalg.norm(np.linalg.matrix_power(Pn, int(k)), 2)) for k in ks]

    # (d) set-valued piggyback started at the fixed point (θ = 0 perturbs the position)
    pb_steps = 30 if quick else 120
    pb_hb = conservative.piggyback(heavy_ball_theta, jnp.zeros(2), jnp.zeros(1), pb_steps)
    pb_gd = conservative.piggyback(gd_theta, jnp.zeros(1), jnp.zeros(1), pb_steps)
    hb_rate = fitted_rate(pb_hb.diameters[1:])

    # (e) equivalent programs, alternated: iterates stay at 0, AD derivative diverges
    alt_steps = 200 if quick else 400
    hb_norms, hb_max_iterate = alternating_ad_jacobians((heavy_ball_map, heavy_ball_closed), (1, 1, 0, 0), alt_steps)
    # (f) the same for gradient descent: the AD derivative converges
    gd_norms, gd_max_iterate = alternating_ad_jacobians((gd_map, gd_map_closed), (1, 1, 0, 0), alt_steps)
    hb_ad_rate = fitted_rate(hb_norms)
    ad_selections = [np.asarray(jax.jacfwd(m)(jnp.zeros(2))) for m in (heavy_ball_map, heavy_ball_closed)]

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0]
    for t in trajectories:
        ax[0].semilogy(_positive(np.abs(t[:, 0])), lw=1)
    ax[0].set_xlabel("k")
    ax[0].set_ylabel("|x_k|")
    ax[0].set_title("heavy-ball iterates converge to 0")
    ax[1].semilogy(ks, norms, "o-", ms=3, label=r"$\|(M_1M_1M_2M_2)^k\|_2$")
    ax[1].semilogy(ks, (9 / 8) ** ks, "--", label=r"$(9/8)^k$")
    ax[1].set_xlabel("k")
    ax[1].set_title("products of Jacobian selections at 0 diverge")
    ax[1].legend()
    ax2 = axes[1]
    ks_pb = np.arange(pb_steps + 1)
    ax2[0].semilogy(ks_pb, _positive(pb_hb.diameters), label="heavy-ball: diam $\\mathcal{J}_k$")
    ax2[0].semilogy(ks_pb, _positive(pb_gd.diameters),
                    label="gradient descent ($\\gamma=1/2$): diam $\\mathcal{J}_k$ → 6")
    ref = pb_hb.diameters[pb_steps // 2] * jsr.upper ** (ks_pb - pb_steps // 2)
    ax2[0].semilogy(ks_pb[1:], ref[1:], "k--", lw=0.8, label=f"rate JSR = {jsr.upper:.4f}")
    ax2[0].set_xlabel("k")
    ax2[0].set_title("set-valued piggyback at the fixed point")
    ax2[0].legend(fontsize=8)
    ax2[1].semilogy(hb_norms, label="heavy-ball")
    ax2[1].semilogy(_positive(gd_norms), label="gradient descent ($\\gamma=1/2$)")
    ax2[1].set_xlabel("k")
    ax2[1].set_ylabel(r"$\|\partial z_k / \partial z_0\|_2$ (JAX)")
    ax2[1].set_title("AD of two equivalent programs, alternated")
    ax2[1].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "heavy_ball.png", dpi=110)
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
        "jsr_lower": jsr.lower,
        "jsr_upper": jsr.upper,
        # 0-based indices into [M1, M2], the convention of theory.JSRResult.certificate
        "jsr_certificate_word": [int(i) for i in jsr.certificate],
        "jsr_summary": repr(jsr),
        "gradient_descent_family_jsr_upper": gd_jsr.upper,
        "jax_jacfwd_element": jax_element,
        "jax_element_is_vertex": jax_vertex,
        "product_norms": norms,
        "piggyback_steps": pb_steps,
        "piggyback_heavy_ball_diameters": pb_hb.diameters,
        "piggyback_heavy_ball_fitted_rate": hb_rate,
        "piggyback_heavy_ball_max_set_size": int(pb_hb.sizes.max()),
        "piggyback_ad_element_always_in_set": bool(pb_hb.ad_in_set.all() and pb_gd.ad_in_set.all()),
        "piggyback_gradient_descent_diameters": pb_gd.diameters,
        "piggyback_gradient_descent_final_diameter": float(pb_gd.diameters[-1]),
        "alternating_programs": {
            "implementations": ["where(x >= 0, x, x/4)", "where(x > 0, x, x/4)"],
            "their_jax_selections_at_0": ad_selections,
            "pattern": "closed, closed, open, open (repeated)",
            "steps": alt_steps,
            "heavy_ball_max_abs_iterate": hb_max_iterate,
            "heavy_ball_ad_jacobian_norms": hb_norms,
            "heavy_ball_ad_fitted_rate": hb_ad_rate,
            "heavy_ball_ad_diverges": (bool(hb_norms[-1] > 1e3 * hb_norms[0]) if not quick
                                       else bool(hb_norms[-1] > 10 * hb_norms[0])),
            "gradient_descent_max_abs_iterate": gd_max_iterate,
            "gradient_descent_ad_jacobian_norms": gd_norms,
            "gradient_descent_step": GD_STEP,
            "gradient_descent_ad_converges": bool(gd_norms[-1] < 1e-6),
        },
        "seconds": time.perf_counter() - t0,
    }
    write_json(out / "heavy_ball.json", summary, seed=seed, quick=quick)
    return summary


def main(argv=None):
    args = parse_args(parser(__doc__.splitlines()[0]), argv)
    s = run(args.out, quick=args.quick, seed=args.seed)
    print("heavy-ball counterexample (alpha = 1, beta = 3/4)")
    print(f"  (a) iterates converge to 0: {s['iterates_converge']} "
          f"(max |x_k| after {s['steps']} steps = {s['max_final_abs_iterate']:.2e})")
    print(f"  (b) conservative Jacobian of F at (0, 0) = conv{{M1, M2}}:\n      M1 = {s['M1'].tolist()}\n"
          f"      M2 = {s['M2'].tolist()}")
    print(f"  (c) M1 M1 M2 M2 = {s['M1M1M2M2_exact']} has eigenvalues {s['M1M1M2M2_eigenvalues_exact']} (exact, sympy)")
    print(f"      -9/8 verified: {s['eigenvalue_minus_9_8_verified']}; "
          f"JSR ≥ (9/8)^(1/4) = {s['jsr_lower_bound_from_word']:.6f} > 1")
    word = s["jsr_certificate_word"]
    print(f"      theory.jsr: {s['jsr_lower']:.10f} ≤ JSR ≤ {s['jsr_upper']:.10f}, lower bound from the word "
          f"{tuple(word)} (0-based indices into [M1, M2]) = {' '.join('M%d' % (i + 1) for i in word)}")
    print(f"      jax.jacfwd returns {s['jax_jacfwd_element'].tolist()} = vertex "
          f"{', '.join('M%d' % i for i in s['jax_element_is_vertex'])}")
    a = s["alternating_programs"]
    print("  (d) set-valued piggyback at the fixed point: diam 𝒥_k grows at the fitted rate "
          f"{s['piggyback_heavy_ball_fitted_rate']:.6f} per step"
          f" (JSR {s['jsr_upper']:.6f}; the fit includes polynomial factors over a finite window)")
    print(f"      (gradient descent: final diameter {s['piggyback_gradient_descent_final_diameter']:.2e}); "
          f"JAX's element always in the set: {s['piggyback_ad_element_always_in_set']}")
    print(f"  (e) {a['implementations'][0]} and {a['implementations'][1]} alternated: "
          f"iterates stay at {a['heavy_ball_max_abs_iterate']}, "
          f"‖∂z_k/∂z_0‖ = {a['heavy_ball_ad_jacobian_norms'][-1]:.3e} after {a['steps']} steps "
          f"(rate {a['heavy_ball_ad_fitted_rate']:.6f})")
    print(f"  (f) gradient descent, same alternation: ‖∂x_k/∂x_0‖ = {a['gradient_descent_ad_jacobian_norms'][-1]:.3e} "
          f"(converges: {a['gradient_descent_ad_converges']})")
    print(f"  wrote {Path(args.out) / 'heavy_ball.png'} and heavy_ball.json")


if __name__ == "__main__":
    main()

"""Clarke Jacobian vs the program's conservative Jacobian: which AD elements are real derivatives.

At a kink, automatic differentiation returns one element of the *program's* conservative Jacobian
J_f(x) (``conservative.jacobian``: each occurrence of a nonsmooth primitive chooses on its own,
slides "Conservative gradients", Vaiter 2023). The *function's* Clarke Jacobian ∂ᶜf(x)
(``conservative.clarke_jacobian``: the hull of the essentially active selections, Scholtes 2012)
is the smallest conservative Jacobian, ∂ᶜf(x) ⊆ conv J_f(x); ``conservative.audit_ad`` says where
JAX's ``jacfwd``/``jacrev`` elements fall, and ``lexicographic_jacobian`` (Khan & Barton 2015)
gives one element of ∂ᶜf(x) in one pass. The script reports, for each program, both sets, JAX's
elements with their certified distances and verdicts, the LD element, and checks that every
vertex of ∂ᶜf(x) is a limit of Jacobians jax.jacfwd(f)(x + h·d) sampled near x (random d):

* three small piecewise-linear programs of two variables in the style of Khan & Barton (2013,
  "Evaluating an element of the Clarke generalized Jacobian of a composite piecewise
  differentiable function", ACM TOMS 39(4), §6). The seeds of this project do not contain that
  paper, so these are *not* its examples 6.1-6.3 verbatim: (1) max(min(x₁, -x₂), x₂ - x₁) (three
  pieces, program set = Clarke set), (2) relu(x₁+x₂) - relu(-(x₁+x₂)) + |x₁ - x₂| = 2·max(x₁, x₂)
  (a cancelling pair: a parallelogram against a segment), (3) |x₁| + |x₂| - max(|x₁|, |x₂|) =
  min(|x₁|, |x₂|) (a diamond against a larger octagon-like polygon);
* the minimum-utility targets of a heat-exchanger network (the setting of Khan & Barton's
  example 6.5), written from the pinch-location formulation of Duran & Grossmann (1986,
  "Simultaneous optimization and heat integration of chemical processes", AIChE J. 32(1), eqs.
  for the heat surplus above each pinch candidate): with hot streams i (heat-capacity flow rate
  F_i, T_i^in → T_i^out), cold streams j (f_j, t_j^in → t_j^out, shifted by ΔT_min) and the pinch
  candidates T^p (the inlet temperatures),
  z^p = Σ_j f_j [max(0, t_j^out - T^p) - max(0, t_j^in - T^p)] - Σ_i F_i [max(0, T_i^in - T^p) -
  max(0, T_i^out - T^p)], Q_H = max(0, max_p z^p), Q_C = Q_H + Σ_i F_i(T_i^in - T_i^out) -
  Σ_j f_j(t_j^out - t_j^in). The data is the four-stream problem of Kemp ("Pinch Analysis and
  Process Integration", 2007, ch. 2; Q_H = 20, Q_C = 60 at ΔT_min = 10, checked here against an
  independent problem-table cascade), differentiated in (F_H1, F_H2) at F_H2 = 0.5 where the
  pinch candidates 90 and 30 tie (Q_H = 80);
* the identity written as relu(x) - relu(-x) + a·(relu(x) - relu(-x) - x): program set
  [-a, 2 + a] for the derivative 1;
* duplicated neurons (k+1)·relu(w·x) - Σ_{i≤k} relu(w·x) = relu(w·x): the program's set is 2k+1
  times longer than conv{0, w} (131× at k = 65);
* ``jax.nn.softplus`` at 0: its ``where``-based implementation gives [-0.5, 1.5] for 1/2;
* the limit of a contracting iteration (slides): x ↦ |x|/2 + θ at θ = 0, x̄(θ) = max(2θ, 2θ/3):
  ∂ᶜx̄(0) = [2/3, 2] (``clarke_jacobian`` of the unrolled iteration) = conv J_imp (J_imp =
  {(1-a)⁻¹ : a ∈ [-1/2, 1/2]}, ``theory.implicit_set``) ⊊ conv J_pb = fix 𝒥 = [0, 2]
  (``theory.fixed_set``, ``theory.compare_limits`` certifies the strict inclusion).

The figure draws the 2-D sets as polygons (program's set, Clarke set, AD and LD elements) and the
1-D sets as intervals. Writes ``clarke_vs_conservative.png`` and ``clarke_vs_conservative.json``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples._common import check_run_args, enable_x64, output_dir, parse_args, parser, pyplot, save_figure, write_json

enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import theory  # noqa: E402
from conservative import MatrixSet, SetTooLargeError, audit_ad, clarke_jacobian, jacobian, lexicographic_jacobian  # noqa: E402

EPS = np.finfo(np.float64).eps

# Kemp's four-stream problem: hot (T_in, T_out), cold (t_in, t_out, f), ΔT_min
HOT = [(170.0, 60.0), (150.0, 30.0)]
HOT_F = (3.0, 1.5)
COLD = [(20.0, 135.0, 2.0), (80.0, 140.0, 4.0)]
DT_MIN = 10.0
HEN_TIE = (3.0, 0.5)  # (F_H1, F_H2): the candidates 90 and 30 tie


def utilities(F):
    """(Q_H, Q_C) of the network for hot heat-capacity flow rates F (Duran & Grossmann 1986)."""
    cold = [(ti + DT_MIN, to + DT_MIN, f) for ti, to, f in COLD]
    cands = [h[0] for h in HOT] + [c[0] for c in cold]
    z = []
    for Tp in cands:
        above_cold = sum(f * (jnp.maximum(0.0, to - Tp) - jnp.maximum(0.0, ti - Tp)) for ti, to, f in cold)
        above_hot = sum(F[i] * (jnp.maximum(0.0, Ti - Tp) - jnp.maximum(0.0, To - Tp))
                        for i, (Ti, To) in enumerate(HOT))
        z.append(above_cold - above_hot)
    qh = jnp.maximum(0.0, jnp.max(jnp.stack(z)))
    omega = sum(F[i] * (Ti - To) for i, (Ti, To) in enumerate(HOT)) - sum(f * (to - ti) for ti, to, f in COLD)
    return jnp.stack([qh, qh + omega])


def problem_table(F):
    """Q_H, Q_C by the problem-table cascade (Linnhoff & Flower 1978), an independent check."""
    streams = [(Ti, To, F[i], "hot") for i, (Ti, To) in enumerate(HOT)]
    streams += [(ti + DT_MIN, to + DT_MIN, f, "cold") for ti, to, f in COLD]
    temps = sorted({t for s in streams for t in s[:2]}, reverse=True)
    cum, worst = 0.0, 0.0
    for hi, lo in zip(temps[:-1], temps[1:]):
        need = 0.0
        for a, b, cp, kind in streams:
            top, bot = max(a, b), min(a, b)
            if bot <= lo and top >= hi:
                need += cp * (hi - lo) * (1.0 if kind == "cold" else -1.0)
        cum += need
        worst = max(worst, cum)
    return worst, worst - cum


def kb1(x):
    return jnp.maximum(jnp.minimum(x[0], -x[1]), x[1] - x[0])


def kb2(x):
    s = x[0] + x[1]
    return jax.nn.relu(s) - jax.nn.relu(-s) + jnp.abs(x[0] - x[1])


def kb3(x):
    return jnp.abs(x[0]) + jnp.abs(x[1]) - jnp.maximum(jnp.abs(x[0]), jnp.abs(x[1]))


def relu_identity(a):
    return lambda x: jax.nn.relu(x) - jax.nn.relu(-x) + a * (jax.nn.relu(x) - jax.nn.relu(-x) - x)


def duplicated(k, w):
    return lambda x: (k + 1) * jax.nn.relu(w @ x) - sum(jax.nn.relu(w @ x) for _ in range(k))


def sampled_limits(f, x, n_samples, seed, h=1e-7):
    """Distinct jax.jacfwd(f) at x + h·d, d random unit directions (limiting Jacobians)."""
    flat = np.asarray(x, np.float64).ravel()
    D = np.random.default_rng(seed).standard_normal((n_samples, flat.size))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    g = lambda z: jnp.ravel(f(z.reshape(np.shape(x))))  # noqa: E731
    J = np.asarray(jax.vmap(jax.jacfwd(g))(jnp.asarray(flat + h * D)))
    _, first = np.unique(np.round(J.reshape(len(J), -1), 5), axis=0, return_index=True)
    return J[np.sort(first)]


def extreme_points(S, directions=64):
    """The vertices of S, or (sets too large to enumerate, 1×2 here) its support points in
    ``directions`` evenly spread directions: vertices of S, exact for segments and polygons with
    fewer edges than directions."""
    try:
        return S.vertices, True
    except SetTooLargeError:
        m, n = S.shape
        if (m, n) != (1, 2):
            raise
        ang = np.linspace(0, 2 * np.pi, directions, endpoint=False)
        pts = np.stack([S.argsupport(np.array([[np.cos(a), np.sin(a)]])) for a in ang])
        return np.unique(np.round(pts, 12), axis=0), False


def _diameter(V):
    F = np.asarray(V).reshape(len(V), -1)
    return float(np.max(np.linalg.norm(F[:, None, :] - F[None, :, :], axis=2)))


def study(name, f, x, n_samples, seed, row=None):
    """Both sets, the audit, the LD element and the sampled-limit checks at x."""
    t_start = time.perf_counter()
    a = audit_ad(f)(x)
    C, P = a.clarke, a.conservative
    PV, enumerated = extreme_points(P)
    ld = lexicographic_jacobian(f)(x, M=np.random.default_rng(seed).standard_normal((C.shape[1], C.shape[1])))
    scale = max(1.0, float(np.abs(PV).max()))
    tol = 1e3 * EPS * scale
    limits = sampled_limits(f, x, n_samples, seed)
    # limits at x + h·d approach the pieces' Jacobians to O(h) (exactly for piecewise-affine f)
    lim_tol = max(1e-6 * scale, tol)
    vertex_gap = max(float(np.min(np.abs(limits - v).reshape(len(limits), -1).max(axis=1))) for v in C.vertices)
    rec = {
        "seconds": time.perf_counter() - t_start,
        "name": name,
        "point": np.asarray(x).tolist(),
        "clarke_vertices": C.vertices,
        "clarke_exact": C.exact,
        "conservative_vertices": PV,
        "conservative_vertices_enumerated": enumerated,
        "clarke_diameter": _diameter(C.vertices),
        "conservative_diameter": _diameter(PV),
        "clarke_inside_conservative": bool(all(P.contains(v, tol=tol) for v in C.vertices)),
        "ad": {e.name: {"matrix": e.matrix, "verdict": e.verdict, "clarke_distance": e.clarke_distance,
                        "conservative_distance": e.conservative_distance} for e in a.elements},
        "ld_element": ld,
        "ld_clarke_distance": C.distance_bounds(ld),
        "sampled_limits": len(limits),
        "limits_inside_clarke": bool(all(C.distance(L) <= lim_tol for L in limits)),
        "max_vertex_to_nearest_limit": vertex_gap,
        "clarke_vertices_are_limits": bool(vertex_gap <= lim_tol),
        "tol": tol,
        "row": row,
    }
    return rec, a


def _interval(S):
    v = S.vertices.ravel()
    return [float(v.min()), float(v.max())]


def inclusion_chain(steps):
    """∂ᶜx̄(0) = conv J_imp ⊊ conv J_pb for F(x, θ) = |x|/2 + θ at (0, 0) (slides)."""
    F = lambda x, t: jnp.abs(x) / 2 + t  # noqa: E731
    x0, t0 = jnp.zeros(1), jnp.zeros(1)
    family = jacobian(F, argnums=(0, 1))(x0, t0)
    pb, pb_err = theory.fixed_set(family)
    imp = theory.implicit_set(family, resolution=50)
    cmp = theory.compare_limits(family, fixed=(pb, pb_err))

    def unrolled(t):
        x = jnp.zeros(1)
        for _ in range(steps):
            x = F(x, t)
        return x

    clarke_k = clarke_jacobian(unrolled)(t0)
    clarke_closed = clarke_jacobian(lambda t: jnp.maximum(2 * t, 2 * t / 3))(t0)
    imp_hull = MatrixSet(imp.samples)
    # the unrolled iteration's Clarke set is [Σ(-1/2)^j, Σ(1/2)^j] over j < steps: 2^(1-steps)-close
    return {
        "map": "F(x, theta) = |x|/2 + theta at (0, 0)",
        "family_vertices": family.vertices,
        "clarke_unrolled": _interval(clarke_k),
        "clarke_unrolled_steps": steps,
        "clarke_unrolled_exact": clarke_k.exact,
        "clarke_closed_form": _interval(clarke_closed),
        "conv_implicit": _interval(imp_hull),
        "implicit_vertex_images": imp.vertex_images.ravel(),
        "piggyback_fixed_set": _interval(pb),
        "piggyback_error_bound": pb_err,
        "hausdorff_clarke_unrolled_vs_conv_implicit": theory.hausdorff(clarke_k, imp_hull).upper,
        "hausdorff_clarke_closed_vs_conv_implicit": theory.hausdorff(clarke_closed, imp_hull).upper,
        "unrolled_truncation_bound": 2.0 ** (1 - steps),
        "gap_pb_over_conv_implicit": {"lower": theory.gap(pb, imp_hull).lower, "upper": theory.gap(pb, imp_hull).upper},
        "compare_limits_strict": cmp.strict,
        "compare_limits_excess_lower": cmp.excess_lower,
        "compare_limits_includes": cmp.includes,
        "summary": cmp.summary(),
    }


def _hull_polygon(points):
    """Points (k, 2) → a closed polygon (its convex hull in order), or the segment/point."""
    P = np.unique(np.round(np.asarray(points, np.float64).reshape(-1, 2), 12), axis=0)
    if len(P) <= 2:
        return P
    c = P.mean(axis=0)
    ang = np.arctan2(P[:, 1] - c[1], P[:, 0] - c[0])
    P = P[np.argsort(ang)]
    if np.linalg.matrix_rank(P - P[0], tol=1e-9) < 2:  # collinear: the two extremes
        d = (P - P[0]) @ (P[-1] - P[0] if np.any(P[-1] != P[0]) else P[1] - P[0])
        return P[[np.argmin(d), np.argmax(d)]]
    return np.vstack([P, P[:1]])


def _draw_2d(ax, rec, title):
    row = rec["row"] or 0
    P = np.asarray(rec["conservative_vertices"])[:, row, :]
    C = np.asarray(rec["clarke_vertices"])[:, row, :]
    for pts, style in [(P, dict(color="tab:blue", alpha=0.25, label="program's set conv J")),
                       (C, dict(color="tab:red", alpha=0.55, label="Clarke ∂ᶜf"))]:
        poly = _hull_polygon(pts)
        if len(poly) >= 3:
            ax.fill(poly[:, 0], poly[:, 1], **style)
        else:
            ax.plot(poly[:, 0], poly[:, 1], lw=6 if style["color"] == "tab:blue" else 3, solid_capstyle="round",
                    color=style["color"], alpha=style["alpha"] + 0.2, label=style["label"])
    for name, mk in [("jacfwd", "o"), ("jacrev", "x")]:
        M = np.asarray(rec["ad"][name]["matrix"])[row]
        ax.plot(M[0], M[1], mk, color="k", ms=8, mfc="none" if mk == "o" else None, label=f"jax.{name}")
    L = np.asarray(rec["ld_element"])[row]
    ax.plot(L[0], L[1], "*", color="tab:green", ms=11, label="LD element")
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)


def run(out_dir="out", quick=False, seed=0) -> dict:
    seed, quick = check_run_args(seed, quick)
    out = output_dir(out_dir)
    t0 = time.perf_counter()
    n_samples = 400 if quick else 3000
    x2 = jnp.zeros(2)
    programs = {}
    for name, f in [("kb_style_1", kb1), ("kb_style_2", kb2), ("kb_style_3", kb3)]:
        programs[name], _ = study(name, f, x2, n_samples, seed)
    hen_x = jnp.asarray(HEN_TIE)
    programs["heat_exchanger"], _ = study("heat_exchanger", utilities, hen_x, n_samples, seed, row=0)
    q = np.asarray(utilities(hen_x))
    pt = problem_table(HEN_TIE)
    base = np.asarray(utilities(jnp.asarray(HOT_F)))
    hen = {"hot_streams": HOT, "cold_streams": COLD, "dT_min": DT_MIN, "point_F": HEN_TIE,
           "QH_QC_at_point": q, "problem_table_at_point": pt,
           "QH_QC_at_kemp_data": base, "problem_table_at_kemp_data": problem_table(HOT_F)}

    relu_family = []
    for a in ([0, 1, 4] if quick else [0, 1, 2, 4, 8, 16]):
        rec, _ = study(f"relu_identity_a{a}", relu_identity(float(a)), jnp.zeros(1), 50, seed)
        rec["a"] = a
        rec["conservative_interval"] = [float(np.min(rec["conservative_vertices"])),
                                        float(np.max(rec["conservative_vertices"]))]
        relu_family.append(rec)

    w = jnp.array([1.0, -2.0])
    dup = []
    for k in ([1, 4, 65] if quick else [1, 2, 4, 8, 16, 32, 65]):
        rec, _ = study(f"duplicated_k{k}", duplicated(k, w), x2, 200, seed)
        rec["k"] = k
        rec["diameter_ratio"] = rec["conservative_diameter"] / rec["clarke_diameter"]
        dup.append(rec)

    softplus, _ = study("softplus", jax.nn.softplus, jnp.zeros(1), 50, seed)
    chain = inclusion_chain(30 if quick else 60)

    # ------------------------------------------------------------------ figure
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(14, 8.5))
    titles = {"kb_style_1": "max(min(x₁,-x₂), x₂-x₁)", "kb_style_2": "relu(s)-relu(-s)+|x₁-x₂| = 2max(x₁,x₂)",
              "kb_style_3": "|x₁|+|x₂|-max(|x₁|,|x₂|)", "heat_exchanger": "∇Q_H (F_H1, F_H2), HEN pinch tie"}
    for ax, key in zip(axes[0].tolist() + [axes[1, 0]], titles):
        _draw_2d(ax, programs[key], titles[key])
    axes[0, 0].legend(fontsize=7, loc="lower left")
    ax = axes[1, 1]
    rows = [(f"relu id a={r['a']}", r) for r in relu_family] + [("softplus", softplus)]
    for i, (lab, r) in enumerate(rows):
        lo, hi = float(np.min(r["conservative_vertices"])), float(np.max(r["conservative_vertices"]))
        ax.plot([lo, hi], [i, i], color="tab:blue", lw=8, alpha=0.35)
        c = np.asarray(r["clarke_vertices"]).ravel()
        ax.plot([c.min(), c.max()], [i, i], "|-", color="tab:red", lw=3, ms=14)
        ax.plot(float(np.asarray(r["ad"]["jacfwd"]["matrix"]).ravel()[0]), i, "ko", mfc="none")
    ax.set_yticks(range(len(rows)), [lab for lab, _ in rows], fontsize=8)
    ax.set_title("1-D: program's set (blue), Clarke (red), jacfwd (o)", fontsize=9)
    ax.grid(alpha=0.3)
    ax = axes[1, 2]
    ivs = [("∂ᶜx̄(0)", chain["clarke_unrolled"], "tab:red"), ("conv J_imp", chain["conv_implicit"], "tab:orange"),
           ("conv J_pb = fix J", chain["piggyback_fixed_set"], "tab:blue")]
    for i, (lab, (lo, hi), col) in enumerate(ivs):
        ax.plot([lo, hi], [i, i], "|-", color=col, lw=6, ms=16)
        ax.text(hi + 0.05, i, f"[{lo:.4g}, {hi:.4g}]", va="center", fontsize=8)
    ax.set_yticks(range(3), [lab for lab, _, _ in ivs])
    ax.set_xlim(-0.2, 2.8)
    ax.set_title("x ↦ |x|/2 + θ: ∂ᶜx̄ = conv J_imp ⊊ conv J_pb", fontsize=9)
    ax.grid(alpha=0.3)
    ax2 = axes[0, 0].inset_axes([0.64, 0.06, 0.33, 0.28])
    ax2.semilogy([d["k"] for d in dup], [d["diameter_ratio"] for d in dup], "o-", ms=3)
    ax2.set_title("dup. neurons: diam ratio", fontsize=7)
    ax2.tick_params(labelsize=6)
    fig.suptitle("Clarke Jacobian (function) inside the conservative Jacobian of the program, with JAX's elements")
    fig.tight_layout()
    save_figure(fig, out / "clarke_vs_conservative.png", dpi=100)
    plt.close(fig)

    every = list(programs.values()) + relu_family + dup + [softplus]
    summary = {
        "programs": programs,
        "heat_exchanger": hen,
        "relu_identity_family": relu_family,
        "duplicated_neurons": dup,
        "softplus": softplus,
        "inclusion_chain": chain,
        "max_duplicated_diameter_ratio": max(d["diameter_ratio"] for d in dup),
        "all_clarke_inside_conservative": all(r["clarke_inside_conservative"] for r in every),
        "all_ld_inside_clarke": all(r["ld_clarke_distance"][1] <= r["tol"] for r in every),
        "all_clarke_vertices_are_limits": all(r["clarke_vertices_are_limits"] for r in every),
        "spurious_ad_elements": sorted(r["name"] for r in every
                                       if any(v["verdict"].startswith("spurious") for v in r["ad"].values())),
        "seconds": time.perf_counter() - t0,
    }
    write_json(out / "clarke_vs_conservative.json", summary, seed=seed, quick=quick)
    return summary


def main(argv=None):
    args = parse_args(parser(__doc__.splitlines()[0]), argv)
    s = run(args.out, quick=args.quick, seed=args.seed)
    print("Clarke Jacobian vs the program's conservative Jacobian")
    for name, r in s["programs"].items():
        print(f"  {name:15s} Clarke {len(r['clarke_vertices'])} vertices (diam {r['clarke_diameter']:.4g}), program's "
              f"set {len(r['conservative_vertices'])} (diam {r['conservative_diameter']:.4g}); jacfwd: "
              f"{r['ad']['jacfwd']['verdict']}")
    h = s["heat_exchanger"]
    print(f"  heat exchanger: (Q_H, Q_C) = {np.round(h['QH_QC_at_point'], 10).tolist()} at F = {h['point_F']} "
          f"(problem table {h['problem_table_at_point']}); Kemp data {h['QH_QC_at_kemp_data'].tolist()}")
    for r in s["relu_identity_family"]:
        print(f"  relu identity a={r['a']}: program's set {r['conservative_interval']}, Clarke "
              f"{np.asarray(r['clarke_vertices']).ravel().tolist()}, jacfwd {r['ad']['jacfwd']['verdict']}")
    print(f"  duplicated neurons: diameter ratios {[round(d['diameter_ratio'], 6) for d in s['duplicated_neurons']]} "
          f"for k = {[d['k'] for d in s['duplicated_neurons']]}")
    sp = s["softplus"]
    print(f"  softplus at 0: program's set {np.asarray(sp['conservative_vertices']).ravel().tolist()}, Clarke "
          f"{np.asarray(sp['clarke_vertices']).ravel().tolist()}")
    c = s["inclusion_chain"]
    print(f"  |x|/2 + θ: Clarke of x̄ {c['clarke_unrolled']} ({c['clarke_unrolled_steps']} steps unrolled), closed form "
          f"{c['clarke_closed_form']}, conv J_imp {c['conv_implicit']}, conv J_pb {c['piggyback_fixed_set']}")
    print(f"    {c['summary']}")
    print(f"  all Clarke ⊆ program's set: {s['all_clarke_inside_conservative']}; LD ∈ Clarke: "
          f"{s['all_ld_inside_clarke']}; Clarke vertices are sampled limits: {s['all_clarke_vertices_are_limits']}")
    print(f"  wrote {Path(args.out) / 'clarke_vs_conservative.png'} and clarke_vs_conservative.json")


if __name__ == "__main__":
    main()

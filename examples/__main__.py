"""Run the reproductions: ``python -m examples [NAMES...] [--quick] [--out DIR] [--seed S] [--list]``.

With no name, every experiment runs.  Each writes into its own subfolder of ``--out`` and the
run ends with a table of key numbers, also written (with the run's provenance record) to
``--out``/summary.json after each experiment.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples._common import OutputError, add_common_arguments, output_dir, write_json  # noqa: E402

# name -> (module, one-line description, keys of the JSON summary shown in the final table)
EXPERIMENTS = {
    "heavy_ball": ("heavy_ball_counterexample", "heavy-ball counterexample (slides)",
                   ["eigenvalue_minus_9_8_verified", "jsr_lower", "jsr_upper", "piggyback_heavy_ball_fitted_rate"]),
    "nonsmooth_convergence": ("nonsmooth_convergence", "FB / DR / ADMM derivatives on nonsmooth problems (slides)",
                              ["rates"]),
    "newton_logistic": ("newton_logistic", "one-step paper Fig. 2: quadratic convergence of derivatives",
                        ["final_errors"]),
    "timing": ("timing", "one-step paper Fig. 3: hypergradient time vs size", ["ratios_at_largest", "agreement"]),
    "weighted_ridge": ("weighted_ridge", "one-step paper Fig. 4: truncated GD on weighted ridge", ["final_errors"]),
    "ridge_precision": ("ridge_precision", "jaxopt paper Fig. 2: Jacobian vs iterate error", ["slopes"]),
    "sinkhorn": ("sinkhorn", "slides: Sinkhorn derivatives converge", ["fitted_rate", "final_error"]),
    "bilevel": ("bilevel", "one-step paper §3: hypergradient descent", ["final_objective"]),
    "derivative_convergence": ("derivative_convergence", "one call: do the derivatives converge? (FB, heavy-ball, "
                               "Sinkhorn)", ["verdicts", "all_as_expected"]),
    "heavy_ball_phase": ("heavy_ball_phase", "heavy-ball (alpha, beta) phase diagram on Dask: iterates converge, "
                         "derivatives diverge",
                         ["counts", "flagship_cells_certified", "slides_point_flagship_certified"]),
    "clarke_vs_conservative": ("clarke_vs_conservative", "Clarke Jacobian vs the program's conservative set: "
                               "which AD elements are real derivatives",
                               ["all_clarke_inside_conservative", "all_ld_inside_clarke",
                                "max_duplicated_diameter_ratio", "spurious_ad_elements"]),
}


def available():
    here = Path(__file__).resolve().parent
    return {k: v for k, v in EXPERIMENTS.items() if (here / f"{v[0]}.py").exists()}


def _short(v, depth=0):
    """A compact rendering for the final table (nested dicts: first items only)."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        items = list(v.items())[: 6 if depth == 0 else 2]
        more = ", ..." if len(v) > len(items) else ""
        return "{" + ", ".join(f"{k}: {_short(x, depth + 1)}" for k, x in items) + more + "}"
    if isinstance(v, (list, tuple)) and len(v) > 6:
        return f"[{len(v)} values]"
    return str(v)


def main(argv=None):
    exps = available()
    ap = argparse.ArgumentParser(prog="python -m examples", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"experiments to run (default: all): {', '.join(exps)}")
    add_common_arguments(ap)
    ap.add_argument("--list", action="store_true", help="list the experiments and exit")
    args = ap.parse_args(argv)
    if args.list:
        for name, (module, desc, _) in exps.items():
            print(f"{name:24s} {desc}  (examples/{module}.py)")
        return 0
    unknown = [n for n in args.names if n not in exps]
    if unknown:
        ap.error(f"unknown experiment(s) {', '.join(map(repr, unknown))}; valid choices: {', '.join(exps)}")
    try:
        out = output_dir(args.out)
    except OutputError as exc:
        ap.error(f"argument --out: {exc}")
    names = args.names or list(exps)
    rows = []
    for i, name in enumerate(names, 1):
        module, desc, keys = exps[name]
        print(f"[{i}/{len(names)}] {name}: {desc}", flush=True)
        mod = importlib.import_module(f"examples.{module}")
        t0 = time.perf_counter()
        summary = mod.run(out / name, quick=args.quick, seed=args.seed)
        dt = time.perf_counter() - t0
        rows.append((name, dt, {k: summary[k] for k in keys if k in summary}))
        print(f"      done in {dt:.1f} s -> {out / name}", flush=True)
        # rewritten after each experiment: an interrupted run still records what it completed
        write_json(out / "summary.json", {
            "requested": names,
            "completed": [r[0] for r in rows],
            "experiments": {n: {"module": exps[n][0], "folder": str(out / n), "seconds": s, "key_numbers": v}
                            for n, s, v in rows},
        }, seed=args.seed, quick=args.quick)
    print("\nkey numbers")
    for name, dt, vals in rows:
        print(f"  {name:24s} {dt:7.1f} s  " + "; ".join(f"{k} = {_short(v)}" for k, v in vals.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

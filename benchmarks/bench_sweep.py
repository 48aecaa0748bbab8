"""Benchmark: theory.sweep on a local Dask cluster — throughput, speedup, per-cell overhead.

Run from the repository root:  python benchmarks/bench_sweep.py [--cells 64] [--workers 1 2]
Needs the ``sweep`` extra (dask[distributed], pyarrow).

One cell is a certified JSR of the heavy-ball family at a scaled step (the work of one cell of
``examples/heavy_ball_phase.py``).  Printed side by side in one run:
* a plain Python loop over the cells (the baseline, no Dask, no store);
* ``sweep`` with 1 and 2 worker processes, storing every cell (Parquet parts);
* a resumed sweep over the same store (every cell stored: pure overhead);
as cells per second, the speedup over the loop and the per-cell overhead of the store and
scheduler.  Times include starting the cluster (workers import jax), as a user pays it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cell(alpha, beta):
    """The certified JSR bounds of the heavy-ball pieces {M1, M2} at step alpha, momentum beta."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from theory import jsr

    def M(curv):
        return np.array([[1 + beta - alpha * curv, -beta], [1.0, 0.0]])

    res = jsr([M(1.0), M(0.25)], max_length=12, time_limit=10.0)
    return {"lower": float(res.lower), "upper": float(res.upper)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=64, help="grid cells (a square number is used)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    side = max(2, int(round(args.cells ** 0.5)))
    grid = {"alpha": list(np.linspace(0.2, 3.0, side)), "beta": list(np.linspace(0.0, 0.9, side))}
    n = side * side

    from theory import sweep

    t0 = time.perf_counter()
    for a in grid["alpha"]:
        for b in grid["beta"]:
            cell(a, b)
    loop = time.perf_counter() - t0
    print(f"{n} cells; plain loop: {loop:.1f} s ({n / loop:.2f} cells/s)")
    for w in args.workers:
        with tempfile.TemporaryDirectory() as store:
            t0 = time.perf_counter()
            res = sweep(cell, grid, store=store, workers=w, progress=False)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            sweep(cell, grid, store=store, workers=w, progress=False)
            resumed = time.perf_counter() - t0
        errors = len(res.errors)
        print(f"sweep, {w} worker(s): {first:.1f} s ({n / first:.2f} cells/s), speedup over the loop "
              f"{loop / first:.2f}x, overhead per cell {(first - loop / w) / n * 1e3:+.0f} ms "
              f"(cluster start included); resumed (all stored): {resumed:.1f} s; errors {errors}")


if __name__ == "__main__":
    main()

"""Side-by-side timing for the benchmarks: interleaved rounds, ratios taken within each round.

The machines here are shared and noisy, so timing function A, then function B, and dividing the
medians mixes in whatever load changed between the two. Instead every round times each function
once (a batch of calls long enough to swamp the timer and dispatch jitter) in alternating order,
a ratio is formed *within* the round, and we report the median ratio over rounds with its
interquartile range. Wall clock (``time.perf_counter``): XLA's CPU threads make process time
count multi-threaded kernels several times.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import jax
import numpy as np


def _calls_per_batch(fun: Callable[[], object], min_seconds: float) -> int:
    jax.block_until_ready(fun())  # compile
    jax.block_until_ready(fun())  # warm up
    t = time.perf_counter()
    jax.block_until_ready(fun())
    once = max(time.perf_counter() - t, 1e-7)
    return max(1, int(np.ceil(min_seconds / once)))


def _batch_seconds(fun: Callable[[], object], calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        out = fun()
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / calls


def compare(funs: dict[str, Callable[[], object]], baseline: str, *, rounds: int = 15,
            min_seconds: float = 0.02) -> dict[str, dict[str, float]]:
    """Time the zero-argument callables ``funs`` in interleaved rounds.

    Returns, per name: ``ms`` (median wall time per call), and relative to ``funs[baseline]``
    ``ratio`` (median over rounds of the within-round ratio) with ``q25``/``q75``.
    """
    calls = {name: _calls_per_batch(f, min_seconds) for name, f in funs.items()}
    names = list(funs)
    samples = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(_batch_seconds(funs[name], calls[name]))
    base = np.asarray(samples[baseline])
    out = {}
    for name in names:
        ratio = np.asarray(samples[name]) / base
        out[name] = {"ms": 1e3 * statistics.median(samples[name]), "ratio": float(np.median(ratio)),
                     "q25": float(np.quantile(ratio, 0.25)), "q75": float(np.quantile(ratio, 0.75))}
    return out

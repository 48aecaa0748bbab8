"""Shared plumbing for the reproduction scripts: arguments, output folders, JSON, progress."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np


def enable_x64():
    import jax

    jax.config.update("jax_enable_x64", True)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default="out", help="output folder (default: ./out)")
    p.add_argument("--quick", action="store_true", help="small sizes, runs in seconds")
    p.add_argument("--seed", type=int, default=0, help="random seed (results are deterministic given it)")
    return p


def output_dir(path) -> Path:
    """Create ``path`` (and parents); a clear error if it cannot be written."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SystemExit(f"--out: cannot write to output folder {str(p)!r}: {exc.strerror or exc}") from exc
    return p


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else str(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        return _jsonable(np.asarray(x).tolist())
    return x


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class Progress:
    """A minimal progress bar on stderr (silent when stderr is not a terminal and quiet=True)."""

    def __init__(self, total: int, label: str, quiet: bool = False):
        self.total, self.label, self.n = max(int(total), 1), label, 0
        self.quiet = quiet or not sys.stderr.isatty()
        self.t0 = time.perf_counter()

    def update(self, k: int = 1):
        self.n += k
        if self.quiet:
            return
        frac = min(self.n / self.total, 1.0)
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        sys.stderr.write(f"\r{self.label} [{bar}] {self.n}/{self.total} {time.perf_counter() - self.t0:.1f}s")
        sys.stderr.flush()

    def close(self):
        if not self.quiet:
            sys.stderr.write("\n")

"""Shared plumbing for the reproduction scripts: arguments, output folders, atomic writes, provenance,
progress.

Every file a script writes goes through ``write_json`` or ``save_figure``: the content is written to a
temporary file in the destination folder and moved over the destination with ``os.replace``, so a
failure (full disk, an exception while serializing, a kill) never leaves a truncated file behind; the
previous version, if any, stays intact. Every JSON carries a ``"run"`` record (seed, --quick, package
version, command line, UTC time) so that a stale result can be told from a new one.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: seeds are accepted in [0, SEED_LIMIT): what numpy's generators and jax.random.PRNGKey both take
SEED_LIMIT = 2**32
PACKAGE = "conservative-ad"


class OutputError(RuntimeError):
    """An output folder or file could not be written (the message names it)."""


def enable_x64():
    import jax

    jax.config.update("jax_enable_x64", True)


# ----------------------------------------------------------------------------- arguments
def check_seed(seed) -> int:
    """``seed`` as an int if 0 ≤ seed < 2**32 (bools and non-integers are refused), else ValueError."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer with 0 <= seed < 2**32, got {seed!r}")
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"seed must satisfy 0 <= seed < 2**32, got {int(seed)}")
    return int(seed)


def check_run_args(seed, quick) -> tuple[int, bool]:
    """Validate the arguments of a script's ``run``: a clear error now rather than a traceback later."""
    if not isinstance(quick, (bool, np.bool_)):
        raise ValueError(f"quick must be True or False, got {quick!r}")
    return check_seed(seed), bool(quick)


def seed_arg(text: str) -> int:
    """argparse type of ``--seed``: a non-negative integer below 2**32."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer with 0 <= seed < 2**32, got {text!r}") from None
    try:
        return check_seed(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _output_dir_problem(path) -> str | None:
    """Why ``path`` cannot be used as an output folder, or None if it can (it may not exist yet)."""
    text = os.fspath(path)
    if not text.strip():
        return "the output folder must be a non-empty path (an empty one would write into the current folder)"
    p = Path(text)
    if p.exists():
        if not p.is_dir():
            return f"{text!r} exists and is not a folder"
        if not os.access(p, os.W_OK | os.X_OK):
            return f"output folder {text!r} is not writable"
        return None
    # the folder will be created: its nearest existing ancestor must be a writable folder
    anc = p.absolute().parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        return f"cannot create output folder {text!r}: {str(anc)!r} is not a folder"
    if not os.access(anc, os.W_OK | os.X_OK):
        return f"cannot create output folder {text!r}: {str(anc)!r} is not writable"
    return None


def out_arg(text: str) -> str:
    """argparse type of ``--out``: a non-empty path that is, or can be created as, a writable folder."""
    problem = _output_dir_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def add_common_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--out``, ``--quick`` and ``--seed``, validated at parse time (errors exit with code 2)."""
    p.add_argument("--out", default="out", type=out_arg, metavar="DIR", help="output folder (default: ./out)")
    p.add_argument("--quick", action="store_true", help="small sizes, runs in seconds")
    p.add_argument("--seed", type=seed_arg, default=0, metavar="SEED",
                   help="random seed, 0 <= SEED < 2**32 (results are deterministic given it)")
    return p


def parser(description: str) -> argparse.ArgumentParser:
    return add_common_arguments(argparse.ArgumentParser(description=description))


def parse_args(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``p.parse_args(argv)``, then create the ``--out`` folder; a failure is an argparse error (exit 2)."""
    args = p.parse_args(argv)
    try:
        output_dir(args.out)
    except OutputError as exc:
        p.error(f"argument --out: {exc}")
    return args


def output_dir(path) -> Path:
    """Create ``path`` (and parents); an OutputError naming it if it cannot be written."""
    problem = _output_dir_problem(path)
    if problem is not None:
        raise OutputError(problem)
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        # a real write: os.access does not see read-only file systems, and root passes every access test
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {str(p)!r}: {exc.strerror or exc}") from exc
    return p


# ----------------------------------------------------------------------------- provenance
def package_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run_record(*, seed, quick) -> dict:
    """What produced a JSON: seed, --quick, package version, command line and UTC time."""
    seed, quick = check_run_args(seed, quick)
    return {
        "seed": seed,
        "quick": quick,
        "version": package_version(),
        "argv": list(sys.argv),
        "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_open(path, binary: bool = False):
    """A file object whose content replaces ``path`` only when the block completes.

    The data go to a hidden temporary file in the same folder (same file system, so ``os.replace``
    is atomic), flushed to disk, then moved over ``path``. If the block raises, the temporary file
    is removed, ``path`` is left as it was, and an OutputError naming ``path`` is raised.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, as open() would
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: cleaned up, passed on as is
            raise
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        kept = "the previous version is unchanged" if path.exists() else "nothing was written"
        raise OutputError(f"could not write {str(path)!r} ({type(exc).__name__}: {detail}); {kept}") from exc


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


def write_json(path, data: dict, *, seed, quick) -> dict:
    """Write ``data`` with its ``"run"`` record (``run_record``) to ``path`` atomically.

    The record is also stored in ``data["run"]``, so a script's returned summary is what is on disk.
    Non-finite floats are written as strings ("nan", "inf"); anything else that JSON cannot hold
    raises (no invalid JSON is ever written).
    """
    if "run" in data:
        raise ValueError("write_json: the key 'run' is reserved for the provenance record")
    record = run_record(seed=seed, quick=quick)
    payload = {**data, "run": record}
    with atomic_open(path) as f:
        f.write(json.dumps(_jsonable(payload), indent=2, sort_keys=False, allow_nan=False) + "\n")
    data["run"] = record
    return record


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, **kwargs) -> None:
    """``fig.savefig`` to ``path`` atomically, in the format named by its extension."""
    path = Path(path)
    fmt = path.suffix[1:].lower()
    if not fmt:
        raise ValueError(f"save_figure: {str(path)!r} has no extension to name its format")
    with atomic_open(path, binary=True) as f:
        fig.savefig(f, format=fmt, **kwargs)


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

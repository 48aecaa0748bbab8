"""Parameter sweeps on ``dask.distributed``, stored cell by cell so that a sweep resumes.

``sweep(fn, grid)`` evaluates ``fn(**cell)`` on every cell of a parameter grid: a dict of 1-D
sequences (their Cartesian product, first name varying slowest) or a list of dicts (explicit
cells).  The cells run as tasks on a Dask cluster:

* ``client=None`` starts a ``LocalCluster`` on this machine (``workers`` processes, one thread
  each: the certified computations are single-threaded numpy/SDP work and processes sidestep the
  GIL), and shuts it down at the end;
* ``client="tcp://host:8786"`` connects to a running scheduler (``dask scheduler`` plus
  ``dask worker tcp://host:8786`` on the machines of a cluster); a ``distributed.Client`` or a
  cluster object is used as given and left open.

The same call therefore runs on a laptop and on a cluster.  With ``store=DIR`` every finished cell
is written to DIR as rows of small Parquet part files (``part-*.parquet``, written to a temporary
name and renamed, so a part is either complete or absent) next to ``_manifest.json`` (parameter
names, the function's name, format version).  A later call with the same store skips the cells
already stored, so an interrupted sweep (Ctrl-C, a lost job, a killed client) resumes where it
stopped; a grid extended by new values computes only the new cells.  Cells are identified by their
parameter values (a hash of their JSON form: ``1`` and ``1.0`` are different cells).

A cell that raises is recorded (``status="error"``, ``error_type``, ``error_message``,
``error_traceback``) and does not stop the sweep; ``retry_errors=True`` recomputes such cells on
resume.  A task that fails outside ``fn`` (a worker that died, a function that cannot be
unpickled on the workers) is recorded the same way for each of its cells.

``fn`` must return a dict of scalars (numbers, strings, bools, None; numpy scalars and arrays are
converted, arrays to lists) or a single scalar (stored as ``value``).  Every row also carries
``cell_key``, ``status``, ``seconds`` (the cell's time on its worker) and ``worker``.  The result
is a ``SweepResult`` (records in grid order, ``columns``, ``array(name)`` shaped like a dict grid,
``to_arrow()``); ``load_sweep(DIR)`` opens a store without computing anything and merges the parts
(``load_sweep(DIR).to_arrow()``: one table, column types unified across parts).  Each part is a
self-contained Parquet file; a part's schema holds the columns of its own cells (a column that was
None in all of them has the null type), so other readers should union by name: DuckDB
``read_parquet('DIR/part-*.parquet', union_by_name=true)``, or ``pyarrow.dataset.dataset(DIR,
schema=pyarrow.unify_schemas([pyarrow.parquet.read_schema(p) for p in parts]))``.

Dask and pyarrow are the ``sweep`` extra (``pip install conservative-ad[sweep]``); they are imported
when a sweep runs, so ``import theory`` does not need them.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import itertools
import json
import math
import numbers
import os
import secrets
import sys
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._files import atomic_write
from ._validate import check_count, check_tolerance

__all__ = ["sweep", "load_sweep", "SweepResult", "RESERVED_COLUMNS"]

#: columns every stored row carries, next to the parameters and the results of ``fn``
RESERVED_COLUMNS = ("cell_key", "status", "error_type", "error_message", "error_traceback", "seconds", "worker")
FORMAT = 1
MANIFEST = "_manifest.json"  # a leading "_": Parquet dataset readers skip it


def _require(module: str):
    """Import ``module`` (dask/distributed/pyarrow) or say which extra provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"theory.sweep needs {module!r}: pip install 'conservative-ad[sweep]' "
                          f"(dask[distributed] and pyarrow)") from exc


# ----------------------------------------------------------------------------- grid
def _scalar(v, where: str):
    """A grid value as a plain Python scalar (bool, int, float, str); anything else is an error."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (bool, str)):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        v = float(v)
        if math.isnan(v):
            raise ValueError(f"{where}: NaN cannot identify a cell (NaN != NaN)")
        return v
    raise TypeError(f"{where}: expected a number, string or bool, got {type(v).__name__} {v!r}")


def _check_name(name, where: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"{where}: parameter names must be identifiers (they become keyword arguments of fn), "
                        f"got {name!r}")
    if name in RESERVED_COLUMNS:
        raise ValueError(f"{where}: {name!r} is a reserved column name ({', '.join(RESERVED_COLUMNS)})")
    return name


def cell_key(params: Mapping) -> str:
    """The identity of a cell: SHA-1 of its sorted (name, value) pairs in JSON."""
    text = json.dumps(sorted(params.items()), allow_nan=True, separators=(",", ":"))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _cells_from_grid(grid):
    """(names, cells, shape) from a dict of 1-D sequences or a list of dicts; shape is None for a list."""
    if isinstance(grid, Mapping):
        if not grid:
            raise ValueError("grid: expected at least one parameter, got an empty dict")
        names, axes = [], []
        for name, values in grid.items():
            names.append(_check_name(name, f"grid key {name!r}"))
            where = f"grid[{name!r}]"
            if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
                raise TypeError(f"{where}: expected a 1-D sequence of values, got {type(values).__name__} {values!r}")
            if isinstance(values, np.ndarray) and values.ndim != 1:
                raise ValueError(f"{where}: expected a 1-D sequence of values, got an array of shape {values.shape}")
            vals = [_scalar(v, f"{where}[{i}]") for i, v in enumerate(values)]
            if not vals:
                raise ValueError(f"{where}: expected at least one value, got an empty sequence")
            seen = {}
            for i, v in enumerate(vals):
                k = json.dumps(v)
                if k in seen:
                    raise ValueError(f"{where}: value {v!r} appears twice (positions {seen[k]} and {i})")
                seen[k] = i
            axes.append(vals)
        cells = [dict(zip(names, combo)) for combo in itertools.product(*axes)]
        return tuple(names), cells, tuple(len(a) for a in axes), {n: list(a) for n, a in zip(names, axes)}
    if isinstance(grid, Sequence) and not isinstance(grid, (str, bytes)):
        if len(grid) == 0:
            raise ValueError("grid: expected at least one cell, got an empty list")
        cells, names, seen = [], None, {}
        for i, cell in enumerate(grid):
            if not isinstance(cell, Mapping):
                raise TypeError(f"grid[{i}]: expected a dict of parameter values, got {type(cell).__name__} {cell!r}")
            if names is None:
                if not cell:
                    raise ValueError("grid[0]: expected at least one parameter, got an empty dict")
                names = tuple(_check_name(k, f"grid[0] key {k!r}") for k in cell)
            elif set(cell) != set(names):
                raise ValueError(f"grid[{i}]: parameters {sorted(cell)} differ from grid[0]'s {sorted(names)}")
            c = {n: _scalar(cell[n], f"grid[{i}][{n!r}]") for n in names}
            k = cell_key(c)
            if k in seen:
                raise ValueError(f"grid[{i}]: the same cell as grid[{seen[k]}] ({c})")
            seen[k] = i
            cells.append(c)
        return names, cells, None, None
    raise TypeError(f"grid: expected a dict of 1-D sequences or a list of dicts, got {type(grid).__name__}")


# ----------------------------------------------------------------------------- on the workers
def _storable(v, where: str):
    """A result value in a form Parquet holds: None, bool, int, float, str, or (nested) lists of them."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, np.ndarray) or (hasattr(v, "__array__") and not isinstance(v, (list, tuple))):
        a = np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"{where}: an object array cannot be stored")
        return a.item() if a.ndim == 0 else a.tolist()
    if isinstance(v, (list, tuple)):
        return [_storable(x, f"{where}[{i}]") for i, x in enumerate(v)]
    raise TypeError(f"{where}: cannot store {type(v).__name__} (return numbers, strings, bools, None, "
                    f"arrays or lists of them)")


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # not on a dask worker (run in the client's process)
        return ""


def _error_fields(exc: BaseException) -> dict:
    return {"status": "error", "error_type": type(exc).__name__, "error_message": str(exc),
            "error_traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


@functools.lru_cache(maxsize=8)
def _load_fn(payload: bytes):
    import cloudpickle

    return cloudpickle.loads(payload)


def _run_cells(payload: bytes, cells):
    """Evaluate ``fn(**params)`` on each (key, params); an exception becomes the cell's error record.

    ``fn`` arrives as cloudpickle bytes: Dask pickles tasks with plain pickle when it can, which
    refers to functions by module name, so ``cloudpickle.register_pickle_by_value`` would not apply;
    loaded once per worker process (cached by its bytes)."""
    fn = _load_fn(payload)
    out = []
    worker = _worker_address()
    for key, params in cells:
        t0 = time.perf_counter()
        rec = {"cell_key": key, **params, "status": "ok", "error_type": None, "error_message": None,
               "error_traceback": None}
        try:
            value = fn(**params)
            if not isinstance(value, Mapping):
                value = {"value": value}
            for name, v in value.items():
                if not isinstance(name, str):
                    raise TypeError(f"fn returned a non-string key {name!r}")
                if name in RESERVED_COLUMNS or name in params:
                    raise ValueError(f"fn returned the key {name!r}, which is a parameter or a reserved column "
                                     f"({', '.join(RESERVED_COLUMNS)})")
                rec[name] = _storable(v, f"result {name!r}")
        except Exception as exc:
            rec = {"cell_key": key, **params, **_error_fields(exc)}
        rec["seconds"] = time.perf_counter() - t0
        rec["worker"] = worker
        out.append(rec)
    return out


# ----------------------------------------------------------------------------- store
def _utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _fn_name(fn) -> str:
    """The function's dotted name; for a ``functools.partial``, with its bound arguments (they change
    the results, so a store made with other arguments is refused)."""
    if isinstance(fn, functools.partial):
        bound = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in sorted(fn.keywords.items())]
        return f"functools.partial({_fn_name(fn.func)}, {', '.join(bound)})"
    mod = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{mod}.{name}" if mod else name


class _Store:
    """A folder of Parquet part files plus ``_manifest.json``."""

    def __init__(self, path, names, fn_name, *, create: bool):
        self.path = Path(path)
        self.seq = 0
        self.token = f"{os.getpid()}-{secrets.token_hex(3)}"
        manifest = self.path / MANIFEST
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"store: {str(self.path)!r} exists and is not a folder")
        if manifest.exists():
            try:
                self.manifest = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"store: cannot read {str(manifest)!r} ({exc})") from exc
            if self.manifest.get("format") != FORMAT:
                raise ValueError(f"store: {str(manifest)!r} has format {self.manifest.get('format')!r}, "
                                 f"this version reads format {FORMAT}")
            if names is not None and list(self.manifest.get("parameters", [])) != list(names):
                raise ValueError(f"store: {str(self.path)!r} holds a sweep over parameters "
                                 f"{self.manifest.get('parameters')}, not {list(names)}; use another store folder")
            if fn_name is not None and self.manifest.get("function") != fn_name:
                raise ValueError(f"store: {str(self.path)!r} holds results of {self.manifest.get('function')!r}, "
                                 f"not {fn_name!r}; use another store folder (or delete it to start over)")
        elif create:
            if self.path.exists() and any(p.name.startswith("part-") for p in self.path.iterdir()):
                raise ValueError(f"store: {str(self.path)!r} has part files but no {MANIFEST}")
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                self.manifest = {"format": FORMAT, "parameters": list(names), "function": fn_name,
                                 "created_utc": _utc()}
                atomic_write(manifest, (json.dumps(self.manifest, indent=2) + "\n").encode())
            except OSError as exc:
                raise OSError(f"store: cannot create {str(self.path)!r}: {exc.strerror or exc}") from exc
        else:
            raise FileNotFoundError(f"store: no sweep stored in {str(self.path)!r} (no {MANIFEST})")

    def parts(self):
        return sorted(p for p in self.path.glob("part-*.parquet") if p.is_file())

    def read(self) -> dict:
        """cell_key -> record, over every readable part (a later part wins for a repeated cell)."""
        pq = _require("pyarrow.parquet")
        out = {}
        for part in self.parts():
            try:
                rows = pq.read_table(part).to_pylist()
            except Exception as exc:
                warnings.warn(f"store: part file {str(part)!r} cannot be read ({type(exc).__name__}: {exc}); "
                              f"its cells count as missing and will be recomputed", RuntimeWarning, stacklevel=3)
                continue
            for r in rows:
                out[r["cell_key"]] = r
        return out

    def write(self, records: list) -> None:
        """``records`` as one part file; rows whose types clash are written on their own."""
        pa = _require("pyarrow")
        pq = _require("pyarrow.parquet")
        if not records:
            return
        try:
            tables = [pa.Table.from_pylist(records)]
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            tables = []
            for r in records:
                try:
                    tables.append(pa.Table.from_pylist([r]))
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    bad = {k: r[k] for k in ("cell_key", *self.manifest["parameters"]) if k in r}
                    bad.update(status="error", error_type="TypeError",
                               error_message=f"result not storable in Parquet: {exc}", error_traceback=None,
                               seconds=r.get("seconds"), worker=r.get("worker"))
                    tables.append(pa.Table.from_pylist([bad]))
        for t in tables:
            self.seq += 1
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            path = self.path / f"part-{stamp}-{self.token}-{self.seq:06d}.parquet"
            sink = pa.BufferOutputStream()
            pq.write_table(t, sink)
            atomic_write(path, sink.getvalue().to_pybytes())


# ----------------------------------------------------------------------------- result
class SweepResult:
    """The cells of a sweep: ``records`` (one dict per cell, in grid order), their ``columns``.

    ``parameters``: the grid's names; ``shape``: the grid's shape for a dict grid (else None);
    ``axes``: its values per name; ``computed``/``stored``: cells computed by this call / taken
    from the store; ``seconds``: wall time of the call; ``store``: the folder (or None).
    """

    def __init__(self, parameters, records, *, shape=None, axes=None, computed=0, stored=0, seconds=0.0,
                 store=None):
        self.parameters = tuple(parameters)
        self.records = list(records)
        # every record gets every column (None where a cell has none, e.g. the results of an error cell)
        names = self.names
        self.records = [{n: r.get(n) for n in names} for r in self.records]
        self.shape = shape
        self.axes = axes
        self.computed, self.stored, self.seconds = int(computed), int(stored), float(seconds)
        self.store = None if store is None else Path(store)

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    @property
    def errors(self) -> list:
        return [r for r in self.records if r.get("status") != "ok"]

    @property
    def names(self) -> list:
        """Every column name: parameters, then results, then the reserved columns."""
        seen = dict.fromkeys(self.parameters)
        for r in self.records:
            seen.update(dict.fromkeys(k for k in r if k not in RESERVED_COLUMNS))
        seen.update(dict.fromkeys(RESERVED_COLUMNS))
        return list(seen)

    @property
    def columns(self) -> dict:
        """name -> list of values (None where a cell has no such value, e.g. an error cell)."""
        return {n: [r.get(n) for r in self.records] for n in self.names}

    def column(self, name: str) -> list:
        if name not in self.names:
            raise KeyError(f"name: no column {name!r}; columns are {self.names}")
        return [r.get(name) for r in self.records]

    def array(self, name: str, fill: float = np.nan) -> np.ndarray:
        """Column ``name`` as an array of the dict grid's shape (``fill`` where missing)."""
        if self.shape is None:
            raise ValueError("array: the grid was a list of cells; use column(name)")
        vals = [fill if v is None else v for v in self.column(name)]
        try:
            a = np.asarray(vals, dtype=np.float64)
        except (TypeError, ValueError):
            a = np.empty(len(vals), dtype=object)
            a[:] = vals
        return a.reshape(self.shape)

    def to_arrow(self) -> Any:
        """The records as a ``pyarrow.Table`` (columns of every cell; types promoted across cells)."""
        pa = _require("pyarrow")
        names = self.names
        return pa.Table.from_pylist([{n: r.get(n) for n in names} for r in self.records])

    def summary(self) -> str:
        shape = "×".join(map(str, self.shape)) if self.shape else f"{len(self)} listed"
        return (f"sweep over {', '.join(self.parameters)} ({shape} cells): {len(self) - len(self.errors)} ok, "
                f"{len(self.errors)} errors; {self.computed} computed, {self.stored} from the store, "
                f"{self.seconds:.1f} s")

    def __repr__(self):
        return f"SweepResult({self.summary()})"


# ----------------------------------------------------------------------------- progress
class _Progress:
    """One line on stderr: redrawn in place on a terminal, else printed every ~10% of the cells."""

    def __init__(self, total, stored, show):
        self.total, self.done, self.errors, self.stored = total, stored, 0, stored
        self.callback = show if callable(show) else None
        self.show = bool(show) and self.callback is None
        self.tty = sys.stderr.isatty()
        self.t0 = self.last = time.perf_counter()
        self.next_line = 0
        if self.show:
            self._print(force=True)

    def update(self, n, errors):
        self.done += n
        self.errors += errors
        if self.callback is not None:
            self.callback(self.done, self.total)
        elif self.show:
            self._print()

    def _print(self, force=False):
        now = time.perf_counter()
        line = (f"sweep: {self.done}/{self.total} cells ({self.stored} from the store, {self.errors} errors) "
                f"{now - self.t0:.1f} s")
        if self.tty:
            if force or now - self.last > 0.2 or self.done == self.total:
                sys.stderr.write("\r" + line)
                sys.stderr.flush()
                self.last = now
        elif force or self.done >= self.next_line or self.done == self.total or now - self.last > 60:
            # not a terminal (a log file): a line every 10% of the cells, and at least once a minute
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            self.next_line = self.done + max(1, self.total // 10)
            self.last = now

    def close(self):
        if self.show and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ----------------------------------------------------------------------------- the sweep
def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _connect(client, workers):
    """(client, things to close) for ``client`` = None, an address, a Client or a cluster."""
    distributed = _require("distributed")
    if client is None:
        n = _default_workers() if workers is None else check_count(workers, "workers")
        import logging

        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
        c = distributed.Client(cluster)
        return c, [c, cluster]
    if workers is not None:
        raise ValueError("workers: only used when sweep starts its own LocalCluster (client=None); "
                         "size a running cluster with its own workers")
    if isinstance(client, str):
        if not client.strip():
            raise ValueError("client: expected a scheduler address such as 'tcp://host:8786', got an empty string")
        try:
            c = distributed.Client(client)
        except OSError as exc:
            raise OSError(f"client: cannot connect to the scheduler at {client!r} ({exc})") from exc
        return c, [c]
    if isinstance(client, distributed.Client):
        return client, []
    if hasattr(client, "scheduler_address") and hasattr(client, "close"):  # a LocalCluster, SpecCluster, ...
        c = distributed.Client(client)
        return c, [c]
    raise TypeError(f"client: expected None, a scheduler address (str), a distributed.Client or a cluster, "
                    f"got {type(client).__name__}")


def sweep(fn: Callable[..., Any], grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]], *,
          client: Any = None, store: str | os.PathLike | None = None, workers: int | None = None,
          progress: bool | Callable[[int, int], Any] = True, retry_errors: bool = False,
          cells_per_task: int = 1, flush_every: int = 100, flush_seconds: float = 5.0) -> SweepResult:
    """Map ``fn(**cell)`` over the cells of ``grid`` on a Dask cluster, storing results as they finish.

    ``grid``: a dict ``{name: 1-D sequence}`` (the Cartesian product; first name slowest) or a
    list of dicts (explicit cells).  Values are numbers, strings or bools.
    ``fn``: a picklable callable taking the parameters as keyword arguments and returning a dict
    of scalars/arrays (or one scalar, stored as ``value``).  On a separate cluster, the workers must
    be able to import what ``fn`` refers to (or register its module with
    ``cloudpickle.register_pickle_by_value``).
    ``client``: None (a ``LocalCluster`` of ``workers`` processes with one thread each, default:
    the CPUs this process may use, shut down at the end), a scheduler address such as
    ``"tcp://host:8786"``, a ``distributed.Client`` or a cluster object (used, not closed).
    ``store``: a folder; finished cells are appended to it as Parquet part files (at least every
    ``flush_every`` cells or ``flush_seconds`` seconds, and when the call ends or is interrupted)
    and cells already there are skipped (``retry_errors=True`` recomputes the stored errors).
    ``progress``: True prints a progress line on stderr, False is silent, a callable gets
    ``(done, total)`` after each finished task.  ``cells_per_task`` groups cells into one Dask task
    (fewer, larger tasks for very cheap cells).

    Returns a ``SweepResult`` over the cells of ``grid`` (stored ones included), in grid order.
    """
    t0 = time.perf_counter()
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__} {fn!r}")
    names, cells, shape, axes = _cells_from_grid(grid)
    cells_per_task = check_count(cells_per_task, "cells_per_task")
    flush_every = check_count(flush_every, "flush_every")
    flush_seconds = check_tolerance(flush_seconds, "flush_seconds")
    if not (isinstance(progress, (bool, np.bool_)) or callable(progress)):
        raise TypeError(f"progress: expected True, False or a callable(done, total), got {progress!r}")
    if not isinstance(retry_errors, (bool, np.bool_)):
        raise TypeError(f"retry_errors: expected a bool, got {retry_errors!r}")
    if store is not None and not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store: expected a folder path (str or os.PathLike) or None, got {type(store).__name__}")
    if store is not None and not os.fspath(store).strip():
        raise ValueError("store: expected a non-empty folder path")
    if client is not None and workers is not None:
        raise ValueError("workers: only used when sweep starts its own LocalCluster (client=None); "
                         "size a running cluster with its own workers")
    if workers is not None:
        check_count(workers, "workers")
    cloudpickle = _require("cloudpickle")
    try:
        payload = cloudpickle.dumps(fn)
    except Exception as exc:
        raise TypeError(f"fn: cannot be pickled for the workers ({type(exc).__name__}: {exc})") from exc

    keys = [cell_key(c) for c in cells]
    st = _Store(store, names, _fn_name(fn), create=True) if store is not None else None
    found = st.read() if st is not None else {}
    results = {}
    for k in keys:
        r = found.get(k)
        if r is not None and (r.get("status") == "ok" or not retry_errors):
            results[k] = r
    todo = [(k, c) for k, c in zip(keys, cells) if k not in results]
    n_stored = len(results)
    bar = _Progress(len(cells), n_stored, progress)
    buffer, last_flush = [], time.perf_counter()

    def flush():
        nonlocal buffer, last_flush
        if st is not None and buffer:
            st.write(buffer)
        buffer, last_flush = [], time.perf_counter()

    computed = 0
    try:
        if todo:
            distributed = _require("distributed")
            c, to_close = _connect(client, workers)
            futures = {}
            try:
                chunks = [todo[i:i + cells_per_task] for i in range(0, len(todo), cells_per_task)]
                task = functools.partial(_run_cells, payload)
                futs = c.map(task, chunks, pure=False)
                futures = dict(zip(futs, chunks))
                for fut in distributed.as_completed(list(futures)):
                    chunk = futures.pop(fut)
                    try:
                        recs = fut.result()
                    except Exception as exc:  # the task failed outside fn: lost worker, unpicklable fn, ...
                        recs = [{"cell_key": k, **p, **_error_fields(exc), "seconds": None, "worker": None}
                                for k, p in chunk]
                    fut.release()
                    for r in recs:
                        results[r["cell_key"]] = r
                    buffer.extend(recs)
                    computed += len(recs)
                    if len(buffer) >= flush_every or time.perf_counter() - last_flush >= flush_seconds:
                        flush()
                    bar.update(len(recs), sum(r["status"] != "ok" for r in recs))
            finally:
                if futures:
                    c.cancel(list(futures))
                for obj in to_close:
                    try:
                        obj.close()
                    except Exception:  # closing is best effort; the results are already stored
                        pass
    finally:
        flush()
        bar.close()
    records = []
    for k, cell in zip(keys, cells):
        r = dict(results[k])
        r.update(cell)  # the grid's own values (a Parquet column may have promoted 1 to 1.0)
        records.append(r)
    return SweepResult(names, records, shape=shape, axes=axes, computed=computed, stored=n_stored,
                       seconds=time.perf_counter() - t0, store=store)


def load_sweep(store: str | os.PathLike) -> SweepResult:
    """Open a sweep's store folder without computing: every stored cell (latest record per cell)."""
    if not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store: expected a folder path (str or os.PathLike), got {type(store).__name__}")
    st = _Store(store, None, None, create=False)
    found = st.read()
    return SweepResult(st.manifest["parameters"], list(found.values()), stored=len(found), store=store)

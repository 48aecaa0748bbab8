"""theory.sweep: closed-form cells, error cells, resume after an interruption, the Parquet store."""

import itertools
import json

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="theory.sweep needs the 'sweep' extra (dask[distributed])")
pa = pytest.importorskip("pyarrow", reason="theory.sweep needs the 'sweep' extra (pyarrow)")
pq = pytest.importorskip("pyarrow.parquet", reason="theory.sweep needs the 'sweep' extra (pyarrow)")

import theory  # noqa: E402

CALLS = []  # cells evaluated in this process (the in-process cluster's threads share it)


def add(a, b):
    CALLS.append((a, b))
    return {"s": a + b, "p": a * b}


def add_or_fail(a, b):
    CALLS.append((a, b))
    if a == 2 and b == 1:
        raise ZeroDivisionError("cell (2, 1) fails on purpose")
    return a + b


@pytest.fixture(scope="module")
def client():
    # one worker thread in this process: fast to start, and the functions above need no pickling by value
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def test_closed_form_cells_in_grid_order(client):
    res = theory.sweep(add, {"a": [1, 2, 3], "b": [10, 20]}, client=client, progress=False)
    assert res.shape == (3, 2) and len(res) == 6 and res.parameters == ("a", "b")
    assert [(r["a"], r["b"]) for r in res] == [(1, 10), (1, 20), (2, 10), (2, 20), (3, 10), (3, 20)]
    np.testing.assert_array_equal(res.array("s"), [[11, 21], [12, 22], [13, 23]])
    assert res.column("p") == [10, 20, 20, 40, 30, 60]
    assert res.computed == 6 and res.stored == 0 and not res.errors
    assert all(r["status"] == "ok" and r["seconds"] >= 0 for r in res)


def test_list_grid_and_scalar_results(client):
    cells = [{"a": 1.5, "b": -1.5}, {"a": 0.25, "b": 0.5}]
    res = theory.sweep(add_or_fail, cells, client=client, progress=False)
    assert res.shape is None and res.column("value") == [0.0, 0.75]
    with pytest.raises(ValueError, match="list of cells"):
        res.array("value")


def test_error_cell_is_recorded_and_does_not_stop_the_sweep(client, tmp_path):
    res = theory.sweep(add_or_fail, {"a": [1, 2, 3], "b": [0, 1]}, client=client, store=tmp_path / "s",
                       progress=False)
    assert len(CALLS) == 6
    (err,) = res.errors
    assert (err["a"], err["b"]) == (2, 1) and err["status"] == "error"
    assert err["error_type"] == "ZeroDivisionError" and "fails on purpose" in err["error_message"]
    assert "ZeroDivisionError" in err["error_traceback"] and err["value"] is None
    assert np.isnan(res.array("value")[1, 1]) and res.array("value")[2, 1] == 4
    # on resume the error is a stored result; retry_errors recomputes only it
    CALLS.clear()
    again = theory.sweep(add_or_fail, {"a": [1, 2, 3], "b": [0, 1]}, client=client, store=tmp_path / "s",
                         progress=False)
    assert CALLS == [] and again.computed == 0 and again.stored == 6 and len(again.errors) == 1
    retried = theory.sweep(add_or_fail, {"a": [1, 2, 3], "b": [0, 1]}, client=client, store=tmp_path / "s",
                           progress=False, retry_errors=True)
    assert CALLS == [(2, 1)] and retried.computed == 1 and len(retried.errors) == 1


def test_resume_computes_only_the_missing_cells(client, tmp_path):
    store = tmp_path / "store"
    grid = {"a": [0, 1, 2, 3], "b": [0.5, 1.5]}
    full = theory.sweep(add, grid, client=client, store=store, progress=False, flush_every=1)
    parts = sorted(store.glob("part-*.parquet"))
    assert len(parts) == 8  # one part per finished cell with flush_every=1
    # lose three cells (as if they had not finished), then resume
    lost = set()
    for part in parts[:3]:
        (row,) = pq.read_table(part).to_pylist()
        lost.add((row["a"], row["b"]))
        part.unlink()
    CALLS.clear()
    res = theory.sweep(add, grid, client=client, store=store, progress=False)
    assert set(CALLS) == lost and len(CALLS) == 3
    assert res.computed == 3 and res.stored == 5
    assert res.column("s") == full.column("s")
    # an extended grid computes only the new cells
    CALLS.clear()
    more = theory.sweep(add, {"a": [0, 1, 2, 3, 4], "b": [0.5, 1.5]}, client=client, store=store, progress=False)
    assert sorted(CALLS) == [(4, 0.5), (4, 1.5)] and more.stored == 8


def test_interrupted_sweep_keeps_finished_cells_and_resumes(client, tmp_path):
    store = tmp_path / "store"
    grid = {"a": list(range(6)), "b": [1, 2]}

    def interrupt_after_four(done, total):
        if done >= 4:
            raise KeyboardInterrupt  # Ctrl-C in the client while cells are running

    with pytest.raises(KeyboardInterrupt):
        theory.sweep(add, grid, client=client, store=store, progress=interrupt_after_four)
    stored = theory.load_sweep(store)
    assert len(stored) >= 4  # what had finished was flushed before the interruption propagated
    done_before = {(r["a"], r["b"]) for r in stored}
    parts_before = set(store.glob("part-*.parquet"))
    res = theory.sweep(add, grid, client=client, store=store, progress=False)
    assert res.stored == len(done_before) and res.computed == 12 - len(done_before)
    # what the resumed run wrote is exactly the cells that were missing
    new = [r for p in set(store.glob("part-*.parquet")) - parts_before for r in pq.read_table(p).to_pylist()]
    assert sorted((r["a"], r["b"]) for r in new) == sorted(set(itertools.product(range(6), [1, 2])) - done_before)
    np.testing.assert_array_equal(res.array("s"), np.add.outer(np.arange(6), [1, 2]))


def test_store_round_trips_through_pyarrow(client, tmp_path):
    store = tmp_path / "store"

    def cell(a, b):
        return {"x": np.float64(a) / 3, "flag": bool(a > b), "label": f"{a}-{b}", "vec": np.arange(2) * a,
                "nothing": None}

    res = theory.sweep(cell, {"a": [1, 2], "b": [1]}, client=client, store=store, progress=False)
    manifest = json.loads((store / "_manifest.json").read_text())
    assert manifest["parameters"] == ["a", "b"] and manifest["format"] == 1
    table = pq.read_table(store)  # any Parquet reader opens the folder
    assert (table.num_rows == 2
            and {"a", "b", "x", "flag", "label", "vec", "cell_key", "status"} <= set(table.column_names))
    rows = sorted(table.to_pylist(), key=lambda r: r["a"])
    assert rows[1]["x"] == 2 / 3 and rows[1]["flag"] is True and rows[1]["label"] == "2-1" and rows[1]["vec"] == [0, 2]
    loaded = theory.load_sweep(store)
    assert sorted(r["x"] for r in loaded) == sorted(res.column("x"))
    t = res.to_arrow()
    assert isinstance(t, pa.Table) and t.num_rows == 2 and t.column("x").to_pylist() == [1 / 3, 2 / 3]


def test_store_of_another_sweep_is_refused(client, tmp_path):
    theory.sweep(add, {"a": [1], "b": [2]}, client=client, store=tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match="store:.*parameters"):
        theory.sweep(add, {"a": [1], "c": [2]}, client=client, store=tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match="store:.*add_or_fail"):
        theory.sweep(add_or_fail, {"a": [1], "b": [2]}, client=client, store=tmp_path / "s", progress=False)
    with pytest.raises(FileNotFoundError, match="store"):
        theory.load_sweep(tmp_path / "nothing")


def test_unstorable_or_clashing_results_become_errors(client):
    res = theory.sweep(lambda a: {"a": 1} if a == 0 else {"obj": object()}, {"a": [0, 1]}, client=client,
                       progress=False)
    e0, e1 = res.errors
    assert "parameter or a reserved column" in e0["error_message"] and "cannot store object" in e1["error_message"]


@pytest.mark.parametrize("grid, exc, match", [
    ([], ValueError, "grid: expected at least one cell"),
    ({}, ValueError, "grid: expected at least one parameter"),
    ({"a": 3}, TypeError, r"grid\['a'\]: expected a 1-D sequence"),
    ({"a": "abc"}, TypeError, r"grid\['a'\]: expected a 1-D sequence"),
    ({"a": np.zeros((2, 2))}, ValueError, "1-D"),
    ({"a": []}, ValueError, r"grid\['a'\]: expected at least one value"),
    ({"a": [1, 1]}, ValueError, "appears twice"),
    ({"a": [float("nan")]}, ValueError, "NaN"),
    ({"a": [object()]}, TypeError, r"grid\['a'\]\[0\]"),
    ({"not a name": [1]}, TypeError, "identifiers"),
    ({"status": [1]}, ValueError, "reserved"),
    ([{"a": 1}, {"b": 2}], ValueError, r"grid\[1\]: parameters"),
    ([{"a": 1}, {"a": 1}], ValueError, "same cell"),
    ([1, 2], TypeError, r"grid\[0\]: expected a dict"),
    ("a", TypeError, "grid: expected a dict"),
])
def test_bad_grids_are_named(grid, exc, match):
    with pytest.raises(exc, match=match):
        theory.sweep(add, grid, progress=False)


def test_bad_arguments_are_named(client, tmp_path):
    import threading

    with pytest.raises(TypeError, match="fn: expected a callable"):
        theory.sweep(42, {"a": [1]})
    lock = threading.Lock()
    with pytest.raises(TypeError, match="fn: cannot be pickled"):
        theory.sweep(lambda a: lock, {"a": [1]})
    with pytest.raises(TypeError, match="client"):
        theory.sweep(add, {"a": [1], "b": [1]}, client=3.5)
    with pytest.raises(ValueError, match="workers"):
        theory.sweep(add, {"a": [1], "b": [1]}, client=client, workers=2)
    with pytest.raises(ValueError, match="workers"):
        theory.sweep(add, {"a": [1], "b": [1]}, workers=0)
    with pytest.raises(TypeError, match="progress"):
        theory.sweep(add, {"a": [1], "b": [1]}, client=client, progress="yes")
    with pytest.raises(TypeError, match="store"):
        theory.sweep(add, {"a": [1], "b": [1]}, client=client, store=3)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="store:.*not a folder"):
        theory.sweep(add, {"a": [1], "b": [1]}, client=client, store=blocker)


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_two_worker_process_cluster_by_address(tmp_path):
    # separate worker processes, reached through the scheduler's address as on a cluster; the function
    # is defined here so that cloudpickle ships it by value
    def cell(a, b):
        import os

        return {"s": a - b, "pid": os.getpid()}

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        res = theory.sweep(cell, {"a": [0, 1, 2, 3], "b": [0, 1]}, client=cluster.scheduler_address,
                           store=tmp_path / "s", progress=False)
    np.testing.assert_array_equal(res.array("s"), np.subtract.outer(np.arange(4), [0, 1]))
    assert len(set(res.column("worker"))) >= 1 and res.computed == 8


def test_progress_line(client, capsys):
    theory.sweep(add, {"a": [1, 2], "b": [1]}, client=client, progress=True)
    err = capsys.readouterr().err
    assert "sweep: 2/2 cells" in err
    theory.sweep(add, {"a": [1, 2], "b": [1]}, client=client, progress=False)
    assert capsys.readouterr().err == ""

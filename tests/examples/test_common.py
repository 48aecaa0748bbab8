"""The scripts' shared plumbing: atomic writes, provenance, argument validation (both entry points)."""

import argparse
import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from examples import _common  # noqa: E402
from examples.__main__ import EXPERIMENTS  # noqa: E402

SCRIPTS = sorted(module for module, _, _ in EXPERIMENTS.values())


def _listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# ----------------------------------------------------------------------------- atomic writes
def test_write_json_failure_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    _common.write_json(target, {"value": 1}, seed=0, quick=True)
    old = target.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(_common.json, "dumps", boom)
    with pytest.raises(_common.OutputError, match="result.json") as info:
        _common.write_json(target, {"value": 2}, seed=0, quick=True)
    assert "previous version is unchanged" in str(info.value)
    assert target.read_bytes() == old
    assert _listing(tmp_path) == ["result.json"]


def test_atomic_open_failure_midway_removes_partial_temp(tmp_path):
    target = tmp_path / "result.json"
    target.write_text('{"old": true}\n')
    seen = {}
    with pytest.raises(_common.OutputError, match="result.json"):
        with _common.atomic_open(target) as f:
            f.write('{"new": ')  # half a JSON
            f.flush()
            (seen["temp"],) = [p for p in tmp_path.iterdir() if p.name != "result.json"]
            assert seen["temp"].read_text() == '{"new": '
            raise OSError(28, "No space left on device")
    assert not seen["temp"].exists()
    assert target.read_text() == '{"old": true}\n'
    assert _listing(tmp_path) == ["result.json"]


def test_write_json_failure_without_previous_file_writes_nothing(tmp_path):
    with pytest.raises(_common.OutputError, match="new.json.*nothing was written"):
        _common.write_json(tmp_path / "new.json", {"obj": object()}, seed=0, quick=False)
    assert _listing(tmp_path) == []


def test_save_figure_failure_keeps_old_png_and_leaves_no_temp(tmp_path, monkeypatch):
    plt = _common.pyplot()
    import matplotlib.figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    target = tmp_path / "plot.png"
    _common.save_figure(fig, target, dpi=50)
    old = target.read_bytes()
    assert old.startswith(b"\x89PNG")

    def broken_savefig(self, fname, **kwargs):
        fname.write(b"\x89PNG partial")  # a truncated image, then the failure
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(_common.OutputError, match="plot.png.*No space left"):
        _common.save_figure(fig, target, dpi=50)
    plt.close(fig)
    assert target.read_bytes() == old
    assert _listing(tmp_path) == ["plot.png"]


def test_save_figure_uses_the_extension_format(tmp_path):
    plt = _common.pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    _common.save_figure(fig, tmp_path / "a.pdf")
    _common.save_figure(fig, tmp_path / "a.png")
    plt.close(fig)
    assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    assert _listing(tmp_path) == ["a.pdf", "a.png"]


def test_written_files_get_the_default_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        _common.write_json(tmp_path / "r.json", {}, seed=0, quick=False)
    finally:
        os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


def test_no_script_writes_outside_the_atomic_helpers():
    """Every output goes through write_json / save_figure: no direct savefig, write_text, open(..., 'w')."""
    for path in sorted((ROOT / "examples").glob("*.py")):
        if path.name == "_common.py":
            continue
        text = path.read_text()
        for pattern in (".savefig(", ".write_text(", ".write_bytes(", "json.dump", "np.save", "open("):
            assert pattern not in text, (path.name, pattern)


# ----------------------------------------------------------------------------- provenance
def test_write_json_records_the_run(tmp_path, assert_run_record):
    data = {"x": np.float64(1.5), "bad": float("nan")}
    record = _common.write_json(tmp_path / "r.json", data, seed=7, quick=True)
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert_run_record(on_disk["run"], seed=7, quick=True)
    assert data["run"] == record == on_disk["run"]  # the returned summary is what is on disk
    assert on_disk["x"] == 1.5 and on_disk["bad"] == "nan"


def test_run_record_version_falls_back_to_unknown(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(_common.importlib.metadata, "version", missing)
    assert _common.run_record(seed=0, quick=False)["version"] == "unknown"


def test_write_json_refuses_to_overwrite_a_run_key(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        _common.write_json(tmp_path / "r.json", {"run": "mine"}, seed=0, quick=False)
    assert _listing(tmp_path) == []


# ----------------------------------------------------------------------------- argument validation
@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "3", True, None])
def test_check_run_args_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        _common.check_run_args(seed, False)


def test_check_run_args_accepts_the_seed_range():
    assert _common.check_run_args(0, False) == (0, False)
    assert _common.check_run_args(np.int64(2**32 - 1), np.True_) == (2**32 - 1, True)
    with pytest.raises(ValueError, match="quick"):
        _common.check_run_args(0, "False")


@pytest.mark.parametrize("module", SCRIPTS)
def test_run_rejects_a_bad_seed_before_any_work(module, tmp_path):
    mod = importlib.import_module(f"examples.{module}")
    with pytest.raises(ValueError, match="seed"):
        mod.run(tmp_path / "out", quick=True, seed=-1)
    assert not (tmp_path / "out").exists()


def test_output_dir_rejects_empty_and_file_paths(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for bad in ("", "   ", blocker, blocker / "sub"):
        with pytest.raises(_common.OutputError):
            _common.output_dir(bad)
    assert _common.output_dir(tmp_path / "a" / "b").is_dir()
    assert _listing(tmp_path / "a" / "b") == []  # the write probe leaves nothing


def test_out_arg_rejects_unwritable_folders(tmp_path, monkeypatch):
    # os.access is what decides (root passes every real permission test)
    monkeypatch.setattr(_common.os, "access", lambda *args, **kwargs: False)
    with pytest.raises(argparse.ArgumentTypeError, match="not writable"):
        _common.out_arg(str(tmp_path))
    with pytest.raises(argparse.ArgumentTypeError, match="not writable"):
        _common.out_arg(str(tmp_path / "new"))


def _bad_arguments(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    # the first four: the cases every entry point is checked on in a subprocess
    return [(["--seed", "-1"], "--seed"), (["--seed", "abc"], "--seed"), (["--out", ""], "--out"),
            (["--out", str(blocker)], "--out"), (["--seed", str(2**32)], "--seed"), (["--out", "  "], "--out"),
            (["--out", str(blocker / "sub")], "--out")]


def _main_of(module):
    if module == "__main__":
        return importlib.import_module("examples.__main__").main
    return importlib.import_module(f"examples.{module}").main


@pytest.mark.parametrize("module", ["__main__", *SCRIPTS])
def test_bad_arguments_are_usage_errors(module, tmp_path, capsys):
    main = _main_of(module)
    for argv, name in _bad_arguments(tmp_path):
        with pytest.raises(SystemExit) as info:
            main(argv + ["--quick"])
        err = capsys.readouterr().err
        assert info.value.code == 2, argv
        assert "usage:" in err and f"argument {name}" in err, (argv, err)
    assert (tmp_path / "a_file").read_text() == "keep me"
    assert _listing(tmp_path) == ["a_file"]


@pytest.mark.parametrize("entry", [["-m", "examples", "heavy_ball"], ["examples/sinkhorn.py"]],
                         ids=["runner", "script"])
def test_bad_arguments_exit_2_without_traceback(entry, tmp_path):
    cases = _bad_arguments(tmp_path)
    for argv, name in cases if entry[0] == "-m" else cases[:4]:  # a script's start imports jax: seconds
        out = subprocess.run([sys.executable, *entry, "--quick", *argv], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 2, (argv, out.stderr)
        assert "Traceback" not in out.stderr and f"argument {name}" in out.stderr, (argv, out.stderr)
    assert _listing(tmp_path) == ["a_file"]

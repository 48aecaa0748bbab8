"""examples/derivative_convergence.py (theory.derivative_convergence on three maps) in --quick mode."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_derivative_convergence_quick(tmp_path, assert_run_record):
    # as a script, in a subprocess: its JSON records that command line
    argv = ["examples/derivative_convergence.py", "--quick", "--out", str(tmp_path), "--seed", "0"]
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "verdicts" in proc.stdout
    data = json.loads((tmp_path / "derivative_convergence.json").read_text())
    assert_run_record(data["run"], seed=0, quick=True, argv=argv)
    names = ["lasso_fb", "heavy_ball", "sinkhorn"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["derivative_convergence.json"] + [f"derivative_convergence_{n}.png" for n in names])
    for n in names:
        assert (tmp_path / f"derivative_convergence_{n}.png").stat().st_size > 10_000
    assert data["verdicts"] == {"lasso_fb": "converge", "heavy_ball": "diverge", "sinkhorn": "inconclusive"}
    assert data["all_as_expected"] is True
    lasso = data["cases"]["lasso_fb"]["report"]
    assert abs(lasso["observed"]["jax"]["rate"] - lasso["predicted_rate"]) < 0.02
    hb = data["cases"]["heavy_ball"]["report"]
    assert hb["jsr"]["lower"] > 1 and hb["jsr"]["word"]
    assert "singular" in data["cases"]["sinkhorn"]["report"]["implicit_note"]


def test_derivative_convergence_bad_arguments(tmp_path):
    sys.path.insert(0, str(ROOT))
    from examples import derivative_convergence

    with pytest.raises(ValueError, match="seed"):
        derivative_convergence.run(tmp_path, quick=True, seed=-1)
    with pytest.raises(ValueError, match="quick"):
        derivative_convergence.run(tmp_path, quick="yes")
    with pytest.raises(SystemExit):
        derivative_convergence.main(["--seed", "x", "--out", str(tmp_path)])

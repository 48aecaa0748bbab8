"""jaxopt paper Figure 2 (Jacobian error vs iterate error on ridge regression) in --quick mode."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SLOPE_TOL = 0.05  # implicit differentiation: the log-log slope is 1 (linear error) within this
EPS = np.finfo(np.float64).eps
# errors at or below ROUNDOFF·κ·eps·scale are round-off (κ: condition number of the Hessian; scale:
# ‖x*‖ for iterates, ‖∂x*‖ for Jacobians) and are not ordered against each other
ROUNDOFF = 100.0


@pytest.mark.slow
def test_ridge_precision_quick(tmp_path, assert_run_record):
    # as a script, in a subprocess: its JSON records that command line
    argv = ["examples/ridge_precision.py", "--quick", "--out", str(tmp_path), "--seed", "0"]
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "fitted log-log slopes" in proc.stdout
    data = json.loads((tmp_path / "ridge_precision.json").read_text())
    assert_run_record(data["run"], seed=0, quick=True, argv=argv)
    assert (tmp_path / "ridge_precision.png").stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ridge_precision.json", "ridge_precision.png"]
    assert sorted(data["slopes"]) == ["implicit", "unrolling"]
    kappa = data["hessian_condition_number"]
    floor_x = ROUNDOFF * kappa * EPS * data["x_star_norm"]
    floor_J = ROUNDOFF * kappa * EPS * data["jacobian_star_norm"]
    # implicit: linear in the iterate error (Theorem 1) and under the bound at every t
    assert abs(data["slopes"]["implicit"] - 1.0) < SLOPE_TOL
    assert data["implicit_under_bound"] and data["max_implicit_over_bound"] <= 1.0
    imp, bound = np.array(data["jacobian_error"]["implicit"]), np.array(data["bound"])
    assert np.all(imp <= bound * (1 + 1e-9) + 1e-12)
    # unrolling: converges too, but is worse than implicit at the same iterate error
    unr = np.array(data["jacobian_error"]["unrolling"])
    it = np.array(data["iterate_error"])
    assert np.all((np.diff(it) < 0) | (it[1:] <= floor_x))
    assert unr[-1] < 1e-6 * unr[0] and imp[-1] < 1e-6 * imp[0]
    # the ordering is asserted where one of the two errors is above round-off, at enough t to mean it
    compared = (it < 1.0) & (np.maximum(unr, imp) > floor_J)
    assert np.count_nonzero(compared) >= 5
    assert np.all(unr[compared] > imp[compared])
    assert 0.5 < data["slopes"]["unrolling"] < 1.05
    # the trajectory-based estimators agree with algorithms.iterate
    for diffs in data["spot_check_vs_iterate_max_abs_diff"].values():
        assert diffs["implicit"] < 1e-8 and diffs["autodiff"] < 1e-8

"""Slides, "Sinkhorn derivatives converge", in --quick mode."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EPS = np.finfo(np.float64).eps


@pytest.mark.slow
def test_sinkhorn_quick(tmp_path, assert_run_record):
    sys.path.insert(0, str(ROOT))
    from examples import sinkhorn

    s = sinkhorn.run(tmp_path, quick=True, seed=0)
    data = json.loads((tmp_path / "sinkhorn.json").read_text())
    assert (tmp_path / "sinkhorn.png").stat().st_size > 10_000
    assert_run_record(data["run"], seed=0, quick=True)
    assert s["run"] == data["run"]
    # the contraction argument does not apply: sigma_max(d1F) = 1 at the solution
    assert abs(data["sigma_max_d1F_at_solution"] - 1.0) < 1e-8
    # ... yet the autodiff derivative of the plan converges linearly to the implicit one
    assert 0 < data["fitted_rate"] < 1
    assert data["final_relative_error"] < 1e-10
    errs = np.array(data["jacobian_error"])
    assert errs[-1] < 1e-10 * errs[0]
    # the rate is Sinkhorn's own (second eigenvalue of d1F), up to the polynomial factor of the fit
    assert data["lambda2_d1F"] < 1 and abs(data["fitted_rate"] - data["lambda2_d1F"]) < 0.05
    # two programs for the same Jacobian: equal up to round-off relative to its size
    assert data["scan_vs_iterate_api_max_abs"] <= 1e4 * EPS * max(1.0, data["reference"]["jacobian_frobenius_norm"])
    assert data["reference"]["fixed_point_residual"] < 1e-12
    assert s["fitted_rate"] == pytest.approx(data["fitted_rate"])

"""jaxopt paper Figure 2 (Jacobian error vs iterate error on ridge regression) in --quick mode."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SLOPE_TOL = 0.05  # implicit differentiation: the log-log slope is 1 (linear error) within this


@pytest.mark.slow
def test_ridge_precision_quick(tmp_path):
    sys.path.insert(0, str(ROOT))
    from examples import ridge_precision as rp

    s = rp.run(tmp_path, quick=True, seed=0)
    data = json.loads((tmp_path / "ridge_precision.json").read_text())
    assert (tmp_path / "ridge_precision.png").stat().st_size > 10_000
    assert sorted(data["slopes"]) == ["implicit", "unrolling"]
    # implicit: linear in the iterate error (Theorem 1) and under the bound at every t
    assert abs(data["slopes"]["implicit"] - 1.0) < SLOPE_TOL
    assert data["implicit_under_bound"] and data["max_implicit_over_bound"] <= 1.0
    imp, bound = np.array(data["jacobian_error"]["implicit"]), np.array(data["bound"])
    assert np.all(imp <= bound * (1 + 1e-9) + 1e-12)
    # unrolling: converges too, but is worse than implicit at the same iterate error
    unr = np.array(data["jacobian_error"]["unrolling"])
    it = np.array(data["iterate_error"])
    assert np.all(np.diff(it) < 0)
    assert unr[-1] < 1e-6 * unr[0] and imp[-1] < 1e-6 * imp[0]
    small = it < 1.0
    assert np.all(unr[small] > imp[small])
    assert 0.5 < data["slopes"]["unrolling"] < 1.05
    # the trajectory-based estimators agree with algorithms.iterate
    for diffs in data["spot_check_vs_iterate_max_abs_diff"].values():
        assert diffs["implicit"] < 1e-8 and diffs["autodiff"] < 1e-8
    assert s["slopes"] == pytest.approx(data["slopes"])

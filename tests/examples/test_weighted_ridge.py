"""One-step paper Figure 4 (weighted ridge by gradient descent) in --quick mode."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ["kappa=1000, step=1/L", "kappa=1000, step=2/(mu+L)", "kappa=100, step=1/L", "kappa=100, step=2/(mu+L)"]
ESTIMATORS = ["autodiff", "implicit", "one_step", "truncated_10"]


@pytest.mark.slow
def test_weighted_ridge_quick(tmp_path):
    sys.path.insert(0, str(ROOT))
    from examples import weighted_ridge as wr

    s = wr.run(tmp_path, quick=True, seed=0)
    data = json.loads((tmp_path / "weighted_ridge.json").read_text())
    assert (tmp_path / "weighted_ridge.png").stat().st_size > 10_000
    assert (tmp_path / "weighted_ridge_vs_k.png").stat().st_size > 10_000
    assert "SYNTHETIC" in data["data"] and "cpusmall" in data["data"]
    assert sorted(data["final_errors"]) == sorted(SETTINGS)
    for name in SETTINGS:
        rec = data["settings"][name]
        final = data["final_errors"][name]
        assert sorted(final) == sorted(ESTIMATORS)
        assert all(np.isfinite(v) and v >= 0 for v in final.values())
        # the iterates converge: the squared iterate error decreases along k
        it = np.array(rec["iterate_error_sq"])
        assert np.all(np.diff(it) < 0) and it[-1] < 1e-3 * it[0]
        # implicit is the most accurate at the last k, and its error decreased from the first k
        jimp = np.array(rec["jacobian_error_sq"]["implicit"])
        assert jimp[-1] < 1e-3 * jimp[0]
        assert final["implicit"] <= min(final.values()) * (1 + 1e-6)
        # autodiff converges (the first point may show burn-in): last below first
        assert final["autodiff"] < rec["jacobian_error_sq"]["autodiff"][0]
        # one-step / truncated stall at a floor under Corollary 1's asymptotic bound ρ^K L_F/(1-ρ)
        for e in ("one_step", "truncated_10"):
            assert final[e] > 1e3 * final["implicit"]
            assert 0 < rec["final_over_floor"][e] <= 1.0
        assert final["truncated_10"] <= final["one_step"] * (1 + 1e-9)
        assert all(t > 0 for e in ESTIMATORS for t in rec["time"][e])
    # the implicit estimator at the last k is cheaper than full autodiff through k steps
    rec = data["settings"]["kappa=1000, step=1/L"]
    assert rec["time"]["implicit"][-1] < rec["time"]["autodiff"][-1]
    for name in SETTINGS:
        assert s["final_errors"][name] == pytest.approx(data["final_errors"][name])

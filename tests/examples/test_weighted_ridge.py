"""One-step paper Figure 4 (weighted ridge by gradient descent) in --quick mode."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ["kappa=1000, step=1/L", "kappa=1000, step=2/(mu+L)", "kappa=100, step=1/L", "kappa=100, step=2/(mu+L)"]
ESTIMATORS = ["autodiff", "implicit", "one_step", "truncated_10"]
EPS = np.finfo(np.float64).eps
# A Jacobian error at or below ROUNDOFF·κ·eps·‖J_θx̄‖ is round-off: a linear solve with condition number κ
# loses a factor κ, and autodiff through thousands of steps accumulates a further factor (observed up
# to ~10 at κ = 100). Errors at that level tie with each other; the quantities below are squared errors.
ROUNDOFF = 100.0


def check_final_errors(final, *, kappa, norm_J_bar, label=""):
    """The ordering of the squared Jacobian errors at the last k, with round-off ties."""
    floor_sq = (ROUNDOFF * kappa * EPS * norm_J_bar) ** 2
    # implicit is the most accurate (an error at round-off ties with any other round-off error)
    for e in ESTIMATORS:
        assert final["implicit"] <= max(final[e], floor_sq), (label, e, final, floor_sq)
    # one-step / truncated stall at a floor under Corollary 1's asymptotic bound ρ^K L_F/(1-ρ), far
    # above both the implicit error and round-off
    for e in ("one_step", "truncated_10"):
        assert final[e] > 1e3 * max(final["implicit"], floor_sq), (label, e, final, floor_sq)
    assert final["truncated_10"] <= final["one_step"], (label, final)


def test_final_error_checks_tie_at_round_off_and_fail_otherwise():
    # implicit and autodiff both at round-off, autodiff the smaller: a tie (the machine-dependent case)
    tie = {"autodiff": 1.7e-30, "implicit": 2.5e-30, "one_step": 1.4e-2, "truncated_10": 1.1e-2}
    check_final_errors(tie, kappa=100.0, norm_J_bar=0.12)
    # one-step as accurate as implicit: the theory says it is not
    with pytest.raises(AssertionError):
        check_final_errors(dict(tie, one_step=2.5e-30), kappa=100.0, norm_J_bar=0.12)
    # implicit worse than autodiff above round-off
    with pytest.raises(AssertionError):
        check_final_errors({"autodiff": 1e-12, "implicit": 1e-9, "one_step": 1.0, "truncated_10": 0.98},
                           kappa=1000.0, norm_J_bar=1.0)
    # truncated worse than one-step
    with pytest.raises(AssertionError):
        check_final_errors(dict(tie, truncated_10=2e-2), kappa=100.0, norm_J_bar=0.12)


@pytest.mark.slow
def test_weighted_ridge_quick(tmp_path, assert_run_record):
    sys.path.insert(0, str(ROOT))
    from examples import weighted_ridge as wr

    s = wr.run(tmp_path, quick=True, seed=0)
    data = json.loads((tmp_path / "weighted_ridge.json").read_text())
    assert (tmp_path / "weighted_ridge.png").stat().st_size > 10_000
    assert (tmp_path / "weighted_ridge_vs_k.png").stat().st_size > 10_000
    assert_run_record(data["run"], seed=0, quick=True)
    assert s["run"] == data["run"]
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
        # implicit's error decreased from the first k
        jimp = np.array(rec["jacobian_error_sq"]["implicit"])
        assert jimp[-1] < 1e-3 * jimp[0]
        check_final_errors(final, kappa=rec["kappa"], norm_J_bar=rec["norm_J_bar"], label=name)
        # autodiff converges (the first point may show burn-in): last below first
        assert final["autodiff"] < rec["jacobian_error_sq"]["autodiff"][0]
        for e in ("one_step", "truncated_10"):
            assert 0 < rec["final_over_floor"][e] <= 1.0
        assert all(t > 0 for e in ESTIMATORS for t in rec["time"][e])
    # the implicit estimator at the last k is cheaper than full autodiff through k steps
    rec = data["settings"]["kappa=1000, step=1/L"]
    assert rec["time"]["implicit"][-1] < rec["time"]["autodiff"][-1]
    for name in SETTINGS:
        assert s["final_errors"][name] == pytest.approx(data["final_errors"][name])

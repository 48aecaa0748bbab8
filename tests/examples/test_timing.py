"""One-step paper, Figure 3 in --quick mode: hypergradient timings and one-step/implicit agreement."""

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_timing_quick(tmp_path, assert_run_record):
    sys.path.insert(0, str(ROOT))
    from examples import timing

    s = timing.run(tmp_path, quick=True, seed=0)
    data = json.loads((tmp_path / "timing.json").read_text())
    assert (tmp_path / "timing.png").stat().st_size > 10_000
    assert_run_record(data["run"], seed=0, quick=True)
    assert s["run"] == data["run"]
    assert set(data["ratios_at_largest"]) == {"qp", "newton_logistic"}
    for prob, ratios in data["ratios_at_largest"].items():
        assert set(ratios) == {"autodiff", "implicit", "one_step"}
        # timings are noisy on a loaded machine: only check they are positive and finite
        assert all(math.isfinite(r) and r > 0 for r in ratios.values()), prob
    # one-step and implicit hypergradients agree (fast solvers, Corollary 3)
    for prob, gap in data["agreement"].items():
        assert gap < 1e-6, prob
    for prob, rows in data["results"].items():
        for r in rows:
            assert r["autodiff_minus_implicit_max_abs"] < 1e-6 * max(1.0, r["hypergradient_max_abs"])
            assert r["steps"] == r["steps_to_converge"] + 1
    assert s["agreement"] == pytest.approx(data["agreement"])

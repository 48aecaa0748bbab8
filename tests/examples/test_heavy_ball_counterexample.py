"""The flagship reproduction in --quick mode: facts (a)-(f) of the heavy-ball counterexample."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_heavy_ball_quick(tmp_path):
    sys.path.insert(0, str(ROOT))
    from examples import heavy_ball_counterexample as hb

    s = hb.run(tmp_path, quick=True)
    data = json.loads((tmp_path / "heavy_ball.json").read_text())
    assert (tmp_path / "heavy_ball.png").stat().st_size > 10_000
    # (a) iterates converge
    assert data["iterates_converge"] and data["max_final_abs_iterate"] < 1e-6
    # (b) the conservative Jacobian at 0 is conv{M1, M2}
    np.testing.assert_allclose(data["M1"], [[0.75, -0.75], [1.0, 0.0]])
    np.testing.assert_allclose(data["M2"], [[1.5, -0.75], [1.0, 0.0]])
    # (c) exact eigenvalue -9/8 of M1 M1 M2 M2 and a JSR lower bound above 1
    assert data["eigenvalue_minus_9_8_verified"] is True
    assert "-9/8" in data["M1M1M2M2_eigenvalues_exact"]
    assert data["jsr_lower"] > 1.0 and data["jsr_lower"] <= data["jsr_upper"]
    # jax.jacfwd picks one vertex
    assert data["jax_element_is_vertex"] in ([1], [2])
    # (d) set-valued piggyback: JAX's element in the set; diameters grow for heavy-ball
    assert data["piggyback_ad_element_always_in_set"]
    d = np.array(data["piggyback_heavy_ball_diameters"])
    assert d[-1] > 2 * d[len(d) // 2] and data["piggyback_heavy_ball_fitted_rate"] > 1.0
    # gradient descent's sets converge to its fixed set [2, 8] (diameter 6)
    assert abs(data["piggyback_gradient_descent_final_diameter"] - 6.0) < 0.5
    # (e) alternated equivalent programs: iterates exactly 0, AD derivative grows
    alt = data["alternating_programs"]
    assert alt["heavy_ball_max_abs_iterate"] == 0.0
    assert alt["heavy_ball_ad_diverges"] and alt["heavy_ball_ad_fitted_rate"] > 1.0
    sel = np.array(alt["their_jax_selections_at_0"])
    assert not np.allclose(sel[0], sel[1])
    # (f) gradient descent: the AD derivative converges
    assert alt["gradient_descent_ad_converges"]
    assert s["eigenvalue_minus_9_8_verified"]


def test_runner_lists_and_rejects_unknown_names(tmp_path):
    out = subprocess.run([sys.executable, "-m", "examples", "--list"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "heavy_ball" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "examples", "no_such_experiment", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "valid choices" in bad.stderr and "heavy_ball" in bad.stderr


def test_runner_rejects_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = subprocess.run([sys.executable, "-m", "examples", "heavy_ball", "--quick", "--out", str(blocker / "sub")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "--out" in bad.stderr

"""The flagship reproduction in --quick mode: facts (a)-(f) of the heavy-ball counterexample."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import theory

ROOT = Path(__file__).resolve().parents[2]
EPS = np.finfo(np.float64).eps


@pytest.mark.slow
def test_heavy_ball_quick(tmp_path, assert_run_record):
    # through the runner, in a subprocess: the script's and the runner's JSONs both record the command
    args = ["heavy_ball", "--quick", "--out", str(tmp_path), "--seed", "0"]
    proc = subprocess.run([sys.executable, "-m", "examples", *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    argv = [str(ROOT / "examples" / "__main__.py"), *args]
    runner = json.loads((tmp_path / "summary.json").read_text())
    assert_run_record(runner["run"], seed=0, quick=True, argv=argv)
    assert runner["requested"] == runner["completed"] == ["heavy_ball"]
    s = runner["experiments"]["heavy_ball"]["key_numbers"]
    data = json.loads((tmp_path / "heavy_ball" / "heavy_ball.json").read_text())
    assert_run_record(data["run"], seed=0, quick=True, argv=argv)
    assert (tmp_path / "heavy_ball" / "heavy_ball.png").stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["heavy_ball", "heavy_ball.json", "heavy_ball.png",
                                                            "summary.json"]
    # (a) iterates converge
    assert data["iterates_converge"] and data["max_final_abs_iterate"] < 1e-6
    # (b) the conservative Jacobian at 0 is conv{M1, M2}
    np.testing.assert_allclose(data["M1"], [[0.75, -0.75], [1.0, 0.0]])
    np.testing.assert_allclose(data["M2"], [[1.5, -0.75], [1.0, 0.0]])
    # (c) exact eigenvalue -9/8 of M1 M1 M2 M2 and a JSR lower bound above 1
    assert data["eigenvalue_minus_9_8_verified"] is True
    assert "-9/8" in data["M1M1M2M2_eigenvalues_exact"]
    # (the bracket closes to ~1e-13 relative: lower ≤ upper up to round-off)
    assert data["jsr_lower"] > 1.0 and data["jsr_lower"] <= data["jsr_upper"] * (1 + 64 * EPS)
    # the word of the lower bound is 0-based (theory.JSRResult.certificate's convention) and its product's
    # spectral radius gives the lower bound
    word = data["jsr_certificate_word"]
    assert set(word) == {0, 1}
    P = theory.word_product(np.array([data["M1"], data["M2"]]), word)
    rho = max(abs(np.linalg.eigvals(P))) ** (1 / len(word))
    assert abs(rho - data["jsr_lower"]) <= max(1e-12 * data["jsr_lower"], 64 * EPS)
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
    assert s["eigenvalue_minus_9_8_verified"] is True
    for key in ("jsr_lower", "jsr_upper", "piggyback_heavy_ball_fitted_rate"):
        assert s[key] == data[key]


def test_runner_lists_and_rejects_unknown_names(tmp_path):
    out = subprocess.run([sys.executable, "-m", "examples", "--list"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "heavy_ball" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "examples", "no_such_experiment", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "valid choices" in bad.stderr and "heavy_ball" in bad.stderr
    assert list(tmp_path.iterdir()) == []


def test_runner_rejects_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = subprocess.run([sys.executable, "-m", "examples", "heavy_ball", "--quick", "--out", str(blocker / "sub")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "argument --out" in bad.stderr and "Traceback" not in bad.stderr

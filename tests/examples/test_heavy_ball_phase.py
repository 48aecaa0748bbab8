"""The heavy-ball phase diagram in --quick mode: certified verdicts per cell, the slides' point, resume."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the phase diagram runs on dask.distributed (the 'sweep' extra)")
pytest.importorskip("pyarrow", reason="the phase diagram stores its cells with pyarrow (the 'sweep' extra)")

ROOT = Path(__file__).resolve().parents[2]
EPS = np.finfo(np.float64).eps


def _pieces(alpha, beta, mu=0.25, L=1.0):
    return [np.array([[1 + beta - alpha * c, -beta], [1.0, 0.0]]) for c in (L, mu)]


def _word_radius(family, word):
    P = np.eye(2)
    for i in word:  # 0-based indices into the family, as theory.JSRResult.certificate
        P = family[i] @ P
    return float(np.max(np.abs(np.linalg.eigvals(P)))) ** (1 / len(word))


@pytest.mark.slow
def test_heavy_ball_phase_quick(tmp_path, assert_run_record):
    args = ["heavy_ball_phase", "--quick", "--out", str(tmp_path), "--seed", "0"]
    proc = subprocess.run([sys.executable, "-m", "examples", *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    argv = [str(ROOT / "examples" / "__main__.py"), *args]
    folder = tmp_path / "heavy_ball_phase"
    data = json.loads((folder / "heavy_ball_phase.json").read_text())
    assert_run_record(data["run"], seed=0, quick=True, argv=argv)
    assert (folder / "heavy_ball_phase.png").stat().st_size > 10_000
    runner = json.loads((tmp_path / "summary.json").read_text())
    assert runner["completed"] == ["heavy_ball_phase"]
    cells = data["cells"]
    assert len(cells) == data["grid"]["cells"] == 36 and data["sweep"]["errors"] == 0
    assert sum(data["counts"].values()) == 36
    for c in cells:
        assert {"alpha", "beta", "jsr_lower", "jsr_upper", "iterates", "derivatives"} <= set(c)
        assert c["jsr_lower"] <= c["jsr_upper"] * (1 + 64 * EPS)
        # the derivative verdict follows from the certified bounds
        assert c["derivatives"] == ("diverge" if c["jsr_lower"] > 1 else "converge" if c["jsr_upper"] < 1
                                    else "inconclusive")
        # the lower bound is the spectral radius of its word, recomputed here
        fam = _pieces(c["alpha"], c["beta"])
        assert abs(_word_radius(fam, c["jsr_word"]) - c["jsr_lower"]) <= 1e-9 * c["jsr_lower"]
        # every operator norm bounds the JSR from above: the upper bound cannot be below ρ(M_i)
        assert c["jsr_upper"] >= max(_word_radius(fam, [0]), _word_radius(fam, [1])) * (1 - 1e-9)
    # the slides' point: iterates converge (certified), derivatives diverge (JSR > (9/8)^(1/4))
    sp = data["slides_point"]
    assert (sp["alpha"], sp["beta"]) == (1.0, 0.75)
    assert sp["class"] == "iterates converge, derivatives diverge" and sp["certified"]
    assert sp["jsr_lower"] >= (9 / 8) ** 0.25 and sp["iterates_method"] in ("piecewise quadratic Lyapunov", "jsr")
    assert sp["iterates_rate_bound"] < 1
    assert data["slides_point_flagship_certified"] is True
    # gradient descent's cell (β = 0, α = 1): family {0, 3/4} contracts, both converge
    gd = next(c for c in cells if (c["alpha"], c["beta"]) == (1.0, 0.0))
    assert gd["class"] == "both converge" and gd["jsr_upper"] < 1 and gd["iterates_method"] == "jsr"
    assert abs(gd["jsr_lower"] - 0.75) < 1e-9
    assert data["flagship_cells_certified"] >= 10
    # resume: a second run takes every cell from the store
    again = subprocess.run([sys.executable, "examples/heavy_ball_phase.py", "--quick", "--out", str(folder)],
                           cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    data2 = json.loads((folder / "heavy_ball_phase.json").read_text())
    assert data2["sweep"]["computed"] == 0 and data2["sweep"]["from_store"] == 36
    assert [c["class"] for c in data2["cells"]] == [c["class"] for c in cells]


def test_cell_function_classifies_known_points():
    sys.path.insert(0, str(ROOT))
    from examples import heavy_ball_phase as hbp

    slides = hbp.phase_cell(1.0, 0.75, 0.25, 1.0)
    assert hbp.classify(slides) == "iterates converge, derivatives diverge"
    assert slides["jsr_lower"] > 1 and slides["iterates_method"] == "piecewise quadratic Lyapunov"
    small = hbp.phase_cell(0.5, 0.25, 0.25, 1.0)
    assert hbp.classify(small) == "both converge" and small["jsr_upper"] < 1
    # gradient descent, exact: α = 3 converges (x < 0 contracts at 1 - 3/4), its family {-2, 1/4} does not
    assert hbp.gradient_descent_exact(3.0, 0.25, 1.0) == (True, 2.0)
    assert hbp.gradient_descent_exact(6.0, 0.25, 1.0)[0] is False

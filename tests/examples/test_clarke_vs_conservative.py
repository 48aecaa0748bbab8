"""examples/clarke_vs_conservative.py in --quick mode: facts read back from its JSON."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EPS = np.finfo(np.float64).eps


def _interval(vertices):
    v = np.asarray(vertices, dtype=np.float64).ravel()
    return v.min(), v.max()


@pytest.mark.slow
def test_clarke_vs_conservative_quick(tmp_path, assert_run_record):
    argv = ["examples/clarke_vs_conservative.py", "--quick", "--out", str(tmp_path), "--seed", "0"]
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Clarke Jacobian vs the program's conservative Jacobian" in proc.stdout
    data = json.loads((tmp_path / "clarke_vs_conservative.json").read_text())
    assert_run_record(data["run"], seed=0, quick=True, argv=argv)
    assert (tmp_path / "clarke_vs_conservative.png").stat().st_size > 20_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clarke_vs_conservative.json", "clarke_vs_conservative.png"]

    # minimality, LD element and limits, on every program
    assert data["all_clarke_inside_conservative"] and data["all_ld_inside_clarke"]
    assert data["all_clarke_vertices_are_limits"]
    progs = data["programs"]
    for r in progs.values():
        assert r["clarke_exact"] and r["limits_inside_clarke"]

    # closed forms of the 2-D programs
    def vset(vs):
        return sorted(tuple(np.round(np.asarray(v, np.float64).ravel(), 9)) for v in vs)

    assert vset(progs["kb_style_1"]["clarke_vertices"]) == vset([[1, 0], [0, -1], [-1, 1]])
    assert vset(progs["kb_style_1"]["conservative_vertices"]) == vset([[1, 0], [0, -1], [-1, 1]])
    assert vset(progs["kb_style_2"]["clarke_vertices"]) == vset([[2, 0], [0, 2]])  # 2·max(x₁, x₂)
    assert vset(progs["kb_style_2"]["conservative_vertices"]) == vset([[1, -1], [-1, 1], [3, 1], [1, 3]])
    assert vset(progs["kb_style_3"]["clarke_vertices"]) == vset([[1, 0], [-1, 0], [0, 1], [0, -1]])
    assert progs["kb_style_3"]["conservative_diameter"] > progs["kb_style_3"]["clarke_diameter"]
    assert "kb_style_2" in data["spurious_ad_elements"]

    # heat-exchanger network: Duran-Grossmann targets equal the problem-table cascade; at the pinch tie
    # ∇Q_H is the segment between the two candidates' gradients (-80, -60) and (-110, -120)
    hen = data["heat_exchanger"]
    assert hen["QH_QC_at_kemp_data"] == [20.0, 60.0] and hen["problem_table_at_kemp_data"] == [20.0, 60.0]
    assert np.allclose(hen["QH_QC_at_point"], hen["problem_table_at_point"], rtol=0, atol=1e3 * EPS * 100)
    h = progs["heat_exchanger"]
    rows = sorted(tuple(np.round(np.asarray(v)[0], 9)) for v in h["clarke_vertices"])
    assert rows == [(-110.0, -120.0), (-80.0, -60.0)]
    assert h["ad"]["jacfwd"]["verdict"] == "inside Clarke"

    # the identity written with relus: program's set [-a, 2 + a], Clarke {1}, AD spurious
    for r in data["relu_identity_family"]:
        a = r["a"]
        assert r["conservative_interval"] == [-float(a), 2.0 + a]
        assert _interval(r["clarke_vertices"]) == (1.0, 1.0)
        assert r["ad"]["jacfwd"]["verdict"].startswith("spurious")
        assert abs(r["ad"]["jacfwd"]["clarke_distance"][0] - abs(np.ravel(r["ad"]["jacfwd"]["matrix"])[0] - 1)) \
            <= 1e3 * EPS * (2 + a)

    # duplicated neurons: diameter ratio 2k + 1, 131 at k = 65
    for r in data["duplicated_neurons"]:
        assert abs(r["diameter_ratio"] - (2 * r["k"] + 1)) <= 1e3 * EPS * (2 * r["k"] + 1)
    assert abs(data["max_duplicated_diameter_ratio"] - 131.0) <= 1e3 * EPS * 131

    sp = data["softplus"]
    assert _interval(sp["conservative_vertices"]) == (-0.5, 1.5)
    assert _interval(sp["clarke_vertices"]) == (0.5, 0.5)

    # |x|/2 + θ: Clarke of x̄ = conv J_imp = [2/3, 2] ⊊ conv J_pb = [0, 2]
    c = data["inclusion_chain"]
    lo, hi = c["clarke_closed_form"]
    assert abs(lo - 2 / 3) <= 4 * EPS and abs(hi - 2) <= 4 * EPS
    trunc = c["unrolled_truncation_bound"]
    assert abs(c["clarke_unrolled"][0] - 2 / 3) <= trunc and abs(c["clarke_unrolled"][1] - 2) <= trunc
    assert c["clarke_unrolled_exact"]
    assert c["hausdorff_clarke_closed_vs_conv_implicit"] <= 1e3 * EPS * 2
    assert c["hausdorff_clarke_unrolled_vs_conv_implicit"] <= trunc + 1e3 * EPS * 2
    assert abs(c["piggyback_fixed_set"][0]) <= c["piggyback_error_bound"] + 1e3 * EPS
    assert abs(c["piggyback_fixed_set"][1] - 2) <= c["piggyback_error_bound"] + 1e3 * EPS
    # strict: gap(J_pb, conv J_imp) = 2/3 (the point 0 of J_pb), certified > 0
    assert c["compare_limits_strict"] and c["compare_limits_includes"] and c["compare_limits_excess_lower"] > 0
    assert c["gap_pb_over_conv_implicit"]["lower"] >= 2 / 3 - c["piggyback_error_bound"] - 1e3 * EPS

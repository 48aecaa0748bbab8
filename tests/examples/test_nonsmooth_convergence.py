"""The slides' "Empirical observations" in --quick mode: FB / DR / ADMM derivatives converge at the
local rate, and at an exact kink JAX's derivative converges to an element of a non-singleton fixed set.

Tolerances: fitted geometric rates must match the predicted local rate (spectral radius of ∂ₓF at x̄
on the identified pattern) within RATE_TOL = 0.05 in absolute value; in the graphical lasso the two
leading eigenvalues of ∂ₓF(x̄) are close (≈ 0.627 and 0.607) and the iterate error is dominated by
the second one before the rounding floor, hence the tolerance.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
RATE_TOL = 0.05
CASES = ("lasso_fb", "glasso_dr", "tv_admm", "lasso_kink")


def test_registered_in_runner():
    sys.path.insert(0, str(ROOT))
    from examples.__main__ import available

    assert "nonsmooth_convergence" in available()


@pytest.mark.slow
def test_nonsmooth_convergence_quick(tmp_path, assert_run_record):
    sys.path.insert(0, str(ROOT))
    from examples import nonsmooth_convergence as nc

    s = nc.run(tmp_path, quick=True, seed=0)
    data = json.loads((tmp_path / "nonsmooth_convergence.json").read_text())
    for png in ("nonsmooth_convergence.png", "nonsmooth_convergence_kink.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    assert set(data["rates"]) == set(CASES) and set(data["cases"]) == set(CASES)
    assert "synthetic" in data["data"]
    assert_run_record(data["run"], seed=0, quick=True)
    assert s["run"] == data["run"]
    assert s["rates"].keys() == data["rates"].keys()

    for name in CASES:
        r, c = data["rates"][name], data["cases"][name]
        # rates: contracting, and the fitted ones match the local (not the global) prediction
        assert 0 < r["predicted"] < 1, name
        assert r["fitted"] < 1 and abs(r["fitted"] - r["predicted"]) <= RATE_TOL, (name, r)
        pj = r.get("predicted_jacobian", r["predicted"])
        assert r["fitted_jacobian"] < 1 and abs(r["fitted_jacobian"] - pj) <= RATE_TOL, (name, r)
        assert r["predicted"] <= r["global_rate"] + 1e-12
        # iterates: decrease to the rounding floor
        e = np.array(c["iterate_errors"], dtype=float)
        assert e[-1] <= 1e-12 * max(1.0, e[0]), name
        coarse = e[::10]
        floor = 1e-13 * max(1.0, e[0])
        assert np.all(coarse[1:] <= np.maximum(coarse[:-1], floor)), name
        # JAX's derivative lies in the conservative set at every iteration; the excess over fix 𝒥 vanishes
        assert c["ad_in_set_every_step"] is True, name
        g = np.array(c["gaps"], dtype=float)
        assert g[-1] < 1e-10 and g[-1] <= g[0], name
        assert c["final_jacobian_error"] < 1e-9, name
        assert c["xbar_fixed_point_residual"] < 1e-12 and c["primal_vs_cvxpy_max_abs"] < 1e-5, name

    for name in ("lasso_fb", "glasso_dr", "tv_admm"):
        c = data["cases"][name]
        # away from kinks: one selection, fix 𝒥 = {J̄} = {(I - A)⁻¹B}, the closed form on the support agrees
        assert c["family_singleton"] and c["fixed_set_vertices"] == 1 and c["tied_steps"] == 0
        assert c["kink_margin_at_xbar"] > 1e-3
        assert c["closed_form_vs_implicit_primal"] < 1e-8 * max(1.0, c["closed_form_norm"])
        assert c["fixed_point_vs_implicit"] < 1e-10
    # FB on the lasso: the local rate max|1 - γ eig(X_SᵀX_S)| is the spectral radius, and beats the global one
    lf = data["cases"]["lasso_fb"]
    assert abs(lf["local_rate_closed_form"] - lf["local_rate_spectral_radius"]) < 1e-10
    assert data["rates"]["lasso_fb"]["predicted"] < data["rates"]["lasso_fb"]["global_rate"] - 0.02
    # DR on symmetric matrices contracts; on all of R^{d×d} it does not (eigenvalue 1)
    gl = data["cases"]["glasso_dr"]
    assert gl["spectral_radius_full_matrix_space"] > 1 - 1e-9 and gl["local_rate_spectral_radius"] < 1

    k = data["cases"]["lasso_kink"]
    # an exact tie at x̄: two selections, a polygon as fixed set
    assert k["kink_margin_at_xbar"] == 0.0 and k["family_size"] == 2
    assert not k["family_singleton"] and k["fixed_set_vertices"] >= 3 and k["fixed_set_diameter"] > 1e-3
    # both one-sided derivatives of λ ↦ x̄(λ) lie in fix 𝒥, which strictly contains the implicit set
    assert max(k["one_sided_distance_to_fixed_set"].values()) < 1e-6
    assert k["one_sided_vs_implicit_vertex_images"] < 1e-6
    assert k["implicit_strictly_smaller"] and k["gap_pb_over_implicit_certified_lower"] > 0
    # from x0 = 0, JAX's derivative converges to an element of fix 𝒥
    assert k["jax_limit_from_x0_in_fixed_set"] and k["final_jacobian_distance_to_fixed_set"] < 1e-10
    # started at x̄ every step is tied: 𝒥_k fills fix 𝒥, and JAX's element (the midpoint selection)
    # converges to a point of fix 𝒥 that is neither one-sided derivative
    fx = k["from_xbar"]
    assert fx["tied_steps"] == fx["steps"] and fx["ad_in_set_every_step"]
    h = np.array(fx["hausdorff_to_fixed_set"], dtype=float)
    assert h[-1] < 1e-3 and h[-1] < 0.1 * h[0]
    assert abs(fx["final_diameter"] - k["fixed_set_diameter"]) < 1e-3
    je = np.array(fx["jax_errors"], dtype=float)
    assert fx["jax_limit_in_fixed_set"] and je[-1] < 1e-4 * je[0]
    assert fx["jax_limit_distance_to_one_sided"] > 1e-4

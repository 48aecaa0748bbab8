"""Assumption A: 2-norm check and SDP ellipsoidal norms, re-checked numerically."""

import numpy as np
import pytest

from conservative import MatrixSet
from theory import certify_norm, contraction_factor, max_singular_value
from theory._contraction import induced_norm

M1 = np.array([[0.75, -0.75], [1.0, 0.0]])
M2 = np.array([[1.5, -0.75], [1.0, 0.0]])


def test_max_singular_value_is_attained_at_vertices():
    fam = MatrixSet([np.diag([0.5, 0.2]), np.array([[0.1, 0.6], [0.0, 0.3]])])
    assert max_singular_value(fam) == pytest.approx(max(np.linalg.norm(v, 2) for v in fam.vertices))
    # a midpoint never exceeds the vertex maximum (the norm is convex)
    mid = fam.vertices.mean(axis=0)
    assert np.linalg.norm(mid, 2) <= max_singular_value(fam) + 1e-15


def test_sdp_norm_beats_2_norm_and_is_rechecked():
    fam = [0.5 * M1, 0.5 * M2]
    cert = contraction_factor(fam)
    assert cert.norm == "ellipsoidal" and cert.contracts
    assert cert.rho < cert.rho_2norm  # 0.574 < 0.956
    assert cert.rho >= cert.spectral_radius
    # the reported ρ is the numpy-recomputed induced norm (plus a tiny margin)
    assert cert.rho >= induced_norm(np.array(fam), cert.R).max()
    assert cert.rho <= induced_norm(np.array(fam), cert.R).max() * (1 + 1e-10)
    # norm equivalence constants
    x = np.array([0.3, -1.2])
    assert np.linalg.norm(x) <= cert.norm_to_2 * np.linalg.norm(cert.R @ x) + 1e-12
    assert "contracts" in cert.summary()


def test_2_norm_method_and_certify_norm():
    fam = [np.diag([0.9, 0.1])]
    cert = contraction_factor(fam, method="2-norm")
    assert cert.norm == "2" and cert.rho == pytest.approx(0.9)
    again = certify_norm(fam, np.diag([1.0, 4.0]))
    assert again.rho == pytest.approx(0.9)


def test_heavy_ball_family_does_not_contract_in_any_ellipsoidal_norm():
    cert = contraction_factor([M1, M2])
    assert not cert.contracts
    assert cert.rho > 1.03  # the JSR is 1.0321…, no norm can do better
    assert "≥ 1" in cert.message


def test_bad_input():
    with pytest.raises(ValueError, match="square"):
        contraction_factor([np.zeros((2, 3))])
    with pytest.raises(ValueError, match="empty"):
        contraction_factor([])
    with pytest.raises(ValueError, match="non-finite"):
        contraction_factor([np.array([[np.inf]])])
    with pytest.raises(ValueError, match="method"):
        contraction_factor([np.eye(2)], method="lmi")
    with pytest.raises(ValueError, match="positive definite"):
        certify_norm([np.eye(2)], -np.eye(2))
    with pytest.raises(TypeError):
        contraction_factor(["a"])


def test_solver_failure_is_reported(monkeypatch):
    from theory import _contraction

    def broken(self, rho, solver):
        return None, "solver error: RuntimeError: boom"

    monkeypatch.setattr(_contraction._FeasibilitySDP, "solve", broken)
    with pytest.warns(RuntimeWarning, match="SDP solver failed"):
        cert = contraction_factor([0.5 * M1, 0.5 * M2])
    assert cert.norm == "2"  # honest fallback: the verified 2-norm certificate
    assert cert.rho == pytest.approx(0.5 * np.linalg.norm(M2, 2), rel=1e-12)

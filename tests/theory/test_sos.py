"""Sum-of-squares JSR bounds (Parrilo-Jadbabaie) against the lifted ellipsoid and published values."""

import numpy as np
import pytest

from theory import jsr, sos_jsr_bound

# Parrilo & Jadbabaie, "Approximation of the joint spectral radius using sum of squares", Linear
# Algebra Appl. 428 (2008), Example 5.4 (matrices as in the SwitchOnSafety.jl example PJ08e54.jl):
# ρ(A1 A3)^{1/2} = 8.9149..., ρ_SOS-2 = 9.7607, ρ_SOS-4 ≈ 8.92 (8.919820 in SwitchOnSafety.jl).
PJ54 = np.array([
    [[0, 1, 7, 4], [1, 6, -2, -3], [-1, -1, -2, -6], [3, 0, 9, 1]],
    [[-3, 3, 0, -2], [-2, 1, 4, 9], [4, -3, 1, 1], [1, -5, -1, -2]],
    [[1, 4, 5, 10], [0, 5, 1, -4], [0, -1, 4, 6], [-1, 5, 0, 1]],
], dtype=float)
LOWER = float(np.abs(np.linalg.eigvals(PJ54[0] @ PJ54[2])).max() ** 0.5)


def test_sos4_beats_the_lifted_ellipsoid_on_example_5_4():
    sos4 = sos_jsr_bound(PJ54, 4, lower=8.9)
    assert all(m > 0 for m in sos4.margins) and sos4.p_margin > 0
    assert sos4.bound == pytest.approx(8.9198, rel=2e-4)
    lifted = jsr(PJ54, invariant_polytope_search=False, lift_degrees=(1, 2), time_limit=60)
    ellipsoid2 = lifted.bounds["ellipsoidal norm, lift degree 2"]
    assert ellipsoid2 == pytest.approx(9.007, rel=1e-3)
    assert LOWER <= sos4.bound <= ellipsoid2
    assert lifted.lower <= sos4.bound


def test_sos2_is_the_quadratic_lyapunov_bound():
    sos2 = sos_jsr_bound(PJ54, 2, lower=8.9)
    assert sos2.bound == pytest.approx(9.7607, rel=2e-4)  # PJ08 / SwitchOnSafety.jl: 9.760675
    assert sos2.bound >= LOWER


def test_sos_bound_is_a_true_bound_and_scales():
    G = np.array([[[1.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]])  # JSR = golden ratio
    golden = (1 + 5**0.5) / 2
    for s in (1.0, 1e-200, 1e200):
        b = sos_jsr_bound(s * G, 4)
        assert b.bound >= golden * s * (1 - 1e-12)
        assert b.bound <= golden * s * 2 ** (1 / 4) * (1 + 1e-3)  # ρ_SOS,2d ≤ n^{1/2d} JSR (PJ08 Thm 3.4)


def test_jsr_uses_sos_when_asked():
    res = jsr(PJ54, invariant_polytope_search=False, lift_degrees=(1,), sos_degrees=(4,), time_limit=60)
    assert "sum of squares" in res.upper_method
    assert res.lower == pytest.approx(LOWER, rel=1e-12) and res.upper <= 8.921


@pytest.mark.parametrize("bad", [3, 1, 0])
def test_bad_degree(bad):
    with pytest.raises(ValueError, match="degree"):
        sos_jsr_bound(PJ54, bad)
    with pytest.raises(ValueError, match="sos_degrees"):
        jsr(PJ54, sos_degrees=(bad,))

"""JSR(c·𝒜) = |c|·JSR(𝒜): certified bounds stay true from 1e-300 to 1e300, and time_limit bounds the call."""

import math
import time

import numpy as np
import pytest

from theory import certify_norm, contraction_factor, invariant_polytope, jsr, max_singular_value

GOLDEN = (1 + 5**0.5) / 2
EPS = np.finfo(np.float64).eps
SCALES = [1e-300, 1e-200, 1e-160, 1e-100, 1.0, 1e100, 1e150, 1e300]

GOLDEN_PAIR = np.array([[[1.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]])
HEAVY_BALL = np.array([[[0.75, -0.75], [1.0, 0.0]], [[1.5, -0.75], [1.0, 0.0]]])
RANDOM3 = np.random.default_rng(7).standard_normal((3, 3, 3))

_BASE = {}


def _base(name, fam):
    if name not in _BASE:
        _BASE[name] = jsr(fam, time_limit=20)
    return _BASE[name]


@pytest.mark.parametrize("s", SCALES)
@pytest.mark.parametrize("name,fam,true", [("golden", GOLDEN_PAIR, GOLDEN), ("heavy_ball", HEAVY_BALL, None),
                                           ("random3", RANDOM3, None)])
def test_jsr_is_homogeneous_and_certified(name, fam, true, s):
    base = _base(name, fam)
    res = jsr(s * fam, time_limit=20)
    assert 0 < res.lower <= res.upper < math.inf
    lo, hi = res.lower / s, res.upper / s
    if true is not None:  # closed form: lower ≤ JSR ≤ upper
        assert lo <= true * (1 + 1e-12) and hi >= true * (1 - 1e-12)
    else:  # the unscaled run brackets the same JSR
        assert lo <= base.upper * (1 + 1e-9) and hi >= base.lower * (1 - 1e-9)
    assert lo == pytest.approx(base.lower, rel=1e-9)
    assert hi <= base.upper * (1 + 1e-6) + 1e-9 * base.upper
    if res.exact:  # an exactness claim must be right: upper and lower meet at the true value
        assert hi <= lo * (1 + 1e-8)
        if true is not None:
            assert lo == pytest.approx(true, rel=1e-12)
    assert res.exact == base.exact


def test_huge_identity_and_single_matrices():
    for c in (1e-300, 1e300, 1.7e308):
        res = jsr([c * np.eye(2)])
        assert res.lower <= c * (1 + 1e-12) and res.upper >= c * (1 - 1e-12)
        assert res.upper <= c * (1 + 1e-6)


def test_long_words_of_large_or_small_norm_do_not_overflow():
    # norms 1e13 / 1e-13: words of length 24 would reach 1e312 / 1e-312 without renormalization
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    for c in (1e13, 1e-13):
        fam = [c * np.array([[1.0, 0.3], [0.0, 0.5]]), c * 0.9 * rot]
        res = jsr(fam, max_length=24)
        assert res.lower <= res.upper and math.isfinite(res.upper) and res.lower > 0
        base = jsr([np.asarray(a) / c for a in fam], max_length=24)
        assert res.lower / c == pytest.approx(base.lower, rel=1e-9)


@pytest.mark.parametrize("s", [1e-300, 1e-160, 1e150, 1e300])
def test_contraction_and_norms_scale(s):
    A = 0.5 * HEAVY_BALL
    base = contraction_factor(A)
    cert = contraction_factor(s * A)
    assert cert.rho / s == pytest.approx(base.rho, rel=1e-3) and cert.rho >= cert.spectral_radius
    assert cert.rho / s >= 0.5 * (9 / 8) ** 0.25 * (1 - 1e-12)  # above the JSR of 0.5·heavy-ball
    assert max_singular_value(s * A) / s == pytest.approx(max_singular_value(A), rel=1e-14)
    again = certify_norm(s * A, cert.P)
    assert again.rho / s == pytest.approx(cert.rho / s, rel=1e-12)
    poly = invariant_polytope(s * GOLDEN_PAIR, (0, 1))
    assert poly.success and poly.rho_hat / s == pytest.approx(GOLDEN, rel=1e-12)
    assert poly.bound / s >= GOLDEN * (1 - 1e-12)


def test_time_limit_bounds_the_whole_call():
    A = np.random.default_rng(0).standard_normal((30, 6, 6))
    t0 = time.monotonic()
    res = jsr(A, time_limit=2)
    wall = time.monotonic() - t0
    assert wall < 15  # loose sanity bound (the call used to take minutes)
    assert 0 < res.lower <= res.upper < math.inf
    assert res.cut and "cut by time_limit" in res.summary()
    # the lower bound is a spectral radius of a product: check it from the word
    from theory import word_product
    w = res.certificate
    assert np.abs(np.linalg.eigvals(word_product(A, w))).max() ** (1 / len(w)) == pytest.approx(res.lower, rel=1e-9)


def test_no_cut_reported_when_time_suffices():
    res = jsr(GOLDEN_PAIR, time_limit=60)
    assert res.cut == () and "cut" not in res.summary()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_time_limit_values(bad):
    with pytest.raises(ValueError, match="time_limit"):
        jsr(GOLDEN_PAIR, time_limit=bad)


@pytest.mark.parametrize("bad", ["2", None, True])
def test_time_limit_types(bad):
    with pytest.raises(TypeError, match="time_limit"):
        jsr(GOLDEN_PAIR, time_limit=bad)

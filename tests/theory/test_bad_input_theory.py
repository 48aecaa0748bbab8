"""Counts are ints and tolerances finite numbers: anything else is a TypeError/ValueError naming it."""

import numpy as np
import pytest

from conservative import MatrixSet
from theory import (
    compare_limits,
    contraction_factor,
    fixed_set,
    fixed_set_iteration,
    implicit_set,
    invariant_polytope,
    jsr,
)

GOLDEN_PAIR = np.array([[[1.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]])
FAMILY = MatrixSet(np.array([[[-0.5, 1.0]], [[0.5, 1.0]]]))  # [A, B] blocks, x ↦ a x + 1

CALLS = {
    "steps": lambda v: fixed_set_iteration(FAMILY, v),
    "max_iter": lambda v: fixed_set(FAMILY, max_iter=v),
    "fixed_set max_vertices": lambda v: fixed_set(FAMILY, max_vertices=v),
    "iteration max_vertices": lambda v: fixed_set_iteration(FAMILY, 2, max_vertices=v),
    "max_length": lambda v: jsr(GOLDEN_PAIR, max_length=v),
    "max_products": lambda v: jsr(GOLDEN_PAIR, max_products=v),
    "max_lift_dim": lambda v: jsr(GOLDEN_PAIR, max_lift_dim=v),
    "max_polytope_vertices": lambda v: jsr(GOLDEN_PAIR, max_polytope_vertices=v),
    "lift_degrees": lambda v: jsr(GOLDEN_PAIR, lift_degrees=(1, v)),
    "max_bisections": lambda v: contraction_factor(0.5 * GOLDEN_PAIR, max_bisections=v),
    "max_vertices": lambda v: invariant_polytope(GOLDEN_PAIR, (0, 1), max_vertices=v),
    "resolution": lambda v: implicit_set(FAMILY, resolution=v),
    "max_samples": lambda v: implicit_set(FAMILY, max_samples=v),
    "max_inclusion_checks": lambda v: compare_limits(FAMILY, max_inclusion_checks=v),
    "enumerate max_vertices": lambda v: MatrixSet(GOLDEN_PAIR).enumerate_vertices(max_vertices=v),
    "n1": lambda v: MatrixSet(np.ones((2, 2, 3))).split_columns(v),
}


def _name(key):
    return key.split()[-1]


@pytest.mark.parametrize("key", sorted(CALLS))
@pytest.mark.parametrize("bad", [2.5, 2.0, True, "3"])
def test_counts_must_be_ints(key, bad):
    with pytest.raises(TypeError, match=_name(key)):
        CALLS[key](bad)


@pytest.mark.parametrize("key", sorted(CALLS))
@pytest.mark.parametrize("bad", [0, -3])
def test_counts_must_be_positive(key, bad):
    with pytest.raises(ValueError, match=_name(key)):
        CALLS[key](bad)


def test_steps_is_not_truncated():
    with pytest.raises(TypeError, match="steps"):
        fixed_set_iteration(FAMILY, steps=2.5)
    assert len(fixed_set_iteration(FAMILY, np.int64(2)).sets) == 3  # numpy integers are fine


TOLS = {
    "jsr tol": lambda v: jsr(GOLDEN_PAIR, tol=v),
    "fixed_set tol": lambda v: fixed_set(FAMILY, tol=v),
    "rtol": lambda v: contraction_factor(0.5 * GOLDEN_PAIR, rtol=v),
    "accept": lambda v: invariant_polytope(GOLDEN_PAIR, (0, 1), accept=v),
    "compare tol": lambda v: compare_limits(FAMILY, tol=v),
    "time_limit": lambda v: jsr(GOLDEN_PAIR, time_limit=v),
    "contraction time_limit": lambda v: contraction_factor(0.5 * GOLDEN_PAIR, time_limit=v),
    "max_condition": lambda v: implicit_set(FAMILY, max_condition=v),
}


@pytest.mark.parametrize("key", sorted(TOLS))
@pytest.mark.parametrize("bad", [float("nan"), -1e-3, float("inf")])
def test_tolerances_must_be_finite_nonnegative(key, bad):
    with pytest.raises(ValueError, match=_name(key)):
        TOLS[key](bad)


@pytest.mark.parametrize("key", sorted(TOLS))
@pytest.mark.parametrize("bad", ["1e-6", None, True])
def test_tolerances_must_be_numbers(key, bad):
    if bad is None and key == "contraction time_limit":
        return  # None is the default there: no limit
    with pytest.raises(TypeError, match=_name(key)):
        TOLS[key](bad)


def test_lift_degrees_must_be_a_sequence():
    with pytest.raises(TypeError, match="lift_degrees"):
        jsr(GOLDEN_PAIR, lift_degrees=2)
    with pytest.raises(ValueError, match="lift_degrees"):
        jsr(GOLDEN_PAIR, lift_degrees=())

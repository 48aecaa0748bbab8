"""Primitives interpreted through an equivalent program of primitives that have rules.

``LOWERINGS[name](**params)`` returns a JAX function with the primitive's operands and results,
written with primitives whose conservative rules exist (``sort``, ``max``, ``floor``, ...).
``jacobian`` and its fast path interpret that program in place of the primitive, so its set is
the conservative Jacobian of the equivalent program (the same calculus as everywhere else).

``SPECTRAL`` holds the spectral primitives (``eigh``, ``svd``) whose JVP is smooth only away
from repeated (or, for singular values, zero) values; ``spectrum_degenerate`` tests for such
points, where ``jacobian`` raises instead of returning a JVP that is wrong or not finite.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["LOWERINGS", "SPECTRAL", "lower", "spectrum_degenerate", "degenerate_message"]

#: primitive name -> (params -> function of the operands returning the results)
LOWERINGS: dict[str, Callable[..., Callable]] = {}

#: spectral primitives checked for degenerate spectra
SPECTRAL: set[str] = set()

_CACHE: dict = {}


def lower(eqn, vals):
    """The closed jaxpr of the lowering of ``eqn`` at the operand shapes of ``vals`` (cached)."""
    name = eqn.primitive.name
    shapes = tuple((tuple(jnp.shape(v)), str(jnp.result_type(v))) for v in vals)
    key = (name, repr(sorted(eqn.params.items(), key=lambda kv: kv[0])), shapes)
    closed = _CACHE.get(key)
    if closed is None:
        fun = LOWERINGS[name](**eqn.params)
        multiple = eqn.primitive.multiple_results

        def flat(*ops):
            out = fun(*ops)
            return tuple(out) if multiple else (out,)

        closed = jax.make_jaxpr(flat)(*[jax.ShapeDtypeStruct(s, d) for s, d in shapes])
        _CACHE[key] = closed
    return closed


def spectrum_degenerate(name, params, vals, tol):
    """Traceable boolean: is the spectrum of this ``SPECTRAL`` primitive degenerate at ``vals``?"""
    raise KeyError(name)


def degenerate_message(name, params) -> str:
    """The error raised by ``jacobian`` at a degenerate spectrum of ``name``."""
    raise KeyError(name)

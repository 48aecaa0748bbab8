"""One call: do the derivatives of x_{k+1} = F(x_k, θ) converge, and to what?

``derivative_convergence(F, x0, theta)`` chains the toolkit's pieces in the order the theory
uses them (Bolte, Pauwels & Vaiter, NeurIPS 2022; slides "Main result", "Behind the scene:
fixed-point theorem for set-valued mapping", "Nonsmooth implicit differentiation" and "Example
where heavy-ball fails", Vaiter 2023):

1. **The limit.**  x̄ by running F from x0 until ‖F(x_k) - x_k‖₂ ≤ tol·max(1, ‖x_k‖₂) (or a
   given x̄), with the residual r = ‖F(x̄) - x̄‖₂.  If F is a ρ-contraction in the norm
   ‖x‖_P = ‖Rx‖₂ on a ball around x̄ containing the fixed point x*, then
   ‖x̄ - x*‖_P ≤ ‖F(x̄) - x̄‖_P/(1 - ρ), hence ‖x̄ - x*‖₂ ≤ κ(R)(r + e)/(1 - ρ) =: δ, with e the
   rounding of one evaluation of F (modelled as 64(n+1)·eps·‖x̄‖₂).
2. **The family.**  A computed x̄ is never exactly at a kink, so J_F(x̄, θ) is taken with the
   pieces active within tol_tie = L·δ (``conservative.jacobian(F, argnums=(0, 1), tol=tol_tie)``):
   a comparison a(x) ≷ b(x) of L-Lipschitz quantities that is tied at x* differs by at most L·δ
   at x̄.  The tolerance and the family are computed together (δ needs the family's ρ, the family
   needs δ), starting from L·(r + e) and enlarging until L·δ ≤ tol_tie; the steps are recorded.
   The joint set of [∂ₓF, ∂_θF] blocks keeps the two blocks of one selection together.
3. **Assumption A.**  A contraction certificate ‖A‖_P ≤ ρ < 1 for every [A, B] ∈ 𝒥
   (``contraction_factor``: the 2-norm, else an SDP ellipsoidal norm); otherwise (and for
   families of several pieces, to sharpen the rate) certified joint spectral radius bounds of
   the A-family (``jsr``) with the word of the lower bound, re-checked exactly in sympy for small n.
4. **The limits.**  With ρ < 1: J_pb = fix 𝒥 (``fixed_set``, a certified Hausdorff error), the
   implicit set J_imp = {(I - A)⁻¹B : [A, B] ∈ 𝒥} ⊆ J_pb (``implicit_set``) and the excess
   gap(J_pb, J_imp) with a witness (``compare_limits``); J_imp ⊊ J_pb is possible at a kink.
5. **Rates.**  Predicted: the spectral radius of ∂ₓF(x̄) when 𝒥 is a single piece; for several
   pieces under Assumption A, that of the piece the iterates settle on (JAX's ∂ₓF at the end of
   the run: the local rate on the identified pieces), else the JSR upper bound of the A-family;
   the JSR bounds are the rate of the set-valued recursion at x̄.  Observed: least-squares fits of
   log-errors along the run from x0 of ‖x_k - x̄‖, of JAX's forward-mode derivative J_k = ∂x_k/∂θ
   (``jax.jvp`` through the iterations,
   i.e. ``jax.jacfwd`` of the unrolled loop) to its limit, and of gap(𝒥_k, J_pb) along the
   set-valued piggyback (``conservative.piggyback``); for a non-contracting family of several
   pieces, the diameter growth of the set-valued recursion 𝒳_{k+1} = conv{A X + B} at x̄.
6. **Verdict.**  *converge* when a contraction certificate or a JSR upper bound < 1 holds for
   𝒥; *diverge* when a JSR lower bound exceeds 1 (by more than 1e-9, the word is given) or JAX's
   derivative is observed to blow up; *inconclusive* otherwise, with the reason (e.g. a
   member with spectral radius 1, as ∂ₓF of Sinkhorn, whose translation invariance makes I - A
   singular).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from numpy.typing import ArrayLike

from conservative import JumpError, MatrixSet, SetTooLargeError, jacobian, piggyback
from conservative._divergence import MAX_GROWTH, describe_divergence, growth_limit

from ._contraction import contraction_factor
from ._convergence_report import DerivativeConvergence, _unique_blocks
from ._distances import gap
from ._fixed_set import _step as _fixed_set_step
from ._fixed_set import fixed_set
from ._jsr import exact_eigenvalues, jsr
from ._limits import compare_limits
from ._validate import check_count, check_tolerance

__all__ = ["derivative_convergence"]

_EPS = float(np.finfo(np.float64).eps)
#: a JSR lower bound must exceed 1 by this much (relative) to be read as divergence
DIVERGENCE_MARGIN = 1e-9
_CHUNK = 32          # iterations per compiled chunk of the run to the residual tolerance
_MAX_STORED = 4_000_000  # entries of J_k kept per run (n·p·steps) for distances to the fixed set


# ----------------------------------------------------------------------------- input
def _flatten(tree, name: str):
    """(flat float64 vector, unravel) of a pytree of real numbers; TypeError/ValueError naming ``name``."""
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ValueError(f"{name}: expected a pytree with at least one number, got {tree!r}")
    conv = []
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, jax.core.Tracer):
            raise TypeError(f"{name}: leaf {i} is a JAX tracer; derivative_convergence runs on concrete values "
                            "(call it outside jit/vmap/grad)")
        try:
            a = np.asarray(leaf)
        except Exception as exc:  # noqa: BLE001 - any unconvertible leaf is a type error of the argument
            raise TypeError(f"{name}: leaf {i} is not an array ({type(leaf).__name__})") from exc
        if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise TypeError(f"{name}: leaf {i} has dtype {a.dtype}; expected real numbers (float64)")
        if np.issubdtype(a.dtype, np.floating) and a.dtype != np.float64:
            warnings.warn(f"{name}: leaf {i} is {a.dtype}; converted to float64 (ties are decided in float64)",
                          UserWarning, stacklevel=3)
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: leaf {i} contains non-finite values (inf/nan)")
        conv.append(a)
    tree64 = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), [jnp.asarray(a) for a in conv])
    flat, unravel = ravel_pytree(tree64)
    return jnp.asarray(flat, jnp.float64), unravel, tree64


def _flat_map(F, x0, theta):
    """F on flat vectors, after checking that F(x0, θ) runs and returns a state shaped like x0."""
    if not callable(F):
        raise TypeError(f"F: expected a callable F(x, theta) -> x, got {type(F).__name__}")
    x, ux, x_tree = _flatten(x0, "x0")
    t, ut, t_tree = _flatten(theta, "theta")
    try:
        out = jax.eval_shape(F, x_tree, t_tree)
    except Exception as exc:  # noqa: BLE001 - re-raised with the arguments named
        cls = TypeError if isinstance(exc, TypeError) else ValueError
        shapes = lambda tr: jax.tree_util.tree_map(jnp.shape, tr)  # noqa: E731
        raise cls(f"F(x0, theta) failed for x0 of shape {shapes(x_tree)} and theta of shape {shapes(t_tree)}: "
                  f"{type(exc).__name__}: {exc}; check that x0 and theta have the structure and shapes F "
                  "expects") from exc
    s_in, s_out = jax.tree_util.tree_structure(x_tree), jax.tree_util.tree_structure(out)
    shapes_in = [np.shape(a) for a in jax.tree_util.tree_leaves(x_tree)]
    shapes_out = [tuple(a.shape) for a in jax.tree_util.tree_leaves(out)]
    if s_in != s_out or shapes_in != shapes_out:
        raise ValueError(f"F: F(x0, theta) returned a state of structure {s_out} with shapes {shapes_out}, "
                         f"but x0 has structure {s_in} with shapes {shapes_in}; an iteration map returns the "
                         "next state")
    for i, a in enumerate(jax.tree_util.tree_leaves(out)):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(f"F: output leaf {i} has dtype {a.dtype}; expected floating point")

    def Ff(xf, tf):
        return jnp.asarray(ravel_pytree(F(ux(xf), ut(tf)))[0], jnp.float64)

    return Ff, x, t, ux


def _rounding_floor(n: int, x) -> float:
    """A model of the rounding error of one evaluation of F at x: 64 (n + 1) eps ‖x‖₂."""
    return 64.0 * (n + 1) * _EPS * float(np.linalg.norm(np.asarray(x)))


# ----------------------------------------------------------------------------- the limit point
def _run_to_tolerance(Ff, x0, t, tol, maxiter):
    """x̄ = the first x_k with ‖F(x_k) - x_k‖₂ ≤ tol·max(1, ‖x_k‖₂) (or at the rounding floor),
    computed in compiled chunks; raises on divergence and at maxiter."""
    n = x0.shape[0]

    @jax.jit
    def chunk(x):
        def body(x, _):
            x1 = Ff(x, t)
            return x1, (x, jnp.linalg.norm(x1 - x), jnp.max(jnp.abs(x1)))
        return lax.scan(body, x, None, length=_CHUNK)

    x = x0
    sup0 = float(np.max(np.abs(np.asarray(x0)), initial=0.0))
    scale = None
    best = (math.inf, 0)
    k = 0
    while k < maxiter:
        x_end, (xs, res, sups) = chunk(x)
        xs, res, sups = np.asarray(xs), np.asarray(res), np.asarray(sups)  # sups[i] = ‖x_(k+i+1)‖_∞
        if scale is None:
            scale = max(sup0, float(sups[0]))
        # divergence: the criterion of every runner (inf/nan, or growth beyond MAX_GROWTH × scale)
        bad = np.flatnonzero(~(sups <= growth_limit(MAX_GROWTH, scale)))
        nrm = np.linalg.norm(xs, axis=1)
        ok = (res <= tol * np.maximum(1.0, nrm)) | (res <= 64.0 * (n + 1) * _EPS * nrm)
        stop = min(len(res), maxiter - k)
        for i in range(stop):
            if res[i] < best[0]:
                best = (float(res[i]), k + i)
            if ok[i]:
                return jnp.asarray(xs[i]), k + i
            if len(bad) and bad[0] == i:
                j = k + i + 1
                raise ValueError(f"x0: the iteration x_(k+1) = F(x_k, theta) diverged at step {j}: "
                                 f"{describe_divergence(j, float(sups[i]), scale, MAX_GROWTH)}; there is no "
                                 "limit point to analyse")
        k += _CHUNK
        x = x_end
    raise ValueError(f"maxiter: the iteration did not reach ‖F(x_k) - x_k‖ ≤ tol·max(1, ‖x_k‖) with tol = {tol:g} "
                     f"within maxiter = {maxiter} steps (smallest residual {best[0]:.3e} at step {best[1]}); the "
                     "map may not converge from x0: raise maxiter or tol, or pass xbar=")


# ----------------------------------------------------------------------------- the family and tolerance
def _contraction(A):
    """A contraction certificate of the A blocks: the 2-norm when it contracts, else the SDP norm."""
    cert = contraction_factor(A, method="2-norm")
    # an SDP norm can only help when every member has spectral radius < 1
    if not cert.contracts and A.shape[1] > 1 and cert.spectral_radius < 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a failed SDP falls back to the 2-norm, reported
            sdp = contraction_factor(A, rtol=1e-4, time_limit=20.0)
        if sdp.rho < cert.rho:
            cert = sdp
    return cert


def _a_blocks(family: MatrixSet, n: int) -> np.ndarray:
    return _unique_blocks(family.vertices[:, :, :n])


def _ties(family: MatrixSet, exact: MatrixSet) -> tuple:
    """The independent tie groups of the family: rows of [A, B] each moves, pieces, exact or not."""
    exact_rows = [frozenset(np.flatnonzero(np.any(np.abs(g) > 0, axis=(0, 2))).tolist()) for g in exact.groups]
    out = []
    for g in family.groups:
        rows = np.flatnonzero(np.any(np.abs(g) > 0, axis=(0, 2))).tolist()
        out.append(dict(rows=rows, pieces=int(len(g)), exact=any(frozenset(rows) <= r for r in exact_rows)))
    return tuple(out)


def _joint_family(Ff, xbar, t, tol):
    """J_F(x̄, θ) as joint [∂ₓF, ∂_θF] blocks with pieces active within ``tol``."""
    try:
        return jacobian(Ff, argnums=(0, 1), tol=tol)(xbar, t)
    except JumpError as exc:
        raise JumpError(f"F: at x̄ a comparison tied within the tie tolerance {tol:.3e} selects branches that "
                        f"differ by more than it (F jumps there, or the tolerance is too large): {exc}") from exc


def _family_and_tolerance(Ff, xbar, t, residual, floor, lipschitz, tie_tol):
    """(family, exact family, tolerance, certificate, δ, derivation log, consistent, L)."""
    n = xbar.shape[0]
    exact = _joint_family(Ff, xbar, t, 0.0)
    if lipschitz is None:
        L = max(1.0, max(float(np.linalg.norm(a, 2)) for a in _a_blocks(exact, n)))
    else:
        L = lipschitz
    r_eff = residual + floor
    log = []
    if tie_tol is not None:
        fam = exact if tie_tol == 0 else _joint_family(Ff, xbar, t, tie_tol)
        cert = _contraction(_a_blocks(fam, n))
        delta = cert.condition * r_eff / (1 - cert.rho) if cert.contracts else math.inf
        log.append(dict(tolerance=tie_tol, vertices=len(fam.vertices), rho=cert.rho, distance_bound=delta,
                        rule="given"))
        return fam, exact, tie_tol, cert, delta, tuple(log), bool(L * delta <= tie_tol), L
    tol = L * r_eff
    fam = exact if tol == 0 else _joint_family(Ff, xbar, t, tol)
    for _ in range(8):
        cert = _contraction(_a_blocks(fam, n))
        delta = cert.condition * r_eff / (1 - cert.rho) if cert.contracts else math.inf
        log.append(dict(tolerance=tol, vertices=len(fam.vertices), rho=cert.rho, distance_bound=delta))
        if not math.isfinite(delta) or L * delta <= tol:
            break
        # the pieces within L·δ of x̄ may be more than those within tol: enlarge and re-check
        tol = 2.0 * L * delta
        fam = _joint_family(Ff, xbar, t, tol)
    consistent = bool(math.isfinite(delta) and L * delta <= tol)
    return fam, exact, tol, cert, delta, tuple(log), consistent, L


# ----------------------------------------------------------------------------- rates
def _spectral_radius(A) -> float:
    A = np.asarray(A)
    return float(np.max(np.abs(np.linalg.eigvals(A)))) if A.size else 0.0


def fit_rate(values: ArrayLike, start: int = 0, floor: float = 0.0,
             ks: ArrayLike | None = None) -> tuple[float | None, list[int]]:
    """Observed geometric rate exp(slope) of a least-squares fit of log(values) on k.

    Uses k ≥ ``start`` up to the first value at or below ``floor`` (rounding noise) or within 10×
    of the smallest value after ``start`` when the sequence decreases (the level where rounding or
    the inaccuracy of the reference limit takes over), and of that window its second half (the
    asymptotic regime); ``(None, [])`` with fewer than 4 points.
    """
    v = np.asarray(values, dtype=np.float64)
    k = np.arange(len(v)) if ks is None else np.asarray(ks)
    sel = np.flatnonzero(k >= start)
    tail = v[sel][np.isfinite(v[sel])]
    if len(tail) > 1 and tail[-1] < tail[0]:
        floor = max(floor, 10.0 * float(np.min(tail)))
    idx = []
    for i in sel:
        if not (v[i] > floor and math.isfinite(v[i])):
            break
        idx.append(i)
    idx = np.array(idx[len(idx) // 2:], dtype=int)
    if len(idx) < 4:
        return None, []
    slope = np.polyfit(k[idx].astype(float), np.log(v[idx]), 1)[0]
    return float(np.exp(slope)), [int(k[idx[0]]), int(k[idx[-1]])]


def _derivative_run(Ff, x0, t, steps, xbar, J_ref, v):
    """Along x_{k+1} = F(x_k, θ) from x0: ‖x_k - x̄‖, ‖x_{k+1} - x_k‖, JAX's J_k = ∂x_k/∂θ
    (forward mode through the iterations: J_{k+1} = ∂ₓF J_k + ∂_θF as jvps) with ‖J_k - J_ref‖,
    ‖J_{k+1} - J_k‖, ‖J_k‖, and the signature ∂ₓF(x_k)·v of the piece in use; J_k itself when small."""
    n, p = x0.shape[0], t.shape[0]
    keep = n * p * (steps + 1) <= _MAX_STORED
    eye = jnp.eye(p)
    Jr = jnp.zeros((n, p)) if J_ref is None else jnp.asarray(J_ref)

    @jax.jit
    def go(x0):
        def body(c, _):
            x, J = c
            x1, J1 = jax.vmap(lambda dx, dt: jax.jvp(Ff, (x, t), (dx, dt)), in_axes=(1, 1), out_axes=(None, 1))(J, eye)
            sig = jax.jvp(lambda z: Ff(z, t), (x,), (v,))[1]
            o = (jnp.linalg.norm(x - xbar), jnp.linalg.norm(x1 - x), jnp.linalg.norm(J - Jr),
                 jnp.linalg.norm(J1 - J), jnp.linalg.norm(J), sig)
            return (x1, J1), (o + (J,) if keep else o)
        (xK, JK), outs = lax.scan(body, (x0, jnp.zeros((n, p))), None, length=steps)
        return xK, JK, outs

    xK, JK, outs = go(x0)
    outs = [np.asarray(o) for o in outs]
    Js = np.concatenate([outs[6], np.asarray(JK)[None]]) if keep else None
    return np.asarray(xK), np.asarray(JK), outs[:6], Js


def _identification_step(sigs) -> int:
    """First k after which the signature ∂ₓF(x_k)·v stays within 1e-6 (relative) of its final value."""
    s = np.asarray(sigs)
    ref = s[-1]
    d = np.linalg.norm(s - ref, axis=1)
    bad = np.flatnonzero(d > 1e-6 * max(float(np.linalg.norm(ref)), 1e-300))
    return int(bad[-1] + 1) if len(bad) else 0


def _set_recursion_at_xbar(family: MatrixSet, n: int, steps: int, max_vertices: int = 400):
    """Diameters of 𝒳_{k+1} = conv{A X + B : [A, B] ∈ 𝒥, X ∈ 𝒳_k}, 𝒳_0 = {0}: the set-valued
    piggyback with every step at x̄ (stops early when a set exceeds ``max_vertices``)."""
    V = family.vertices
    A, B = V[:, :, :n], V[:, :, n:]
    X = MatrixSet(np.zeros(B.shape[1:]))
    diams = [0.0]
    for _ in range(steps):
        try:
            X, _ = _fixed_set_step(A, B, X, max_vertices)
        except SetTooLargeError:
            break
        diams.append(float(X.diameter()))
        if not math.isfinite(diams[-1]) or diams[-1] > 1e100:
            break
    return np.array(diams)


def _exact_word_check(A, word, max_n: int = 3, max_len: int = 24):
    """Exact (sympy) eigenvalues of the word's product of the computed A-family, for small cases:
    the spectral radius and the lower bound ρ^{1/|w|} to 20 digits (None when too large)."""
    if A.shape[1] > max_n or len(word) > max_len or not len(word):
        return None
    try:
        import sympy

        eig = exact_eigenvalues(A, list(word))
        mod = max(sympy.N(sympy.Abs(lam), 30) for lam in eig)
        lower = sympy.N(mod ** sympy.Rational(1, len(word)), 30)
        return dict(word=[int(i) for i in word], eigenvalues={str(k): int(m) for k, m in eig.items()},
                    spectral_radius=str(sympy.N(mod, 20)), lower=str(sympy.N(lower, 20)),
                    lower_float=float(lower))
    except Exception:  # noqa: BLE001 - the exact re-check is an extra; the float bound stands
        return None


# ----------------------------------------------------------------------------- the entry point
def derivative_convergence(F: Callable[[Any, Any], Any], x0: Any, theta: Any, *, xbar: Any = None, tol: float = 1e-12,
                           maxiter: int = 10_000,
                           steps: int | None = None, max_steps: int = 400, set_steps: int = 120,
                           lipschitz: float | None = None, tie_tol: float | None = None,
                           resolution: int | None = None, max_samples: int = 5_000,
                           jsr_time_limit: float = 20.0) -> DerivativeConvergence:
    r"""Do the derivatives of x_{k+1} = F(x_k, θ) converge, and to what?  One report.

    Runs F to its limit x̄, takes the joint conservative Jacobian 𝒥 = J_F(x̄, θ) with the pieces
    active within the accuracy of x̄, checks Assumption A (contraction ρ < 1, or joint spectral
    radius bounds), computes J_pb = fix 𝒥, J_imp = {(I - A)⁻¹B} and gap(J_pb, J_imp), predicts the
    local rate and measures it along the run from x0 for JAX's forward-mode derivative and the
    set-valued piggyback, and gives a verdict.  The mathematics, step by step:

    * x̄: the first iterate with ‖F(x_k) - x_k‖₂ ≤ tol·max(1, ‖x_k‖₂) (or ``xbar``).  With a
      certificate ‖A‖_P ≤ ρ < 1 on 𝒥 (P = RᵀR), ‖x̄ - x*‖₂ ≤ δ = κ(R)(r + e)/(1 - ρ), r the
      residual and e = 64(n+1)·eps·‖x̄‖₂ a model of the rounding of F (Banach's a-posteriori bound).
    * 𝒥 = ``conservative.jacobian(F, argnums=(0, 1), tol=τ)`` at x̄ with τ = L·δ: a comparison of
      L-Lipschitz quantities tied at x* is within L·δ at x̄, so every piece active at x* is kept
      (an enlargement, documented: pieces active within τ).  τ and δ are found together.
    * Assumption A (slides "Main result"): sup_{[A,B]∈𝒥} ‖A‖ ≤ ρ < 1 in some norm gives
      𝒥_k → fix 𝒥 with dist_H(𝒳_t, fix 𝒥) ≤ ρᵗ dist_H(𝒳_0, 𝒥(𝒳_0))/(1 - ρ); JSR(𝒜) > 1 means some
      product of selections grows (heavy-ball: M1 M1 M2 M2 has the eigenvalue -9/8).
    * J_imp = {(I - A)⁻¹B : [A, B] ∈ 𝒥} ⊆ J_pb = fix 𝒥, strictly at some kinks (Bolte, Pauwels &
      Vaiter 2022; slides "Nonsmooth implicit differentiation").

    Args:
      F: the iteration map ``F(x, theta) -> x`` (pure JAX; pytrees allowed).
      x0: the initial state (a pytree of real arrays).
      theta: the parameters (a pytree of real arrays); derivatives are taken with respect to all of it.
      xbar: optional limit point (a pytree like x0); skips the run to the residual tolerance.
      tol: residual tolerance of the run to x̄ (relative to max(1, ‖x‖₂)); the run also stops at
        the rounding floor.
      maxiter: at most this many iterations to reach ``tol`` (else ``ValueError``).
      steps: iterations of the run from x0 along which derivatives are observed (default: about
        1.3× the steps to x̄ plus 20, at most ``max_steps``).
      set_steps: at most this many of them also run the set-valued piggyback (it costs a few ms each).
      lipschitz: L, the Lipschitz constant assumed for the quantities the nonsmooth primitives of F
        compare (default max(1, max ‖∂ₓF‖₂ over the exact family at x̄)).
      tie_tol: a given tie tolerance instead of the derived one (0 for exact ties only).
      resolution, max_samples: grid of convex weights for J_imp: the finest grid with at most
        ``max_samples`` points (and denominator at most ``resolution`` when given).
      jsr_time_limit: seconds for ``jsr`` (bounds stay certified when it is cut).

    Returns:
      A frozen ``DerivativeConvergence`` report (``.verdict``, ``.reason``, ``.summary()``,
      ``.to_json()``, ``.plot(path)`` and every intermediate object).

    Raises:
      TypeError: F not callable; non-real leaves; unknown keyword options (Python).
      ValueError: non-finite x0/theta/xbar, F(x0, θ) failing or returning another shape (naming
        x0 and theta), an iteration that diverges or does not reach ``tol`` within ``maxiter``,
        bad option values (naming the option).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> jax.config.update("jax_enable_x64", True)
      >>> import theory
      >>> A, B = jnp.array([[0.5, 0.1], [0.0, 0.25]]), jnp.array([[1.0], [2.0]])
      >>> rep = theory.derivative_convergence(lambda x, t: A @ x + B @ t, jnp.zeros(2), jnp.ones(1))
      >>> rep.verdict
      'converge'
      >>> round(rep.predicted_rate, 12)
      0.5
      >>> hb = lambda z, t: jnp.stack([z[0] - jnp.where(z[0] >= 0, z[0], z[0] / 4) + 0.75 * (z[0] - z[1]) + t[0],
      ...                              z[0]])
      >>> rep = theory.derivative_convergence(hb, jnp.ones(2), jnp.zeros(1))
      >>> rep.verdict, rep.jsr.lower > 1
      ('diverge', True)
    """
    t_start = time.perf_counter()
    tol = check_tolerance(tol, "tol")
    maxiter = check_count(maxiter, "maxiter")
    max_steps = check_count(max_steps, "max_steps")
    set_steps = check_count(set_steps, "set_steps", minimum=0)
    if resolution is not None:
        resolution = check_count(resolution, "resolution")
    max_samples = check_count(max_samples, "max_samples")
    jsr_time_limit = check_tolerance(jsr_time_limit, "jsr_time_limit")
    if steps is not None:
        steps = check_count(steps, "steps")
    if lipschitz is not None:
        lipschitz = check_tolerance(lipschitz, "lipschitz")
    if tie_tol is not None:
        tie_tol = check_tolerance(tie_tol, "tie_tol", positive=False)
    Ff, x0f, t, unravel = _flat_map(F, x0, theta)
    Fj = jax.jit(Ff)
    n, p = x0f.shape[0], t.shape[0]
    notes = []

    # 1. the limit point
    if xbar is None:
        xb, k_conv = _run_to_tolerance(Fj, x0f, t, tol, maxiter)
        res_tol = tol
    else:
        xb, _, xb_tree = _flatten(xbar, "xbar")
        if xb.shape != x0f.shape or jax.tree_util.tree_structure(xb_tree) != jax.tree_util.tree_structure(
                jax.tree_util.tree_map(jnp.asarray, x0)):
            raise ValueError(f"xbar: expected a state with the structure of x0 ({n} numbers), got {xb.shape[0]}")
        k_conv, res_tol = None, None
    fx = np.asarray(Fj(xb, t))
    if not np.all(np.isfinite(fx)):
        raise ValueError("xbar: F(x̄, theta) is not finite")
    residual = float(np.linalg.norm(fx - np.asarray(xb)))
    floor = _rounding_floor(n, xb)

    # 2.-3. the family with the derived tolerance, and Assumption A
    fam, exact, tie, cert, delta, log, consistent, L = _family_and_tolerance(
        Ff, xb, t, residual, floor, lipschitz, tie_tol)
    A_fam = _a_blocks(fam, n)
    singleton = fam.is_singleton
    if math.isfinite(delta):
        dnote = (f"Banach bound κ(R)(r + e)/(1 - ρ) with ρ = {cert.rho:.6g}, κ(R) = {cert.condition:.3g} "
                 f"({cert.norm} norm): holds if F is ρ-contracting on that ball, i.e. its pieces there are "
                 "those active within the tie tolerance (exact for piecewise-affine F; for nonlinear pieces "
                 "up to the variation of ∂ₓF over the ball, second order in the distance)")
    else:
        dnote = (f"the family within tol = {tie:.3e} has no contraction certificate (best ρ = {cert.rho:.6g}); "
                 "the tie tolerance is L·(residual + rounding floor)"
                 + (" enlarged by the distance bound of a smaller family" if len(log) > 1 else ""))
    jac_ad = jax.jit(jax.jacfwd(Ff, argnums=(0, 1)))
    A_ad, B_ad = (np.asarray(M) for M in jac_ad(xb, t))
    jax_in = bool(fam.contains(np.concatenate([A_ad, B_ad], axis=1),
                               tol=1e-8 * (1 + float(np.linalg.norm(np.concatenate([A_ad, B_ad], axis=1))))))
    need_jsr = (not cert.contracts) or not singleton
    jres, jexact = None, None
    if need_jsr:
        jres = jsr(A_fam, time_limit=jsr_time_limit)
        if jres.lower > 1:
            jexact = _exact_word_check(A_fam, jres.certificate)

    # 4. the limits
    fix, fix_err, imp, cmp_, gap_lo, gap_v, witness, inote = None, math.inf, None, None, None, None, None, ""
    if cert.contracts:
        try:
            fix, fix_err = _fixed_set_finest(fam, cert)
        except (ValueError, SetTooLargeError) as exc:
            notes.append(f"fix(𝒥) not computed: {exc}")
        if fix is not None:
            k = len(fam.vertices)
            r = _resolution(k, resolution, max_samples)
            try:
                cmp_ = compare_limits(fam, resolution=r, fixed=(fix, fix_err), contraction=cert,
                                      tol=max(1e-8, 2 * fix_err))
                imp = cmp_.implicit
                gap_lo, gap_v, witness = cmp_.excess_lower, cmp_.excess, cmp_.witness
                if resolution is not None and r < resolution:
                    inote = f"resolution lowered to {r} to keep the J_imp grid below max_samples = {max_samples}"
            except (ValueError, SetTooLargeError) as exc:
                inote = f"not computed: {exc}"
    else:
        srad = max(_spectral_radius(a) for a in A_fam)
        conds = [float(np.linalg.cond(np.eye(n) - a)) for a in A_fam]
        inote = (f"not computed: no contraction (max spectral radius of ∂ₓF {srad:.12g}; "
                 f"max cond(I - A) = {max(conds):.3e}"
                 + ("; I - A is singular, J_imp = {(I - A)⁻¹B} is undefined" if max(conds) > 1e12 else "") + ")")

    # 5. rates: predicted
    if singleton:
        pred = _spectral_radius(A_fam[0])
        pred_bounds = (pred, pred)
    else:
        lo = jres.lower if jres is not None else None
        hi = min(jres.upper, cert.rho) if jres is not None else cert.rho
        pred, pred_bounds = hi, (lo, hi)

    # 5. rates: observed along the run from x0; JAX's derivative converges to the fixed point of
    # the selection JAX makes at the end of the run (at a kink: the side the iterates settle on)
    if steps is None:
        steps = int(min(max_steps, math.ceil(1.3 * k_conv) + 20)) if k_conv is not None else max_steps
    xK = jax.jit(lambda x: lax.fori_loop(0, steps, lambda _, z: Ff(z, t), x))(x0f)
    A_K, B_K = (np.asarray(M) for M in jac_ad(xK, t))
    pred_jax = _spectral_radius(A_K)
    J_ref = None
    if np.all(np.isfinite(A_K)) and np.all(np.isfinite(B_K)) and np.linalg.cond(np.eye(n) - A_K) < 1e12:
        J_ref = np.linalg.solve(np.eye(n) - A_K, B_K)
    v = jnp.asarray(np.random.default_rng(0).standard_normal(n))
    _, JK, (xerr, xstep, jerr, jinc, jnorm, sigs), Js = _derivative_run(Ff, x0f, t, steps, xb, J_ref, v)
    k_id = _identification_step(sigs)
    identified = k_id <= 0.75 * steps
    if not singleton and identified and cert.contracts:
        # the iterates settled on one piece: the local rate is that piece's, JSR bounds the sets' rate
        pred = pred_jax
    if not identified:
        notes.append(f"the piece of F used by the iterates changes until step {k_id} of {steps} (no identification "
                     "within the run): rates are fitted from k = 0")
        k_id = 0
    curves = dict(iterate_error=xerr, step=xstep, jax_increment=jinc, jax_norm=jnorm)
    if J_ref is not None:
        curves["jax_error"] = jerr
    observed = {}
    x_floor = 1e3 * max(residual + floor, _EPS * float(np.linalg.norm(np.asarray(xb))))
    r_x, w_x = fit_rate(xerr, k_id, x_floor)
    observed["iterates"] = dict(rate=r_x, window=w_x, what="‖x_k - x̄‖ (x̄ the computed limit)")
    j_scale = max(float(np.max(jnorm)), 1e-300)
    if J_ref is not None:
        r_j, w_j = fit_rate(jerr, k_id, 1e4 * _EPS * max(float(np.linalg.norm(J_ref)), j_scale * 1e-3))
        observed["jax"] = dict(rate=r_j, window=w_j,
                               what="‖J_k - J_∞‖, J_k = ∂x_k/∂θ by forward mode through the iterations, "
                                    "J_∞ = (I - Â)⁻¹B̂ for JAX's [Â, B̂] at the last iterate")
    r_i, w_i = fit_rate(jinc, k_id, 1e4 * _EPS * j_scale)
    observed["jax_increments"] = dict(rate=r_i, window=w_i, what="‖J_(k+1) - J_k‖")
    j_start = max(1.0, float(jnorm[1])) if len(jnorm) > 1 else 1.0
    blew = (not np.all(np.isfinite(jnorm))) or float(np.max(jnorm)) > MAX_GROWTH * j_start
    if J_ref is not None:
        curves["jax_limit_distance"] = float(np.linalg.norm(JK - J_ref))

    # 5. rates: the set-valued piggyback from x0 (exact ties), gaps to J_pb on a subsample
    pb_steps = min(steps, set_steps)
    if pb_steps > 0:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                pb = piggyback(Ff, x0f, t, pb_steps)
            curves["piggyback_diameter"] = pb.diameters
            curves["piggyback_tied_steps"] = list(pb.tied_steps)
            curves["piggyback_ad_in_set"] = bool(pb.ad_in_set.all())
            if Js is not None:
                curves["piggyback_vs_scan_max_abs"] = float(np.max(np.abs(pb.ad_jacobians - Js[: pb_steps + 1])))
            if fix is not None:
                ks = np.unique(np.linspace(0, pb_steps, min(pb_steps + 1, 40)).astype(int))
                gaps = [float(gap(pb.sets[k], fix)) for k in ks]
                curves["piggyback_gap_steps"] = ks
                curves["piggyback_gap"] = gaps
                r_g, w_g = fit_rate(gaps, k_id, max(2 * fix_err, 1e4 * _EPS * j_scale), ks=ks)
                observed["piggyback"] = dict(rate=r_g, window=w_g, what="gap(𝒥_k, J_pb) (certified distances)")
        except (ValueError, SetTooLargeError) as exc:
            notes.append(f"set-valued piggyback from x0 stopped: {exc}")
            if "diverged" in str(exc):
                blew = True

    # 5. rates: the set-valued recursion at x̄ when the family does not contract
    if not singleton and not cert.contracts:
        d = _set_recursion_at_xbar(fam, n, 40)
        curves["at_xbar_diameter"] = d
        pos = np.flatnonzero(d > 0)
        r_d, w_d = fit_rate(d, int(pos[0]) if len(pos) else len(d), 0.0)
        observed["set_recursion_at_xbar"] = dict(rate=r_d, window=w_d,
                                                 what="growth of diam 𝒳_k, 𝒳_(k+1) = conv{A X + B} at x̄")

    # 6. the verdict
    verdict, reason = _verdict(cert, jres, jexact, blew, singleton, A_fam, observed, pred, tie)
    if not consistent and cert.contracts:
        notes.append(f"the tie tolerance {tie:.3e} is below L·δ = {L * delta:.3e}: pieces between them may be missed")
    if lipschitz is None:
        notes.append(f"L = {L:.4g} (max(1, max ‖∂ₓF‖₂) at x̄) is assumed as the Lipschitz constant of the compared "
                     "quantities; pass lipschitz= if F compares faster-varying quantities")
    notes.append(f"residual and rounding floor computed in float64; the floor {floor:.1e} is a model of one "
                 "evaluation's rounding, not a proven bound")
    if fix is not None:
        notes.append("J_imp is sampled; gap_at_vertices is measured at the vertices of conv J_pb against the samples "
                     "(within the covering radius); gap_lower is certified")
    notes.append("observed rates are least-squares fits (observations, not bounds)")
    return DerivativeConvergence(
        verdict=verdict, reason=reason, xbar=unravel(xb), xbar_flat=np.asarray(xb), state_size=n, theta_size=p,
        residual=residual, residual_tolerance=res_tol, steps_to_xbar=k_conv, rounding_floor=floor,
        distance_bound=float(delta), distance_note=dnote, tie_tolerance=float(tie), tie_lipschitz=float(L),
        tolerance_derivation=log, tolerance_consistent=consistent, ties=_ties(fam, exact), family=fam,
        family_exact_vertices=len(exact.vertices), jax_element_in_family=jax_in, contraction=cert, jsr=jres,
        jsr_exact=jexact, fixed_set=fix, fixed_set_error=float(fix_err), implicit=imp, limits=cmp_,
        gap_lower=gap_lo, gap_at_vertices=gap_v, witness=witness, implicit_note=inote,
        predicted_rate=pred, predicted_rate_bounds=pred_bounds, predicted_rate_jax=pred_jax,
        observed=observed, curves=curves, notes=tuple(notes), seconds=time.perf_counter() - t_start)


def _resolution(k: int, resolution, max_samples: int) -> int:
    """The largest r ≤ resolution (default: no cap) whose grid C(r + k - 1, k - 1) fits max_samples
    (at least 1)."""
    if k == 1:
        return 1
    r = resolution if resolution is not None else max_samples
    while r > 1 and math.comb(r + k - 1, k - 1) > max_samples:
        r = max(1, r // 2) if math.comb(r // 2 + k - 1, k - 1) > max_samples else r - 1
    return r


def _fixed_set_finest(fam, cert):
    """``fixed_set`` at the finest tolerance its certified distances resolve (relative to the
    size of the vertex images (I - A_i)⁻¹B_i)."""
    V = fam.vertices
    n = V.shape[1]
    imgs = [np.linalg.solve(np.eye(n) - v[:, :n], v[:, n:]) for v in V]
    scale = max(1.0, max(float(np.linalg.norm(m)) for m in imgs))
    last = None
    for rel in (1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return fixed_set(fam, contraction=cert, tol=rel * scale)
        except ValueError as exc:
            if "below the resolution" not in str(exc):
                raise
            last = exc
    raise last


def _verdict(cert, jres, jexact, blew, singleton, A_fam, observed, pred, tie):
    """(verdict, reason) from the certificates first, then the observations."""
    where = "for every piece of J_F(x̄, θ)" + (f" active within {tie:.2e}" if tie > 0 else "")
    if cert.contracts:
        return "converge", (f"Assumption A holds: ‖∂ₓF‖ ≤ ρ = {cert.rho:.6g} < 1 in the {cert.norm} norm {where}; "
                            f"the piggyback sets converge to fix 𝒥 and JAX's derivative to a point of it, at the "
                            f"local rate {pred:.6g}")
    if jres is not None and jres.upper < 1:
        return "converge", (f"JSR of the ∂ₓF blocks ≤ {jres.upper:.6g} < 1 ({jres.upper_method}) {where}: every long "
                            "product contracts, the derivative recursion converges")
    if jres is not None and jres.lower > 1 + DIVERGENCE_MARGIN:
        word = "".join(str(i) for i in jres.certificate) if len(jres.certificate) < 40 else \
            f"of length {len(jres.certificate)}"
        ex = f"; exact (sympy): ρ(product)^(1/{len(jres.certificate)}) = {jexact['lower'][:12]}" if jexact else ""
        return "diverge", (f"JSR of the ∂ₓF blocks ≥ {jres.lower:.10g} > 1 (certified lower bound, word {word} of "
                           f"the A-family vertices{ex}): a product of selections grows, the set-valued derivative "
                           "recursion diverges although the iterates converge")
    if blew:
        return "diverge", ("JAX's derivative of the iterates was observed to blow up (non-finite or beyond 1e10 × "
                           "its start)")
    srad = max(_spectral_radius(a) for a in A_fam)
    s2 = max(float(np.linalg.norm(a, 2)) for a in A_fam)
    why = f"no certificate either way: JSR ∈ [{jres.lower:.10g}, {jres.upper:.10g}]" if jres is not None else \
        f"no contraction certificate (ρ = {cert.rho:.6g})"
    if abs(srad - 1) <= 1e-8:
        why += (f"; ∂ₓF has an eigenvalue of modulus {srad:.12g} ≈ 1 and σ_max(∂ₓF) = {s2:.12g} (an invariance of F, "
                "e.g. Sinkhorn's F(g + c1) = F(g) + c1): I - ∂ₓF is singular, no norm contracts")
    obs = observed.get("jax_increments", {}).get("rate")
    if obs is not None:
        why += f"; observed: JAX's derivative increments decay at rate {obs:.4g} (not a proof)"
    return "inconclusive", why

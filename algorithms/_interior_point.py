"""A primal-dual interior-point method for convex QPs, as an iteration map F(w, θ).

Problem (one-step paper, eq. (12)), with θ = :class:`QP` (all data are differentiable leaves):

    min_x ½xᵀQx + qᵀx   s.t.   Ax = b,   Gx ≤ h        (Q ≻ 0, p = rows of G ≥ 1).

State w = (x, s, z, y): slacks s ≥ 0 (Gx + s = h), multipliers z ≥ 0 of Gx ≤ h and y of Ax = b.
One step is Mehrotra's predictor-corrector on the perturbed KKT system (Vandenberghe's CVXOPT
notes, the method behind OptNet [Amos & Kolter 2017]):

    Q x + q + Aᵀy + Gᵀz = 0,   A x = b,   G x + s = h,   s ∘ z = τ,

solving the full (n+2p+m) Newton-KKT system, factored once (LU) for both the affine and the
corrector direction. The full system is used instead of the reduced one [[Q + GᵀDG, Aᵀ], [A, 0]],
D = diag(z/s): near the solution D has entries ~1/mu_min and the reduced system's derivatives lose
about 12 digits, whereas the full system stays well conditioned under strict complementarity. The centering target is
τ = max(σμ, mu_min) with σ = (μ_aff/μ)³. The floor makes the map smooth near its fixed point, the
point of the central path with s∘z = mu_min (within O(mu_min) of the QP solution), instead of
driving s∘z to 0 where D blows up; once μ ≤ 10·mu_min the step is the plain Newton step on
s∘z = mu_min (no second-order correction). The step length is t = min(1, 0.99·t_max); near the
fixed point t = 1, so F is a Newton map with ∂_wF(w̄) = 0 (Assumption 2) and the one-step
Jacobian agrees with the implicit one (one-step paper, Corollary 3, §4 and Appendix B.1). For
implicit differentiation use the KKT root form :func:`qp_optimality`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jax import lax

from ._linear_solve import check_solver_converged, report


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QP:
    """Data of min ½xᵀQx + qᵀx s.t. Ax = b, Gx ≤ h; every field is a differentiable leaf."""

    Q: jax.Array
    q: jax.Array
    A: jax.Array
    b: jax.Array
    G: jax.Array
    h: jax.Array

    def check(self) -> None:
        """Raise ``ValueError`` unless Q (n, n), q (n,), A (m, n), b (m,), G (p, n), h (p,), p ≥ 1.

        (Not run in ``__post_init__``: JAX reuses the class for Jacobians, whose leaves have extra axes.)
        """
        Q, q, A, b, G, h = (jnp.shape(getattr(self, f.name)) for f in dataclasses.fields(self))
        n = q[0] if len(q) == 1 else -1
        ok = (Q == (n, n) and len(A) == 2 and A[1] == n and b == (A[0],)
              and len(G) == 2 and G[1] == n and h == (G[0],) and G[0] >= 1)
        if not ok:
            raise ValueError(
                "QP expects Q (n, n), q (n,), A (m, n), b (m,), G (p, n), h (p,) with p >= 1; got "
                f"Q{Q} q{q} A{A} b{b} G{G} h{h}"
            )


class IPState(NamedTuple):
    """Primal-dual interior-point state: primal x, slack s, inequality dual z, equality dual y."""

    x: jax.Array
    s: jax.Array
    z: jax.Array
    y: jax.Array


def qp_initial_state(qp: QP) -> IPState:
    """The (infeasible) starting point x = 0, s = z = 1, y = 0."""
    qp.check()
    n, m, p = qp.q.shape[0], qp.b.shape[0], qp.h.shape[0]
    dt = qp.q.dtype
    return IPState(jnp.zeros(n, dt), jnp.ones(p, dt), jnp.ones(p, dt), jnp.zeros(m, dt))


def qp_residuals(w: IPState, qp: QP) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(dual residual Qx+q+Aᵀy+Gᵀz, primal eq Ax-b, primal ineq Gx+s-h, duality measure μ = sᵀz/p)."""
    x, s, z, y = w
    rd = qp.Q @ x + qp.q + qp.A.T @ y + qp.G.T @ z
    return rd, qp.A @ x - qp.b, qp.G @ x + s - qp.h, jnp.vdot(s, z) / s.shape[0]


def qp_optimality(w: IPState, qp: QP) -> IPState:
    """KKT root form of the QP in the IP variables (jaxopt paper, eq. (6), with slacks):

    G(w, θ) = (Qx+q+Aᵀy+Gᵀz, s∘z, Gx+s-h, Ax-b), arranged like w. Use it as
    ``optimality_fun`` of ``iterate(..., mode="implicit")`` (one-step paper, Appendix B.1).
    """
    rd, rp, ri, _ = qp_residuals(w, qp)
    return IPState(rd, w.s * w.z, ri, rp)


def _max_step(v, dv):
    """Largest t ≥ 0 with v + t dv ≥ 0 (inf if dv ≥ 0)."""
    ratios = jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf)
    return jnp.min(ratios)


def interior_point_map(*, mu_min: float = 1e-12, fraction: float = 0.99) -> Callable[[IPState, QP], IPState]:
    """Mehrotra predictor-corrector step F(w, qp) for :class:`QP` (see module docstring)."""
    if not mu_min > 0:
        raise ValueError(f"`mu_min` must be positive (it keeps the map smooth), got {mu_min!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"`fraction` must be in (0, 1), got {fraction!r}")

    def F(w: IPState, qp: QP) -> IPState:
        qp.check()
        x, s, z, y = w
        n, m = x.shape[0], y.shape[0]
        rd, rp, ri, mu = qp_residuals(w, qp)
        p = s.shape[0]
        zeros = lambda r, c: jnp.zeros((r, c), x.dtype)  # noqa: E731
        K = jnp.block([
            [qp.Q, zeros(n, p), qp.G.T, qp.A.T],
            [qp.G, jnp.eye(p, dtype=x.dtype), zeros(p, p), zeros(p, m)],
            [zeros(p, n), jnp.diag(z), jnp.diag(s), zeros(p, m)],
            [qp.A, zeros(m, p), zeros(m, p), zeros(m, m)],
        ])
        lu = jsl.lu_factor(K)

        def direction(rc):  # Newton step on the KKT system with z∘ds + s∘dz = rc
            sol = jsl.lu_solve(lu, jnp.concatenate([-rd, -ri, rc, -rp]))
            return sol[:n], sol[n:n + p], sol[n + p:n + 2 * p], sol[n + 2 * p:]

        _, ds_a, dz_a, _ = direction(-s * z)
        t_a = jnp.minimum(1.0, jnp.minimum(_max_step(s, ds_a), _max_step(z, dz_a)))
        mu_a = jnp.vdot(s + t_a * ds_a, z + t_a * dz_a) / s.shape[0]
        sigma = (mu_a / mu) ** 3
        # far from the floor: Mehrotra's centering + second-order correction; near it (locally
        # constant branch): the pure Newton step on s∘z = mu_min, so ∂_w F = 0 at the fixed point
        far = mu > 10 * mu_min
        tau = jnp.where(far, jnp.maximum(sigma * mu, mu_min), mu_min)
        dx, ds, dz, dy = direction(tau - s * z - jnp.where(far, ds_a * dz_a, 0.0))
        t = jnp.minimum(1.0, fraction * jnp.minimum(_max_step(s, ds), _max_step(z, dz)))
        return IPState(x + t * dx, s + t * ds, z + t * dz, y + t * dy)

    # root form for implicit differentiation: the KKT residual (cheaper than I - ∂ₓF, which
    # would differentiate the factorization inside F); iterate(mode="implicit") uses it by default
    F.optimality = qp_optimality
    return F


def qp_solve(qp: QP, *, tol: float = 1e-10, maxiter: int = 100, mu_min: float = 1e-12,
             w0: IPState | None = None) -> IPState:
    """Iterate :func:`interior_point_map` until residuals ≤ tol·(1 + ‖data‖) and μ ≤ max(tol, 2 mu_min).

    Stopping at ``maxiter`` (or on a nan) before that is reported: ``ValueError`` on concrete
    values, a ``RuntimeWarning`` under a trace."""
    F = interior_point_map(mu_min=mu_min)
    w0 = qp_initial_state(qp) if w0 is None else w0
    scale = 1.0 + jnp.max(jnp.abs(jnp.concatenate([qp.q, qp.b, qp.h])))

    def gap(w):
        """max(residuals / (tol·scale), μ / max(tol, 2 mu_min)): converged when ≤ 1."""
        rd, rp, ri, mu = qp_residuals(w, qp)
        res = jnp.max(jnp.abs(jnp.concatenate([rd, rp, ri])))
        return jnp.maximum(res / (tol * scale), mu / max(tol, 2 * mu_min))

    def cond(state):
        w, k = state
        return (gap(w) > 1) & (k < maxiter)

    w, k = lax.while_loop(cond, lambda st: (F(st[0], qp), st[1] + 1), (w0, 0))
    g = lax.stop_gradient(gap(w))
    return report(w, check_solver_converged("qp_solve", "max(residual/(tol·scale), μ/μ_target)", 1.0, maxiter),
                  g, k, flag=~(g <= 1))

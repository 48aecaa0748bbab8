"""Derivatives of nonsmooth iterative algorithms converge (slides "Empirical observations",
"Main result" and "Behind the scene: fixed-point theorem for set-valued mapping", Vaiter 2023;
Bolte, Pauwels & Vaiter, NeurIPS 2022).

For x_{k+1} = F(x_k, θ) with F piecewise smooth, the set-valued piggyback recursion
𝒥_{k+1} = {A J + B : [A, B] ∈ J_F(x_k, θ), J ∈ 𝒥_k} (``conservative.piggyback``) is run next to
JAX's forward-mode derivative J_k = ∂x_k/∂θ on four problems (all data synthetic, seeded):

* ``lasso_fb``        forward-backward on the lasso ½‖Xw - y‖² + λ‖w‖₁, θ = y;
* ``glasso_dr``       Douglas-Rachford on sparse inverse covariance selection (graphical lasso), θ = λ;
* ``tv_admm``         ADMM on 1-D total-variation denoising ½‖x - y‖² + λ‖Dx‖₁, θ = y;
* ``lasso_kink``      forward-backward on a lasso built with integer data so that at the solution
                      one coordinate sits *exactly* on the kink of the soft-thresholding
                      (x̄_j = 0 and |X_jᵀ(y - Xx̄)| = λ, an exact tie in floating point), θ = λ.

For each, against k on a log scale: ‖x_k - x̄‖ (x̄ from a long run, checked against cvxpy),
‖J_k - J̄‖ for JAX's derivative (J̄ from the implicit formula (I - A)⁻¹B at x̄, checked against the
closed form on the support), and the excess gap(𝒥_k, fix 𝒥) of the conservative set over the fixed
set of the family J_F(x̄, θ) (``theory.fixed_set``).  The theory predicts that after the active
pattern is identified both errors decay at the local rate, the spectral radius of ∂ₓF(x̄, θ) on
the identified pattern (for FB on the lasso: max|1 - γ eig(X_SᵀX_S)|), not at the global rate
(‖I - γXᵀX‖ for FB; DR and ADMM are only nonexpansive globally).  Fitted and predicted rates are
reported.

At the kink, J_F(x̄, θ) has two selections and fix 𝒥 is a polygon (not a singleton) that contains
both one-sided derivatives of λ ↦ x̄(λ) and strictly contains the implicit set {(I - A)⁻¹B}
(``theory.compare_limits``, with a certified lower bound on the excess).  The script reports its
size and diameter and follows JAX's derivative in two runs:

* from x_0 = 0 the iterates approach x̄ from one side; in floating point they need not reach it
  exactly (with the default seeds they settle within an ulp, on the side where the kink coordinate
  is active), no step is tied, and JAX's derivative converges to the one-sided derivative of
  that side, an element (a vertex) of fix 𝒥;
* started *at* x̄, every step is tied: 𝒥_k fills fix 𝒥 (Hausdorff distance → 0 at the certified
  contraction rate), and JAX's derivative, which takes the midpoint of the two pieces of ``clip``
  at a tie, converges to the fixed point of that midpoint selection: a point of fix 𝒥 (and of
  the implicit set) that is neither one-sided derivative.

The glasso state Z is a symmetric matrix, handled in orthonormal coordinates of the symmetric
matrices (diagonal, √2 × upper triangle).  On all of R^{d×d} ∂ₓF has the eigenvalue 1
(antisymmetric perturbations at zero entries are never damped, since prox_f symmetrizes its input)
and Assumption A fails; the iterates and derivatives live in the invariant symmetric subspace,
where it holds.  The script reports both spectral radii.

Writes ``nonsmooth_convergence.png``, ``nonsmooth_convergence_kink.png`` and
``nonsmooth_convergence.json`` to ``--out``.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples._common import (
    Progress,
    check_run_args,
    enable_x64,
    output_dir,
    parse_args,
    parser,
    pyplot,
    save_figure,
    write_json,
)

enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import algorithms  # noqa: E402
import conservative  # noqa: E402
import theory  # noqa: E402

CASES = ("lasso_fb", "glasso_dr", "tv_admm", "lasso_kink")
TITLES = {
    "lasso_fb": "FB on the lasso (θ = y)",
    "glasso_dr": "DR on the graphical lasso (θ = λ)",
    "tv_admm": "ADMM on 1-D TV denoising (θ = y)",
    "lasso_kink": "FB on a lasso with an exact kink at x̄ (θ = λ)",
}
LONG_RUN = 4000          # iterations of the reference run for x̄ (a jitted scan)
FLOOR = 1e-13            # values below FLOOR·scale are rounding noise: excluded from rate fits


# ----------------------------------------------------------------------------- small helpers
def _positive(v):
    """For log plots: exact zeros are not drawn (instead of being clipped to a tiny number)."""
    v = np.asarray(v, dtype=np.float64)
    return np.where(v > 0, v, np.nan)


def fitted_rate(values, start, floor=FLOOR):
    """Geometric rate exp(slope) of a least-squares fit of log(values) on k, over the window
    k ≥ start where values are above floor·max(values[start], 1) (rounding noise excluded),
    using the second half of that window (asymptotic regime).  Returns (rate, [k_first, k_last])."""
    v = np.asarray(values, dtype=np.float64)
    k = np.arange(len(v))
    if start >= len(v):
        return float("nan"), []
    scale = max(float(v[start]), 1.0)
    above = v > floor * scale
    stop = start
    while stop < len(v) and above[stop]:
        stop += 1
    idx = np.arange(start, stop)
    idx = idx[len(idx) // 2:]
    if len(idx) < 4:
        return float("nan"), []
    slope = np.polyfit(k[idx], np.log(v[idx]), 1)[0]
    return float(np.exp(slope)), [int(idx[0]), int(idx[-1])]


def _dyadic_below(x, bits=4):
    """The largest number m·2^-e ≤ x with m < 2^bits (exact in binary floating point)."""
    e = int(math.ceil(-math.log2(x))) + bits - 1
    return math.floor(x * 2**e) / 2**e


def _identification_step(patterns):
    """First k after which the active pattern (a boolean array per iterate) never changes."""
    k_id = 0
    for k in range(1, len(patterns)):
        if not np.array_equal(patterns[k], patterns[k - 1]):
            k_id = k
    return k_id


def _spectral_radius(A):
    return float(np.max(np.abs(np.linalg.eigvals(A)))) if A.size else 0.0


# ----------------------------------------------------------------------------- the cases
# Each builder returns a dict with: F(x, t) on flat vectors (t the flat θ), x0, theta,
# prox_input(x) (a JAX function: the argument of the soft-thresholding inside F) and its threshold
# (|prox_input| > threshold is the active pattern; ||prox_input| - threshold| the distance to the
# nearest kink), closed_form(xbar) -> the derivative of the primal solution from the closed
# form on the support, primal_jac(xbar, J) -> the primal derivative implied by a state derivative J,
# the reference (cvxpy) primal and a description.

def build_lasso_fb(rng, quick):
    n, p = (15, 6) if quick else (100, 30)
    X = rng.standard_normal((n, p))
    w_true = np.zeros(p)
    w_true[:3] = [1.5, -2.0, 1.0]
    y = X @ w_true + 0.3 * rng.standard_normal(n)
    lam = 0.2 * float(np.abs(X.T @ y).max())
    prob = algorithms.lasso(X, y, lam)
    gam = 1.0 / float(np.linalg.norm(X, 2) ** 2)
    base = prob.theta

    def F(x, t):
        return prob.F(x, dict(base, y=t))

    def prox_input(x):
        return x - gam * (X.T @ (X @ x - y))

    def closed_form(xbar):
        S = np.flatnonzero(xbar != 0)
        J = np.zeros((p, n))
        J[S] = np.linalg.solve(X[:, S].T @ X[:, S], X[:, S].T)
        return J

    def local_rate(xbar):
        S = np.flatnonzero(xbar != 0)
        ev = np.linalg.eigvalsh(X[:, S].T @ X[:, S])
        return float(np.max(np.abs(1 - gam * ev)))

    G = X.T @ X
    return dict(
        F=F, x0=np.zeros(p), theta=np.asarray(y), prox_input=prox_input, threshold=gam * lam,
        closed_form=closed_form, primal=lambda x, t: x,
        reference=lambda: prob.reference(base),
        closed_form_rate=local_rate,
        global_rate=float(np.max(np.abs(1 - gam * np.linalg.eigvalsh(G)))),
        global_rate_formula="max|1 - γ eig(XᵀX)| (FB is a global contraction: n > p, X full column rank)",
        closed_form_rate_formula="max|1 - γ eig(X_SᵀX_S)|, S = support(x̄)",
        closed_form_formula="∂x̄_S/∂y = (X_SᵀX_S)⁻¹X_Sᵀ, ∂x̄_{S^c}/∂y = 0",
        problem=dict(n=n, p=p, lam=lam, step=gam, data="synthetic: X Gaussian, y = X w* + 0.3·noise, "
                     "w* with 3 nonzeros; λ = 0.2‖Xᵀy‖_∞"),
    )


def build_glasso_dr(rng, quick):
    d = 4 if quick else 8
    P = np.eye(d)
    for i in range(d - 1):
        if i % 2 == 0:
            P[i, i + 1] = P[i + 1, i] = 0.4 if i % 4 == 0 else -0.35
    C = np.linalg.inv(P)
    Z = rng.multivariate_normal(np.zeros(d), C, size=20 * d)
    S = np.cov(Z.T, bias=True)
    lam = 0.1
    prob = algorithms.graphical_lasso(S, lam)
    iu = np.triu_indices(d, 1)
    r2 = math.sqrt(2.0)

    def vech(M):
        return jnp.concatenate([jnp.diag(M), r2 * M[iu]])

    def unvech(v):
        M = jnp.zeros((d, d), dtype=v.dtype).at[iu].set(v[d:] / r2)
        return M + M.T + jnp.diag(v[:d])

    def F(v, t):
        return vech(prob.F(unvech(v), dict(S=prob.theta["S"], lam=t[0])))

    def theta_of(t):
        return dict(S=prob.theta["S"], lam=t[0])

    def primal(v, t):
        return prob.F.primal(unvech(v), theta_of(t))

    def prox_input(v):
        Zm = unvech(v)
        T = prob.F.primal(Zm, prob.theta)
        return (2 * T - Zm)[iu]

    def closed_form(vbar):
        """dΘ̄/dλ on the support E (diagonal included): [Θ⁻¹ dΘ Θ⁻¹]_E = -Γ_E, dΘ = 0 off E,
        Γ = sign(Θ̄) off the diagonal, 0 on it (differentiate -Θ⁻¹ + S + λΓ = 0 on E)."""
        T = np.asarray(primal(jnp.asarray(vbar), jnp.array([lam])))
        Ti = np.linalg.inv(T)
        E = [(i, i) for i in range(d)] + [(i, j) for i, j in zip(*iu) if abs(T[i, j]) > 1e-9]
        M = np.zeros((len(E), len(E)))
        for b, (i, j) in enumerate(E):
            Eb = np.zeros((d, d))
            Eb[i, j] = Eb[j, i] = 1.0
            R = Ti @ Eb @ Ti
            M[:, b] = [R[a, c] for a, c in E]
        rhs = np.array([0.0 if a == c else -np.sign(T[a, c]) for a, c in E])
        sol = np.linalg.solve(M, rhs)
        dT = np.zeros((d, d))
        for (i, j), s in zip(E, sol):
            dT[i, j] = dT[j, i] = s
        return dT.reshape(-1, 1)

    def full_space_radius(vbar):
        Zbar = unvech(jnp.asarray(vbar))
        A = jax.jit(jax.jacfwd(lambda Zm: prob.F(Zm, prob.theta)))(Zbar).reshape(d * d, d * d)
        return _spectral_radius(np.asarray(A))

    return dict(
        F=F, x0=np.asarray(vech(jnp.eye(d))), theta=np.array([lam]), prox_input=prox_input, threshold=lam,
        closed_form=closed_form, primal=lambda v, t: primal(v, t).reshape(-1),
        reference=lambda: prob.reference(prob.theta).reshape(-1),
        full_space_radius=full_space_radius,
        global_rate=1.0,
        global_rate_formula="DR is only (firmly) nonexpansive globally: no global contraction (ρ = 1)",
        closed_form_formula="dΘ̄_E/dλ from [Θ̄⁻¹ dΘ Θ̄⁻¹]_E = -sign(Θ̄)_E (off-diagonal), dΘ = 0 off E",
        problem=dict(d=d, lam=lam, step=1.0, samples=20 * d,
                     data=f"synthetic: {20 * d} Gaussian samples with a sparse tridiagonal-block precision "
                          "matrix; S their covariance",
                     state="Z in orthonormal coordinates of symmetric matrices (diag, √2·upper)"),
    )


def build_tv_admm(rng, quick):
    n = 10 if quick else 40
    levels = np.array([0.0, 2.0, -1.0, 1.0])
    sig = np.repeat(levels, int(math.ceil(n / 4)))[:n]
    y = sig + 0.3 * rng.standard_normal(n)
    lam, rho = 0.5, 1.0
    prob = algorithms.tv_denoising(y, lam, rho=rho)
    D = np.eye(n, k=1)[:-1] - np.eye(n)[:-1]

    def F(s, t):
        return prob.F(s, dict(y=t, lam=prob.theta["lam"]))

    def primal(s, t):
        return prob.F.primal(s, dict(y=t, lam=prob.theta["lam"]))

    def prox_input(s):
        return jnp.asarray(D) @ primal(s, jnp.asarray(y)) + s[n - 1:]

    def closed_form(sbar):
        """∂x̄/∂y: averaging over the segments where x̄ is constant (Dx̄ = 0 inside a segment)."""
        x = np.asarray(primal(jnp.asarray(sbar), jnp.asarray(y)))
        jumps = np.flatnonzero(np.abs(np.diff(x)) > 1e-9)
        seg = np.zeros(n, dtype=int)
        for j in jumps:
            seg[j + 1:] += 1
        J = (seg[:, None] == seg[None, :]).astype(float)
        return J / J.sum(axis=1, keepdims=True)

    return dict(
        F=F, x0=np.asarray(prob.x0), theta=np.asarray(y), prox_input=prox_input, threshold=lam / rho,
        closed_form=closed_form, primal=primal,
        reference=lambda: prob.reference(prob.theta),
        global_rate=1.0,
        global_rate_formula="ADMM is only nonexpansive globally: no global contraction (ρ = 1)",
        closed_form_formula="∂x̄/∂y = averaging over the segments where x̄ is constant",
        problem=dict(n=n, lam=lam, rho=rho, data="synthetic: piecewise-constant signal (4 levels) + 0.3·noise",
                     state="[z; u] (scaled ADMM), size 2(n-1)"),
    )


def build_lasso_kink(rng, quick):
    """Integer data with a solution x̄ = (2, 0, 0) known exactly: X_0ᵀr̄ = λ (x̄_0 > 0 active),
    X_1ᵀr̄ = λ with x̄_1 = 0 (the kink: |X_1ᵀ(y - Xx̄)| = λ exactly), |X_2ᵀr̄| = 1 < λ, where
    r̄ = y - Xx̄ = e_0 + e_1.  Every quantity of the fixed-point equation is a small dyadic rational,
    so x̄ = F(x̄) holds exactly in float64 and the prox input at coordinate 1 equals γλ bit for bit."""
    n, p = (8, 3) if quick else (12, 3)
    lam = 4.0
    xbar = np.array([2.0, 0.0, 0.0])
    target = np.array([lam, lam, 1.0])
    rbar = np.zeros(n)
    rbar[:2] = 1.0
    best = None
    for _ in range(400):
        X = rng.integers(-2, 3, size=(n, p)).astype(float)
        X[0] = target - X[1]
        G = X.T @ X
        if np.linalg.matrix_rank(X) < p:
            continue
        ev = np.linalg.eigvalsh(G)
        gam = _dyadic_below(1.0 / ev.max())
        # readable plots: local rates of both selections (kink coordinate zero / active) near
        # 0.6-0.7, and a global contraction
        r0 = abs(1 - gam * G[0, 0])
        r1 = float(np.max(np.abs(1 - gam * np.linalg.eigvalsh(G[:2, :2]))))
        rg = float(np.max(np.abs(1 - gam * ev)))
        score = abs(r0 - 0.6) + abs(r1 - 0.7) + 10 * max(0.0, rg - 0.85)
        if best is None or score < best[0]:
            best = (score, X, gam)
    _, X, gam = best
    assert np.array_equal(X.T @ rbar, target)
    y = X @ xbar + rbar
    prob = algorithms.lasso(X, y, lam, step=gam)
    base = prob.theta

    def F(x, t):
        return prob.F(x, dict(base, lam=t[0]))

    def prox_input(x):
        return x - gam * (X.T @ (X @ x - y))

    G = X.T @ X
    return dict(
        F=F, x0=np.zeros(p), theta=np.array([lam]), prox_input=prox_input, threshold=gam * lam,
        closed_form=None, primal=lambda x, t: x, xbar_exact=xbar,
        reference=lambda: prob.reference(base),
        global_rate=float(np.max(np.abs(1 - gam * np.linalg.eigvalsh(G)))),
        global_rate_formula="max|1 - γ eig(XᵀX)|",
        problem=dict(n=n, p=p, lam=lam, step=gam, X=X, y=y, xbar=xbar,
                     data="synthetic integer data constructed so that x̄ = (2, 0, 0) exactly with an exact "
                          "tie |X_1ᵀ(y - Xx̄)| = λ at the zero coordinate 1",
                     note="x̄ is exact by construction (F(x̄) = x̄ bit for bit); primal_vs_cvxpy_max_abs is the "
                          "error of the cvxpy solver at this degenerate point"),
    )


BUILDERS = dict(lasso_fb=build_lasso_fb, glasso_dr=build_glasso_dr, tv_admm=build_tv_admm,
                lasso_kink=build_lasso_kink)


# ----------------------------------------------------------------------------- analysis
def _contraction(A_blocks):
    """A contraction certificate for the A blocks: the 2-norm when it suffices, else the SDP norm."""
    cert = theory.contraction_factor(A_blocks, method="2-norm")
    if not cert.contracts:
        cert = theory.contraction_factor(A_blocks, rtol=1e-4)
    return cert


def _fixed_set(family, cert):
    """``theory.fixed_set`` at the finest tolerance its certified distances resolve for this family."""
    for tol in (1e-10, 1e-9, 1e-8, 1e-7, 1e-6):
        try:
            return theory.fixed_set(family, contraction=cert, tol=tol)
        except ValueError as exc:
            if "below the resolution" not in str(exc):
                raise
    return theory.fixed_set(family, contraction=cert, tol=1e-5)


def _long_run(case, steps):
    """Trajectory of a jitted scan (cheap) to find x̄ and the identification step."""
    F = case["F"]
    traj = np.asarray(algorithms.run(F, jnp.asarray(case["x0"]), jnp.asarray(case["theta"]), steps))
    return traj


def analyse(name, case, quick, max_steps):
    t0 = time.perf_counter()
    F, theta = case["F"], jnp.asarray(case["theta"], dtype=jnp.float64)
    x0 = jnp.asarray(case["x0"], dtype=jnp.float64)
    traj = _long_run(case, LONG_RUN)
    xbar = traj[-1]
    if "xbar_exact" in case:
        if not np.array_equal(np.asarray(F(jnp.asarray(case["xbar_exact"]), theta)), case["xbar_exact"]):
            raise RuntimeError("lasso_kink: the constructed x̄ is not an exact fixed point in float64")
        xbar = case["xbar_exact"]
    residual = float(np.linalg.norm(np.asarray(F(jnp.asarray(xbar), theta)) - xbar))
    thr = case["threshold"]
    prox_in = np.asarray(jax.jit(jax.vmap(case["prox_input"]))(jnp.asarray(traj)))
    patterns = np.abs(prox_in) > thr
    margin = float(np.min(np.abs(np.abs(np.asarray(case["prox_input"](jnp.asarray(xbar)))) - thr)))
    k_id = _identification_step(patterns)
    ref = np.asarray(case["reference"]()).reshape(-1)
    primal_bar = np.asarray(case["primal"](jnp.asarray(xbar), theta)).reshape(-1)
    ref_err = float(np.max(np.abs(primal_bar - ref)))

    # the family J_F(x̄, θ) of joint [A, B] blocks, its contraction, fixed set
    family = conservative.jacobian(F, argnums=(0, 1), fast=True)(jnp.asarray(xbar), theta)
    n = xbar.shape[0]
    V = family.vertices
    A_blocks = V[:, :, :n]
    cert = _contraction(A_blocks)
    local = max(_spectral_radius(a) for a in A_blocks)
    fix, fix_err = _fixed_set(family, cert)
    fix_vertices = fix.vertices

    # JAX's own element at x̄ and the limit of the AD recursion for iterates sitting at x̄
    A_ad, B_ad = (np.asarray(M) for M in jax.jacfwd(F, argnums=(0, 1))(jnp.asarray(xbar), theta))
    J_ad_limit = np.linalg.solve(np.eye(n) - A_ad, B_ad)

    # enough steps to reach the rounding floor at the predicted rate, after identification
    need = k_id + int(math.ceil(math.log(1e-15) / math.log(max(local, 1e-3)))) + 15
    steps = int(min(max_steps, max(need, 30)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # JAX's element leaving the set is an error here
        pb = conservative.piggyback(F, x0, theta, steps, limit=fix)
    xs = pb.iterates
    x_err = np.linalg.norm(xs - xbar[None], axis=1)
    J_ad = pb.ad_jacobians
    out = dict(
        title=TITLES[name],
        problem=case["problem"],
        state_size=int(n),
        theta_size=int(theta.shape[0]),
        steps=steps,
        identification_step=int(k_id),
        xbar_fixed_point_residual=residual,
        kink_margin_at_xbar=margin,
        primal_vs_cvxpy_max_abs=ref_err,
        family_size=int(len(V)),
        family_singleton=bool(len(V) == 1),
        contraction_certificate=dict(rho=cert.rho, norm=cert.norm, rho_2norm=cert.rho_2norm,
                                     spectral_radius=cert.spectral_radius),
        fixed_set_vertices=int(len(fix_vertices)),
        fixed_set_diameter=float(fix.diameter()),
        fixed_set_error_bound=float(fix_err),
        tied_steps=len(pb.tied_steps),
        first_tied_step=int(pb.tied_steps[0]) if pb.tied_steps else None,
        max_set_size=int(pb.sizes.max()),
        max_set_diameter=float(pb.diameters.max()),
        ad_in_set_every_step=bool(pb.ad_in_set.all()),
        iterate_errors=x_err,
        gaps=np.asarray(pb.gaps, dtype=float),
        set_diameters=pb.diameters,
        final_iterate_error=float(x_err[-1]),
        final_gap=float(pb.gaps[-1]),
        global_rate=case["global_rate"],
        global_rate_formula=case["global_rate_formula"],
        local_rate_spectral_radius=local,
        leading_eigenvalue_moduli=sorted((abs(complex(e)) for a in A_blocks for e in np.linalg.eigvals(a)),
                                         reverse=True)[:4],
    )
    if "full_space_radius" in case:
        out["spectral_radius_full_matrix_space"] = case["full_space_radius"](xbar)
    fit_start = k_id
    out["fit_start"] = fit_start
    r_x, w_x = fitted_rate(x_err, fit_start)

    if len(V) == 1:
        J_bar = fix_vertices[0]
        J_imp = np.linalg.solve(np.eye(n) - A_blocks[0], V[0, :, n:])
        J_err = np.linalg.norm((J_ad - J_bar[None]).reshape(len(J_ad), -1), axis=1)
        r_J, w_J = fitted_rate(J_err, fit_start)
        # primal derivative implied by J̄ against the closed form on the support
        Pj = jax.jacfwd(lambda x, t: jnp.ravel(case["primal"](x, t)), argnums=(0, 1))(jnp.asarray(xbar), theta)
        primal_J = np.asarray(Pj[0]) @ J_bar + np.asarray(Pj[1])
        cf = case["closed_form"](xbar)
        out.update(
            jacobian_errors=J_err,
            final_jacobian_error=float(J_err[-1]),
            fixed_point_vs_implicit=float(np.linalg.norm(J_bar - J_imp)),
            closed_form_formula=case["closed_form_formula"],
            closed_form_vs_implicit_primal=float(np.linalg.norm(primal_J - cf)),
            closed_form_norm=float(np.linalg.norm(cf)),
        )
        if "closed_form_rate" in case:
            out["local_rate_closed_form"] = case["closed_form_rate"](xbar)
            out["local_rate_closed_form_formula"] = case["closed_form_rate_formula"]
        rates = dict(fitted=r_x, fitted_jacobian=r_J, predicted=local, global_rate=case["global_rate"],
                     fit_window_iterates=w_x, fit_window_jacobian=w_J)
    else:
        out.update(_kink_details(case, F, theta, family, cert, fix, fix_err, pb, J_ad_limit, A_ad, quick))
        exact = np.flatnonzero(x_err == 0)
        k_exact = int(exact[0]) if len(exact) else None
        out["iterates_reach_xbar_exactly"] = k_exact is not None
        out["first_step_exactly_at_xbar"] = k_exact
        # the two selections at x̄ (kink coordinate zero / active) and the one the iterates follow
        order = np.argsort([np.count_nonzero(np.abs(a).sum(axis=1)) for a in A_blocks])
        side = np.abs(np.asarray(jax.vmap(case["prox_input"])(jnp.asarray(xs[: (k_exact or len(xs))]))))[:, 1] > thr
        sel = int(side[-1]) if len(side) else 0
        predicted = _spectral_radius(A_blocks[order[sel]])
        out["selection_followed_by_iterates"] = "kink coordinate active" if sel else "kink coordinate zero"
        out["selection_spectral_radii"] = {"kink coordinate zero": _spectral_radius(A_blocks[order[0]]),
                                           "kink coordinate active": _spectral_radius(A_blocks[order[1]])}
        # JAX's J_k converges to the fixed point of the selection JAX makes at the last iterate
        # (at x̄ itself, if the iterates reach it exactly: a tie, where JAX's clip takes the midpoint)
        A_K, B_K = (np.asarray(M) for M in jax.jacfwd(F, argnums=(0, 1))(jnp.asarray(xs[-1]), theta))
        J_inf = np.linalg.solve(np.eye(n) - A_K, B_K)
        J_err = np.linalg.norm((J_ad - J_inf[None]).reshape(len(J_ad), -1), axis=1)
        dist_fix = np.array([fix.distance(J) for J in J_ad])
        r_J, w_J = fitted_rate(J_err, fit_start)
        jl = fix.distance_bounds(J_inf)
        out.update(jacobian_errors=J_err, jacobian_distance_to_fixed_set=dist_fix,
                   final_jacobian_error=float(J_err[-1]), final_jacobian_distance_to_fixed_set=float(dist_fix[-1]),
                   jax_limit_from_x0=J_inf[:, 0], jax_limit_from_x0_in_fixed_set=bool(fix.contains(J_inf, tol=1e-8)),
                   jax_limit_from_x0_distance_to_fixed_set=[float(jl[0]), float(jl[1])],
                   jax_limit_from_x0_is_one_sided=[k for k, v in out["one_sided_derivatives"].items()
                                                   if np.linalg.norm(v - J_inf[:, 0]) < 1e-6])
        end = k_exact if k_exact is not None else len(x_err)
        r_x, w_x = fitted_rate(x_err[:end], fit_start)
        rates = dict(fitted=r_x, fitted_jacobian=r_J, predicted=predicted, predicted_jacobian=_spectral_radius(A_K),
                     global_rate=case["global_rate"], fit_window_iterates=w_x, fit_window_jacobian=w_J)
    out["seconds"] = time.perf_counter() - t0
    return out, rates, pb, fix


def _kink_details(case, F, theta, family, cert, fix, fix_err, pb, J_tie, A_tie, quick):
    """The kink case: one-sided derivatives, implicit vs piggyback limits, recursion from x̄.

    ``J_tie`` = (I - A_tie)⁻¹B_tie for JAX's own element [A_tie, B_tie] of J_F(x̄, θ) at the tie."""
    n = family.shape[0]
    xbar = case["xbar_exact"]
    lam = float(theta[0])
    # one-sided derivatives of λ ↦ x̄(λ) (x̄ is piecewise affine in λ: one-sided differences are
    # exact up to rounding for h below the next kink); x̄(λ ± h) by long FB runs
    h = 1e-6
    sol = lambda l: np.asarray(algorithms.solve(F, jnp.asarray(xbar), jnp.array([l]), 3000).state)  # noqa: E731
    J_right = ((sol(lam + h) - xbar) / h).reshape(n, 1)
    J_left = ((xbar - sol(lam - h)) / h).reshape(n, 1)
    cmp = theory.compare_limits(family, resolution=1000, tol=max(1e-8, 2 * fix_err))
    imp = cmp.implicit
    # the recursion started at the fixed point: every step is tied, 𝒥_k → fix 𝒥 in Hausdorff
    # (certified distances are QPs: evaluated on a subsample of k in --quick)
    steps0 = 30 if quick else 50
    pb0 = conservative.piggyback(F, jnp.asarray(xbar), theta, steps0)
    ks0 = list(range(0, steps0 + 1, 6 if quick else 2))
    haus = [float(theory.hausdorff(pb0.sets[k], fix)) for k in ks0]
    jt = fix.distance_bounds(J_tie)
    J_ad0 = pb0.ad_jacobians
    tie_err = np.linalg.norm((J_ad0 - J_tie[None]).reshape(len(J_ad0), -1), axis=1)
    final_gap_theory = theory.gap(pb.sets[-1], fix)
    return dict(
        fixed_set_vertex_list=fix.vertices[:, :, 0],
        one_sided_derivatives={"right (λ+h)": J_right[:, 0], "left (λ-h)": J_left[:, 0]},
        one_sided_distance_to_fixed_set={"right": float(fix.distance(J_right)), "left": float(fix.distance(J_left))},
        implicit_vertex_images=imp.vertex_images[:, :, 0],
        one_sided_vs_implicit_vertex_images=float(min(
            np.linalg.norm(J_right - imp.vertex_images[0]) + np.linalg.norm(J_left - imp.vertex_images[1]),
            np.linalg.norm(J_right - imp.vertex_images[1]) + np.linalg.norm(J_left - imp.vertex_images[0]))),
        implicit_strictly_smaller=bool(cmp.strict),
        gap_pb_over_implicit=float(cmp.excess),
        gap_pb_over_implicit_certified_lower=float(cmp.excess_lower),
        implicit_covering_radius=float(imp.covering_radius),
        implicit_included_in_fixed_set=bool(cmp.includes),
        final_gap_theory_certified=[float(final_gap_theory.lower), float(final_gap_theory)],
        from_xbar=dict(
            steps=steps0, hausdorff_steps=ks0, hausdorff_to_fixed_set=haus, diameters=pb0.diameters,
            sizes=pb0.sizes, tied_steps=len(pb0.tied_steps), ad_in_set_every_step=bool(pb0.ad_in_set.all()),
            final_hausdorff=haus[-1], final_diameter=float(pb0.diameters[-1]),
            jax_selection_at_xbar_A=A_tie,
            jax_limit=J_tie[:, 0],
            jax_limit_in_fixed_set=bool(fix.contains(J_tie, tol=1e-8)),
            jax_limit_distance_to_fixed_set=[float(jt[0]), float(jt[1])],
            jax_limit_distance_to_one_sided=min(float(np.linalg.norm(J_tie - J_right)),
                                                float(np.linalg.norm(J_tie - J_left))),
            jax_final_error=float(tie_err[-1]),
            jax_errors=tie_err,
        ),
        _plot=dict(implicit_samples=imp.samples[:, :, 0], from_xbar_final_vertices=pb0.sets[-1].vertices[:, :, 0],
                   from_xbar_jax=J_ad0[:, :, 0]),
    )


# ----------------------------------------------------------------------------- figures
def _plot(out, results, pbs):
    plt = pyplot()
    fig, axes = plt.subplots(len(CASES), 2, figsize=(12, 3.2 * len(CASES)))
    for row, name in zip(axes, CASES):
        r = results[name]
        rates = r["rates"]
        k = np.arange(len(r["iterate_errors"]))
        ks = r["fit_start"]
        ax = row[0]
        ax.semilogy(k, _positive(r["iterate_errors"]), label=r"$\|x_k-\bar x\|$")
        v0 = r["iterate_errors"][ks]
        if v0 > 0:
            ax.semilogy(k[ks:], v0 * rates["predicted"] ** (k[ks:] - ks), "k--", lw=0.9,
                        label=f"predicted local rate {rates['predicted']:.3f}")
        if r["global_rate"] < 1:
            ax.semilogy(k, r["iterate_errors"][0] * r["global_rate"] ** k, ":", color="gray", lw=0.9,
                        label=f"global rate {r['global_rate']:.3f}")
        ax.axvline(r["identification_step"], color="C3", lw=0.6, alpha=0.6)
        ax.set_ylim(bottom=1e-17)
        ax.set_title(r["title"] + f": iterates (fitted {rates['fitted']:.3f})", fontsize=9)
        ax.set_xlabel("k")
        ax.legend(fontsize=7)
        ax = row[1]
        if r["family_singleton"]:
            ax.semilogy(k, _positive(r["jacobian_errors"]), label=r"$\|J_k-\bar J\|$ (JAX)")
            ax.semilogy(k, _positive(r["gaps"]), "o", ms=2.5, mfc="none",
                        label=r"gap$(\mathcal{J}_k$, fix $\mathcal{J})$")
            jtitle = f"derivatives (fitted {rates['fitted_jacobian']:.3f})"
            j0 = r["jacobian_errors"][ks]
            ax.semilogy(k[ks:], j0 * rates["predicted"] ** (k[ks:] - ks), "k--", lw=0.9,
                        label=f"predicted {rates['predicted']:.3f}")
        else:
            ax.semilogy(k, _positive(r["jacobian_distance_to_fixed_set"]),
                        label=r"dist$(J_k$, fix $\mathcal{J})$ (JAX)")
            ax.semilogy(k, _positive(r["jacobian_errors"]), label=r"$\|J_k-J_\infty\|$ (JAX)")
            ax.semilogy(k, _positive(r["gaps"]), "o", ms=2.5, mfc="none",
                        label=r"gap$(\mathcal{J}_k$, fix $\mathcal{J})$")
            pj = rates["predicted_jacobian"]
            j0 = r["jacobian_errors"][ks]
            if j0 > 0:
                ax.semilogy(k[ks:], j0 * pj ** (k[ks:] - ks), "k--", lw=0.9, label=f"predicted {pj:.3f}")
            if np.nanmax(r["set_diameters"]) > 0:
                ax.semilogy(k, _positive(r["set_diameters"]), "-", lw=0.8, label=r"diam $\mathcal{J}_k$")
            ax.axhline(r["fixed_set_diameter"], color="gray", ls=":", lw=0.8, label="diam fix $\\mathcal{J}$")
            if r["first_step_exactly_at_xbar"] is not None:
                ax.axvline(r["first_step_exactly_at_xbar"], color="C3", lw=0.6, alpha=0.6)
            jtitle = (f"derivatives: fix $\\mathcal{{J}}$ has {r['fixed_set_vertices']} vertices, "
                      f"diam {r['fixed_set_diameter']:.3g}")
        ax.set_ylim(bottom=1e-17)
        ax.set_title(jtitle, fontsize=9)
        ax.set_xlabel("k")
        ax.legend(fontsize=7)
    fig.suptitle("Derivatives of FB / DR / ADMM converge at the local rate (synthetic data; "
                 "red line: active pattern identified)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "nonsmooth_convergence.png", dpi=100)
    plt.close(fig)

    # the kink case in the plane of its two nonzero coordinates
    r = results["lasso_kink"]
    pl = r["_plot"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw=dict(width_ratios=[1.25, 1]))
    ax = axes[0]
    V = np.asarray(r["fixed_set_vertex_list"])[:, :2]
    c = V.mean(axis=0)
    order = np.argsort(np.arctan2(V[:, 1] - c[1], V[:, 0] - c[0]))
    poly = np.vstack([V[order], V[order][:1]])
    ax.fill(poly[:, 0], poly[:, 1], alpha=0.2, color="C0", label=f"conv fix $\\mathcal{{J}}$ ({len(V)} vertices)")
    ax.plot(poly[:, 0], poly[:, 1], color="C0", lw=0.8)
    Is = np.asarray(pl["implicit_samples"])
    ax.plot(Is[:, 0], Is[:, 1], ".", ms=3, color="C2", label=r"implicit $\{(I-A)^{-1}B\}$")
    W = np.asarray(pl["from_xbar_final_vertices"])
    ax.plot(W[:, 0], W[:, 1], "x", color="C4", ms=6, label=r"vertices of $\mathcal{J}_k$ started at $\bar x$")
    J = pbs["lasso_kink"].ad_jacobians[:, :2, 0]
    ax.plot(J[1:, 0], J[1:, 1], ".-", lw=0.5, ms=2, color="C1", label=r"JAX's $J_k$ from $x_0 = 0$")
    jl = np.asarray(r["jax_limit_from_x0"])
    ax.plot(jl[0], jl[1], "*", ms=12, color="C1", label=r"its limit")
    J0 = np.asarray(pl["from_xbar_jax"])
    ax.plot(J0[1:, 0], J0[1:, 1], ".-", lw=0.5, ms=2, color="C5", label=r"JAX's $J_k$ from $x_0 = \bar x$ (ties)")
    jt = np.asarray(r["from_xbar"]["jax_limit"])
    ax.plot(jt[0], jt[1], "*", ms=12, color="C5", label="its limit (midpoint selection)")
    os_ = r["one_sided_derivatives"]
    for (lab, v), mk in zip(os_.items(), ("^", "v")):
        ax.plot(v[0], v[1], mk, ms=9, mfc="none", color="C3", label=f"one-sided derivative, {lab}")
    pad = 0.15 * max(np.ptp(V[:, 0]), np.ptp(V[:, 1]), 1e-3)
    ax.set_xlim(V[:, 0].min() - pad, V[:, 0].max() + pad)
    ax.set_ylim(V[:, 1].min() - pad, V[:, 1].max() + pad)
    ax.set_xlabel(r"$\partial \bar x_0/\partial\lambda$")
    ax.set_ylabel(r"$\partial \bar x_1/\partial\lambda$ (kink coordinate)")
    rel = r"$\supsetneq$" if r["implicit_strictly_smaller"] else r"$\supseteq$"
    ax.set_title(f"lasso with an exact kink: fix $\\mathcal{{J}}$ {rel} implicit set (certified gap "
                 f"$\\geq$ {r['gap_pb_over_implicit_certified_lower']:.2g})", fontsize=9)
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax = axes[1]
    fx = r["from_xbar"]
    kk = np.asarray(fx["hausdorff_steps"])
    ax.semilogy(kk, _positive(fx["hausdorff_to_fixed_set"]), "o-", ms=3,
                label=r"Hausdorff$(\mathcal{J}_k$, fix $\mathcal{J})$ (certified upper bound)")
    kd = np.arange(len(fx["diameters"]))
    ax.semilogy(kd, _positive(fx["diameters"]), label=r"diam $\mathcal{J}_k$")
    ax.semilogy(kd, _positive(fx["jax_errors"]), label=r"JAX: $\|J_k - J_\infty\|$")
    ax.axhline(r["fixed_set_diameter"], color="gray", ls=":", label=r"diam fix $\mathcal{J}$")
    rho = r["contraction_certificate"]["rho"]
    if len(kk) > 1:
        ax.semilogy(kd[kk[1]:], fx["hausdorff_to_fixed_set"][1] * rho ** (kd[kk[1]:] - kk[1]), "k--", lw=0.8,
                    label=f"certified contraction $\\rho$ = {rho:.3f}")
    ax.set_xlabel("k")
    ax.set_title(r"set-valued piggyback started at $\bar x$ (every step tied)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "nonsmooth_convergence_kink.png", dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- entry points
def run(out_dir="out", quick=False, seed=0) -> dict:
    seed, quick = check_run_args(seed, quick)
    out = output_dir(out_dir)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    max_steps = 250 if quick else 600
    results, rates, pbs = {}, {}, {}
    bar = Progress(len(CASES), "nonsmooth_convergence")
    for name in CASES:
        case = BUILDERS[name](rng, quick)
        res, rate, pb, _ = analyse(name, case, quick, max_steps)
        res["rates"] = rate
        results[name], rates[name], pbs[name] = res, rate, pb
        bar.update()
    bar.close()
    _plot(out, results, pbs)
    for r in results.values():
        r.pop("_plot", None)
    summary = dict(
        description="FB (lasso), DR (graphical lasso), ADMM (1-D TV) and a lasso with an exact kink at the "
                    "solution: iterate error, JAX derivative error and gap(𝒥_k, fix 𝒥) against k "
                    "(slides 'Empirical observations')",
        data="synthetic (seeded); see each case's 'problem'",
        quick=bool(quick),
        seed=int(seed),
        rates=rates,
        cases=results,
        figures=["nonsmooth_convergence.png", "nonsmooth_convergence_kink.png"],
        seconds=time.perf_counter() - t0,
    )
    write_json(out / "nonsmooth_convergence.json", summary, seed=seed, quick=quick)
    return summary


def main(argv=None):
    args = parse_args(parser(__doc__.splitlines()[0]), argv)
    s = run(args.out, quick=args.quick, seed=args.seed)
    print("derivatives of nonsmooth iterative algorithms (synthetic data, seed "
          f"{s['seed']}{', quick' if s['quick'] else ''})")
    for name in CASES:
        c, r = s["cases"][name], s["rates"][name]
        print(f"  {c['title']}")
        print(f"    pattern identified at k = {c['identification_step']}, "
              f"kink margin at x̄ = {c['kink_margin_at_xbar']:.2e}, "
              f"x̄ vs cvxpy {c['primal_vs_cvxpy_max_abs']:.1e}")
        print(f"    rate of x_k: fitted {r['fitted']:.4f}, predicted (local) {r['predicted']:.4f}, "
              f"global {r['global_rate']:.4f}; "
              f"derivative: fitted {r['fitted_jacobian']:.4f}")
        print(f"    final ‖x_k - x̄‖ = {c['final_iterate_error']:.1e}, "
              f"final derivative error {c['final_jacobian_error']:.1e}, "
              f"final gap(𝒥_k, fix 𝒥) = {c['final_gap']:.1e}; "
              f"JAX's element in 𝒥_k at every step: {c['ad_in_set_every_step']}")
        print(f"    J_F(x̄, θ): {c['family_size']} selection(s); fix 𝒥: {c['fixed_set_vertices']} vertices, "
              f"diameter {c['fixed_set_diameter']:.3e}; tied steps along the run: {c['tied_steps']}")
        if c["family_singleton"]:
            print(f"    closed form vs implicit (primal derivative): {c['closed_form_vs_implicit_primal']:.1e}")
        if "spectral_radius_full_matrix_space" in c:
            print(f"    spectral radius of ∂F on all of R^(d×d): {c['spectral_radius_full_matrix_space']:.4f} "
                  f"(on symmetric matrices: {c['local_rate_spectral_radius']:.4f})")
        if not c["family_singleton"]:
            fx = c["from_xbar"]
            print("    one-sided derivatives "
                  f"{[np.round(v, 6).tolist() for v in c['one_sided_derivatives'].values()]}, "
                  f"distances to fix 𝒥 {[f'{v:.1e}' for v in c['one_sided_distance_to_fixed_set'].values()]}")
            print(f"    implicit set strictly inside fix 𝒥: {c['implicit_strictly_smaller']} "
                  f"(gap(fix 𝒥, J_imp) = {c['gap_pb_over_implicit']:.3e}, "
                  f"certified ≥ {c['gap_pb_over_implicit_certified_lower']:.3e})")
            print(f"    from x0 = 0: iterates reach x̄ exactly: {c['iterates_reach_xbar_exactly']} "
                  f"(selection followed: {c['selection_followed_by_iterates']}); JAX's J_k → "
                  f"{np.round(c['jax_limit_from_x0'], 6).tolist()} (one-sided: {c['jax_limit_from_x0_is_one_sided']}), "
                  f"in fix 𝒥: {c['jax_limit_from_x0_in_fixed_set']}")
            print(f"    from x̄ (every step tied): Hausdorff(𝒥_k, fix 𝒥) = {fx['final_hausdorff']:.1e} "
                  f"after {fx['steps']} steps; "
                  f"JAX's J_k → {np.round(fx['jax_limit'], 6).tolist()} (midpoint selection), in fix 𝒥: "
                  f"{fx['jax_limit_in_fixed_set']}, distance to the nearest one-sided derivative "
                  f"{fx['jax_limit_distance_to_one_sided']:.2e}")
    print(f"  wrote {Path(args.out) / 'nonsmooth_convergence.png'}, nonsmooth_convergence_kink.png and "
          f"nonsmooth_convergence.json ({s['seconds']:.1f} s)")


if __name__ == "__main__":
    main()

"""Certified inner and outer approximations of conv fix(𝒥) on a direction template (any dimension).

For a contracting family 𝒥 = conv{[A_i, B_i]} (maps f_i(X) = A_i X + B_i on n×m matrices) the
fixed set F = conv fix(𝒥) satisfies F = conv ∪_i f_i(F) (Bolte, Pauwels & Vaiter 2022; the
set-valued piggyback limit), so its support function h_F(D) = max_{X∈F} ⟨D, X⟩ solves

    h_F(D) = max_i [⟨B_i, D⟩ + h_F(A_iᵀ D)]                                    (★)

(⟨D, A X⟩ = ⟨AᵀD, X⟩).  Unrolling (★) along a word w = (w_1, …, w_T) gives
h_F(D) = max_w [Σ_t ⟨B_{w_t}, E_{t-1}⟩ + h_F(E_T)] with E_0 = D, E_t = A_{w_t}ᵀ E_{t-1}; the
tails h_F(E_T) shrink with the joint spectral radius.  ``fixed_set_bounds`` solves (★) per template
direction by best-first branch and bound over words, never forming the vertex set of F (whose
extreme points grow without bound in 4-D and 6-D, where ``fixed_set`` runs out of vertices):

* Ball.  With the certified norm N of ``_step_norm`` (Lip_N(𝒦^k) ≤ ρ < 1) and any centre c,
  𝒦^k maps the ball B_N(c, r), r = max_{|w|=k} ‖f_w(c) - c‖_N / (1-ρ), into itself, so
  F ⊆ B_N(c, r) ⊆ B_F(c, R), R = c_F·r, and h_F(E) ≤ ⟨E, c⟩ + R‖E‖_F for every E.
* Upper bounds.  A node (word prefix) has the value acc + h_F(E); its upper bound is
  acc + ⟨E, c⟩ + R‖E‖_F; expanding it uses (★) exactly.  The computed directions Ẽ differ from
  A_iᵀẼ_parent by ≤ γ_n|A_iᵀ||Ẽ_parent| entrywise, which moves h_F by ≤ R_max·‖that‖_F
  (h_F is R_max-Lipschitz, R_max = ‖c‖_F + R ≥ max_{X∈F} ‖X‖_F); this and the rounding of the
  inner products and sums are added as a per-node slack, so u_j = max over open leaves of
  (acc + slack + tail) is a certified upper bound on h_F(D_j) for the computed data.
* Inner points.  Each leaf's lower value is attained by X = f_{w_1}∘⋯∘f_{w_T}(p) with p the
  computed fixed point of a member map.  f_w(F) ⊆ F, the exact fixed point of f_i lies in F, and
  d_N(p̃, p*) ≤ ‖f_i^k(p̃) - p̃‖_N/(1-ρ) (f_i^k is a ρ-contraction in N); the rounding of the
  forward chain (≤ γ_{n+1}(|A||Y| + |B|) per step, propagated with Lip_N of the remaining maps,
  at most Λ = max_i lip[i]) gives d_F(X̃, F) ≤ e_in for every stored point.  The inner set is
  I = conv{X̃} (the member fixed points and the best point of each direction), so
  gap(I, F) = max_{x∈I} d(x, F) ≤ e_in (d(·, F) is convex).
* Outer polytope.  O = {X : ⟨D_j, X⟩ ≤ u_j, j = 1..p} ⊇ F.

What is certified (Frobenius norm, for the computed data):

    gap(inner, F) ≤ e_in,   F ⊆ outer,   h_I(D_j) - e_in‖D_j‖ ≤ h_F(D_j) ≤ u_j,
    error = max_j (u_j - h_I(D_j))/‖D_j‖_F + e_in  ≥  max_j |h_F(D_j) - h_I(D_j)|/‖D_j‖ and
                                                    ≥  max_j (u_j - h_F(D_j))/‖D_j‖,

i.e. ``error`` bounds the Hausdorff gap between inner, outer and F *measured on the template*
(sup over j of the support-function differences).  This is not the full Hausdorff distance;
``hausdorff_bound`` is the full certified bound dist_H(I, F) ≤ max(e_in, c_F·e_N(𝒦^k I, I)/(1-ρ))
from the contraction (e_N the excess in N, certified point-to-hull distances), which in 4-D is
limited by how many points I has, not by the branch and bound.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from conservative import MatrixSet

from ._fixed_set import _hull_distance_upper, as_block_family
from ._step_norm import StepNorm, step_norms
from ._validate import check_count, check_tolerance

__all__ = ["FixedSetBounds", "fixed_set_bounds", "default_template"]

_U = np.finfo(np.float64).eps / 2


def _gamma(k: int) -> float:
    return k * _U / (1 - k * _U)


@dataclass(frozen=True)
class FixedSetBounds:
    """Certified inner set and outer template polytope of conv fix(𝒥) (see the module docstring).

    ``inner`` (MatrixSet): gap(inner, conv fix 𝒥) ≤ ``e_in``.  ``directions`` (p, n, m) and
    ``upper`` (p,): conv fix 𝒥 ⊆ {X : ⟨D_j, X⟩ ≤ upper[j]}.  ``lower[j]`` = h_inner(D_j) - e_in‖D_j‖
    ≤ h_fix(D_j).  ``error``: max_j (upper[j] - h_inner(D_j))/‖D_j‖_F + e_in, the certified gap on
    the template.  ``hausdorff_bound``: certified full dist_H(inner, conv fix 𝒥) (∞ if not computed).
    ``complete`` is False when a direction hit ``max_nodes`` (its upper value is still certified).
    """

    inner: MatrixSet = field(repr=False)
    e_in: float
    directions: np.ndarray = field(repr=False)
    upper: np.ndarray = field(repr=False)
    lower: np.ndarray = field(repr=False)
    error: float
    hausdorff_bound: float
    rho: float
    norm: str
    nodes: int
    complete: bool

    def outer_contains(self, X: ArrayLike, tol: float = 0.0) -> bool:
        """⟨D_j, X⟩ ≤ u_j + tol‖D_j‖_F for every template direction."""
        X = np.asarray(X, dtype=np.float64)
        vals = np.einsum("pij,ij->p", self.directions, X)
        return bool(np.all(vals <= self.upper + tol * np.linalg.norm(self.directions.reshape(len(vals), -1), axis=1)))

    def __repr__(self) -> str:
        return (f"FixedSetBounds({self.directions.shape[1]}×{self.directions.shape[2]} sets, "
                f"{len(self.directions)} directions, {len(self.inner)} inner points, error {self.error:.3e} "
                f"(e_in {self.e_in:.1e}), full Hausdorff bound {self.hausdorff_bound:.3e}, ρ = {self.rho:.6g} "
                f"({self.norm}), {self.nodes} nodes{'' if self.complete else ', node limit hit'})")


def default_template(n: int, m: int) -> np.ndarray:
    """±e_a and (±e_a ± e_b)/√2 (a < b) in R^{n×m}: 2d² unit directions, d = nm."""
    d = n * m
    out = []
    eye = np.eye(d)
    for a in range(d):
        out += [eye[a], -eye[a]]
    for a, b in itertools.combinations(range(d), 2):
        for sa, sb in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            out.append((sa * eye[a] + sb * eye[b]) / math.sqrt(2))
    return np.array(out).reshape(-1, n, m)


def _check_directions(directions, n, m):
    if directions is None:
        return default_template(n, m)
    D = np.asarray(directions, dtype=np.float64)
    if D.ndim == 2 and (n, m) != D.shape:
        D = D.reshape(len(D), -1)
        if D.shape[1] != n * m:
            raise ValueError(f"directions: expected an array (p, {n}, {m}) or (p, {n * m}), got {np.shape(directions)}")
    if D.ndim == 2:
        D = D.reshape(-1, n, m)
    if D.ndim != 3 or D.shape[1:] != (n, m) or len(D) == 0:
        raise ValueError(f"directions: expected a non-empty array (p, {n}, {m}), got shape {np.shape(directions)}")
    if not np.all(np.isfinite(D)):
        raise ValueError("directions: entries must be finite")
    if np.any(np.linalg.norm(D.reshape(len(D), -1), axis=1) == 0):
        raise ValueError("directions: every direction must be nonzero")
    return D


def _chain_rounding(A, B, Y, widx):
    """(Ỹ, Σδ): f_{w_1}∘⋯∘f_{w_T}(Y) computed innermost first and the sum of the per-step Frobenius
    rounding bounds δ_t = γ_{n+1}‖|A||Y| + |B|‖_F."""
    n = A.shape[1]
    g = _gamma(n + 1)
    tot = 0.0
    for i in reversed(widx):
        mag = np.abs(A[i]) @ np.abs(Y) + np.abs(B[i])
        Y = A[i] @ Y + B[i]
        tot += g * float(np.linalg.norm(mag))
    return Y, tot


def _lambda(sn: StepNorm) -> float:
    """Λ ≥ Lip_N of any composition of member maps (ρ^{j//k}·lip[j % k] ≤ max lip, lip[0] = 1)."""
    return max(max(sn.lip), 1.0)


def _to_N(sn: StepNorm, frob: float) -> float:
    """‖X‖_N ≤ c_N‖L X‖_F ≤ c_N‖L‖₂‖X‖_F, rounded up."""
    return sn.c_N * sn.L_norm * frob * (1 + 8 * _U)


def _words(q, k):
    return list(itertools.product(range(q), repeat=k))


def _ball(A, B, c, sn: StepNorm):
    """R with conv fix 𝒥 ⊆ B_F(c, R) (module docstring), rounded up."""
    n = A.shape[1]
    Lam = _lambda(sn)
    worst = 0.0
    for w in _words(len(A), sn.k):
        Y, rnd = _chain_rounding(A, B, c, w)
        diff = float(np.linalg.norm(sn.L @ (Y - c))) * sn.c_N
        worst = max(worst, diff * (1 + 4 * (n + 2) * _U) + Lam * _to_N(sn, rnd + _gamma(1) * float(np.linalg.norm(c))))
    r = worst / (1 - sn.rho) * (1 + 8 * _U)
    return r, sn.c_F * r * (1 + 8 * _U)


def _dual_tail(sn: StepNorm, r_N: float, R_F: float):
    """(G, κ) with h_F(E) ≤ ⟨E, c⟩ + r_N‖G E‖_F + κ‖E‖_F (ellipsoidal N, ‖X‖_N = ‖L X‖_F), or None.

    G ≈ L^{-T}: E = Lᵀ(G E) + (I - LᵀG)E, so ⟨E, X - c⟩ ≤ ‖G E‖_F‖X - c‖_N + ‖I - LᵀG‖₂‖E‖_F‖X - c‖_F;
    the dual norm decays at the contraction rate along the words, the Frobenius norm need not.  κ
    covers ‖I - LᵀG‖₂ (computed residual plus its rounding) times R_F and the rounding of G E.
    """
    if not sn.exact:
        return None
    n = sn.L.shape[0]
    G = np.linalg.inv(sn.L).T
    M = np.eye(n) - sn.L.T @ G
    eps_G = float(np.linalg.norm(M)) + _gamma(n + 1) * float(np.linalg.norm(np.abs(sn.L.T) @ np.abs(G)) + 1)
    kappa = (r_N * _gamma(n) * float(np.linalg.norm(np.abs(G))) + R_F * eps_G) * (1 + 8 * _U)
    return G, kappa


def _fixed_point(A, B, i, sn: StepNorm):
    """(p̃, e): the computed fixed point of f_i and a Frobenius bound on d(p̃, conv fix 𝒥)."""
    n = A.shape[1]
    p = np.linalg.solve(np.eye(n) - A[i], B[i])
    for _ in range(2):  # iterative refinement: residual of p = A p + B
        p = p + np.linalg.solve(np.eye(n) - A[i], A[i] @ p + B[i] - p)
    Y, rnd = _chain_rounding(A, B, p, [i] * sn.k)
    res = float(np.linalg.norm(sn.L @ (Y - p))) * sn.c_N * (1 + 4 * (n + 2) * _U)
    dN = (res + _lambda(sn) * _to_N(sn, rnd)) / (1 - sn.rho) * (1 + 8 * _U)
    return p, dN


def _branch_and_bound(A, B, D, c, R, Rmax, points, tol, max_nodes, dual=None, r_N=0.0):
    """(u, word, base, nodes, complete): a certified upper bound u on h_F(D) by best-first search
    over words, and the word and base point index whose inner point attains the best lower value."""
    n, m = B.shape[1], B.shape[2]
    q = len(A)
    AT = np.transpose(A, (0, 2, 1))
    absAT = np.abs(AT)
    absB = np.abs(B)
    absc = np.abs(c)
    P = points.reshape(len(points), -1)
    gn, gnm = _gamma(n), _gamma(n * m + 2)
    tmarg = _gamma(n * m + 4)

    def tail(E):
        ec = float(np.sum(E * c))
        ne = float(np.linalg.norm(E))
        ball = R * ne * (1 + 4 * _U)
        if dual is not None:
            ball = min(ball, r_N * float(np.linalg.norm(dual[0] @ E)) * (1 + 4 * _U) + dual[1] * ne)
        return ec + ball + tmarg * (float(np.sum(np.abs(E) * absc)) + ball)

    def lower(E, acc):
        vals = P @ E.ravel()
        j = int(np.argmax(vals))
        return acc + float(vals[j]), j

    best_low, best_word, best_base = -np.inf, (), 0
    lo, j = lower(D, 0.0)
    best_low, best_base = lo, j
    counter = itertools.count()
    heap = [(-(tail(D)), next(counter), D, 0.0, 0.0, ())]
    pruned = -np.inf  # the largest upper bound of a discarded node: h_F(D) ≤ max(pruned, open nodes)
    nodes = 1
    while heap:
        negu, _, E, acc, slack, word = heap[0]
        if -negu - best_low <= tol:
            break
        if nodes >= max_nodes:
            return max(-negu, pruned), best_word, best_base, nodes, False
        heapq.heappop(heap)
        absE = np.abs(E)
        for i in range(q):
            Ec = AT[i] @ E
            bi = float(np.sum(B[i] * E))
            acc_c = acc + bi
            s = slack + Rmax * gn * float(np.linalg.norm(absAT[i] @ absE)) \
                + gnm * (float(np.sum(absB[i] * absE)) + abs(acc) + abs(acc_c))
            u = acc_c + s + tail(Ec)
            nodes += 1
            lo, j = lower(Ec, acc_c)
            lo -= s
            if lo > best_low:
                best_low, best_word, best_base = lo, word + (i,), j
            if u > best_low:
                heapq.heappush(heap, (-u, next(counter), Ec, acc_c, s, word + (i,)))
            else:
                pruned = max(pruned, u)
    u = -heap[0][0] if heap else -np.inf
    return max(u, pruned), best_word, best_base, nodes, True


def fixed_set_bounds(family: MatrixSet | ArrayLike, *, tol: float = 1e-6, directions: ArrayLike | None = None,
                     contraction: Any = None, max_nodes: int = 200_000,
                     hausdorff: bool = True) -> FixedSetBounds:
    """Certified inner set and outer template polytope of conv fix(𝒥), without vertex enumeration.

    ``family``: [A, B] blocks (MatrixSet n×(n+m) or array (k, n, n+m)); ``directions``: the template
    D_1..D_p (array (p, n, m); default ``default_template``: ±e_a, (±e_a ± e_b)/√2); ``contraction``:
    as for ``fixed_set`` (any certificate ``step_norms`` accepts, re-checked on this family; None
    searches an ellipsoidal norm, products and ``jsr``); ``tol``: target for each direction's
    gap u_j - h_I(D_j) (relative to ‖D_j‖_F); ``max_nodes``: branch-and-bound budget per direction.
    With ``hausdorff=True`` the full certified dist_H(inner, conv fix 𝒥) is computed too (point-to-hull
    distances of the |inner|·q^k images; skipped, ∞, beyond 20 000 images).

    Returns ``FixedSetBounds``; what each field certifies, with the mathematics (support-function
    recursion (★), the contraction ball, rounding), is in the module docstring.  Raises
    ``ValueError`` naming ``family`` and saying what was proved when no contraction is certified.
    """
    A, B = as_block_family(family)
    tol = check_tolerance(tol, "tol")
    max_nodes = check_count(max_nodes, "max_nodes")
    if not isinstance(hausdorff, (bool, np.bool_)):
        raise TypeError(f"hausdorff: expected a bool, got {type(hausdorff).__name__}")
    n, m = B.shape[1], B.shape[2]
    D = _check_directions(directions, n, m)
    sn = step_norms(A, contraction)[0]
    fps = [_fixed_point(A, B, i, sn) for i in range(len(A))]
    base = np.array([p for p, _ in fps])
    c = base.mean(axis=0)
    r_N, R = _ball(A, B, c, sn)
    dual = _dual_tail(sn, r_N, R)
    Rmax = (float(np.linalg.norm(c)) + R) * (1 + 8 * _U)
    Lam = _lambda(sn)
    base_err_N = [dN for _, dN in fps]
    pts, errs_F = list(base), [sn.c_F * Lam * e * (1 + 8 * _U) for e in base_err_N]
    uppers, total_nodes, complete = [], 0, True
    for Dj in D:
        ntol = 0.5 * tol * float(np.linalg.norm(Dj))
        u, word, b, nodes, ok = _branch_and_bound(A, B, Dj, c, R, Rmax, base, ntol, max_nodes, dual, r_N)
        uppers.append(u)
        total_nodes += nodes
        complete &= ok
        if word:
            X, rnd = _chain_rounding(A, B, base[b], list(word))
            pts.append(X)
            errs_F.append(sn.c_F * Lam * (base_err_N[b] + _to_N(sn, rnd)) * (1 + 8 * _U))
    pts = np.array(pts)
    e_in = float(max(errs_F))
    upper = np.array(uppers)
    Dn = np.linalg.norm(D.reshape(len(D), -1), axis=1)
    hI = np.max(np.einsum("pij,kij->pk", D, pts), axis=1)
    hI_low = hI - _gamma(n * m + 2) * np.max(np.einsum("pij,kij->pk", np.abs(D), np.abs(pts)), axis=1)
    lower = hI_low - e_in * Dn
    error = float(np.max((upper - hI_low) / Dn)) * (1 + 8 * _U) + e_in
    inner = MatrixSet(pts)
    hb = _full_hausdorff(A, B, inner, pts, e_in, sn) if hausdorff else math.inf
    return FixedSetBounds(inner, e_in, D, upper, lower, error, hb, sn.rho, getattr(sn.cert, "norm", "?"),
                          total_nodes, complete)


def _full_hausdorff(A, B, inner, pts, e_in, sn: StepNorm) -> float:
    """max(e_in, c_F·(e_N(𝒦^k I, I) + rounding)/(1-ρ)): a certified bound on dist_H(I, conv fix 𝒥).

    gap(I, F) ≤ e_in.  gap(F, I) ≤ gap(𝒦^k F, 𝒦^k I) + gap(𝒦^k I, I) ≤ ρ·gap(F, I) + e(𝒦^k I, I) in N
    (F = 𝒦^k F; the excess contracts like the Hausdorff distance), so gap(F, I) ≤ e_N(𝒦^k I, I)/(1-ρ).
    """
    words = _words(len(A), sn.k)
    if len(words) * len(pts) > 20_000:
        return math.inf
    imgs, rnd = [], 0.0
    for w in words:
        for p in pts:
            Y, r = _chain_rounding(A, B, p, list(w))
            imgs.append(Y)
            rnd = max(rnd, r)
    # the one-sided excess e_F(L·𝒦^k I, L·I): certified distances of each image to a feasible point of
    # conv(L·pts) (NNLS weights, ``_hull_distance_upper``), nearest point first; e_N ≤ c_N·e_F(L·)
    V = np.einsum("ab,kbc->kac", sn.L, np.array(imgs)).reshape(len(imgs), -1)
    W = np.einsum("ab,kbc->kac", sn.L, pts).reshape(len(pts), -1)
    ex = 0.0
    for v in V:
        near = float(np.min(np.linalg.norm(W - v, axis=1)))
        ex = max(ex, near if near <= ex else min(near, _hull_distance_upper(v, W)))
    eN = (sn.c_N * ex * (1 + 8 * _U) + _lambda(sn) * _to_N(sn, rnd)) / (1 - sn.rho) * (1 + 8 * _U)
    return max(e_in, sn.c_F * eN * (1 + 8 * _U))

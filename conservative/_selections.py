"""Jacobians that depend on discrete selections: the data structure behind ``jacobian``.

While a program is interpreted, the Jacobian of every intermediate value v (flattened, size s)
with respect to the N input columns is an *affine function of the selections*:

    J_v(σ) = C_v + Σ_g T_{v,g}[σ_g]                                  (★)

* a **base choice** is one tie of one nonsmooth primitive at one position (e.g. ``max`` at a
  tied coordinate, a tied ``where`` condition, a tie block of ``sort``), with K options;
* a **group** g is a set of base choices whose effects interact (they were multiplied together
  by the chain rule); groups partition the base choices, and σ_g is the joint option of g's
  base choices (Π K_b assignments);
* T_{v,g} is a table indexed by σ_g, stored only on the rows of v it touches.

Groups are disjoint, so the conservative Jacobian {J_v(σ)} has convex hull
C_v + Σ_g conv{T_{v,g}[a]}: exactly a ``MatrixSet`` (a Minkowski sum of hulls).  Two ties that
never interact stay in separate groups; this is what keeps ``t`` independent ties at O(t)
storage instead of 2^t.  When the chain rule multiplies a choice with rows that already depend
on other groups, those groups are merged (their tables lifted to the joint assignment space);
the size of a merged group is bounded by ``max_selections``.

Each occurrence of a nonsmooth primitive gets its own base choices: this is the sum and chain
rule of conservative calculus (Bolte & Pauwels 2021), e.g. relu(x) - relu(-x) at 0 gives [0, 2].
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ._matrix_set import MatrixSet, SetTooLargeError, _Group

__all__ = ["Choices", "JRep"]


class Choices:
    """Registry of base choices and groups (union-find: merged groups point to their root)."""

    def check_limit(self, count: int, what: str) -> None:
        """Raise :class:`SetTooLargeError` when ``count`` selections exceed ``max_selections``."""
        if count > self.max_selections:
            raise SetTooLargeError(
                f"jacobian: {what}, above max_selections={self.max_selections}. Raise it with "
                "conservative.jacobian(..., max_selections=...), or move the point off the ties."
            )

    def __init__(self, max_selections: int):
        self.max_selections = int(max_selections)
        #: ``free(roots) -> roots`` (set by the interpreter): the groups among ``roots`` that no
        #: value still in use depends on, so ``choose`` may absorb them (``None``: never)
        self.free = None
        self.parent: dict[int, int] = {}
        self.bases: dict[int, tuple[int, ...]] = {}
        self.size: dict[int, int] = {}  # options of each base choice
        self._next = 0

    def new_group(self, k: int) -> int:
        gid = self._next
        self._next += 1
        self.parent[gid] = gid
        self.bases[gid] = (gid,)
        self.size[gid] = int(k)
        return gid

    def new_groups(self, ks) -> np.ndarray:
        """Fresh independent base choices with ``ks[i]`` options each (vectorized ``new_group``)."""
        ks = np.asarray(ks, dtype=np.int64)
        gids = np.arange(self._next, self._next + len(ks))
        self._next += len(ks)
        keys = gids.tolist()
        self.parent.update(zip(keys, keys))
        self.bases.update(zip(keys, ((g,) for g in keys)))
        self.size.update(zip(keys, ks.tolist()))
        return gids

    def find(self, gid: int) -> int:
        root = gid
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[gid] != root:
            self.parent[gid], gid = root, self.parent[gid]
        return root

    def shape(self, gid: int) -> tuple[int, ...]:
        return tuple(self.size[b] for b in self.bases[gid])

    def merge(self, gids) -> int:
        roots = list(dict.fromkeys(self.find(g) for g in gids))
        if len(roots) == 1:
            return roots[0]
        bases = tuple(b for r in roots for b in self.bases[r])
        count = math.prod(self.size[b] for b in bases)
        self.check_limit(count, f"{len(bases)} interacting ties need {count} joint selections")
        new = self._next
        self._next += 1
        self.parent[new] = new
        self.bases[new] = bases
        for r in roots:
            self.parent[r] = new
        return new

    def lift(self, vals: np.ndarray, gid: int, root: int) -> np.ndarray:
        """Broadcast a table indexed by σ_gid to the assignment space of ``root`` ⊇ gid."""
        frm, to = self.bases[gid], self.bases[root]
        if frm == to:
            return vals
        k = len(frm)
        order = [frm.index(b) for b in to if b in frm]
        v = np.transpose(vals, order + list(range(k, vals.ndim)))
        v = v.reshape([self.size[b] if b in frm else 1 for b in to] + list(vals.shape[k:]))
        return np.broadcast_to(v, [self.size[b] for b in to] + list(vals.shape[k:]))


class JRep:
    """The representation (★) of one value's Jacobian: ``center`` (s, N) and ``tables``
    {gid: (rows, vals)} with rows sorted unique and vals of shape (*assignments, len(rows), N)."""

    __slots__ = ("center", "tables")

    def __init__(self, center: np.ndarray, tables: dict | None = None):
        self.center = center
        self.tables = tables or {}

    @property
    def size(self) -> int:
        return self.center.shape[0]

    @property
    def ncols(self) -> int:
        return self.center.shape[1]

    def canonical(self, ch: Choices) -> JRep:
        """Re-key tables by their current root group, lifting and summing where groups merged."""
        if all(ch.find(g) == g for g in self.tables):
            return self
        out: dict = {}
        for gid, (rows, vals) in self.tables.items():
            root = ch.find(gid)
            _add_table(out, root, rows, ch.lift(vals, gid, root))
        return JRep(self.center, out)

    def restrict(self, mask: np.ndarray) -> JRep:
        """Keep the rows where ``mask`` is true (others become zero)."""
        center = np.where(mask[:, None], self.center, 0.0)  # not a product: inf·0 would be nan
        tables = {}
        for gid, (rows, vals) in self.tables.items():
            keep = mask[rows]
            if keep.any():
                tables[gid] = (rows[keep], vals[..., keep, :])
        return JRep(center, tables)

    def take_rows(self, positions: np.ndarray) -> JRep:
        """The rows ``positions`` (in that order) as a new rep of size len(positions)."""
        positions = np.asarray(positions, dtype=np.int64)
        tables = {}
        for gid, (rows, vals) in self.tables.items():
            loc = np.searchsorted(rows, positions)
            loc = np.minimum(loc, len(rows) - 1)
            hit = rows[loc] == positions
            if hit.any():
                tables[gid] = (np.flatnonzero(hit), vals[..., loc[hit], :])
        return JRep(self.center[positions], tables)

    def to_matrix_set(self, ch: Choices, shape) -> MatrixSet:
        rep = self.canonical(ch)
        m, n = shape
        groups = []
        center = rep.center.reshape(-1).astype(np.float64).copy()
        cols = np.arange(n)
        for rows, vals in rep.tables.values():
            K = math.prod(vals.shape[:-2])
            pts = np.ascontiguousarray(vals).reshape(K, len(rows) * n)
            idx = (rows[:, None] * n + cols[None, :]).ravel()
            center[idx] += pts[0]
            pts = np.unique(pts - pts[0], axis=0)
            live = np.flatnonzero(np.any(pts != 0, axis=0))
            if len(pts) > 1 and len(live):
                pts = np.unique(pts[:, live], axis=0)
                groups.append(_Group(idx[live], pts))
        return MatrixSet._from_sparse((m, n), center, tuple(groups))


def _add_table(tables: dict, gid: int, rows: np.ndarray, vals: np.ndarray) -> None:
    """tables[gid] += (rows, vals), taking the union of row supports."""
    if gid not in tables:
        tables[gid] = (rows, np.array(vals))
        return
    r0, v0 = tables[gid]
    if np.array_equal(r0, rows):
        tables[gid] = (r0, v0 + vals)
        return
    union = np.union1d(r0, rows)
    out = np.zeros(np.broadcast_shapes(v0.shape[:-2], vals.shape[:-2]) + (len(union), v0.shape[-1]))
    out[..., np.searchsorted(union, r0), :] += v0
    out[..., np.searchsorted(union, rows), :] += vals
    tables[gid] = (union, out)


def add_reps(ch: Choices, reps) -> JRep | None:
    """J_1 + J_2 + ... with the *same* selections (tables of equal groups add up)."""
    reps = [r for r in reps if r is not None]
    if not reps:
        return None
    center = sum(r.center for r in reps[1:]) + reps[0].center
    tables: dict = {}
    for r in reps:
        for gid, (rows, vals) in r.canonical(ch).tables.items():
            _add_table(tables, gid, rows, vals)
    return JRep(center, tables)


def choose(ch: Choices, base: JRep, blocks, gids=None) -> JRep:
    """Add the selections of nonsmooth primitives to ``base``.

    ``blocks`` is a list of (positions P, options) where options is a list of K ≥ 2 reps, each of
    size len(P): the rows of the result at P are those of option a for the selection a of a new
    base choice.  ``base`` must be zero on every P.  A block whose options do not depend on
    earlier selections becomes an independent group (the zonotope case, no merging); otherwise
    it is merged with the groups it touches.  ``gids`` (optional, one per block) are fresh base
    choices created by the caller (``Choices.new_group(K)``) to be used instead of new ones, when
    other values must depend on the same choices (``sort``'s integer operands).
    """
    out = base.canonical(ch)
    tables = dict(out.tables)
    blocks = [(P, [o.canonical(ch) for o in options]) for P, options in blocks]
    free = set()
    if gids is None and ch.free is not None:
        # a group that only this block's options depend on (the value it came from is used for
        # the last time here) needs no joint enumeration with the new choice: its selections
        # are enumerated option by option and the group disappears
        users: dict = {}
        for idx, (_, options) in enumerate(blocks):
            for g in {g for o in options for g in o.tables}:
                users.setdefault(g, set()).add(idx)
        lone = {g for g, u in users.items() if len(u) == 1} - set(tables)
        free = ch.free(lone) if lone else set()
    for idx, (P, options) in enumerate(blocks):
        P = np.asarray(P, dtype=np.int64)
        K = len(options)
        options = [o.canonical(ch) for o in options]  # earlier blocks may have merged groups
        touched = sorted({g for o in options for g in o.tables})
        if touched and set(touched) <= free:
            _add_table(tables, *_absorbed(ch, P, options))
            continue
        b = ch.new_group(K) if gids is None else gids[idx]
        root = ch.merge([b] + touched) if touched else b
        if touched:
            # existing tables of merged groups are re-keyed to the root in `tables` below
            new_tables: dict = {}
            for gid, (rows, vals) in tables.items():
                r = ch.find(gid)
                _add_table(new_tables, r, rows, ch.lift(vals, gid, r))
            tables = new_tables
        shape = ch.shape(root)
        T = np.zeros(shape + (len(P), out.ncols))
        for a, o in enumerate(options):
            Ta = T[a]  # base choice b is the first axis of the root's assignment space
            Ta += o.center
            for gid, (rows, vals) in o.tables.items():
                lifted = ch.lift(vals, gid, root)[a]
                Ta[..., rows, :] += lifted
        _add_table(tables, root, np.sort(P), T[..., np.argsort(P), :])
    return JRep(out.center, tables)


def _absorbed(ch: Choices, P: np.ndarray, options):
    """(gid, rows, table) of a new group whose options are every selection of every option:
    option a under each joint assignment of the groups it depends on (which nothing else uses),
    duplicates removed.  The hull is that of the joint enumeration, at the cost of the sum over
    options instead of the product."""
    mats = []
    for o in options:
        roots = list(o.tables)
        shapes = [ch.shape(g) for g in roots]
        for a in itertools.product(*[list(np.ndindex(sh)) for sh in shapes]):
            M = o.center.copy()
            for g, ag in zip(roots, a):
                rows, vals = o.tables[g]
                M[rows] += vals[ag]
            mats.append(M)
    mats = np.unique(np.stack(mats).reshape(len(mats), -1), axis=0).reshape((-1,) + mats[0].shape)
    ch.check_limit(len(mats), f"a choice among {len(options)} options over their own ties has {len(mats)} selections")
    order = np.argsort(P)
    return ch.new_group(len(mats)), P[order], mats[:, order, :]


def choose_joint(ch: Choices, bases, options, size: int, ncols: int) -> JRep:
    """The rep equal to ``options[a]`` when the existing base choices ``bases`` take the joint
    option a (options listed in ``np.ndindex`` order of their sizes; ``None`` is zero).

    Used where several values depend on the *same* choice (an ``argmax`` index read twice):
    unlike :func:`choose` no new base choice is created, so the selections stay correlated."""
    options = [JRep(np.zeros((size, ncols))) if o is None else o.canonical(ch) for o in options]
    touched = sorted({g for o in options for g in o.tables})
    root = ch.merge(list(bases) + touched)
    shape = ch.shape(root)
    axes = [ch.bases[root].index(b) for b in bases]
    T = np.zeros(shape + (size, ncols))
    for a, o in zip(np.ndindex(tuple(ch.size[b] for b in bases)), options):
        index = [slice(None)] * len(shape)
        for ax, ai in zip(axes, a):
            index[ax] = ai
        index = tuple(index)
        T[index] += o.center
        for gid, (rows, vals) in o.tables.items():
            T[index][..., rows, :] += ch.lift(vals, gid, root)[index]
    return JRep(np.zeros((size, ncols)), {root: (np.arange(size), T)})

"""TD's unification loop on integer node ids, bounded by `merge_iterations`.

Nodes are numbered 0..n-1 in leader order: a smaller number is the better leader
(canonical_id: key priority, then value; persistent_id: earliest seen first). The graph is a
set of rows (follower, leader), as in TD's `{id}_graph`:

- init: every record's values follow the record's smallest value, so leader <= follower.
- one iteration (TD's loop, as its generated SQL does it): every leader also follows
  itself; each follower's best leader is the smallest of its leaders; every leader L moves to
  the smallest best-leader among the followers that have L; rows are re-pointed and deduped.
  Because a leader follows itself, it picks up its own leader's leader: distances shrink by
  about half per iteration (a chain of n values needs ceil(log2(n - 1)) iterations).
- a component has converged when all its rows share one leader (then no iteration changes
  it). After `max_iterations` iterations a component that has not is left split, as TD
  leaves it: each node then takes the smallest of its leaders.

Components never interact, so the components of the graph (scipy's connected components in
C, one pass) are used to take converged ones out of play after every iteration: only the
rows of unsettled components are iterated, which is what makes this fast.

`do_not_merge_key` (TD's docs, "What is do_not_merge_key?"): values of that key never
follow one another, so two of them never share a profile. Its values are the best leaders
(it must be the first of `merge_by_keys`), so in the loop they are `fixed`: a fixed leader
does not move to a better leader. A component holding two of them can never have one
leader; it is settled when an iteration changes none of its rows, and each of its other
values then takes the smallest of its leaders (the profile of the first such value it
reaches), as TD leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Node ids are int32 while they fit (half the memory of int64 at 10M values), else int64.
Ids = npt.NDArray[np.signedinteger[Any]]
NONE = np.iinfo(np.int64).max  # "no leader" in int64 arrays; none_of() for any id array
INT32_MAX = np.iinfo(np.int32).max


def id_dtype(size: int) -> type[np.signedinteger[Any]]:
    """The narrowest id type holding 0..size (and a sentinel above it)."""
    return np.int32 if size < INT32_MAX else np.int64


def none_of(ids: npt.NDArray[Any]) -> int:
    """The "no leader" sentinel of an id array's type (larger than every id)."""
    return int(np.iinfo(ids.dtype).max)


@dataclass
class LoopResult:
    leader: Ids  # per node: its (smallest) leader; the profile it belongs to
    component: Ids  # per node: its connected component
    kept_rows: tuple[Ids, Ids]  # (follower, leader) rows of the components in `kept_components`
    # Components whose rows keep several leaders: not converged, or held apart by
    # do_not_merge_key (sorted).
    kept_components: Ids
    open_components: Ids  # components not converged when the iterations ran out (sorted)
    split_components: Ids  # open components whose values ended in several profiles
    iterations: int  # iterations run (each changed some component)
    history: list[Snapshot] | None = None  # per iteration, when asked for (debug tables)


@dataclass
class Snapshot:
    """TD's graph after an iteration: every row of the components still iterating, and
    the settled nodes (component settled at or before it) with their final leader."""

    rows: tuple[Ids, Ids]
    settled: Ids  # nodes whose rows are (node, leader[node]) from now on


def record_rows(record: Ids, node: Ids, n_records: int) -> tuple[Ids, Ids]:
    """TD's initial rows: each value of a record follows the record's smallest value
    (in `node`'s id type)."""
    return node, record_leads(record, node, n_records)[record]


def record_leads(record: Ids, node: Ids, n_records: int) -> Ids:
    """Per record: its smallest value (none_of(node) for a record without one)."""
    lead = np.full(n_records, none_of(node), dtype=node.dtype)
    np.minimum.at(lead, record, node)
    return lead


def run_loop(
    n: int,
    follower: Ids,
    leader: Ids,
    max_iterations: int,
    fixed: npt.NDArray[np.bool_] | None = None,
    keep_history: bool = False,
) -> LoopResult:
    """Run TD's loop for at most `max_iterations` iterations on rows with leader <= follower.

    `fixed`: per node, a value of the do_not_merge_key (it never moves to another leader).
    `keep_history`: record a Snapshot per iteration (for `keep_debug_tables`).
    """
    dtype = id_dtype(n)
    follower = follower.astype(dtype, copy=False)
    leader = leader.astype(dtype, copy=False)
    comp = components(n, follower, leader)
    ncomp = int(comp.max()) + 1 if n else 0
    out = np.arange(n, dtype=dtype)  # a node without rows leads itself
    row_comp = comp[follower]
    lo, unsettled = _leaders(row_comp, leader, ncomp)
    active = unsettled[row_comp]
    del row_comp
    done = ~unsettled[comp] & (lo[comp] != none_of(lo))
    out[done] = lo[comp[done]]

    f, ldr = follower[active], leader[active]
    # Iterate on compact ids of the active nodes only (usually a small share of all nodes).
    nodes = np.flatnonzero(_marks(n, f)).astype(dtype)
    m = len(nodes)
    compact = np.empty(n, dtype=dtype)
    compact[nodes] = np.arange(m, dtype=dtype)
    f, ldr = compact[f], compact[ldr]
    del compact, active
    pinned = fixed[nodes] if fixed is not None and fixed[nodes].any() else None
    if pinned is not None:
        f, ldr = _dedupe(f, ldr, m)  # fixed points are found by comparing row sets
    kept_f: list[Ids] = []
    kept_l: list[Ids] = []
    history: list[Snapshot] | None = [] if keep_history else None
    settled_now: list[Ids] = [np.flatnonzero(done)]
    iterations, deduped = 0, len(f)
    while len(f) and iterations < max_iterations:
        before = _pair_keys(f, ldr, m) if pinned is not None else None
        f, ldr = _iterate(f, ldr, m, pinned)
        iterations += 1
        if pinned is not None:
            f, ldr = _dedupe(f, ldr, m)
        elif len(f) > 2 * deduped:  # duplicates change nothing; drop them now and then
            f, ldr = _dedupe(f, ldr, m)
            deduped = len(f)
        c = comp[nodes[f]]
        _, open_ = _leaders(c, ldr, ncomp)
        settled = ~open_[c]
        out[nodes[f[settled]]] = nodes[ldr[settled]]
        if history is not None:
            settled_now.append(nodes[f[settled]])  # one row each from now on
        if before is not None:
            # Held apart by do_not_merge_key: settled once an iteration changes none of its rows.
            changed = np.setxor1d(before, _pair_keys(f, ldr, m), assume_unique=True) // m
            still = np.zeros(ncomp, dtype=bool)
            still[comp[nodes[changed]]] = True
            held = ~settled & ~still[c]
            if held.any():
                kept_f.append(nodes[f[held]])
                kept_l.append(nodes[ldr[held]])
                best = np.full(m, none_of(ldr), dtype=ldr.dtype)
                np.minimum.at(best, f[held], ldr[held])
                hit = best != none_of(best)
                out[nodes[hit]] = nodes[best[hit]]
            settled |= held
        f, ldr = f[~settled], ldr[~settled]
        if history is not None:
            rows = (np.concatenate([nodes[f], *kept_f]), np.concatenate([nodes[ldr], *kept_l]))
            history.append(Snapshot(rows=rows, settled=np.concatenate(settled_now)))
    f, ldr = _dedupe(f, ldr, m)
    open_nodes = nodes[np.flatnonzero(_marks(m, f))]
    if len(f):
        best = np.full(m, none_of(ldr), dtype=ldr.dtype)
        np.minimum.at(best, f, ldr)
        left = best != none_of(best)
        out[nodes[left]] = nodes[best[left]]
    # Not converged is not always split: every value may already have the same best leader.
    _, split = _leaders(comp[open_nodes], out[open_nodes], ncomp)
    kept = (np.concatenate([nodes[f], *kept_f]), np.concatenate([nodes[ldr], *kept_l]))
    return LoopResult(
        leader=out,
        component=comp,
        kept_rows=kept,
        kept_components=np.flatnonzero(_marks(ncomp, comp[kept[0]])),
        open_components=np.flatnonzero(_marks(ncomp, comp[open_nodes])),
        split_components=np.flatnonzero(split),
        iterations=iterations,
        history=history,
    )


def components(n: int, follower: Ids, leader: Ids) -> Ids:
    """Connected components of the rows (scipy.sparse.csgraph, undirected)."""
    dtype = id_dtype(n)
    if n == 0:
        return np.empty(0, dtype=dtype)
    keep = follower != leader  # self rows connect nothing
    f, ldr = follower[keep], leader[keep]
    del keep
    graph = coo_matrix((np.ones(len(f), dtype=np.int8), (f, ldr)), shape=(n, n))
    del f, ldr
    _, labels = connected_components(graph.tocsr(), directed=False)
    ids: Ids = labels.astype(dtype, copy=False)
    return ids


def _iterate(f: Ids, ldr: Ids, m: int, pinned: npt.NDArray[np.bool_] | None) -> tuple[Ids, Ids]:
    """One TD iteration over rows on compact ids 0..m-1 (`pinned` leaders never move)."""
    leaders = np.flatnonzero(_marks(m, ldr)).astype(ldr.dtype)
    fe = np.concatenate([f, leaders])  # every leader also follows itself
    le = np.concatenate([ldr, leaders])
    best = np.full(m, none_of(le), dtype=le.dtype)
    np.minimum.at(best, fe, le)
    moved = np.full(m, none_of(le), dtype=le.dtype)
    np.minimum.at(moved, le, best[fe])
    if pinned is not None:
        moved[pinned] = np.flatnonzero(pinned)
    return fe, moved[le]


def _leaders(group: Ids, leader: Ids, ngroups: int) -> tuple[Ids, npt.NDArray[np.bool_]]:
    """Per group: its smallest leader, and whether its rows have more than one leader."""
    lo = np.full(ngroups, none_of(leader), dtype=leader.dtype)
    np.minimum.at(lo, group, leader)
    unsettled = np.zeros(ngroups, dtype=bool)
    unsettled[group[leader != lo[group]]] = True
    return lo, unsettled


def _marks(size: int, index: Ids) -> npt.NDArray[np.bool_]:
    """A boolean array with True at every index (a sort-free unique)."""
    mark = np.zeros(size, dtype=bool)
    mark[index] = True
    return mark


def unique_ints(values: Ids) -> Ids:
    # np.unique is slower than sort + compare on large int arrays (it may hash).
    s = np.sort(values)
    if len(s) == 0:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _pair_keys(f: Ids, ldr: Ids, m: int) -> npt.NDArray[np.int64]:
    """One int64 per (follower, leader) row (int32 ids would overflow f * m)."""
    return f.astype(np.int64) * m + ldr


def _dedupe(f: Ids, ldr: Ids, m: int) -> tuple[Ids, Ids]:
    key = unique_ints(_pair_keys(f, ldr, m))
    return (key // m).astype(f.dtype), (key % m).astype(f.dtype)

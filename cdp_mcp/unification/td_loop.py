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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

Ids = npt.NDArray[np.int64]
NONE = np.iinfo(np.int64).max


@dataclass
class LoopResult:
    leader: Ids  # per node: its (smallest) leader; the profile it belongs to
    component: Ids  # per node: its connected component
    open_rows: tuple[Ids, Ids]  # (follower, leader) rows of components not converged
    open_components: Ids  # components not converged when the iterations ran out (sorted)
    split_components: Ids  # open components whose values ended in several profiles
    iterations: int  # iterations run (each changed some component)


def record_rows(record: Ids, node: Ids, n_records: int) -> tuple[Ids, Ids]:
    """TD's initial rows: each value of a record follows the record's smallest value."""
    lead = np.full(n_records, NONE, dtype=np.int64)
    np.minimum.at(lead, record, node)
    return node.astype(np.int64, copy=False), lead[record]


def run_loop(n: int, follower: Ids, leader: Ids, max_iterations: int) -> LoopResult:
    """Run TD's loop for at most `max_iterations` iterations on rows with leader <= follower."""
    comp = components(n, follower, leader)
    ncomp = int(comp.max()) + 1 if n else 0
    out = np.arange(n, dtype=np.int64)  # a node without rows leads itself
    row_comp = comp[follower]
    lo, unsettled = _leaders(row_comp, leader, ncomp)
    done = ~unsettled[comp] & (lo[comp] != NONE)
    out[done] = lo[comp[done]]

    active = unsettled[row_comp]
    f, ldr = follower[active], leader[active]
    # Iterate on compact ids of the active nodes only (usually a small share of all nodes).
    nodes = np.flatnonzero(_marks(n, f))
    m = len(nodes)
    compact = np.empty(n, dtype=np.int64)
    compact[nodes] = np.arange(m, dtype=np.int64)
    f, ldr = compact[f], compact[ldr]
    iterations, deduped = 0, len(f)
    while len(f) and iterations < max_iterations:
        f, ldr = _iterate(f, ldr, m)
        iterations += 1
        if len(f) > 2 * deduped:  # duplicates change nothing; drop them now and then
            f, ldr = _dedupe(f, ldr, m)
            deduped = len(f)
        c = comp[nodes[f]]
        _, open_ = _leaders(c, ldr, ncomp)
        settled = ~open_[c]
        out[nodes[f[settled]]] = nodes[ldr[settled]]
        f, ldr = f[~settled], ldr[~settled]
    f, ldr = _dedupe(f, ldr, m)
    open_nodes = nodes[np.flatnonzero(_marks(m, f))]
    if len(f):
        best = np.full(m, NONE, dtype=np.int64)
        np.minimum.at(best, f, ldr)
        left = best != NONE
        out[nodes[left]] = nodes[best[left]]
    # Not converged is not always split: every value may already have the same best leader.
    _, split = _leaders(comp[open_nodes], out[open_nodes], ncomp)
    return LoopResult(
        leader=out,
        component=comp,
        open_rows=(nodes[f], nodes[ldr]),
        open_components=np.flatnonzero(_marks(ncomp, comp[open_nodes])),
        split_components=np.flatnonzero(split),
        iterations=iterations,
    )


def components(n: int, follower: Ids, leader: Ids) -> Ids:
    """Connected components of the rows (scipy.sparse.csgraph, undirected)."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    keep = follower != leader  # self rows connect nothing
    f, ldr = follower[keep], leader[keep]
    graph = coo_matrix((np.ones(len(f), dtype=np.int8), (f, ldr)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64, copy=False)


def _iterate(f: Ids, ldr: Ids, m: int) -> tuple[Ids, Ids]:
    """One TD iteration over rows on compact ids 0..m-1."""
    leaders = np.flatnonzero(_marks(m, ldr))
    fe = np.concatenate([f, leaders])  # every leader also follows itself
    le = np.concatenate([ldr, leaders])
    best = np.full(m, NONE, dtype=np.int64)
    np.minimum.at(best, fe, le)
    moved = np.full(m, NONE, dtype=np.int64)
    np.minimum.at(moved, le, best[fe])
    return fe, moved[le]


def _leaders(group: Ids, leader: Ids, ngroups: int) -> tuple[Ids, npt.NDArray[np.bool_]]:
    """Per group: its smallest leader, and whether its rows have more than one leader."""
    lo = np.full(ngroups, NONE, dtype=np.int64)
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


def _dedupe(f: Ids, ldr: Ids, m: int) -> tuple[Ids, Ids]:
    key = unique_ints(f * m + ldr)
    return key // m, key % m

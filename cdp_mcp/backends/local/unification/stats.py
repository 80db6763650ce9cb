"""`{id}_result_key_stats` and `{id}_source_key_stats`: TD's per-run histograms.

Rows per `from_table`: '*' (everything) and each source table (profiles / values that have
a value from it). Both tables are appended to on every run, with the run's `time`.

- result: `total_distinct` profiles; per merge key (`rank_keys`: merge_by_keys, then the
  keys of merged ids) `distinct_with_{key}` (profiles with a
  value of the key) and `histogram_{key}` ('n:profiles,...': how many profiles have n values).
- source: `total_distinct` groups before the loop (values sharing a record leader, TD's
  initial graph); per merge key `distinct_{key}` (distinct values read).

Computed with numpy over per-node arrays (key code, table bit set, leader).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cdp_mcp.backends.local.unification.spec import IdSpec, UnifySpec

Columns = list[tuple[str, str]]
Ints = npt.NDArray[np.int64]


@dataclass
class NodeArrays:
    key_code: Ints  # per node: its key's id_key_type
    tables: Ints  # per node: bit set of the source tables it was read from
    leader: Ints  # per node: its profile's leader
    initial_leader: Ints  # per node: its smallest leader before the loop


def result_columns(id_spec: IdSpec) -> Columns:
    cols = [("from_table", "VARCHAR"), ("total_distinct", "BIGINT")]
    cols += [(f"distinct_with_{k}", "BIGINT") for k in id_spec.rank_keys]
    cols += [(f"histogram_{k}", "VARCHAR") for k in id_spec.rank_keys]
    return [*cols, ("time", "BIGINT")]


def source_columns(id_spec: IdSpec) -> Columns:
    cols = [("from_table", "VARCHAR"), ("total_distinct", "BIGINT")]
    cols += [(f"distinct_{k}", "BIGINT") for k in id_spec.rank_keys]
    return [*cols, ("time", "BIGINT")]


def result_key_stats(
    spec: UnifySpec, id_spec: IdSpec, a: NodeArrays, run_time: int, sizes: Ints | None = None
) -> list[tuple[Any, ...]]:
    """`sizes`: values per leader (`profile_sizes(a.leader)`), when the caller has them."""
    n = len(a.leader)
    profiles = np.flatnonzero(profile_sizes(a.leader) if sizes is None else sizes)
    profile_tables = _profile_tables(a, profiles)
    per_key = [
        np.bincount(a.leader[a.key_code == spec.key(k).code], minlength=n)[profiles]
        for k in id_spec.rank_keys
    ]
    rows = []
    for name, bit in _from_tables(spec, id_spec):
        chosen = _member(profile_tables, bit)
        with_key, hist = [], []
        for counts in per_key:
            values = counts[chosen] if chosen is not None else counts
            values = values[values > 0]
            with_key.append(len(values))
            sizes = np.bincount(values) if len(values) else np.zeros(0, dtype=np.int64)
            hist.append(",".join(f"{s}:{c}" for s, c in enumerate(sizes.tolist()) if c))
        total = len(profiles) if chosen is None else int(np.count_nonzero(chosen))
        rows.append((name, total, *with_key, *hist, run_time))
    return rows


def profile_sizes(leader: Ints) -> Ints:
    """Values per node as a leader (0: not a leader)."""
    return np.bincount(leader, minlength=len(leader)) if len(leader) else np.zeros(0, np.int64)


def _profile_tables(a: NodeArrays, profiles: Ints) -> Ints:
    """Per profile (in `profiles`' order): the bit set of the tables its values came from.
    Every value from the same tables (one source table, as a profile-by-profile run has) is
    the same bit set for every profile, without a scatter of every value."""
    if len(a.tables) and a.tables.min() == a.tables.max():
        return np.full(len(profiles), a.tables[0], dtype=np.int64)
    every = np.zeros(len(a.leader), dtype=np.int64)
    np.bitwise_or.at(every, a.leader, a.tables)
    return every[profiles]


def source_key_stats(
    spec: UnifySpec, id_spec: IdSpec, a: NodeArrays, run_time: int
) -> list[tuple[Any, ...]]:
    rows = []
    for name, bit in _from_tables(spec, id_spec):
        member = _member(a.tables, bit)
        groups = a.initial_leader if member is None else a.initial_leader[member]
        codes = a.key_code if member is None else a.key_code[member]
        per_key = [int(np.count_nonzero(codes == spec.key(k).code)) for k in id_spec.rank_keys]
        rows.append((name, _distinct(groups, len(a.leader)), *per_key, run_time))
    return rows


def _member(tables: Ints, bit: int | None) -> npt.NDArray[np.bool_] | None:
    """Which entries have the table's bit (None: all of them, for '*' or when all do)."""
    if bit is None:
        return None
    member = (tables >> bit) & 1 == 1
    return None if member.all() else member


def _distinct(nodes: Ints, size: int) -> int:
    mark = np.zeros(size, dtype=bool)
    mark[nodes] = True
    return int(np.count_nonzero(mark))


def _from_tables(spec: UnifySpec, id_spec: IdSpec) -> list[tuple[str, int | None]]:
    """('*', None) then (table name, its bit in the nodes' table set)."""
    return [("*", None), *((t.name, t.table_id - 1) for t in spec.tables_for(id_spec))]

"""TD's unification loop (numpy) against a line-by-line Python model of TD's SQL loop, and
its converged result against networkx's connected components."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_mcp.backends.local.unification.td_loop import record_rows, run_loop

Rows = set[tuple[int, int]]


# -- the model: TD's loop as its generated SQL states it, one set operation per clause ----


def model_initial(records: list[list[int]]) -> Rows:
    """Each value of a record follows the record's smallest value."""
    return {(v, min(r)) for r in records for v in r}


def model_iteration(rows: Rows) -> tuple[Rows, bool]:
    leaders = {ldr for _, ldr in rows}
    followers = {f for f, _ in rows}
    ext = rows | {(ldr, ldr) for ldr in leaders if ldr in followers}  # leader -> leader
    best: dict[int, int] = {}
    for f, ldr in ext:
        best[f] = min(best.get(f, ldr), ldr)
    moved: dict[int, int] = {}  # older leader -> newer leader
    for f, ldr in ext:
        if ldr > best[f]:
            moved[ldr] = min(moved.get(ldr, best[f]), best[f])
    return {(f, moved.get(ldr, ldr)) for f, ldr in ext}, bool(moved)


def model_loop(records: list[list[int]], limit: int) -> tuple[Rows, int]:
    rows, used = model_initial(records), 0
    while used < limit:
        new, changed = model_iteration(rows)
        if not changed:
            break
        rows, used = new, used + 1
    return rows, used


def engine_loop(n: int, records: list[list[int]], limit: int):  # type: ignore[no-untyped-def]
    rid = np.array([i for i, r in enumerate(records) for _ in r], dtype=np.int64)
    node = np.array([v for r in records for v in r], dtype=np.int64)
    follower, leader = record_rows(rid, node, len(records))
    return run_loop(n, follower, leader, limit)


records_strategy = st.integers(min_value=1, max_value=40).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(
            st.lists(st.integers(0, n - 1), min_size=1, max_size=4, unique=True),
            min_size=1,
            max_size=60,
        ),
    )
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(records_strategy, st.integers(min_value=1, max_value=6))
def test_the_numpy_loop_is_tds_loop(case: tuple[int, list[list[int]]], limit: int) -> None:
    n, records = case
    rows, used = model_loop(records, limit)
    got = engine_loop(n, records, limit)
    assert got.iterations == used
    best: dict[int, int] = {}
    for f, ldr in rows:
        best[f] = min(best.get(f, ldr), ldr)
    for v in range(n):
        assert got.leader[v] == best.get(v, v), v  # a value in no record leads itself
    unfinished = set(got.open_components.tolist())
    open_rows = {(f, ldr) for f, ldr in rows if int(got.component[f]) in unfinished}
    assert set(zip(*(a.tolist() for a in got.kept_rows), strict=True)) == open_rows
    for f, ldr in rows:  # every other component has one leader
        if int(got.component[f]) not in unfinished:
            assert got.leader[f] == ldr
    for c in unfinished:  # split: the values of an unfinished component chose several leaders
        profiles = {int(got.leader[v]) for v in range(n) if got.component[v] == c}
        assert (c in set(got.split_components.tolist())) == (len(profiles) > 1)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(records_strategy)
def test_converged_clusters_are_networkx_components(case: tuple[int, list[list[int]]]) -> None:
    nx = pytest.importorskip("networkx")
    n, records = case
    got = engine_loop(n, records, 49)
    assert len(got.split_components) == 0
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    for r in records:
        graph.add_edges_from((r[0], v) for v in r[1:])
    for component in nx.connected_components(graph):
        assert {int(got.leader[v]) for v in component} == {min(component)}


@pytest.mark.parametrize("n", [3, 4, 5, 9, 17, 33, 100, 1025])
def test_a_chain_of_n_values_needs_ceil_log2_n_minus_1_iterations(n: int) -> None:
    """Leaders follow their own leaders, so each iteration halves the distance (not
    label propagation's one hop per iteration)."""
    chain = [[i, i + 1] for i in range(n - 1)]
    needed = math.ceil(math.log2(n - 1))
    enough = engine_loop(n, chain, 49)
    assert enough.iterations == needed and len(enough.split_components) == 0
    assert set(enough.leader.tolist()) == {0}
    short = engine_loop(n, chain, needed - 1) if needed > 1 else None
    if short is not None:
        assert short.iterations == needed - 1
        assert len(short.split_components) == 1
        assert len(set(short.leader.tolist())) > 1  # left split into several profiles
        assert short.leader.min() == 0


def test_a_chain_longer_than_merge_iterations_converges_when_log2_fits() -> None:
    chain = [[i, i + 1] for i in range(20)]  # 21 values, 20 hops: 5 iterations
    assert len(engine_loop(21, chain, 5).split_components) == 0
    assert len(engine_loop(21, chain, 4).split_components) == 1


def test_components_are_independent_and_a_lone_value_leads_itself() -> None:
    records = [[0, 1], [1, 2], [4], [5, 6]]
    got = engine_loop(7, records, 3)
    assert got.leader.tolist() == [0, 0, 0, 3, 4, 5, 5]
    assert got.iterations == 1


# -- do_not_merge_key: fixed leaders never move ---------------------------------------


def model_fixed_loop(records: list[list[int]], fixed: set[int], limit: int) -> Rows:
    """TD's loop with do_not_merge_key: a leader of that key does not move to another
    leader; run until nothing changes (or the limit)."""
    rows = model_initial(records)
    for _ in range(limit):
        leaders = {ldr for _, ldr in rows}
        followers = {f for f, _ in rows}
        ext = rows | {(ldr, ldr) for ldr in leaders if ldr in followers}
        best: dict[int, int] = {}
        for f, ldr in ext:
            best[f] = min(best.get(f, ldr), ldr)
        moved: dict[int, int] = {}
        for f, ldr in ext:
            if ldr > best[f] and ldr not in fixed:
                moved[ldr] = min(moved.get(ldr, best[f]), best[f])
        new = {(f, moved.get(ldr, ldr)) for f, ldr in ext}
        if new == rows:
            break
        rows = new
    return rows


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(records_strategy, st.integers(min_value=1, max_value=5))
def test_fixed_values_never_share_a_profile_and_the_rest_follows_tds_loop(
    case: tuple[int, list[list[int]]], n_fixed: int
) -> None:
    n, records = case
    fixed = set(range(min(n_fixed, n)))  # the best leaders, as do_not_merge_key's values are
    # A record carries at most one do_not_merge_key value (else TD links them itself).
    records = [[v for v in r if v not in fixed] + [v for v in r if v in fixed][:1] for r in records]
    records = [r for r in records if r]
    rid = np.array([i for i, r in enumerate(records) for _ in r], dtype=np.int64)
    node = np.array([v for r in records for v in r], dtype=np.int64)
    follower, leader = record_rows(rid, node, len(records))
    mask = np.zeros(n, dtype=bool)
    mask[list(fixed)] = True
    got = run_loop(n, follower, leader, 49, fixed=mask)
    rows = model_fixed_loop(records, fixed, 49)
    best: dict[int, int] = {}
    for f, ldr in rows:
        best[f] = min(best.get(f, ldr), ldr)
    for v in range(n):
        assert got.leader[v] == best.get(v, v), v
    assert len({int(got.leader[v]) for v in fixed}) == len(fixed)  # each its own profile
    assert len(got.split_components) == 0  # held apart is not left split

"""Phase timings against the expected timeline, as the reports show them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cdp_mcp.core.phases import ORDER, Phase
from cdp_mcp.pipeline.nextstep import execute_step
from cdp_mcp.pipeline.reports.timeline import (
    EXPECTED_TIMELINE,
    fmt_seconds,
    phase_timing,
    timeline_rows,
)
from cdp_mcp.pipeline.state import PipelineState, StepState

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def _state_with(
    phase: Phase, workflow_minutes: list[float], overhead_minutes: float
) -> PipelineState:
    state = PipelineState(
        config_path="acme.yml", config_hash="h", client="acme", backend="local", sources=["shopify"]
    )
    ps = state.phase(phase)
    at = T0
    ps.steps["generate"] = StepState(
        name="generate", started_at=at, finished_at=at + timedelta(minutes=overhead_minutes)
    )
    at += timedelta(minutes=overhead_minutes)
    for i, minutes in enumerate(workflow_minutes):
        wf = f"wf{i}"
        ps.workflows.append(wf)
        ps.steps[execute_step(wf)] = StepState(
            name=execute_step(wf), started_at=at, finished_at=at + timedelta(minutes=minutes)
        )
        at += timedelta(minutes=minutes)
    return state


@pytest.mark.parametrize(
    ("phase", "workflow_minutes", "verdict"),
    [
        (Phase.INGESTION, [5, 5], "faster than the range"),  # range 15-60
        (Phase.INGESTION, [10, 10], "within the range"),
        (Phase.STAGING, [46], "slower than the range"),  # range 20-45
        (Phase.UNIFICATION, [30], "within the range"),  # range 30-90, the low end counts
    ],
)
def test_workflow_time_is_judged_against_the_expected_range(
    phase: Phase, workflow_minutes: list[float], verdict: str
) -> None:
    timing = phase_timing(_state_with(phase, workflow_minutes, overhead_minutes=2).phase(phase))
    assert timing.workflow_seconds == pytest.approx(sum(workflow_minutes) * 60)
    assert timing.seconds == pytest.approx((sum(workflow_minutes) + 2) * 60)
    assert timing.against_range == verdict
    estimate = EXPECTED_TIMELINE[phase].estimate_minutes * 60
    assert timing.share_of_estimate == pytest.approx(timing.seconds / estimate)


def test_rows_cover_every_phase_and_total_the_expected_estimate() -> None:
    rows, total = timeline_rows(_state_with(Phase.HIST_UNION, [12], overhead_minutes=3))
    assert [r[0] for r in rows] == [
        *(f"{p.value} (shopify)" for p in ORDER[:3]),
        "unification",
    ]
    by_phase = {r[0].removesuffix(" (shopify)"): r for r in rows}
    assert by_phase["hist_union"][1:4] == ["15 min", "12 min", "~30 min"]
    assert by_phase["hist_union"][5:] == ["within the range", "50.0%"]
    assert by_phase["ingestion"][1] == "-" and by_phase["ingestion"][5] == "not run"
    # 60 + 30 + 45 + 90 minutes: the README's "3-4 hours"
    assert total[0] == "total" and total[3] == "~3 h 45 min (3-4 hours)"
    assert total[6] == f"{15 / 225:.1%}"


def test_seconds_read_naturally() -> None:
    assert fmt_seconds(None) == "-"
    assert fmt_seconds(4.26) == "4.3 s"
    assert fmt_seconds(754) == "12 min 34 s"
    assert fmt_seconds(5400) == "1 h 30 min"
    assert fmt_seconds(3600) == "1 h"

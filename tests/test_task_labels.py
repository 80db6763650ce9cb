"""Task names reach a person decoded: Digdag's for_each> children carry their value
URL-encoded in the name; the real name stays the id get_logs takes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio

from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.core.phases import Phase
from cdp_mcp.pipeline import sessions
from cdp_mcp.pipeline.models import NextAction
from cdp_mcp.pipeline.state import PhaseState, StepState

WF = """+load_historical:
  for_each>:
    datasource: [{"name": "orders"}]
  _do:
    +load:
      fail>: no rows for ${datasource.name}
"""


def test_a_for_each_child_is_shown_decoded_and_found_by_its_real_name(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "wf.dig").write_text(WF)
    backend = LocalBackend(tmp_path / "ws")

    async def scenario() -> None:
        await backend.push("proj", tmp_path / "proj")
        started = await backend.start("proj", "wf", datetime(2026, 1, 1, tzinfo=UTC))
        attempt = await backend.wait(started.id, 60)
        assert attempt.status == "error"
        tasks = await backend.tasks(attempt.id)
        failed = sessions.failed_tasks(tasks)[0]
        assert "%7B%22name%22%3A" in failed.full_name  # Digdag's own name, encoded
        shown = sessions.task_errors(tasks)
        assert '=0={"name":+load: ' in shown and "%7B" not in shown
        result = await sessions.session_result(
            backend,
            PhaseState(phase=Phase.INGESTION, source="shopify"),
            attempt.created_at,
            attempt,
            tasks,
            False,
            NextAction(tool="get_logs", arguments={}, why=""),
            datetime.now(UTC),
        )
        task = result.failed_tasks[0]
        assert task.name == failed.full_name and "%7B" not in task.label
        assert task.label.endswith('+for-0=datasour=0={"name":+load')
        assert "no rows for orders" in task.log_tail  # the real name still finds its log
        logs = await sessions.logs_page(backend, attempt.id, task.name, 0)
        assert "no rows for orders" in logs.text
        step = StepState(name="execute:wf", session_id=started.session_id)
        view = sessions.progress_view(
            step, PhaseState(phase=Phase.INGESTION, source="shopify"), attempt, tasks, 1.0
        )
        assert all("%7B" not in t for t in view.running_tasks)

    anyio.run(scenario)


def test_the_text_summary_names_a_failed_task_as_a_person_reads_it() -> None:
    from cdp_mcp.pipeline.models import FailedTask, SessionResult
    from cdp_mcp.pipeline.summaries import summary

    real = "+wf+load^sub+for-0=datasour=1=%7B%22name%22%3A+load"
    label = sessions.task_label(real)
    assert label != real
    result = SessionResult(
        session_id="1",
        attempt_id="1",
        phase="ingestion",
        workflow="wf",
        status="error",
        elapsed_seconds=1.0,
        tasks_total=2,
        tasks_done=2,
        tasks_by_state={"error": 1},
        failed_tasks=[FailedTask(name=real, label=label, error="boom", log_tail="")],
        next_action=NextAction(tool="get_logs", why="read the log"),
    )
    text = summary(result)
    assert f"{label}: boom" in text and "%7B" not in text, text

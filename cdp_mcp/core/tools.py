"""The MCP tools' names: the one place they are spelled.

The server registers each tool under its member's value, the orchestrator names its steps
with them, `next_action.tool` is one of them (or `ask_person`, which is not a tool: a person
must choose), and the headless runner dispatches on them.
"""

from __future__ import annotations

from enum import StrEnum


class ToolName(StrEnum):
    INIT_PIPELINE = "init_pipeline"
    GENERATE_PHASE = "generate_phase"
    PUSH_PROJECT = "push_project"
    SET_SECRETS = "set_secrets"
    START_WORKFLOW = "start_workflow"
    GET_SESSION = "get_session"
    GET_LOGS = "get_logs"
    VALIDATE_TABLES = "validate_tables"
    QUERY = "query"
    PIPELINE_STATUS = "pipeline_status"
    SKIP_PHASE = "skip_phase"
    ABORT_PIPELINE = "abort_pipeline"
    FINAL_REPORT = "final_report"
    INSPECT_SOURCE = "inspect_source"
    DRAFT_CONFIG = "draft_config"


# next_action's answer when only a person can decide (out of attempts, a run to resume).
ASK_PERSON = "ask_person"

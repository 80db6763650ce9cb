"""What to do next: kept for the modules that import it here; the rules live in
`cdp_mcp.pipeline.rules.advice`."""

from cdp_mcp.pipeline.rules.advice import (
    decision_choices,
    format_call,
    next_action,
    next_for_phase,
)
from cdp_mcp.pipeline.rules.budget import DONE, out_of_attempts
from cdp_mcp.pipeline.rules.steps import execute_step

__all__ = [
    "DONE",
    "decision_choices",
    "execute_step",
    "format_call",
    "next_action",
    "next_for_phase",
    "out_of_attempts",
]

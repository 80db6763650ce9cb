"""The words of one counted step (StepPlan) and of its failures, for Pipeline._attempt."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from cdp_mcp.backends.base import BackendError
from cdp_mcp.core.phases import Phase
from cdp_mcp.pipeline.state import PhaseState, PipelineState

log = logging.getLogger("cdp_mcp.pipeline.orchestrator")
_T = TypeVar("_T")


class StepFailed(Exception):
    """A counted failure of a step's I/O, in the words to record (e.g. a rejected project)."""


@dataclass(frozen=True)
class StepPlan:
    """One counted step of a phase, as `Pipeline._attempt` runs it."""

    phase: Phase
    source: str | None  # the stage's source (None: unification)
    step: str  # the step's name in the state: deploy, execute:<workflow>, validate
    what: str  # the budget's words: "deploying ingestion already failed 3 times"
    failed: str  # the failure's words: "push failed: <the backend's error>"
    doing: str  # an internal error's words: "pushing ingestion failed with ..."
    expected: tuple[type[Exception], ...] = (BackendError,)
    bare_record: bool = False  # record an expected failure as the error alone
    attempt_note: bool = False  # the refusal says which attempt of MAX_ATTEMPTS failed


# A step's preconditions under the state lock: the plan of its attempt, and what its I/O needs.
PrepareFn = Callable[[PipelineState, PhaseState], Awaitable[tuple[StepPlan, _T]]]


def internal_error(error: Exception, what: str) -> str:
    """An unexpected error: logged with its traceback, returned as words for the agent."""
    log.exception("%s failed", what)
    return (
        f"{what} failed with an internal error ({type(error).__name__}: {error}); the step "
        "was recorded as failed. This is a cdp-mcp bug: report it with the server log; "
        "retrying may help if the cause was passing"
    )

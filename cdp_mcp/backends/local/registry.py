"""The local backend's process-wide state, in one place: open warehouses and running attempts.

It must be process-wide: DuckDB refuses a second instance of one file within a process, so
every LocalRuntime (and emulator) on a workspace shares one `Warehouse`; and an attempt
started by one LocalRuntime runs on a thread of this process, so another LocalRuntime of the
same workspace must find it to wait on it or kill it. At exit the attempts still running are
interrupted and given time to unwind (see `_stop_runs_at_exit`).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cdp_mcp.backends.local.store import StateStore

if TYPE_CHECKING:  # types only: both modules build on the store this one reads
    from cdp_mcp.backends.local.engine import AttemptRun
    from cdp_mcp.backends.local.warehouse import Warehouse

RUNNER_TOKEN = uuid.uuid4().hex  # marks the attempts run by this process
RunKey = tuple[str, int]  # (state file, attempt id)
_EXIT_GRACE_SECONDS = 10.0


class Runs:
    """Attempts running on threads of this process, by state file and attempt id.

    `lock` also serialises creating an attempt with registering its run, and reaping stale
    attempts, so a run is never reaped between the two.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._finished = threading.Condition(self.lock)  # notified when a run ends
        self._active: dict[RunKey, AttemptRun] = {}

    def add(self, key: RunKey, run: AttemptRun) -> None:
        """Register a run (the caller holds `lock`)."""
        self._active[key] = run

    def running(self, key: RunKey) -> bool:
        """Whether `key` runs here (the caller holds `lock`)."""
        return key in self._active

    def finish(self, key: RunKey) -> None:
        with self.lock:
            self._active.pop(key, None)
            self._finished.notify_all()

    def get(self, key: RunKey) -> AttemptRun | None:
        with self.lock:
            return self._active.get(key)

    def wait(self, key: RunKey, timeout: float) -> bool:
        """Wait up to `timeout` s for the run to end; False when it does not run here."""
        with self._finished:
            if key not in self._active:
                return False
            self._finished.wait_for(lambda: key not in self._active, timeout=max(0.0, timeout))
            return True

    def stop_all(self, grace: float) -> None:
        """Interrupt every run, record it as interrupted, and wait `grace` s for them to end."""
        with self.lock:
            runs = list(self._active.items())
        for (state_file, attempt_id), run in runs:
            with contextlib.suppress(Exception):  # the store may be gone; the cancel matters
                StateStore(Path(state_file)).mark_interrupted(attempt_id)
            run.cancel()
        with self._finished:
            self._finished.wait_for(lambda: not self._active, timeout=grace)


class Warehouses:
    """One `Warehouse` per DuckDB file in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Path, Warehouse] = {}

    def at(self, path: Path, make: Callable[[Path], Warehouse]) -> Warehouse:
        key = path.resolve()
        with self._lock:
            found = self._open.get(key)
            if found is None:
                found = self._open[key] = make(key)
            return found


RUNS = Runs()
WAREHOUSES = Warehouses()


def _stop_runs_at_exit() -> None:
    """Interrupt attempts still running when the process exits, and let them unwind.

    Interpreter teardown stops daemon threads wherever they are; one stopped inside a DuckDB
    query aborts the whole process ("FATAL: exception not rethrown", exit 134). An attempt
    ended here is recorded as failed, as a dead runner's attempt would be.
    """
    RUNS.stop_all(_EXIT_GRACE_SECONDS)


atexit.register(_stop_runs_at_exit)

"""Per-task logs stored like TD's log API serves them: gzip files listed per attempt.

File names follow TD's `+wf+task@<hex time>.<agent>.log.gz`, with `local` as the agent.
On disk a file is named by task id and run, since full names hold characters (`^`, `&`,
`%`, `=`) some file systems dislike.
"""

from __future__ import annotations

import gzip
import threading
from datetime import UTC, datetime
from pathlib import Path

from cdp_mcp.backends.local.store import StateStore

_MAX_LINE = 4000  # one log line (e.g. a huge SQL) is cut to this many characters


class TaskLog:
    """Lines a task writes while it runs; saved when the run ends."""

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name
        self.started = datetime.now(UTC)
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def _add(self, level: str, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        with self._lock:
            for text in message.splitlines() or [""]:
                if len(text) > _MAX_LINE:
                    text = text[:_MAX_LINE] + f"... ({len(text) - _MAX_LINE} more characters)"
                self._lines.append(f"{stamp} +0000 [{level}] ({self.task_name}): {text}")

    def info(self, message: str) -> None:
        self._add("INFO", message)

    def warn(self, message: str) -> None:
        self._add("WARN", message)

    def error(self, message: str) -> None:
        self._add("ERROR", message)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self._lines) + "\n"


class LogStore:
    def __init__(self, root: Path, store: StateStore) -> None:
        self.root = root
        self.store = store
        self._lock = threading.Lock()

    def save(self, attempt_id: int, task_id: int, log: TaskLog) -> str:
        """Write the log gzip-compressed and index it; returns its TD-style file name."""
        data = gzip.compress(log.text().encode("utf-8"))
        millis = int(log.started.timestamp() * 1000)
        with self._lock:
            folder = self.root / str(attempt_id)
            folder.mkdir(parents=True, exist_ok=True)
            run = len(list(folder.glob(f"{task_id}-*.log.gz"))) + 1
            path = folder / f"{task_id}-{run}.log.gz"
            path.write_bytes(data)
            name = f"{log.task_name}@{millis:x}{'' if run == 1 else f'-{run}'}.local.log.gz"
            self.store.add_log(attempt_id, log.task_name, name, len(data), str(path))
        return name

    def read(self, path: str) -> str:
        return gzip.decompress(Path(path).read_bytes()).decode("utf-8", errors="replace")

"""What the emulator keeps beside the local runner's own state.

- workflow ids: Digdag starts an attempt by workflow id; the local runner knows workflows
  by (project, name). Ids are handed out once per pair and persisted, so they survive a
  restart of the emulator.
- revision names: TD keeps the name the client pushed (`?revision=`); the local runner names
  revisions by content. Both, and every name used (a reused name is a 409), are persisted.
- project secrets: kept in memory only, so a value is never written to disk or returned.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

STATE_DIR = ".cdp_emulator"


class EmulatorState:
    def __init__(self, workspace: Path) -> None:
        self.path = Path(workspace) / STATE_DIR / "state.json"
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {"workflows": {}, "revisions": {}, "names": {}}
        if self.path.is_file():
            self._data.update(json.loads(self.path.read_text(encoding="utf-8")))
        self._secrets: dict[str, dict[str, str]] = {}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self._data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    # workflow ids

    def workflow_id(self, project_id: str, workflow: str) -> str:
        key = f"{project_id}/{workflow}"
        with self._lock:
            ids: dict[str, str] = self._data["workflows"]
            if key not in ids:
                ids[key] = str(len(ids) + 1)
                self._save()
            return ids[key]

    def workflow_of(self, workflow_id: str) -> tuple[str, str] | None:
        """(project id, workflow name) of an id handed out before."""
        with self._lock:
            for key, value in self._data["workflows"].items():
                if value == str(workflow_id):
                    project_id, _, name = key.partition("/")
                    return project_id, name
        return None

    # revision names

    def revision_name_used(self, project: str, name: str) -> bool:
        with self._lock:
            return name in self._data["names"].get(project, [])

    def record_revision(self, project: str, local_name: str, name: str, md5: str) -> None:
        with self._lock:
            self._data["names"].setdefault(project, []).append(name)
            self._data["revisions"].setdefault(project, {})[local_name] = {"name": name, "md5": md5}
            self._save()

    def revision(self, project: str, local_name: str) -> dict[str, str]:
        """The client's name and archive md5 of a local revision (itself if never renamed)."""
        with self._lock:
            found = self._data["revisions"].get(project, {}).get(local_name)
        return dict(found) if found else {"name": local_name, "md5": ""}

    # secrets

    def secrets(self, project_id: str) -> list[str]:
        with self._lock:
            return sorted(self._secrets.get(project_id, {}))

    def set_secret(self, project_id: str, key: str, value: str) -> None:
        with self._lock:
            self._secrets.setdefault(project_id, {})[key] = value

    def delete_secret(self, project_id: str, key: str) -> None:
        with self._lock:
            self._secrets.get(project_id, {}).pop(key, None)

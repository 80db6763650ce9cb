"""The local backend's state file keeps what a runner committed when the runner is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from cdp_mcp.backends.local.store import StateStore


def test_a_killed_runner_leaves_its_committed_state(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    # The child commits a revision, then dies by SIGKILL without closing the store: no
    # checkpoint, no clean shutdown, as when a person kills `cdp-mcp run`.
    child = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from cdp_mcp.backends.local.store import StateStore
        store = StateStore(Path({str(path)!r}))
        store.save_revision("acme_unification", "r1", "md5", "/archive.tar.gz")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", child], env={**os.environ}, check=False)
    assert done.returncode == -signal.SIGKILL
    project = StateStore(path).project_by_name("acme_unification")
    assert project is not None
    assert project["revision_id"] is not None

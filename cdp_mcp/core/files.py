"""Writing the documents a team reads (reports, run logs) without ever showing half a file
or a secret (task logs and errors come from elsewhere; `redact` masks what they carry)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from cdp_mcp.core import redact


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` via a temp file and a rename; readable by the team (0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(redact.scrub(text))
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the report from the team
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

"""Write a rendered project into the workspace: only inside it, and all or nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath


class GenerationError(Exception):
    """A project could not be generated or written; the message says what to change."""


def write_project(workspace: Path, folder: str, files: dict[str, str]) -> Path:
    """Replace `workspace/folder` with exactly `files`; refuses paths outside the workspace.

    Files are written to a sibling temp folder first and swapped in, so an interrupted
    generation never leaves a half-written project.
    """
    ws = workspace.resolve()
    target = (ws / folder).resolve()
    if not target.is_relative_to(ws) or target == ws:
        raise GenerationError(f"refusing to write {folder!r}: it is outside the workspace {ws}")
    for rel in files:
        p = PurePosixPath(rel)
        if p.is_absolute() or ".." in p.parts:
            raise GenerationError(f"refusing to write {rel!r}: it is outside the project folder")
    ws.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would make the project folder private
    try:
        for rel, text in sorted(files.items()):
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8", newline="\n")
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target

"""Write a rendered project into the workspace: only inside it, all or nothing, and replacing
only the files cdp-mcp wrote there before (cdp_mcp/core/manifest.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from cdp_mcp.core.errors import CdpError
from cdp_mcp.core.manifest import Manifest, Recorded, conflict_message, digest, file_digest, unowned
from cdp_mcp.core.workspace import MARK


class GenerationError(CdpError):
    """A project could not be generated or written; the message says what to change."""


def write_project(
    workspace: Path, folder: str, files: dict[str, str], keep_aside: Path | None = None
) -> Path:
    """Replace `workspace/folder` with exactly `files`; refuses paths outside the workspace.

    Files are written to a sibling temp folder first and swapped in, so an interrupted
    generation never leaves a half-written project. The folder's files cdp-mcp did not write,
    or that changed since it wrote them, are never deleted: the write is refused, naming
    them, unless `keep_aside` names a folder to move them into first.
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
    manifest = Manifest(ws, target.relative_to(ws).as_posix().replace("/", "_"))
    new = {rel: digest(text.encode("utf-8")) for rel, text in files.items()}
    with manifest.locked():
        recorded = manifest.load()
        if target.exists():
            foreign, changed = unowned(target, recorded) if target.is_dir() else ([folder], [])
            if (foreign or changed) and keep_aside is None:
                raise GenerationError(
                    conflict_message(
                        target,
                        foreign,
                        changed,
                        recorded,
                        f"Move them out of {target} (copy an edit you want to keep into the "
                        "pipeline config), then generate again; or generate with "
                        f"`cdp-mcp generate CONFIG {folder} --keep-aside`, which moves them "
                        f"into {ws / '.cdp_state' / 'kept'} first.",
                    )
                )
        manifest.save(recorded.files, pending=new)
        _swap_in(target, files, recorded, keep_aside or kept_folder(ws, folder))
        manifest.save(new)
    return target


def kept_folder(ws: Path, folder: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return ws / MARK / "kept" / f"{folder}-{stamp}"


def _swap_in(target: Path, files: dict[str, str], recorded: Recorded, keep: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would make the project folder private
    try:
        for rel, text in sorted(files.items()):
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8", newline="\n")
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        _clear_old(old / target.name, recorded, keep)
        old.rmdir()


def _clear_old(folder: Path, recorded: Recorded, keep: Path) -> None:
    """Delete the replaced folder's own files; anything else goes to `keep` (never deleted)."""
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            sha = file_digest(path)
            if sha is not None and recorded.owns(rel, sha):
                path.unlink()
    for dirpath, _, _ in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        if not any(Path(dirpath).iterdir()) and not Path(dirpath).is_symlink():
            Path(dirpath).rmdir()
    if folder.exists():
        # Only with keep_aside (or a file that appeared since the check): moved, never lost.
        keep.parent.mkdir(parents=True, exist_ok=True)
        if keep.exists():
            keep = Path(tempfile.mkdtemp(prefix=f"{keep.name}-", dir=keep.parent))
        os.replace(folder, keep)

"""What cdp-mcp wrote into its workspace, so that it replaces or deletes only that.

Each area of the workspace cdp-mcp writes (a phase folder, `reports`, `pipeline_logs`) has
a manifest, `.cdp_state/manifests/{area}.json`: every file it wrote there with the SHA-256
of what it wrote. A file the manifest does not list, or whose content changed since, is a
person's: cdp-mcp never deletes or overwrites it. A person who edited a generated file by
hand is told which files and what to do (move them, or have them kept aside); nothing they
did is discarded without their say-so.

`pending` lists the files of a replacement being swapped in, so a crash between the swap
and the manifest's update still leaves every file accounted for.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cdp_mcp.core.errors import CdpError
from cdp_mcp.core.files import write_text_atomic
from cdp_mcp.core.workspace import MARK

KIND = "cdp-mcp/manifest"


class FileConflictError(CdpError):
    """A file cdp-mcp would replace is a person's; the message lists them and the way out."""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Recorded:
    files: dict[str, str] = field(default_factory=dict)  # relative posix path -> sha256
    pending: dict[str, str] = field(default_factory=dict)
    found: bool = False  # a manifest existed

    def owns(self, rel: str, sha: str) -> bool:
        return sha in (self.files.get(rel), self.pending.get(rel))

    def known(self, rel: str) -> bool:
        return rel in self.files or rel in self.pending


class Manifest:
    """The manifest of one area (`area` is a folder name directly under the workspace)."""

    def __init__(self, workspace: Path, area: str) -> None:
        self.area = area
        self.directory = workspace / MARK / "manifests"
        self.path = self.directory / f"{area}.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise read-check-write of this area (run logs are written from many calls)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"{self.area}.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def load(self) -> Recorded:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Recorded()
        except (OSError, ValueError):
            # Unreadable: own nothing, so every file is left alone.
            return Recorded(found=True)
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            return Recorded(found=True)
        return Recorded(
            files=_str_map(doc.get("files")), pending=_str_map(doc.get("pending")), found=True
        )

    def save(self, files: dict[str, str], pending: dict[str, str] | None = None) -> None:
        doc = {"kind": KIND, "files": dict(sorted(files.items()))}
        if pending:
            doc["pending"] = dict(sorted(pending.items()))
        write_text_atomic(self.path, json.dumps(doc, indent=1) + "\n")


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def file_digest(path: Path) -> str | None:
    """The SHA-256 of a regular file; None for a symlink or anything else cdp-mcp never writes."""
    if path.is_symlink() or not path.is_file():
        return None
    return digest(path.read_bytes())


def unowned(folder: Path, recorded: Recorded) -> tuple[list[str], list[str]]:
    """(entries cdp-mcp did not write, files changed since it wrote them) under `folder`."""
    foreign: list[str] = []
    changed: list[str] = []
    ours = set(recorded.files) | set(recorded.pending)
    parents = {str(p) for rel in ours for p in PurePosixPath(rel).parents}
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        for name in dirnames:
            path = base / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                foreign.append(rel)
            elif rel not in parents and not any(path.iterdir()):
                foreign.append(rel + "/")  # an empty folder a person made
        for name in filenames:
            path = base / name
            rel = path.relative_to(folder).as_posix()
            sha = file_digest(path)
            if not recorded.known(rel) or sha is None:
                foreign.append(rel)
            elif not recorded.owns(rel, sha):
                changed.append(rel)
    return sorted(foreign), sorted(changed)


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def conflict_message(
    target: Path, foreign: list[str], changed: list[str], recorded: Recorded, how: str
) -> str:
    parts = []
    if foreign:
        origin = (
            ""
            if recorded.found
            else " (there is no manifest: an older cdp-mcp or a person made it)"
        )
        parts.append(f"not written by cdp-mcp{origin}: {_listing(foreign)}")
    if changed:
        parts.append(f"changed since cdp-mcp wrote them: {_listing(changed)}")
    return (
        f"{target} holds files that are not cdp-mcp's to replace; "
        + "; ".join(parts)
        + f". Nothing was changed. {how}"
    )


def write_owned(workspace: Path, files: dict[Path, str]) -> None:
    """Write documents (reports, run logs) inside the workspace, replacing only cdp-mcp's own.

    All of `files` are checked first, so either every one is written or none is.
    """
    by_area: dict[str, dict[str, tuple[Path, str]]] = {}
    for path, text in files.items():
        rel = path.relative_to(workspace)
        area, inner = rel.parts[0], PurePosixPath(*rel.parts[1:]).as_posix()
        by_area.setdefault(area, {})[inner] = (path, text)
    for area, entries in by_area.items():
        manifest = Manifest(workspace, area)
        with manifest.locked():
            recorded = manifest.load()
            theirs = [
                str(path)
                for inner, (path, _) in entries.items()
                if (path.exists() or path.is_symlink())
                and not recorded.owns(inner, file_digest(path) or "")
            ]
            if theirs:
                raise FileConflictError(
                    f"{_listing(theirs)}: not written by cdp-mcp, or changed since it wrote "
                    "them; cdp-mcp leaves them as they are. Move them elsewhere (or rename "
                    "them), then ask again"
                )
            written = dict(recorded.files)
            for inner, (path, text) in entries.items():
                write_text_atomic(path, text)
                written[inner] = digest(text.encode("utf-8"))
            manifest.save(written)

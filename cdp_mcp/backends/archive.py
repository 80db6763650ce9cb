"""Project archives as TD receives them: tar.gz, relative paths, no top folder, no dotfiles.

The archive is built deterministically (sorted entries, zeroed times and owners), so the
same files always give the same bytes and the same content-hash revision name.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from cdp_mcp.backends.base import BackendError


def project_files(directory: Path) -> list[Path]:
    """Files that go into the archive: everything except dot-files and dot-folders."""
    out = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file():
            out.append(path)
    return out


def build_archive(directory: Path) -> bytes:
    if not directory.is_dir():
        raise BackendError(f"project folder {directory} does not exist")
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in project_files(directory):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(directory).as_posix())
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def content_revision(archive: bytes) -> str:
    """Revision name from the archive's content: an unchanged project keeps its revision."""
    return hashlib.sha256(archive).hexdigest()[:20]


def archive_md5(archive: bytes) -> str:
    """Base64 MD5, the form of Digdag's `archiveMd5`."""
    return base64.b64encode(hashlib.md5(archive).digest()).decode()


def extract_archive(archive_path: Path, dest: Path) -> None:
    """Extract regular files only, and only inside `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with tarfile.open(archive_path, mode="r:gz") as tar:
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if not member.isfile() or not target.is_relative_to(root):
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())

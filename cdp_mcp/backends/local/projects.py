"""The local backend's projects: pushes, their content-addressed revisions and archives.

A push stores the project's archive under `projects/{name}/archives/` and its extracted files
under `projects/{name}/revisions/{revision}/`, where its workflows run from; the live folder
may change afterwards without changing a run.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from cdp_mcp.backends.archive import archive_md5, build_archive, content_revision, extract_archive
from cdp_mcp.backends.base import BackendError, NotFoundError, Project, ProjectRejectedError
from cdp_mcp.backends.local.store import StateRow, StateStore, parse_ts, stamp
from cdp_mcp.digdag.loader import DigError
from cdp_mcp.digdag.tasks import TaskNode, check_project, load_workflow_file

_PROJECT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class Projects:
    """Projects and revisions of one workspace's state folder (`home`)."""

    def __init__(self, home: Path, store: StateStore) -> None:
        self.home, self.store = home, store

    def push(self, project: str, directory: Path) -> Project:
        if not _PROJECT_NAME.match(project or ""):
            raise BackendError(
                f"invalid project name {project!r}: use letters, digits, '_', '-' and '.'"
            )
        directory = Path(directory).resolve()
        archive = build_archive(directory)
        revision = content_revision(archive)
        archive_path = self._stage(project, directory, archive, revision)
        proj, rev = self.store.save_revision(
            project, revision, archive_md5(archive), str(archive_path)
        )
        return Project(
            id=str(proj["id"]),
            name=proj["name"],
            revision=rev["name"],
            archive_md5=rev["archive_md5"],
            created_at=stamp(proj["created_at"]),
            updated_at=parse_ts(proj["updated_at"]),
        )

    def _stage(self, project: str, directory: Path, archive: bytes, revision: str) -> Path:
        """Check the archive's workflows compile, then keep it and its files; its path."""
        folder = self.folder(project)
        archive_path = folder / "archives" / f"{revision}.tar.gz"
        if archive_path.is_file() and (folder / "revisions" / revision).is_dir():
            return archive_path  # this very content passed the check when it was first kept
        tmp_root = self.home / "tmp"
        tmp_root.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
            staged = Path(tmp) / "archive.tar.gz"
            staged.write_bytes(archive)
            extracted = Path(tmp) / "project"
            extract_archive(staged, extracted)
            try:
                workflows = check_project(extracted)
            except DigError as e:
                raise ProjectRejectedError(f"push refused: {e}", e.file, e.line) from None
            if not workflows:
                raise ProjectRejectedError(
                    f"push refused: no workflow (*.dig) at the top of {directory}"
                )
            archive_path.parent.mkdir(parents=True, exist_ok=True)
            if not archive_path.exists():
                shutil.move(str(staged), archive_path)
            target = folder / "revisions" / revision
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(extracted), target)
        return archive_path

    def folder(self, project: str) -> Path:
        return self.home / "projects" / project

    def revision_dir(self, project: StateRow, revision: StateRow) -> Path:
        """The extracted archive workflows run from (re-extracted if it went missing)."""
        target = self.folder(str(project["name"])) / "revisions" / str(revision["name"])
        if not target.is_dir():
            extract_archive(Path(revision["archive_path"]), target)
        return target

    def current(self, project: str) -> tuple[StateRow, StateRow]:
        """The project's row and its current revision's."""
        proj = self.store.project_by_name(project)
        if proj is None or proj["revision_id"] is None:
            raise NotFoundError(f"project {project!r} has not been pushed to this workspace")
        rev = self.store.revision(proj["revision_id"])
        assert rev is not None
        return proj, rev

    def workflow_tree(
        self, project: StateRow, revision: StateRow, workflow: str
    ) -> tuple[Path, TaskNode]:
        """The revision's folder and the workflow's task tree, compiled."""
        root = self.revision_dir(project, revision)
        path = root / f"{workflow}.dig"
        if not path.is_file():
            names = ", ".join(sorted(p.stem for p in root.glob("*.dig"))) or "none"
            raise NotFoundError(
                f"workflow {workflow!r} not found in project {project['name']} (workflows: {names})"
            )
        try:
            return root, load_workflow_file(root, path)
        except DigError as e:
            raise BackendError(f"workflow {workflow} does not compile: {e}") from None

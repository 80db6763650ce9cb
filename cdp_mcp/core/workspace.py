"""Which folder may be a pipeline's workspace, on every path (MCP server and CLI alike).

A workspace receives a folder per phase, `reports/`, `pipeline_logs/`, `.cdp_state/` and
`.cdp_local/`, so it is refused when it is `/`, the home folder or a system folder (a
folder below `/etc`, `/usr`, ...), after resolving symlinks; and when it is a non-empty
folder cdp-mcp did not create. A workspace cdp-mcp created holds `.cdp_state/` (its state,
lock and manifests) or `.cdp_local/` (the local backend's warehouse): that is the mark. Inside its own workspace cdp-mcp still deletes or
replaces only the files it wrote (cdp_mcp/core/manifest.py).
"""

from __future__ import annotations

from pathlib import Path

from cdp_mcp.core.errors import CdpError

MARK = ".cdp_state"
MARKS = (MARK, ".cdp_local")
# Refused as a workspace, and so is every folder below them.
_SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/snap",
    "/sys",
    "/usr",
    "/var/lib",
    "/var/log",
    "/var/run",
    "/System",
    "/Library",
    "/Applications",
    "/private/etc",
    "/private/var/db",
)
# Refused as a workspace themselves; a new folder below them is fine (/tmp/x, /home/me/x).
_SHARED_FOLDERS = (
    "/",
    "/home",
    "/Users",
    "/root",
    "/tmp",
    "/var",
    "/var/tmp",
    "/opt",
    "/srv",
    "/mnt",
    "/media",
    "/private",
    "/private/tmp",
    "/private/var",
)


class WorkspaceError(CdpError):
    """A folder that cannot be a workspace; the message says which and what to use instead."""


def _resolved(paths: tuple[str, ...]) -> set[Path]:
    return {Path(p) for p in paths} | {Path(p).resolve() for p in paths}


def system_folder_problem(workspace: Path) -> str | None:
    """Why `workspace` can never be one (a system or shared folder), or None."""
    real = workspace.expanduser().resolve()
    shown = str(real) if real == workspace else f"{workspace} (resolves to {real})"
    shared = _resolved(_SHARED_FOLDERS) | {Path.home().resolve()}
    if real in shared:
        kind = "the root folder" if real == Path("/") else "a shared folder"
        example = Path.home() / "cdp" if real == Path("/") else real / "cdp"
        return (
            f"{shown} is {kind}; cdp-mcp would write its phase folders, reports/ and "
            f"pipeline_logs/ straight into it. Use a folder of its own, e.g. {example}"
        )
    for tree in sorted(_resolved(_SYSTEM_TREES)):
        if real.is_relative_to(tree):
            where = "the system folder" if real == tree else "inside the system folder"
            return (
                f"{shown} is {where} {tree}; a workspace holds generated projects, reports "
                "and the warehouse: put it under your home or project folder"
            )
    return None


def ownership_problem(workspace: Path) -> str | None:
    """Why cdp-mcp may not write into `workspace` as it is now, or None."""
    if system := system_folder_problem(workspace):
        return system
    if not workspace.exists() and not workspace.is_symlink():
        return None
    if not workspace.is_dir():
        return f"{workspace} exists and is not a folder; give global.workspace a new path"
    entries = sorted(p.name for p in workspace.iterdir())
    if not entries or any((workspace / mark).is_dir() for mark in MARKS):
        return None
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    return (
        f"{workspace} is a folder cdp-mcp did not create, and it is not empty ({shown}); "
        "cdp-mcp writes its phase folders, reports/ and pipeline_logs/ into its workspace, so "
        "it uses only a new or empty folder. Point global.workspace at a new path (e.g. "
        f"{workspace / 'cdp'}) or an empty folder"
    )


def check_workspace(workspace: Path) -> None:
    if problem := ownership_problem(workspace):
        raise WorkspaceError(f"global.workspace: {problem}")


def claim_workspace(workspace: Path) -> None:
    """Create the workspace (if new) and mark it as cdp-mcp's; refuses one it may not use."""
    check_workspace(workspace)
    (workspace / MARK).mkdir(parents=True, exist_ok=True)

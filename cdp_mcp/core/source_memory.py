"""What was learned about a source file, kept per version of the file from run to run, and
whether a newer version only appended to the version learned.

Learning a file's column types, or counting the rows a load leaves out, reads every row. A
day's extract usually grows by appended rows, so a rerun would read millions of rows to
learn about thousands. Here each fact is kept with the file's version (size, mtime, inode)
and a SHA-256 of its bytes; a later version whose first `old size` bytes still hash to the
kept digest (and which ended on a line end) is the old file plus an appended tail, and only
the tail needs reading (`appended`). Anything else (a rewrite, a truncation, an edit in the
middle) is a new file, learned from scratch. Verifying the prefix reads its bytes once,
without parsing them, which costs a fraction of one DuckDB pass over them.

The facts live in one JSON file per source under `$CDP_MCP_CACHE_DIR` (default
`~/.cache/cdp-mcp/source-files`), written atomically; an unreadable one is ignored and
learned again. They hold column names, types and counts, and a few unparseable timestamp
texts (what a validation reports anyway).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_ENV = "CDP_MCP_CACHE_DIR"
_CHUNK = 1 << 20
_FORMAT = 1  # bump when the kept facts change meaning


@dataclass(frozen=True)
class Version:
    """A file's identity on disk: what `stat` says, without reading it."""

    size: int
    mtime_ns: int
    ino: int

    @classmethod
    def of(cls, path: Path) -> Version:
        st = path.stat()
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)

    def as_dict(self) -> dict[str, int]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "ino": self.ino}


def store_dir() -> Path:
    base = os.environ.get(CACHE_ENV)
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".cache"
    return root / "cdp-mcp" / "source-files"


def _entry_file(path: Path) -> Path:
    name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return store_dir() / f"{name}.json"


def _load(path: Path) -> dict[str, Any] | None:
    try:
        entry = json.loads(_entry_file(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(entry, dict)
        and entry.get("format") == _FORMAT
        and entry.get("path") == str(path.resolve())
        and isinstance(entry.get("version"), dict)
        and isinstance(entry.get("facts"), dict)
    )
    return entry if ok else None


def recall(path: Path, facet: str, version: Version | None = None) -> Any:
    """The fact `facet` learned about this very version of `path`, or None."""
    entry = _load(path)
    version = version or Version.of(path)
    if entry is None or entry["version"] != version.as_dict():
        return None
    return entry["facts"].get(facet)


def remember(
    path: Path, facet: str, value: Any, version: Version, digest: str | None = None
) -> None:
    """Keep `value` as `facet` of `version` of `path` (the version read before learning it:
    a file that changed meanwhile keeps nothing). `digest` (SHA-256 of its bytes) lets a
    later, appended version be recognised; without it the entry's own is kept."""
    with lock(path):  # (a read, a change and a write of the file's one entry)
        _remember(path, facet, value, version, digest)


def _remember(path: Path, facet: str, value: Any, version: Version, digest: str | None) -> None:
    if Version.of(path) != version:
        return
    entry = _load(path)
    facts: dict[str, Any] = {}
    before = None
    if entry is not None and entry["version"] == version.as_dict():
        facts = dict(entry["facts"])
        digest = digest or entry.get("digest")
        before = entry.get("before")
    elif entry is not None and (tail := appended(path)) is not None:
        # the version appended to stays known until this one has learned all it did
        before = {"size": tail.old_size, "facts": tail.facts}
        digest = digest or tail.digest
    facts[facet] = value
    doc = {
        "format": _FORMAT,
        "path": str(path.resolve()),
        "version": version.as_dict(),
        "digest": digest,
        "facts": facts,
        "before": before,
    }
    target = _entry_file(path)
    with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


@dataclass(frozen=True)
class Tail:
    """`path` is the version learned before plus `raw`, the bytes appended since."""

    path: Path
    old_size: int
    facts: dict[str, Any]  # what was learned about the old version
    raw: Path  # the appended bytes alone (a private temp file)
    digest: str  # SHA-256 of the whole current file

    def readable(self) -> Path:
        """The tail as a file DuckDB reads like the source: a CSV tail under the source's
        header line, a JSONL tail as it is."""
        if self.path.suffix.lower() != ".csv":
            return self.raw  # (named with the source's suffix: the readers go by it)
        framed = self.raw.with_suffix(".csv")
        with lock(self.path):
            if framed.exists():
                return framed
            with self.path.open("rb") as src:
                header = src.readline()
            with framed.open("wb") as out:
                out.write(header)
                with self.raw.open("rb") as tail:
                    shutil.copyfileobj(tail, out, _CHUNK)
        return framed


def appended(path: Path) -> Tail | None:
    """The tail `path` gained since the version whose facts are kept, when that version is
    exactly its first bytes; else None (nothing kept, or the file is not an append)."""
    with lock(path):  # one thread writes a file's tail, the others wait for it
        return _appended(path.resolve(), Version.of(path))


def carried_sample(path: Path, facet: str, full: int) -> dict[str, Any] | None:
    """The fact `facet` (a sample of the file's first rows, with the `rows` it held) of the
    version `path` appends to, when that sample is still of this file's first rows: it held
    `full` rows, so the appended ones are not in it, or none (`rows` None: nothing to read).
    None otherwise, or when `path` is not an append of a kept version."""
    tail = appended(path)
    kept = tail.facts.get(facet) if tail is not None else None
    if not isinstance(kept, dict) or kept.get("rows") not in (None, full):
        return None
    return kept


_locks: dict[Path, threading.RLock] = {}
_locks_guard = threading.Lock()


def lock(path: Path) -> threading.RLock:
    """The lock of what is kept about one source file (its entry, its tail files): threads
    learning or loading different files hash and write side by side."""
    key = path.resolve()
    with _locks_guard:
        return _locks.setdefault(key, threading.RLock())


@functools.lru_cache(maxsize=64)
def _appended(path: Path, version: Version) -> Tail | None:
    entry = _load(path)
    if entry is None or not entry.get("digest"):
        return None
    suffix = ".tail" if path.suffix.lower() == ".csv" else path.suffix.lower()
    raw = (
        _tail_dir()
        / f"{hashlib.sha256(str(path).encode()).hexdigest()[:16]}-{version.size}{suffix}"
    )
    before = entry.get("before")
    if entry["version"] == version.as_dict():
        # this version was found to append to `before` (verified then): its tail is known
        if not isinstance(before, dict) or not 0 < int(before.get("size", -1)) < version.size:
            return None
        with path.open("rb") as src, raw.open("wb") as out:
            src.seek(int(before["size"]))
            shutil.copyfileobj(src, out, _CHUNK)
        if Version.of(path) != version:
            return None
        return Tail(path, int(before["size"]), dict(before["facts"]), raw, str(entry["digest"]))
    old_size = int(entry["version"].get("size", -1))
    if not 0 < old_size < version.size:
        return None
    h = hashlib.sha256()
    with path.open("rb") as src:
        left = old_size
        while left:
            chunk = src.read(min(_CHUNK, left))
            if not chunk:
                return None
            h.update(chunk)
            left -= len(chunk)
            if not left and not chunk.endswith(b"\n"):
                return None  # the last row was cut; appending continued it
        if h.hexdigest() != entry["digest"]:
            return None
        with raw.open("wb") as out:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
    if Version.of(path) != version:
        return None  # still being written
    return Tail(path, old_size, dict(entry["facts"]), raw, h.hexdigest())


TAILS_PREFIX = "cdp-mcp-tails-"


@functools.cache
def _tail_dir() -> Path:
    """This process's folder of appended rows (0700: the person's data), removed at exit.
    A process ended by a signal runs no atexit: the next one removes what such processes
    left (their pid is in the name), so copies of source rows do not pile up in /tmp."""
    sweep_tails(Path(tempfile.gettempdir()))
    folder = Path(tempfile.mkdtemp(prefix=f"{TAILS_PREFIX}{os.getpid()}-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def sweep_tails(root: Path) -> list[Path]:
    """Remove the tails folders under `root` of this user's processes that have ended;
    the ones removed. A folder whose pid runs (its own, or a reused pid) is left."""
    removed = []
    for folder in root.glob(f"{TAILS_PREFIX}*-*"):
        pid = folder.name[len(TAILS_PREFIX) :].split("-", 1)[0]
        with contextlib.suppress(OSError):
            if not pid.isdigit() or folder.stat().st_uid != os.getuid() or _alive(int(pid)):
                continue
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def latest_time_facet(parsed: str) -> str:
    """The fact holding the latest time `parsed` (a UTC timestamp expression over the
    file's columns, timeparse.parsed_timestamp_sql) reads in the file: {"max_us": int|None}."""
    return "latest_time:" + hashlib.sha256(f"UTC\0{parsed}".encode()).hexdigest()[:16]


def forget_all() -> None:
    """Drop every kept fact (a benchmark's cold start)."""
    _appended.cache_clear()
    shutil.rmtree(store_dir(), ignore_errors=True)

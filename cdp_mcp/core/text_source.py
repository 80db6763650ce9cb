"""A text source file (CSV, JSONL) as DuckDB can read it: UTF-8 with one kind of line end.

DuckDB reads UTF-8 only (and fails with its own advice, `ignore_errors=true`, an option the
config does not have), and its CSV sniffer gives up on a file whose lines end partly in
CRLF and partly in LF (an extract a second tool appended to). So before DuckDB reads a
file, one cheap pass over its bytes checks both: a file that is neither UTF-8 nor given an
`encoding` is refused with the line and byte where it stops being UTF-8 and the encoding
it likely is; a file in another encoding, or with mixed line ends, is read through a
staged UTF-8 copy with LF line ends (the source file itself is never changed).

The encodings are a closed list, decoded by Python's codecs (so cp1252, what Excel on
Windows writes, reads right where DuckDB's `latin-1` would turn € and curly quotes into
control characters; DuckDB's other encodings need an extension that is not available
offline).
"""

from __future__ import annotations

import codecs
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cdp_mcp.core import source_memory
from cdp_mcp.core.errors import CdpError

# The encodings a source file may be in (`ingestion.object_settings.<object>.encoding`).
ENCODINGS = ("utf-8", "utf-16", "latin-1", "cp1252", "shift_jis", "cp932")
_ALIASES = {
    "utf8": "utf-8",
    "utf-8-sig": "utf-8",
    "utf16": "utf-16",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
    "iso8859-1": "latin-1",
    "windows-1252": "cp1252",
    "sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "windows-31j": "cp932",
}
_CHUNK = 1 << 20
TEXT_SUFFIXES = (".csv", ".jsonl", ".ndjson")
_STAGED_NOTE = "read through a staged UTF-8 copy"


class TextSourceError(CdpError):
    """A text source file cannot be read as the encoding it is said (or found) to be."""


def canonical_encoding(name: str) -> str:
    """The closed list's spelling of `name`, or ValueError naming the list."""
    key = name.strip().lower()
    found = key if key in ENCODINGS else _ALIASES.get(key, _ALIASES.get(key.replace("_", "-")))
    if found is None:
        raise ValueError(
            f"encoding {name[:40]!r} is not one cdp-mcp reads; use one of {', '.join(ENCODINGS)}"
        )
    return found


@dataclass(frozen=True)
class _Scan:
    bad_offset: int | None  # the first byte that is not UTF-8
    bad_line: int  # its line (1-based)
    crlf: int  # lines ending in CRLF
    lf: int  # more than `crlf` exactly when some line ends in a bare LF (see _scan)
    digest: str = ""  # SHA-256 of the bytes (a whole clean scan only)

    @property
    def mixed_line_ends(self) -> bool:
        return 0 < self.crlf < self.lf


def _held(decoder: codecs.IncrementalDecoder) -> int:
    """How many bytes of an earlier chunk the decoder still holds (a character cut in two)."""
    state = decoder.getstate()
    return len(state[0]) if isinstance(state, tuple) and isinstance(state[0], bytes) else 0


def _scan(path: Path) -> _Scan:
    """One pass over the bytes: the first non-UTF-8 byte, and how the lines end.

    Only a chunk that holds a CR (or completes a CRLF cut between chunks) has its line ends
    counted; any other chunk's line ends are all bare LFs, and it adds 1 to `lf` when it has
    one (a memchr rather than a count). So `crlf` is exact and `lf - crlf` is positive
    exactly when a bare LF exists: what `mixed_line_ends` asks, also of a file's counts
    added to an appended tail's (the kept facts)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lf, crlf, ends_cr = 0, 0, 0, False
    digest = hashlib.sha256()  # the file's version, to tell an append later (source_memory)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            held = _held(decoder)
            try:
                if held or not chunk.isascii():  # ASCII is UTF-8: the fast, common case
                    decoder.decode(chunk)
            except UnicodeDecodeError as e:
                # e.start counts from the held bytes of the chunk before (never a newline)
                bad = offset - held + e.start
                return _Scan(bad, _lines_before(path, bad) + 1, crlf, lf)
            joined = ends_cr and chunk.startswith(b"\n")
            if joined or b"\r" in chunk:  # counting costs a pass: only where CRs are
                crlf += chunk.count(b"\r\n") + (1 if joined else 0)
                lf += chunk.count(b"\n")
            elif b"\n" in chunk:
                lf += 1
            ends_cr = chunk.endswith(b"\r")
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:  # cut off in the middle of a character
        bad = offset - _held(decoder)
        return _Scan(bad, _lines_before(path, bad) + 1, crlf, lf)
    return _Scan(None, 0, crlf, lf, digest.hexdigest())


def _lines_before(path: Path, offset: int) -> int:
    """How many line ends the first `offset` bytes of `path` hold (for an error's line)."""
    count = 0
    with path.open("rb") as f:
        while offset > 0 and (chunk := f.read(min(_CHUNK, offset))):
            count += chunk.count(b"\n")
            offset -= len(chunk)
    return count


def _likely_encoding(sample: bytes) -> str:
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or sample.count(0) * 4 > len(
        sample
    ):
        return "utf-16"
    try:
        text = sample.decode("cp932")
        if any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in text):
            return "cp932"
    except UnicodeDecodeError:
        pass
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _line_at(path: Path, offset: int) -> bytes:
    """The bytes of the line holding `offset` (at most 200 of them)."""
    with path.open("rb") as f:
        start = max(0, offset - 200)
        f.seek(start)
        around = f.read(400)
    rel = offset - start
    begin = around.rfind(b"\n", 0, rel) + 1
    end = around.find(b"\n", rel)
    return around[begin : end if end >= 0 else len(around)].rstrip(b"\r")[:200]


def _not_utf8(path: Path, scan: _Scan, obj: str | None) -> TextSourceError:
    assert scan.bad_offset is not None
    with path.open("rb") as f:
        f.seek(max(0, scan.bad_offset - 32768))
        sample = f.read(65536)
    guess = _likely_encoding(sample)
    with path.open("rb") as f:
        f.seek(scan.bad_offset)
        byte = f.read(1)
    line = _line_at(path, scan.bad_offset).decode(guess, errors="replace")
    setting = f"ingestion.object_settings.{obj}.encoding" if obj else "its encoding"
    what = {
        "cp1252": "cp1252 (Windows-1252, what Excel on Windows saves as CSV)",
        "utf-16": "utf-16",
        "cp932": "cp932 (Shift_JIS as Windows and Excel in Japan write it)",
    }.get(guess, guess)
    return TextSourceError(
        f"{path} is not UTF-8: line {scan.bad_line}, byte {scan.bad_offset} (0x{byte.hex()}) "
        f"in {line[:80]!r}; it is likely {what}. Set {setting}: {guess} in the config "
        f"(one of {', '.join(ENCODINGS)}), or save the file as UTF-8"
    )


def _staged_dir() -> Path:
    """This user's folder of staged copies (they hold the person's data: theirs alone)."""
    folder = Path(tempfile.gettempdir()) / f"cdp-mcp-staged-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if folder.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise TextSourceError(
            f"{folder} is not this user's private folder; remove it so cdp-mcp can stage "
            "source files there"
        )
    return folder


def _stage(path: Path, encoding: str, stat: os.stat_result) -> Path:
    """A UTF-8, LF copy of `path` decoded as `encoding`; one per source (older ones go)."""
    source_key = hashlib.sha256(f"{path}\0{encoding}".encode()).hexdigest()[:20]
    version = hashlib.sha256(f"{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = _staged_dir()
    target = folder / f"{source_key}-{version}{path.suffix.lower()}"
    if target.is_file():
        return target
    codec = "utf-8-sig" if encoding == "utf-8" else encoding
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    offset, newlines, pending_cr = 0, 0, ""
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with path.open("rb") as src, partial.open("w", encoding="utf-8", newline="") as out:
            while True:
                chunk = src.read(_CHUNK)
                held = _held(decoder)
                try:
                    text = decoder.decode(chunk, final=not chunk)
                except UnicodeError as e:  # utf-16 without a BOM is not a UnicodeDecodeError
                    start = getattr(e, "start", held)
                    local = max(0, start - held)
                    line = newlines + chunk[:local].count(b"\n") + 1
                    raise TextSourceError(
                        f"{path} is not {encoding}: line {line}, "
                        f"byte {offset - held + start} does not decode as {encoding}; check the "
                        f"file's encoding (one of {', '.join(ENCODINGS)})"
                    ) from None
                text = pending_cr + text
                pending_cr = "\r" if text.endswith("\r") and chunk else ""
                if pending_cr:
                    text = text[:-1]
                out.write(text.replace("\r\n", "\n"))
                if not chunk:
                    break
                newlines += chunk.count(b"\n")
                offset += len(chunk)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    for old in folder.glob(f"{source_key}-*"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


_readable: dict[tuple[str, int, int, str | None], Path] = {}
_originals: dict[str, str] = {}  # staged copy -> its source, to name the source in errors


def readable(path: Path, encoding: str | None = None, obj: str | None = None) -> Path:
    """The file DuckDB reads for `path`: itself when it is UTF-8 with one kind of line end,
    else a staged UTF-8 copy with LF line ends. Raises TextSourceError (see the module)."""
    if path.suffix.lower() not in TEXT_SUFFIXES:
        if encoding is not None and canonical_encoding(encoding) != "utf-8":
            raise TextSourceError(
                f"{path.name} is not a text file: an encoding applies to .csv and .jsonl only"
            )
        return path
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, encoding)
    known = _readable.get(key)
    if known is not None and known.is_file():
        return known
    try:
        enc = canonical_encoding(encoding) if encoding is not None else "utf-8"
    except ValueError as e:
        raise TextSourceError(f"{path.name}: {e}") from None
    result = path
    if enc != "utf-8":
        result = _stage(path, enc, stat)
    elif (scan := _scan_unless_known(path)) is not None:
        if scan.bad_offset is not None:
            raise _not_utf8(path, scan, obj)
        if scan.mixed_line_ends:
            result = _stage(path, enc, stat)
    _readable[key] = result
    if result != path:
        _originals[str(result)] = str(path)
    return result


def _scan_unless_known(path: Path) -> _Scan | None:
    """None when `path` is known to be UTF-8 with one kind of line end without reading all
    of it: this version was scanned before, or it appends to a version that was and the
    appended bytes are too (the line-end counts add up across the two). Else the scan of
    the whole file, kept for next time when it is clean."""
    version = source_memory.Version.of(path)
    if source_memory.recall(path, _FACET, version) is not None:
        return None
    tail = source_memory.appended(path)
    before = tail.facts.get(_FACET) if tail else None
    if tail is not None and isinstance(before, dict):
        part = _scan(tail.raw)
        ends = {"crlf": before["crlf"] + part.crlf, "lf": before["lf"] + part.lf}
        if part.bad_offset is None and not 0 < ends["crlf"] < ends["lf"]:
            source_memory.remember(path, _FACET, ends, version, tail.digest)
            return None
    scan = _scan(path)  # (an error is reported with the whole file's line and byte)
    if scan.bad_offset is None and not scan.mixed_line_ends:
        source_memory.remember(
            path, _FACET, {"crlf": scan.crlf, "lf": scan.lf}, version, scan.digest
        )
    return scan


_FACET = "utf8_line_ends"  # source_memory's fact: a clean scan's line-end counts


def explain(message: str) -> str:
    """A DuckDB error about a source file in the words of this project: the source's name
    (not its staged copy's) and none of DuckDB's advice for options the config lacks."""
    for staged, original in list(_originals.items()):  # (other threads may add some)
        message = message.replace(staged, f"{original} ({_STAGED_NOTE})")
    kept = [ln for ln in message.splitlines() if not ln.startswith("Possible Solution:")]
    return "\n".join(kept).strip()

"""The form of a Treasure Data API key, checked where a key enters (config, secrets, emulator).

A TD key is `<user id>/<hex>` (TD's docs show `123/abcdef...0123456789`). A key copied from
a CRLF `.env` file or a terminal often carries a line break or spaces; such a key is refused
with words that name the stray characters, never the key: sent as it is it breaks the HTTP
header (and httpx's error text would quote it), and stripped silently it would hide a file
that is wrong for every other tool that reads it.
"""

from __future__ import annotations

import re
import unicodedata

KEY_RE = re.compile(r"[0-9]+/[0-9A-Fa-f]{16,128}")
FORM = "<user id>/<hex>, e.g. 123/0a1b2c3d... (TD Console: My Settings > API Keys)"

_NAMES = {
    "\n": "a line feed (\\n)",
    "\r": "a carriage return (\\r)",
    "\t": "a tab",
    " ": "a space",
    "\x00": "a NUL byte",
    "\u00a0": "a no-break space (U+00A0)",
    "\ufeff": "a byte-order mark (U+FEFF)",
}


def is_junk(ch: str) -> bool:
    """Whitespace or an invisible character (control, format, unassigned)."""
    return ch.isspace() or unicodedata.category(ch).startswith("C")


def _name(ch: str) -> str:
    if ch in _NAMES:
        return _NAMES[ch]
    code = f"U+{ord(ch):04X}"
    if ch.isspace():
        return f"a Unicode space ({code})"
    if unicodedata.category(ch) == "Cc":
        return f"a control character ({code})"
    return f"an invisible character ({code})"


def _kinds(chars: str) -> str:
    names = list(dict.fromkeys(_name(c) for c in chars))
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def strip_junk(value: str) -> str:
    start, end = 0, len(value)
    while start < end and is_junk(value[start]):
        start += 1
    while end > start and is_junk(value[end - 1]):
        end -= 1
    return value[start:end]


def key_problem(value: str, variable: str = "TD_API_KEY") -> str | None:
    """What is wrong with `value` as a TD API key, in words that never quote it; None if fine.

    `variable` is the environment variable named in the suggested fix."""
    core = strip_junk(value)
    if not core:
        return f"the API key is empty or only whitespace; give TD's key: {FORM}"
    lead, trail = value[: value.index(core)], value[value.index(core) + len(core) :]
    if lead or trail:
        where = []
        if lead:
            where.append(f"before it {_kinds(lead)}")
        if trail:
            crlf = " (as a Windows/CRLF file leaves it)" if "\r" in trail else ""
            where.append(f"after it {_kinds(trail)}{crlf}")
        drop = "\\r\\n" if set(lead + trail) <= {"\r", "\n"} else "[:space:][:cntrl:]"
        return (
            f"the API key has characters around it that are not part of a key: "
            f"{'; '.join(where)}. It was not used. Remove them where the key is set, e.g. "
            f"export {variable}=\"$(tr -d '{drop}' < key.txt)\" or fix the line in the .env file"
        )
    inner = [c for c in core if is_junk(c)]
    if inner:
        return (
            f"the API key contains {_kinds(''.join(inner))} inside it; a TD key has none: "
            f"copy it again ({FORM})"
        )
    if KEY_RE.fullmatch(core):
        return None
    user, slash, _ = core.partition("/")
    if not slash:
        what = "it has no '/' between the user id and the key"
    elif not (user.isascii() and user.isdigit()):
        what = "the user id before '/' is not a number"
    else:
        what = "the part after '/' is not 16 or more hexadecimal digits"
    return f"the API key is not in TD's form ({what}): {FORM}"

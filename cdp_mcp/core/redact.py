"""Masking secrets wherever text leaves the process: tool results, errors, logs, files, stderr.

The secrets in play are TD_API_KEY and TD_APIKEY from the environment (read at each use) and
every value `register` was given: the config's td_api_key as resolved (junk and all), the key
a Transport or the emulator holds, each secret set_secrets uploads. Each is masked in every
form it can be echoed in: as is; without surrounding whitespace; repr'd and as escaped bytes
(httpx quotes a bad header as `b'TD1 ...\\r\\n'`); JSON-escaped; URL-encoded (quote and
quote_plus, `/` kept or not); base64; and a TD key's secret half after its `/`. Matching
ignores case (`%2f` and `%2F`, an echo that lower-cased the value).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TextIO, TypeVar

from pydantic import BaseModel, SecretStr

from cdp_mcp.core.apikey import strip_junk

MASK = "**********"
ENV_NAMES = ("TD_API_KEY", "TD_APIKEY")  # config's ${TD_API_KEY}; secret td.apikey's TD_APIKEY
MIN_LEN = 8  # a shorter value would mask ordinary words; no real key is that short

M = TypeVar("M", bound=BaseModel)

_registered: set[str] = set()  # only grows: a value once in play stays masked


def register(value: str | SecretStr | None) -> None:
    """Mask `value` from now on in everything this process writes."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value and len(strip_junk(value)) >= MIN_LEN:
        _registered.add(value)


def secrets() -> frozenset[str]:
    env = [os.environ.get(name) for name in ENV_NAMES]
    return frozenset(v for v in [*_registered, *env] if v and len(strip_junk(v)) >= MIN_LEN)


def forms(secret: str) -> set[str]:
    """Every spelling of `secret` that an echo of it could take."""
    core = strip_junk(secret)
    bases = {secret, secret.strip(), core}
    _, slash, half = core.partition("/")
    if slash and len(half) >= 2 * MIN_LEN:  # a TD key's secret half, quoted on its own
        bases.add(half)
    out: set[str] = set()
    for b in bases:
        raw = b.encode("utf-8", "surrogatepass")
        out.update(
            {
                b,
                repr(b)[1:-1],
                ascii(b)[1:-1],
                repr(raw)[2:-1],
                json.dumps(b)[1:-1],
                json.dumps(b, ensure_ascii=False)[1:-1],
                _quote(b, ""),
                _quote(b, "/"),
                _quote(b, "", plus=True),
                _quote(b, "/", plus=True),
                base64.b64encode(raw).decode().rstrip("="),
                base64.urlsafe_b64encode(raw).decode().rstrip("="),
            }
        )
    return {f for f in out if len(f) >= MIN_LEN}


def _quote(text: str, safe: str, plus: bool = False) -> str:
    from urllib.parse import quote, quote_plus

    return quote_plus(text, safe=safe) if plus else quote(text, safe=safe)


class _Matcher:
    """All spellings of a set of secrets: a quick test for any of them, then one regex."""

    def __init__(self, values: frozenset[str]) -> None:
        every = set().union(*(forms(v) for v in values))
        self.lowered = sorted({f.lower() for f in every})
        alternatives = sorted(every, key=len, reverse=True)  # the longest spelling wins
        self.regex = re.compile("|".join(re.escape(f) for f in alternatives), re.IGNORECASE)

    def present(self, text: str) -> bool:
        # `in` runs at C speed; the regex (no Aho-Corasick in `re`) only where it will match
        lowered = text.lower()
        return any(f in lowered for f in self.lowered)


@lru_cache(maxsize=64)
def _matcher(values: frozenset[str]) -> _Matcher | None:
    return _Matcher(values) if values and any(forms(v) for v in values) else None


def scrub(text: str) -> str:
    """`text` with every known secret, in every form, replaced by MASK."""
    if not text:
        return text
    matcher = _matcher(secrets())
    if matcher is None or not matcher.present(text):
        return text
    return matcher.regex.sub(MASK, text)


def contains_secret(text: str) -> bool:
    matcher = _matcher(secrets()) if text else None
    return matcher is not None and matcher.present(text) and bool(matcher.regex.search(text))


def scrub_data(value: Any) -> Any:
    """A JSON-like tree (dicts, lists, strings) with every string scrubbed, keys too."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_data(k): scrub_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_data(v) for v in value]
    return value


def scrub_model(model: M) -> M:
    """The model itself when it holds no secret, else a copy with the secrets masked."""
    dumped = model.model_dump(mode="json")
    cleaned = scrub_data(dumped)
    return model if cleaned == dumped else type(model).model_validate(cleaned)


# -- logs ---------------------------------------------------------------------------------
_FORMATTER = logging.Formatter()
_installed = False


def _redact_record(record: logging.LogRecord) -> None:
    if _matcher(secrets()) is None:
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed call; logging reports it itself
        return
    trace = ""
    if record.exc_info and record.exc_info[1] is not None:
        trace = _FORMATTER.formatException(record.exc_info)
    stack = record.stack_info or ""
    if not any(contains_secret(part) for part in (message, trace, stack)):
        return
    # The message is formatted here, so no handler formats the secret back in later; a
    # traceback becomes text (a handler would render the exception object itself).
    record.msg, record.args = scrub(message), None
    if trace:
        record.msg += "\n" + scrub(trace)
        record.exc_info, record.exc_text = None, None
    if stack:
        record.stack_info = scrub(stack)


def install_log_redaction() -> None:
    """Scrub every log record as it is made, whichever logger or handler takes it."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(make)
    _installed = True


# -- the process's own output ----------------------------------------------------------------
class RedactingStream:
    """A text stream that masks secrets in what is written to it; the rest is the stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def redacted_stdio() -> Iterator[None]:
    """stdout and stderr masked while the block runs (the CLI's prints, tracebacks, warnings)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err

"""Digdag's rule for project secrets (io.digdag.client.api.SecretValidation).

A key is dot-separated segments, each a letter, or a letter then letters, digits, `_` or
`-` ending in a letter or digit (`td.apikey`, `shopify.api_key`); at most 255 characters.
A value is at most 16 KiB of UTF-8.
"""

from __future__ import annotations

import re

_SEGMENT = r"(?:[a-zA-Z]|[a-zA-Z][a-zA-Z0-9_\-]*[a-zA-Z0-9])"
_KEY = re.compile(rf"^{_SEGMENT}(?:\.{_SEGMENT})*$")
MAX_KEY_LENGTH = 255
MAX_VALUE_BYTES = 16 * 1024
KEY_RULE = (
    "dot-separated parts of letters, digits, '_' and '-', each starting with a letter and "
    "ending with a letter or digit (like td.apikey)"
)


def valid_secret_key(key: str) -> bool:
    return len(key) <= MAX_KEY_LENGTH and _KEY.match(key) is not None


def valid_secret_value(value: str) -> bool:
    return len(value.encode("utf-8")) <= MAX_VALUE_BYTES

"""Masks for personal values shown in reports and warnings: enough to recognise a junk value
('n***@hubspot.com', a phone's last four digits), never the value itself."""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d")


def mask_email(value: str) -> str:
    """'jane@example.com' -> 'j***@example.com' (the domain tells junk from people)."""
    local, at, domain = value.partition("@")
    if not at:
        return mask_value(value)
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str) -> str:
    """Only the last four digits: '+1 555 010 1234' -> '***1234'."""
    digits = "".join(_DIGITS.findall(value))
    return f"***{digits[-4:]}" if len(digits) > 4 else "***"


def mask_value(value: str, key: str = "") -> str:
    """A value of identity key `key`: email and phone by their shapes, anything else as its
    first character and its length."""
    name = key.lower()
    if "@" in value and ("mail" in name or not name):
        return mask_email(value)
    if any(w in name for w in ("phone", "mobile", "tel", "cell")):
        return mask_phone(value)
    return f"{value[:1]}*** ({len(value)} chars)" if value else ""

"""Masks for personal values (emails, phones, other identity keys) in documents and warnings
meant for a person: enough to recognise a junk value (`n***@hubspot.com`, a phone's last four
digits), never the value itself. The state keeps the raw values; only what is shown is masked."""

from __future__ import annotations

import re

_PHONE_KEYS = ("phone", "mobile", "tel", "fax", "cell")


def mask_email(value: str) -> str:
    """`jane.doe@example.com` -> `j***@example.com`; the domain stays (it says whose junk it is)."""
    text = value.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local:
        return _first_char(text)
    return f"{local[0]}***@{domain}"


def mask_phone(value: str) -> str:
    """Only the last 4 digits: `+1 (555) 010-1234` -> `***-***-1234`."""
    if value.startswith("***"):
        return value  # masked already (the engine's report masks, the reports mask again)
    digits = re.sub(r"\D", "", value)
    if len(digits) <= 4:
        return "***"
    return f"***-***-{digits[-4:]}"


def mask_value(key: str, value: str) -> str:
    """A value of identity key `key`, masked by the kind its name says (email, phone; an
    address under another name is masked as one), anything else as its first character and
    `***`."""
    name = key.lower()
    text = value.strip()
    if "@" in text and not any(word in name for word in _PHONE_KEYS):
        return mask_email(text)
    if any(word in name for word in _PHONE_KEYS):
        return mask_phone(value)
    return _first_char(text)


def _first_char(text: str) -> str:
    if text.endswith("***") and len(text) <= 4:
        return text  # masked already
    return f"{text[0]}***" if text else "***"

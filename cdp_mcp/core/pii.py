"""Masks for personal values (emails, phones, other identity keys) in documents meant for a
person outside the pipeline: a client's report must show the shape of a value, not the value."""

from __future__ import annotations

import re

_PHONE_KEYS = ("phone", "mobile", "tel", "fax")


def mask_email(value: str) -> str:
    """`jane.doe@example.com` -> `j***@example.com`; the domain stays (it says whose junk it is)."""
    text = value.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local:
        return mask_value("", text)
    return f"{local[0]}***@{domain}"


def mask_phone(value: str) -> str:
    """Only the last 4 digits: `+1 (555) 010-1234` -> `***-***-1234`."""
    digits = re.sub(r"\D", "", value)
    if len(digits) <= 4:
        return "***"
    return f"***-***-{digits[-4:]}"


def mask_value(key: str, value: str) -> str:
    """A value of identity key `key`, masked by the kind its name says (email, phone, other:
    its first character and `***`)."""
    name = key.lower()
    if "email" in name or "mail" in name:
        return mask_email(value)
    if any(word in name for word in _PHONE_KEYS):
        return mask_phone(value)
    text = value.strip()
    return f"{text[0]}***" if text else "***"

"""No personal value reaches a report: identity-key values in the metrics are masked
(`cdp_mcp.core.pii`), and the same values are masked wherever a warning quotes them.

The validation metrics keep raw values (the person fixing the data needs them, in the state);
a report is a document for a client, so it shows the shape of a value only.
"""

from __future__ import annotations

import re
from typing import Any

from cdp_mcp.core.pii import mask_email, mask_value

# `email=jane@example.com (3 records)`: how a large cluster lists the values that joined it
_JOINED = re.compile(r"^(?P<key>[^=]+)=(?P<value>.*) \((?P<records>\d+) records?\)$")
_EMAIL = re.compile(r"[^\s'\"<>()=,;]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# a quoted value made of digits and phone punctuation: a phone number in a warning
_QUOTED_PHONE = re.compile(r"'(\+?[\d\s().-]{7,})'")


def _joined(entry: str, known: dict[str, str]) -> str:
    m = _JOINED.match(entry)
    if m is None:
        return scrub(entry, known)
    masked = mask_value(m["key"], m["value"])
    known[m["value"]] = masked
    return f"{m['key']}={masked} ({m['records']} records)"


def mask_metrics(metrics: dict[str, Any], known: dict[str, str]) -> dict[str, Any]:
    """`metrics` with the identity values of clusters and over-merge suspects masked; every
    raw value masked is added to `known` (raw -> masked) for `scrub`."""
    out = dict(metrics)
    if isinstance(out.get("over_merge_suspects"), list):
        suspects = []
        for s in out["over_merge_suspects"]:
            s = dict(s)
            raw = str(s.get("value", ""))
            s["value"] = known.setdefault(raw, mask_value(str(s.get("key", "")), raw))
            suspects.append(s)
        out["over_merge_suspects"] = suspects
    if isinstance(out.get("largest_clusters"), list):
        clusters = []
        for c in out["largest_clusters"]:
            c = dict(c)
            if isinstance(c.get("joined_by"), list):
                c["joined_by"] = [_joined(str(e), known) for e in c["joined_by"]]
            clusters.append(c)
        out["largest_clusters"] = clusters
    return out


def known_values(metric_sets: list[dict[str, Any]]) -> dict[str, str]:
    """Raw identity value -> its mask, over every phase's metrics."""
    known: dict[str, str] = {}
    for metrics in metric_sets:
        mask_metrics(metrics, known)
    return known


def scrub(text: str, known: dict[str, str]) -> str:
    """`text` with every known raw value, any email address and any quoted phone masked."""
    for raw in sorted(known, key=len, reverse=True):
        if len(raw.strip()) >= 3:  # shorter values would mask digits of unrelated numbers
            pattern = re.compile(rf"(?<![\w@.]){re.escape(raw)}(?![\w@])")
            text = pattern.sub(known[raw].replace("\\", "\\\\"), text)
    text = _EMAIL.sub(lambda m: mask_email(m[0]), text)
    return _QUOTED_PHONE.sub(lambda m: f"'{mask_value('phone', m[1])}'", text)

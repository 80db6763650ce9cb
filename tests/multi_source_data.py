"""Small sources for the multi-source flow tests: a shop, a CRM and a newsletter tool that
share some people by email, written as CSVs of a few hundred rows, and their config."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml

PEOPLE = 300  # the shop's customers; the CRM knows every second one, the newsletter every third


def _write(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        out.writerows(rows)


def _stamp(i: int) -> str:
    return f"2024-0{1 + i % 6}-{1 + i % 27:02d}T{i % 24:02d}:00:00Z"


def write_shop(folder: Path) -> None:
    _write(
        folder / "customers.csv",
        ["customer_id", "email", "phone", "updated_at"],
        [[i, f"person{i}@example.com", f"+1555{i:07d}", _stamp(i)] for i in range(PEOPLE)],
    )


def write_crm(folder: Path) -> None:
    _write(
        folder / "contacts.csv",
        ["contact_id", "email_address", "updated_at"],
        [
            [f"c{i}", f"Person{i}@Example.com", _stamp(i + 1)]
            for i in range(0, PEOPLE + 100, 2)  # 100 people of its own past the shop's
        ],
    )


def write_mail(folder: Path) -> None:
    _write(
        folder / "subscribers.csv",
        ["subscriber_id", "address", "updated_at"],
        [[f"s{i}", f"person{i}@example.com", _stamp(i + 2)] for i in range(0, PEOPLE, 3)],
    )


SOURCES: dict[str, dict[str, Any]] = {
    "shop": {
        "objects": ["customers"],
        "primary_keys": {"customers": "customer_id"},
        "write": write_shop,
        "keys": [{"column": "email", "key": "email"}],
    },
    "crm": {
        "objects": ["contacts"],
        "primary_keys": {"contacts": "contact_id"},
        "write": write_crm,
        "keys": [{"column": "email_address", "key": "email"}],
    },
    "mail": {
        "objects": ["subscribers"],
        "primary_keys": {"subscribers": "subscriber_id"},
        "write": write_mail,
        "keys": [{"column": "address", "key": "email"}],
    },
}


def source_block(name: str) -> dict[str, Any]:
    spec = SOURCES[name]
    return {
        "name": name,
        "connector": "file",
        "source_path": f"./{name}",
        "objects": spec["objects"],
        "mode": "historical",
        "incremental_field": "updated_at",
        "start_date": "2024-01-01",
        "primary_keys": spec["primary_keys"],
    }


def config_doc(names: list[str]) -> dict[str, Any]:
    return {
        "global": {"client": "multi", "backend": "local"},
        "sources": [source_block(n) for n in names],
        "staging": {"engine": "presto"},
        "unification": {
            "name": "people",
            "keys": [{"name": "email", "valid_regexp": ".+@.+"}],
            "tables": [
                {"table": f"{n}_{SOURCES[n]['objects'][0]}", "key_columns": SOURCES[n]["keys"]}
                for n in names
            ],
            "merge_by_keys": ["email"],
        },
    }


def write_pipeline(folder: Path, names: list[str]) -> Path:
    """The sources' files and a config over them; returns the config's path."""
    for name in names:
        SOURCES[name]["write"](folder / name)
    config = folder / "multi.yml"
    config.write_text(yaml.safe_dump(config_doc(names), sort_keys=False))
    return config

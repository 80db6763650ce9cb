"""A source file's rows as ingestion's loads see them: how many, how many a load leaves out
(before `start_date`, or an incremental field that does not parse) and the latest time.

Counted with the loads' own timestamp forms (timeparse), over the SELECT the loads read
(file_source.select_sql), and kept per file version (source_memory), so whoever reads the
whole file first can count on the way: the proof of its column types in generation
(file_source), else the validation (pipeline/source_flow.py). A load whose range starts
after the latest time kept for the file's version reads none of it (td_load>).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import duckdb

from cdp_mcp.core import source_memory
from cdp_mcp.core.config import PipelineConfig
from cdp_mcp.core.schema import Column
from cdp_mcp.core.sqltext import quote_ident
from cdp_mcp.core.timeparse import parse_bound, parsed_timestamp_sql

SAMPLES = 3  # unparseable texts kept, so a person sees the form to fix


class Rule(NamedTuple):
    """What the counts depend on: the config's incremental field, start date and forms."""

    field: str
    start_date: str
    formats: tuple[str, ...] = ()


def rule_of(cfg: PipelineConfig) -> Rule:
    """The rule of a one-source config (its `ingestion`)."""
    ing = cfg.ingestion
    return Rule(ing.incremental_field, ing.start_date, tuple(ing.time_formats))


class Counts(NamedTuple):
    rows: int
    before_start: int
    unparsed: int  # the incremental field is empty or in no known timestamp form
    samples: list[str]  # the first SAMPLES distinct texts of those (sorted)
    latest_us: int | None  # the latest time of the field (epoch µs); None if none parses


class Counting(NamedTuple):
    """A rule applied to one file's columns: the field parsed as the loads parse it."""

    rule: Rule
    parsed: str  # a TIMESTAMPTZ expression over the SELECT's columns (NULL: no parse)

    @classmethod
    def of(cls, rule: Rule, columns: list[Column]) -> Counting | None:
        """None when the file has no column named as the field."""
        by_name = {c.name: c for c in columns}
        if rule.field not in by_name:
            return None
        parsed = parsed_timestamp_sql(
            quote_ident(rule.field), by_name[rule.field].type, rule.formats
        )
        return cls(rule, parsed)

    @property
    def facet(self) -> str:
        """The kept counts' name: they hold for this field, start_date and forms only."""
        what = f"{self.rule.start_date}\0{self.parsed}"
        return "source_rows:" + hashlib.sha256(what.encode()).hexdigest()[:16]

    def aggregates(self, ts: str) -> str:
        """Select items over a column `ts` holding `parsed`: rows, before start, unparsed,
        latest (what `from_row` reads)."""
        start = parse_bound(self.rule.start_date)
        return f"count(*), count_if({ts} < {start}), count_if({ts} IS NULL), epoch_us(max({ts}))"

    def count_rows(self, con: duckdb.DuckDBPyConnection, select: str) -> Counts:
        """The counts of the rows of `select` (one read; a second only for the samples)."""
        row = con.execute(
            f"SELECT {self.aggregates('ts')} FROM (SELECT {self.parsed} AS ts FROM ({select}))"
        ).fetchone()
        counts = from_row(tuple(row or (0, 0, 0, None)))
        if not counts.unparsed:  # every row's time parsed: nothing to sample
            return counts
        return counts._replace(samples=self.samples(con, select))

    def samples(self, con: duckdb.DuckDBPyConnection, select: str) -> list[str]:
        field = quote_ident(self.rule.field)
        rows = con.execute(
            f"SELECT DISTINCT CAST(v AS VARCHAR) FROM (SELECT {field} AS v, "
            f"{self.parsed} AS ts FROM ({select})) WHERE ts IS NULL AND v IS NOT NULL "
            f"ORDER BY 1 LIMIT {SAMPLES}"
        ).fetchall()
        return [str(v) for (v,) in rows]

    def recall(self, path: Path, version: source_memory.Version) -> Counts | None:
        return as_counts(source_memory.recall(path, self.facet, version))

    def recall_before(self, tail: source_memory.Tail) -> Counts | None:
        """The counts kept for the version `tail` appends to."""
        return as_counts(tail.facts.get(self.facet))

    def remember(self, path: Path, version: source_memory.Version, counts: Counts) -> None:
        """Keep the counts of `version`, and its latest time (what a load's range needs)."""
        source_memory.remember(path, self.facet, list(counts), version)
        latest = {"max_us": counts.latest_us}
        source_memory.remember(path, source_memory.latest_time_facet(self.parsed), latest, version)


def from_row(row: tuple[object, ...]) -> Counts:
    """Counts from the four values of `Counting.aggregates` (no samples)."""
    total, before, unparsed, latest = row
    return Counts(_int(total), _int(before), _int(unparsed), [], _us(latest))


def added(before: Counts, part: Counts) -> Counts:
    """The counts of a file that is `before`'s rows and then `part`'s (an appended tail).
    The samples are the first SAMPLES distinct texts of both, as one count of all gives."""
    samples = sorted(set(before.samples) | set(part.samples))[:SAMPLES]
    latest = max((t for t in (before.latest_us, part.latest_us) if t is not None), default=None)
    return Counts(
        before.rows + part.rows,
        before.before_start + part.before_start,
        before.unparsed + part.unparsed,
        samples,
        latest,
    )


def as_counts(kept: object) -> Counts | None:
    """Kept counts (a JSON list) as Counts; None when absent or of another shape."""
    if not isinstance(kept, list) or len(kept) != 5:
        return None
    total, before, unparsed, samples, latest = kept
    if not isinstance(samples, list):
        return None
    return Counts(_int(total), _int(before), _int(unparsed), [str(v) for v in samples], _us(latest))


def _int(value: object) -> int:
    return int(str(value)) if value is not None else 0


def _us(value: object) -> int | None:
    return None if value is None else int(str(value))

"""The SQL the package itself sends (validation, preflight, reports), judged by TD's parsers.

Besides the generated projects' files, the pipeline queries the warehouse through
`Backend.query`: validation's counts and checks, the cross-source figures, the reports. On
Treasure Data that text goes to the presto (or hive) engine as it is, so it must be TD's
dialect, which the local backend translates. This runs the sample pipeline twice on the
local backend (a full run, then `--new-run` after rows were appended: the incremental
branches), records every text `query` is given, and has the parsers of test_sql_java_parsers
judge each one: Presto 350 and Trino 423 for engine presto, Hive 2.3.9 for hive.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from cdp_mcp.backends.local.backend import LocalBackend
from cdp_mcp.cli.demo_data import SAMPLE_FOLDER, append_rows, write_sample, write_sample_config
from cdp_mcp.cli.run import run_pipeline
from tests.java_referees import ENGINE_PARSERS, classpath, sql_parse

pytestmark = pytest.mark.slow  # whole runs and JVMs: the full suite, not the fast lane


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """engine -> every distinct text the two runs gave `LocalBackend.query`."""
    work = tmp_path_factory.mktemp("run")
    write_sample(work / SAMPLE_FOLDER, rows=300)
    config = write_sample_config(work)
    out: dict[str, set[str]] = {}
    original = LocalBackend.query

    async def recording(self: LocalBackend, sql: str, database: str, engine: str = "presto",
                        limit: int | None = None) -> Any:  # fmt: skip
        out.setdefault(engine, set()).add(sql)
        return await original(self, sql, database, engine, limit)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LocalBackend, "query", recording)
        first = anyio.run(lambda: run_pipeline(config, echo=lambda _: None))
        for obj in ("customers", "orders"):
            append_rows(work / SAMPLE_FOLDER, obj, 20)
        second = anyio.run(lambda: run_pipeline(config, echo=lambda _: None, new_run=True))
    assert first.exit_code == 0 and second.exit_code == 0, (first, second)
    return out


def test_the_runs_sent_the_validations_queries(sent: dict[str, set[str]]) -> None:
    texts = " ".join(sent.get("presto", set()))
    # staging's checks, the lookup's profiles, the cross-source figures, the cluster report
    for part in ("staging_log", "unified_id_lookup", "count_if(has_id)", "cluster_report"):
        assert part in texts, part
    assert set(sent) <= set(ENGINE_PARSERS)


def test_each_engines_parser_reads_every_query_the_package_sends(
    sent: dict[str, set[str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("sent")
    refused = {}
    for engine, texts in sent.items():
        files = []
        for i, text in enumerate(sorted(texts)):
            files.append(root / f"{engine}_{i}.sql")
            files[-1].write_text(text, encoding="utf-8")
        for referee in ENGINE_PARSERS[engine]:
            found = sql_parse(classpath(referee, tmp_path_factory), referee, files)
            for f, v in zip(files, found, strict=True):
                if not v["ok"]:
                    refused[f"{referee}: {' '.join(f.read_text().split())[:300]}"] = v["error"]
    assert refused == {}

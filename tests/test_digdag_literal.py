"""No Digdag expression from data: a config value with `${...}` reaches Digdag as text.

Digdag evaluates `${...}` in .dig values, in the YAML they include and in the SQL and YAML
files `td>` / `td_load>` read (digdag.js, `$$` -> `$` too); the local runner's evaluator
(cdp_mcp.digdag.expr) imitates it. A config whose invalid_texts, valid_regexp and source
folder hold `${1+1}`, `${secret:td.apikey}` and `${session_time}` must generate files in
which none of them survives as an expression, render back to the same text, and, end to
end on the local backend, filter exactly the literal values.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
import yaml

from cdp_mcp.backends.local import LocalBackend
from cdp_mcp.core.config import load_config
from cdp_mcp.core.literal import DOLLAR, digdag_literal, operator_reads, sql_literal
from cdp_mcp.core.phases import Phase
from cdp_mcp.core.sqltext import sql_string
from cdp_mcp.digdag.expr import evaluate_config, render
from cdp_mcp.generate import render_phase
from cdp_mcp.generate.schemas import predicted_schemas
from tests.test_unification_pipeline import rows, run_phases

TRICKY = [
    "${1+1}",
    "${secret:td.apikey}",
    "${session_time}",
    "$${x}",
    "a$$b",
    "${'$'}",
    "}${",
    "${",
    "$$$",
]
PARAMS = {"session_time": "2026-01-01T00:00:00+00:00", "x": "X"}


@pytest.mark.parametrize("text", TRICKY)
def test_an_escaped_text_renders_back_unchanged(text: str) -> None:
    assert render(digdag_literal(text), PARAMS) == text
    assert render(sql_literal(text), PARAMS) == sql_string(text)
    assert evaluate_config({"v": [digdag_literal(text)]}, PARAMS) == {"v": [text]}


def test_text_without_an_expression_is_written_unchanged() -> None:
    # A regexp's end anchor and lone dollars stay as they are (so golden files do not move).
    for text in ("^.+@.+$", "US$ 5", "", "a$b$"):
        assert digdag_literal(text) == text


def test_the_http_operators_secret_pattern() -> None:
    assert operator_reads("${secret:td.apikey}")
    assert operator_reads("${1+1} a:b}")  # Digdag's lazy pattern spans the first `}`
    assert not operator_reads("${1+1}")
    assert not operator_reads("${session_time}")


CONFIG = """\
global:
  client: acme
  backend: local
ingestion:
  source_name: shopify
  connector: file
  source_path: './src$${1+1}'
  objects: [customers]
  mode: historical
  incremental_field: updated_at
  start_date: "2023-01-01"
unification:
  name: customer_360
  keys:
    - name: member
      invalid_texts: ['', '${1+1}', '${secret:td.apikey}', '$${session_time}', 'a$$b']
    - name: email
      invalid_texts: ['']
      valid_regexp: '^[^$]+@.+$|${1+1}'
  tables:
    - {table: shopify_customers, key_columns: [{column: member_code, key: member}, {column: email, key: email}]}
  merge_by_keys: [member, email]
"""

# Customers 1/2 share a code that equals an invalid text only as literal text; 3/4 share
# `2`, which is what `${1+1}` would evaluate to; 5/6 and 7/8 share the other invalid texts.
CUSTOMERS = """\
id,email,member_code,updated_at
1,c1@example.com,${1+1},2023-02-01 00:00:00
2,c2@example.com,${1+1},2023-02-01 00:00:00
3,c3@example.com,2,2023-02-01 00:00:00
4,c4@example.com,2,2023-02-01 00:00:00
5,c5@example.com,${secret:td.apikey},2023-02-01 00:00:00
6,c6@example.com,${secret:td.apikey},2023-02-01 00:00:00
7,c7@example.com,${session_time},2023-02-01 00:00:00
8,c8@example.com,${session_time},2023-02-01 00:00:00
9,c9@example.com,a$$b,2023-02-01 00:00:00
10,c10@example.com,a$$b,2023-02-01 00:00:00
"""

INVALID = ["${1+1}", "${secret:td.apikey}", "${session_time}", "a$$b"]


@pytest.fixture
def tricky_config(tmp_path: Path) -> Path:
    src = tmp_path / "src${1+1}"
    src.mkdir()
    (src / "customers.csv").write_text(CUSTOMERS)
    cfg = tmp_path / "acme.yml"
    cfg.write_text(CONFIG)
    return cfg


def _generated(config: Path) -> dict[str, str]:
    cfg = load_config(config)
    schemas = predicted_schemas(cfg)
    return {
        f"{phase.value}/{rel}": text
        for phase in Phase
        for rel, text in render_phase(cfg, phase, schemas).items()
    }


def _expressions(text: str) -> list[str]:
    """Every `${` Digdag would evaluate, other than the escape itself."""
    return re.findall(r"\$\{[^}]*", text.replace(DOLLAR, ""))


@pytest.mark.slow
def test_config_values_are_written_so_digdag_renders_them_literally(
    tricky_config: Path, tmp_path: Path
) -> None:
    cfg = load_config(tricky_config)
    assert cfg.unification.keys is not None
    assert cfg.unification.keys[0].invalid_texts[1:] == INVALID  # `$${` is a literal `${`
    assert cfg.source_dir is not None and cfg.source_dir.name == "src${1+1}"
    generated = _generated(tricky_config)
    # The same pipeline with plain values: the templates' own `${...}` are all there is.
    plain = tmp_path / "plain"
    (plain / "src").mkdir(parents=True)
    (plain / "src" / "customers.csv").write_text(CUSTOMERS)
    text = CONFIG.replace("src$${1+1}", "src").replace("|${1+1}", "|x")
    for i, value in enumerate(["${1+1}", "${secret:td.apikey}", "$${session_time}", "a$$b"]):
        text = text.replace(f"'{value}'", f"'text{i}'")
    (plain / "acme.yml").write_text(text)
    expected = _generated(plain / "acme.yml")
    assert sorted(generated) == sorted(expected)
    for rel, body in generated.items():
        assert _expressions(body) == _expressions(expected[rel]), rel

    load = yaml.safe_load(generated["ingestion/config/shopify_customers_load.yml"])
    assert evaluate_config({"path": load["in"]["path"]}, {}) == {
        "path": str(cfg.source_dir / "customers.csv")
    }

    prep = generated["unification/queries/prep_shopify_customers.sql"]
    for value in INVALID:
        assert sql_literal(value) in prep
        assert render(sql_literal(value), {}) == sql_string(value)

    # Posted through http_call>, whose content is read for ${secret:...} after the template:
    # that text is left to the prep query, and the file says so without repeating it.
    unify_text = generated["unification/config/unify.yml"]
    unify = yaml.safe_load(unify_text)
    posted = evaluate_config({"keys": unify["keys"]}, PARAMS)["keys"]
    assert posted[0]["invalid_texts"] == ["", "${1+1}", "${session_time}", "a$$b"]
    assert posted[1]["valid_regexp"] == "^[^$]+@.+$|${1+1}"
    assert "key member: 1 invalid_texts" in unify_text
    assert not any(operator_reads(t) for key in posted for t in key["invalid_texts"])


@pytest.mark.slow
def test_the_invalid_texts_filter_the_literal_values_end_to_end(tricky_config: Path) -> None:
    cfg = load_config(tricky_config)
    backend = LocalBackend(cfg.workspace)
    anyio.run(run_phases, backend, cfg, datetime(2026, 1, 1, tzinfo=UTC))
    idn = cfg.unification.id_name
    got = dict(rows(backend, f"SELECT id, {idn} FROM {cfg.unif_db}.enriched_shopify_customers"))
    assert len(got) == 10 and all(got.values())
    assert got[3] == got[4]  # `2` is a valid code: it merges 3 and 4
    for a, b in ((1, 2), (5, 6), (7, 8), (9, 10)):
        assert got[a] != got[b], f"customers {a} and {b} merged on an invalid text"
    codes = rows(backend, f"SELECT DISTINCT member FROM {cfg.stg_db}.shopify_customers_prep")
    assert sorted(c for (c,) in codes if c is not None) == ["2"]

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cdp_mcp.core.config import ConfigError, load_config
from tests.conftest import SENTINEL_KEY

BASE = {
    "global": {"client": "acme"},
    "ingestion": {"source_name": "shopify", "source_path": "./data", "objects": ["orders"]},
}


def write(tmp_path: Path, doc: object) -> Path:
    p = tmp_path / "pipe.yml"
    p.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return p


def problems(tmp_path: Path, doc: object) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, doc))
    return {p.path: p.message for p in err.value.problems}


def merged(**sections: dict) -> dict:
    doc = {k: dict(v) for k, v in BASE.items()}
    for name, body in sections.items():
        doc.setdefault(name, {}).update(body)
    return doc


def test_seed_config_defaults(acme_config: Path) -> None:
    cfg = load_config(acme_config)
    assert cfg.src_db == "acme_src"
    assert cfg.stg_db == "acme_stg"
    assert cfg.config_db == "acme_config"
    assert cfg.unif_db == "cdp_unification_customer_360"
    assert cfg.workspace == acme_config.parent / "acme_cdp"
    assert cfg.source_dir == acme_config.parent / "shopify"
    assert cfg.primary_key("customers") == "id"
    assert [r.qualified("x") for r in cfg.hist_union_tables()] == [
        "acme_src.shopify_orders",
        "acme_src.shopify_customers",
        "acme_src.shopify_products",
    ]


def test_minimal_config_gets_the_seed_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.global_.backend == "local"
    assert cfg.ingestion.mode == "both"
    assert cfg.ingestion.connector == "file"
    assert cfg.staging.engine == "presto"
    assert cfg.unification.id_method == "persistent_id"
    assert cfg.unification.update_strategy == "incremental"
    assert cfg.unification.id_name == "unified_id"


def test_api_key_resolves_from_env_and_never_shows(acme_config: Path) -> None:
    cfg = load_config(acme_config)
    assert cfg.global_.td_api_key is not None
    assert cfg.global_.td_api_key.get_secret_value() == SENTINEL_KEY
    for text in (repr(cfg), str(cfg), cfg.model_dump_json(), str(cfg.model_dump())):
        assert SENTINEL_KEY not in text


def test_literal_key_is_accepted_but_not_echoed(tmp_path: Path) -> None:
    doc = merged(**{"global": {"td_api_key": SENTINEL_KEY}})
    cfg = load_config(write(tmp_path, doc))
    assert SENTINEL_KEY not in repr(cfg)


def test_unset_env_var_is_an_error_on_treasuredata_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TD_API_KEY", raising=False)
    local = merged(**{"global": {"td_api_key": "${TD_API_KEY}"}})
    assert load_config(write(tmp_path, local)).global_.td_api_key is None
    td = merged(**{"global": {"td_api_key": "${TD_API_KEY}", "backend": "treasuredata"}})
    assert problems(tmp_path, td) == {
        "global.td_api_key": "environment variable TD_API_KEY is not set"
    }


def test_env_refs_resolve_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRC_DIR", "/srv/extracts")
    cfg = load_config(write(tmp_path, merged(ingestion={"source_path": "${SRC_DIR}/shop"})))
    assert cfg.source_dir == Path("/srv/extracts/shop")


def test_a_doubled_dollar_writes_a_literal_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRC_DIR", "/srv/extracts")
    monkeypatch.delenv("session_time", raising=False)
    keys = [{"name": "email", "invalid_texts": ["$${session_time}", "$${SRC_DIR}", "${SRC_DIR}"]}]
    cfg = load_config(write(tmp_path, merged(unification={"keys": keys})))
    assert cfg.unification.keys is not None
    assert cfg.unification.keys[0].invalid_texts == [
        "${session_time}",
        "${SRC_DIR}",
        "/srv/extracts",
    ]


@pytest.mark.parametrize(
    ("sections", "path", "needle"),
    [
        ({"global": {"client": "Acme-Corp"}}, "global.client", "not a valid client name"),
        ({"global": {"backend": "snowflake"}}, "global.backend", "'local' or 'treasuredata'"),
        ({"global": {"td_endpoint": "api.treasuredata.com"}}, "global.td_endpoint", "scheme"),
        (
            {"global": {"workflow_endpoint": "api-workflow.treasuredata.com"}},
            "global.workflow_endpoint",
            "give a scheme and host",
        ),
        (
            {"global": {"workflow_endpoint": "https://digdag.internal/api"}},
            "global.workflow_endpoint",
            "not an endpoint",
        ),
        (
            {"global": {"workflow_endpoint": "http://127.0.0.1:70000"}},
            "global.workflow_endpoint",
            "a port is 1 to 65535",
        ),
        ({"ingestion": {"objects": []}}, "ingestion.objects", "at least 1"),
        ({"ingestion": {"objects": ["orders", "orders"]}}, "ingestion.objects", "twice"),
        ({"ingestion": {"objects": ["ord-ers"]}}, "ingestion.objects[0]", "not a valid name"),
        ({"ingestion": {"start_date": "last tuesday"}}, "ingestion.start_date", "not a date"),
        ({"ingestion": {"mode": "sometimes"}}, "ingestion.mode", "'incremental', 'historical'"),
        ({"ingestion": {"primary_keys": {"refunds": "id"}}}, "ingestion.primary_keys", "refunds"),
        ({"staging": {"engine": "spark"}}, "staging.engine", "'presto' or 'hive'"),
        ({"unification": {"merge_iterations": 60}}, "unification.merge_iterations", "49"),
        ({"unification": {"id_method": "magic"}}, "unification.id_method", "persistent_id"),
        ({"hist_union": {"tables": ["a.b.c"]}}, "hist_union.tables", "database.table"),
        (
            {"hist_union": {"tables": ["shopify_refunds"]}},
            "hist_union.tables[0]",
            "not an ingested",
        ),
        ({"stagin": {}}, "stagin", "unknown section"),
        ({"staging": {"engnie": "hive"}}, "staging.engnie", "unknown field"),
    ],
)
def test_each_bad_field_is_named(tmp_path: Path, sections: dict, path: str, needle: str) -> None:
    found = problems(tmp_path, merged(**sections))
    assert path in found, found
    assert needle in found[path]


def test_file_connector_needs_source_path(tmp_path: Path) -> None:
    doc = merged()
    del doc["ingestion"]["source_path"]
    assert "ingestion.source_path" in problems(tmp_path, doc)


def test_unification_cross_checks_name_their_fields(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        merged(
            unification={
                "keys": [{"name": "email"}, {"name": "phone"}],
                "tables": [
                    {"table": "shopify_orders", "key_columns": [{"column": "e", "key": "emial"}]}
                ],
                "merge_by_keys": ["email", "fax"],
            }
        ),
    )
    assert "emial" in found["unification.tables[0].key_columns[0].key"]
    assert "fax" in found["unification.merge_by_keys"]
    assert "phone" in found["unification.keys"]


def test_several_problems_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path, merged(**{"global": {"client": "9x"}, "staging": {"engine": "spark"}})
    )
    assert {"global.client", "staging.engine"} <= set(found)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match="line 2"):
        load_config(write(tmp_path, "global:\n  client: [acme\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- just a list\n"))


def test_monitor_deadline_defaults_to_two_hours_and_is_configurable(tmp_path: Path) -> None:
    from cdp_mcp.pipeline.orchestrator import Pipeline

    assert load_config(write(tmp_path, BASE)).global_.monitor_deadline_minutes == 120
    doc = merged(**{"global": {"monitor_deadline_minutes": 30}})
    assert Pipeline(write(tmp_path, doc)).monitor_deadline == 30 * 60
    found = problems(tmp_path, merged(**{"global": {"monitor_deadline_minutes": 0}}))
    assert "global.monitor_deadline_minutes" in found


def test_local_storage_defaults_to_fast_and_reaches_the_backend(tmp_path: Path) -> None:
    from cdp_mcp.backends.factory import make_backend
    from cdp_mcp.backends.local import LocalBackend

    cfg = load_config(write(tmp_path, BASE))
    assert cfg.global_.local_storage == "fast"
    compact = load_config(write(tmp_path, merged(**{"global": {"local_storage": "compact"}})))
    backend = make_backend(compact)
    assert isinstance(backend, LocalBackend)
    assert backend.runtime.warehouse.storage == "compact"
    found = problems(tmp_path, merged(**{"global": {"local_storage": "tiny"}}))
    assert "global.local_storage" in found and "fast" in found["global.local_storage"]


def test_workflow_endpoint_defaults_to_none_and_is_kept_without_a_trailing_slash(
    tmp_path: Path,
) -> None:
    assert load_config(write(tmp_path, merged())).global_.workflow_endpoint is None
    doc = merged(**{"global": {"workflow_endpoint": " http://127.0.0.1:65432/ "}})
    assert load_config(write(tmp_path, doc)).global_.workflow_endpoint == "http://127.0.0.1:65432"

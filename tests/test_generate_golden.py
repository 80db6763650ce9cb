"""Golden snapshots of every phase's project for the seed's example config.

Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/test_generate_golden.py`
and review the diff like code.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdp_mcp.core.config import load_config
from cdp_mcp.core.phases import ORDER, Phase, project_folder
from cdp_mcp.generate import GenerationError, generate, render_phase
from cdp_mcp.generate.check import check_project
from cdp_mcp.generate.schemas import predicted_schemas
from cdp_mcp.generate.writer import write_project
from tests.conftest import SENTINEL_KEY

GOLDEN = Path(__file__).parent / "golden"
SOURCE_PLACEHOLDER = "<SOURCE_DIR>"


def _normalized(files: dict[str, str], source_dir: Path) -> dict[str, str]:
    # Load configs hold the absolute source path; snapshots must not depend on tmp_path.
    return {k: v.replace(str(source_dir), SOURCE_PLACEHOLDER) for k, v in files.items()}


@pytest.mark.slow
@pytest.mark.parametrize("phase", ORDER, ids=[p.value for p in ORDER])
def test_project_matches_golden_snapshot(acme_config: Path, phase: Phase) -> None:
    cfg = load_config(acme_config)
    assert cfg.source_dir is not None
    files = _normalized(render_phase(cfg, phase, predicted_schemas(cfg)), cfg.source_dir)
    golden_dir = GOLDEN / phase.value
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(golden_dir, ignore_errors=True)
        for rel, text in files.items():
            (golden_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden_dir / rel).write_text(text, newline="\n")
    expected = {
        p.relative_to(golden_dir).as_posix(): p.read_text()
        for p in sorted(golden_dir.rglob("*"))
        if p.is_file()
    }
    assert sorted(files) == sorted(expected), "file list changed"
    for rel, text in files.items():
        assert text == expected[rel], f"{phase.value}/{rel} differs from its golden snapshot"


# The ingestion project of the same config where it loads through a landing table: its files
# on Treasure Data (uploaded by bulk import) and with TD's Shopify connector.
VARIANTS: dict[str, dict[str, Any]] = {
    "ingestion_treasuredata_file": {"global": {"backend": "treasuredata"}},
    "ingestion_shopify_connector": {
        "ingestion": {
            "connector": "shopify",
            "connector_settings": {
                "apikey": "${secret:shopify.apikey}",
                "password": "${secret:shopify.password}",
                "store_name": "acme-store",
            },
        }
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ingestion_variants_match_golden_snapshots(acme_config: Path, variant: str) -> None:
    raw = yaml.safe_load(acme_config.read_text())
    for section, values in VARIANTS[variant].items():
        raw[section].update(values)
    acme_config.write_text(yaml.safe_dump(raw))
    cfg = load_config(acme_config)
    assert cfg.source_dir is not None
    schemas = predicted_schemas(cfg) if cfg.ingestion.connector == "file" else {}
    files = _normalized(render_phase(cfg, Phase.INGESTION, schemas), cfg.source_dir)
    golden_dir = GOLDEN / variant
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(golden_dir, ignore_errors=True)
        for rel, text in files.items():
            (golden_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden_dir / rel).write_text(text, newline="\n")
    expected = {
        p.relative_to(golden_dir).as_posix(): p.read_text()
        for p in sorted(golden_dir.rglob("*"))
        if p.is_file()
    }
    assert files == expected


@pytest.mark.slow
def test_generation_is_deterministic_and_passes_the_structural_check(acme_config: Path) -> None:
    cfg = load_config(acme_config)
    schemas = predicted_schemas(cfg)
    for phase in ORDER:
        first = generate(cfg, phase, schemas)
        snapshot = {f: (first.directory / f).read_bytes() for f in first.files}
        second = generate(cfg, phase, schemas)
        assert {f: (second.directory / f).read_bytes() for f in second.files} == snapshot
        assert check_project(first.directory) == [], phase


@pytest.mark.slow
def test_the_api_key_reaches_no_generated_file(acme_config: Path) -> None:
    cfg = load_config(acme_config)
    schemas = predicted_schemas(cfg)
    for phase in ORDER:
        generate(cfg, phase, schemas)
    for path in cfg.workspace.rglob("*"):
        if path.is_file():
            assert SENTINEL_KEY not in path.read_text(), path


def test_generation_refuses_to_write_outside_the_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with pytest.raises(GenerationError, match="outside the workspace"):
        write_project(ws, "../elsewhere", {"a.dig": "+t:\n  echo>: hi\n"})
    with pytest.raises(GenerationError, match="outside the project"):
        write_project(ws, "ingestion", {"../../escape.sql": "select 1"})
    with pytest.raises(GenerationError, match="outside the workspace"):
        write_project(ws, ".", {"a.dig": ""})
    assert not (tmp_path / "elsewhere").exists()
    assert not (tmp_path / "escape.sql").exists()


@pytest.mark.slow
def test_regeneration_replaces_stale_files(acme_config: Path) -> None:
    # A file an earlier generation wrote and this one does not is removed (a person's file
    # is not: tests/test_workspace_safety.py).
    cfg = load_config(acme_config)
    files = render_phase(cfg, Phase.HIST_UNION, predicted_schemas(cfg))
    folder = project_folder(cfg, Phase.HIST_UNION)
    directory = write_project(cfg.workspace, folder, {**files, "queries/old.sql": "1"})
    generate(cfg, Phase.HIST_UNION, predicted_schemas(cfg))
    assert sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*.*")) == sorted(
        files
    )

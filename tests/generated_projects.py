"""Generated projects for the referees to judge: every phase of tests/golden (the seed's
example config), and every phase of two variants of it, rendered now by the generators.

- `canonical_full`: id_method canonical_id with do_not_merge_key, update_strategy full, and
  ACME_EXTRAS (a second id over the customers, a master table), so the unification project
  takes its other branches;
- `hive_staging`: staging on Hive (its SQL is Hive's, which the Presto and Trino parsers do
  not judge; Digdag still judges its workflows).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from cdp_mcp.core.config import load_config
from cdp_mcp.core.phases import ORDER
from cdp_mcp.generate import render_phase
from cdp_mcp.generate.schemas import predicted_schemas
from tests.conftest import ACME_EXTRAS, FIXTURES, SENTINEL_KEY

GOLDEN = Path(__file__).parent / "golden"

VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "canonical_full": {
        "unification": {
            "id_method": "canonical_id",
            "update_strategy": "full",
            "do_not_merge_key": "email",
            **ACME_EXTRAS,
        }
    },
    "hive_staging": {"staging": {"engine": "hive"}},
}


GOLDEN_FOLDERS = sorted(p.name for p in GOLDEN.iterdir() if any(p.glob("*.dig")))
# Each project's folder name, known before anything is written (for parametrizing).
PROJECT_NAMES = [f"golden-{name}" for name in GOLDEN_FOLDERS] + [
    f"{variant}-{phase.value}" for variant in VARIANTS for phase in ORDER
]


def write_generated(root: Path) -> list[Path]:
    """The project folders under `root`: golden's as `golden-<phase>`, each variant's phases
    as `<variant>-<phase>`."""
    out = []
    for name in GOLDEN_FOLDERS:
        shutil.copytree(GOLDEN / name, root / f"golden-{name}")
        out.append(root / f"golden-{name}")
    for variant, changes in VARIANTS.items():
        work = root / f".{variant}"
        shutil.copytree(FIXTURES / "shopify", work / "shopify")
        raw = yaml.safe_load((FIXTURES / "acme.yml").read_text())
        for section, values in changes.items():
            raw[section].update(values)
        (work / "acme.yml").write_text(yaml.safe_dump(raw))
        before = os.environ.get("TD_API_KEY")
        os.environ["TD_API_KEY"] = SENTINEL_KEY  # the config names ${TD_API_KEY}
        try:
            cfg = load_config(work / "acme.yml")
        finally:
            if before is None:
                del os.environ["TD_API_KEY"]
            else:
                os.environ["TD_API_KEY"] = before
        schemas = predicted_schemas(cfg)
        for phase in ORDER:
            project = root / f"{variant}-{phase.value}"
            for rel, text in render_phase(cfg, phase, schemas).items():
                (project / rel).parent.mkdir(parents=True, exist_ok=True)
                (project / rel).write_text(text)
            out.append(project)
    assert [p.name for p in out] == PROJECT_NAMES
    return out

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SENTINEL_KEY = "1234/SENTINELKEYabcdef0123456789"


@pytest.fixture
def acme_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The seed's example config with its small dirty shopify extract, copied to tmp."""
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    cfg = tmp_path / "acme.yml"
    shutil.copy(FIXTURES / "acme.yml", cfg)
    return cfg

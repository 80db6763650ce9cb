from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
# In TD's key form (`<user id>/<hex>`), as the config requires; its secret half is what
# must never show up (a test looks for SENTINEL_SECRET, so a half-masked echo still fails).
SENTINEL_SECRET = "5e471e15c0ffee0ddba11ab1e5ca1ab1ed0d0f00"
SENTINEL_KEY = f"4242/{SENTINEL_SECRET}"


@pytest.fixture
def acme_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The seed's example config with its small dirty shopify extract, copied to tmp."""
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    cfg = tmp_path / "acme.yml"
    shutil.copy(FIXTURES / "acme.yml", cfg)
    return cfg

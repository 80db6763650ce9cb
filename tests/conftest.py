from __future__ import annotations

import atexit
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
# In TD's key form (`<user id>/<hex>`), as the config requires; its secret half is what
# must never show up (a test looks for SENTINEL_SECRET, so a half-masked echo still fails).
SENTINEL_SECRET = "5e471e15c0ffee0ddba11ab1e5ca1ab1ed0d0f00"
SENTINEL_KEY = f"4242/{SENTINEL_SECRET}"


@pytest.fixture(autouse=True, scope="session")
def _source_memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What source_memory keeps about source files goes to the test run's own folder, from
    before the first fixture (module-wide ones too) reads a source file, never to ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDP_MCP_CACHE_DIR", str(tmp_path_factory.mktemp("source-memory")))
        yield


@pytest.fixture
def acme_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The seed's example config with its small dirty shopify extract, copied to tmp."""
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    shutil.copytree(FIXTURES / "shopify", tmp_path / "shopify")
    cfg = tmp_path / "acme.yml"
    shutil.copy(FIXTURES / "acme.yml", cfg)
    return cfg


# A second id over the customers only, and a master table, for the acme config.
ACME_EXTRAS = {
    "ids": [{"name": "shop_email_id", "tables": ["shopify_customers"], "merge_by_keys": ["email"]}],
    "master_tables": [
        {
            "name": "customer_master",
            "attributes": [
                {
                    "name": "first_name",
                    "source_columns": [{"table": "shopify_customers", "column": "first_name"}],
                },
                {
                    "name": "emails",
                    "array_elements": 3,
                    "source_columns": [
                        {"table": "shopify_customers", "column": "email", "priority": 1},
                        {"table": "shopify_orders", "column": "customer_email", "priority": 2},
                    ],
                },
                {
                    "name": "last_order_total",
                    "source_columns": [
                        {
                            "table": "shopify_orders",
                            "column": "total_price",
                            "order_by": "updated_at_unixtime",
                        }
                    ],
                },
                {"name": "shop_email_id", "source_id": "shop_email_id"},
            ],
        }
    ],
}


def with_extras(config: Path) -> None:
    """Give the acme config at `config` ACME_EXTRAS."""
    import yaml

    raw = yaml.safe_load(config.read_text())
    raw["unification"].update(ACME_EXTRAS)
    config.write_text(yaml.safe_dump(raw))


# -- ending the session -------------------------------------------------------------------
# Threads still alive when pytest is done (an emulator's server, anyio's worker threads,
# DuckDB's) are killed by the interpreter's finalization; native code in one of them can
# abort the process then ("FATAL: exception not rethrown", exit 134) after every test passed.
# So the session ends here, once its report is written, with pytest's own exit status.
# Under pytest-xdist each worker ends so too, after its last report (and "workerfinished")
# went to the controller, which then ends with the status of the whole run.
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if not _EXIT_STATUS:
        return
    alive = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if alive:
        print(f"threads alive at the end of the session: {', '.join(alive)}", file=sys.stderr)
    # os._exit skips atexit: run its handlers first (they remove temp folders, such as the
    # appended tails of source files, which hold the sample's personal data)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])

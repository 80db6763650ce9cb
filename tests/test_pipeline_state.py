"""The pipeline state file: atomic writes, refusal of files that are not ours, and the lock.

Everything here runs on the real file system (no fake StateStore): a crash is simulated by
making the rename fail, concurrency with real threads and real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

from cdp_mcp.core.phases import Phase
from cdp_mcp.pipeline.models import PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline
from cdp_mcp.pipeline.state import (
    SCHEMA_VERSION,
    STATE_KIND,
    PipelineState,
    StateError,
    StateStore,
    StepStatus,
)


def new_state(run: int = 1) -> PipelineState:
    return PipelineState(
        config_path="/somewhere/acme.yml",
        config_hash="abc",
        client="acme",
        backend="local",
        run=run,
        sources=["shopify"],
    )


def leftovers(store: StateStore) -> list[str]:
    """Files in the state folder other than the state file and its locks (temp files)."""
    locks = ("state.json", "state.lock", "operation.lock")
    return sorted(p.name for p in store.directory.iterdir() if p.name not in locks)


def test_save_then_load_round_trips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = new_state()
    step = state.phase(Phase.INGESTION).step("deploy")
    step.status, step.attempts, step.last_error = StepStatus.FAILED, 2, "rejected"
    store.save(state)

    doc = json.loads(store.path.read_text())
    assert doc["kind"] == STATE_KIND and doc["schema_version"] == SCHEMA_VERSION
    loaded = store.load()
    assert loaded.phase(Phase.INGESTION).step("deploy").attempts == 2
    assert loaded.phase(Phase.INGESTION).step("deploy").last_error == "rejected"
    assert leftovers(store) == []


@pytest.mark.parametrize("fails", ["os.replace", "os.fsync"])
def test_a_crash_mid_write_leaves_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    store = StateStore(tmp_path)
    store.save(new_state(run=1))
    before = store.path.read_bytes()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk pulled out")

    monkeypatch.setattr(fails, crash)
    with pytest.raises(OSError, match="disk pulled out"):
        store.save(new_state(run=2))
    monkeypatch.undo()

    assert store.path.read_bytes() == before
    assert store.load().run == 1
    assert leftovers(store) == []  # the half-written temp file was removed


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"kind": "cdp-mcp/pipeline-state", "schema_version": 1, "phases": {', "is corrupt"),
        ("", "is corrupt"),
        ('{"name": "my-app", "version": "1.0.0"}', "is not a cdp-mcp state file"),
        ("[1, 2, 3]", "is not a cdp-mcp state file"),
        (
            json.dumps({"kind": STATE_KIND, "schema_version": SCHEMA_VERSION + 1}),
            f"has schema version {SCHEMA_VERSION + 1}, this cdp-mcp reads version {SCHEMA_VERSION}",
        ),
        (
            json.dumps({"kind": STATE_KIND, "schema_version": SCHEMA_VERSION, "run": "x"}),
            "does not match its schema",
        ),
    ],
    ids=["truncated", "empty", "foreign-object", "foreign-list", "newer-version", "bad-fields"],
)
def test_unusable_state_files_are_reported_and_left_byte_identical(
    tmp_path: Path, content: str, expected: str
) -> None:
    store = StateStore(tmp_path)
    store.directory.mkdir(parents=True)
    store.path.write_text(content)
    before = store.path.read_bytes()

    with pytest.raises(StateError) as err:
        store.load()
    message = str(err.value)
    assert expected in message
    assert str(store.path) in message  # says which file
    assert store.path.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "content",
    [
        "{ not json",
        '{"kind": "something-else", "schema_version": 1}',
        '{"kind": "cdp-mcp/pipeline-state", "schema_version": 99}',
    ],
    ids=["corrupt", "foreign", "future-version"],
)
def test_the_pipeline_refuses_to_overwrite_an_unusable_state_file(
    acme_config: Path, content: str
) -> None:
    """Every entry point (init, a step, status) refuses; none rewrites the file."""
    workspace = acme_config.parent / "acme_cdp"
    store = StateStore(workspace)
    store.directory.mkdir(parents=True)
    store.path.write_text(content)
    before = store.path.read_bytes()

    pipeline = Pipeline(acme_config)
    with pytest.raises(PipelineError, match=r"move it (aside|away)|point global\.workspace"):
        anyio.run(pipeline.init)
    with pytest.raises(PipelineError, match=str(store.path)):
        anyio.run(pipeline.generate_phase, "ingestion")
    with pytest.raises(PipelineError):
        pipeline.status()
    assert store.path.read_bytes() == before
    assert leftovers(store) == []


def _bump(store: StateStore, times: int) -> None:
    for _ in range(times):
        with store.locked():
            state = store.load()
            state.run += 1
            state.history.append({"by": threading.get_ident()})
            store.save(state)


@pytest.mark.slow
def test_concurrent_writers_in_threads_lose_no_update(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(new_state(run=0))
    threads, rounds = 6, 25
    workers = [threading.Thread(target=_bump, args=(store, rounds)) for _ in range(threads)]
    seen_invalid: list[str] = []
    stop = threading.Event()

    def reader() -> None:  # a reader without the lock never sees half a file
        while not stop.is_set():
            try:
                json.loads(store.path.read_text())
            except json.JSONDecodeError as e:
                seen_invalid.append(str(e))

    watcher = threading.Thread(target=reader)
    watcher.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    watcher.join()

    final = store.load()
    assert final.run == threads * rounds
    assert len(final.history) == threads * rounds
    assert seen_invalid == []
    assert leftovers(store) == []


WRITER = """
import os, sys
from pathlib import Path
from cdp_mcp.pipeline.state import StateStore
store = StateStore(Path(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    with store.locked():
        state = store.load()
        state.run += 1
        state.history.append({"pid": os.getpid()})
        store.save(state)
"""


@pytest.mark.slow
def test_concurrent_writers_in_processes_lose_no_update(tmp_path: Path) -> None:
    """Two MCP servers (or a server and `cdp-mcp run`) on one workspace."""
    store = StateStore(tmp_path)
    store.save(new_state(run=0))
    procs, rounds = 4, 20
    running = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(rounds)])
        for _ in range(procs)
    ]
    codes = [p.wait(timeout=60) for p in running]
    assert codes == [0] * procs

    final = json.loads(store.path.read_text())  # valid JSON at the end
    assert final["run"] == procs * rounds
    pids = {h["pid"] for h in final["history"]}
    assert pids == {p.pid for p in running}
    assert leftovers(store) == []
    assert os.path.getsize(store.path) > 0

"""Property-based fuzzing of everything a person hands cdp-mcp: configs and state files.

Random YAML shapes, types, lengths, unicode and nesting, as whole documents and as
mutations of the seed's valid config. The properties: only the documented error type comes
out (ConfigError, PipelineError, StateError), every problem names its field path or is a
file-level message, messages stay short, and the CLI never prints a traceback.

Deterministic (derandomize, no example database) and bounded, so it runs in every `pytest`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_mcp.core.config import MESSAGE_MAX, ConfigError, PipelineConfig, load_config
from cdp_mcp.core.yaml_bounded import LOADERS, YamlInputError, load_bounded
from cdp_mcp.pipeline.models import InitResult, PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline
from cdp_mcp.pipeline.state import PipelineState, StateError, StateStore
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow  # end to end: the full suite, not the fast lane

SECTIONS = ("global", "ingestion", "hist_union", "staging", "unification")
FILE_LEVEL = re.compile(
    r"^(not a cdp-mcp pipeline config|not valid YAML|the YAML |the alias |the file has "
    r"|\d+ more unknown fields)"
)
SEED = yaml.safe_load((FIXTURES / "acme.yml").read_text())


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- strategies ------------------------------------------------------------------------

TRICKY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "${TD_API_KEY}",
        "${NOT_SET_ANYWHERE}",
        "0001-01-01",
        "1970-01-01",
        "9999-12-31T23:59:59-05:00",
        "2023-09-01T00:00:00.000000",
        "a" * 65,
        "shopify_orders",
        "db.table.extra",
        "../..",
        "\x00",
        "\x1b[31mred",
        "naïve_ünïcode",
        "日本語",
        "http://127.0.0.1:99999",
        "https://api.treasuredata.com",
        "persistent_id",
        "local",
        "treasuredata",
        "[(",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=80)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
    | TRICKY_TEXT
)
KEYS = st.sampled_from(
    [*SECTIONS, "client", "backend", "objects", "name", "tables", "keys", "key_columns"]
) | st.text(max_size=50)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=40,
)


def paths_of(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document a mutation can land (dict keys and list indexes)."""
    found = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += paths_of(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += paths_of(v, (*prefix, i))
    return found


SEED_PATHS = paths_of(SEED)[1:]


NAMEISH = st.text(alphabet="abcxyz_019", max_size=70) | TRICKY_TEXT


def like(value: Any) -> st.SearchStrategy[Any]:
    """A value of the same kind as `value`: near-valid configs reach the deeper checks."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-5, 10**6)
    if isinstance(value, str):
        return NAMEISH
    if isinstance(value, list):
        return st.lists(st.sampled_from(value), max_size=len(value) + 2) if value else VALUES
    return VALUES


@st.composite
def near_seed(draw: st.DrawFn) -> dict[str, Any]:
    """The seed's valid config with up to 3 values changed, removed or added."""
    doc = copy.deepcopy(SEED)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(SEED_PATHS))
        parent: Any = doc
        try:
            for step in path[:-1]:
                parent = parent[step]
            leaf = path[-1]
            action = draw(st.sampled_from(["alike", "alike", "replace", "delete", "add"]))
            if action == "delete":
                del parent[leaf]
            elif action == "add" and isinstance(parent, dict):
                parent[draw(KEYS)] = draw(VALUES)
            elif action == "alike":
                parent[leaf] = draw(like(parent[leaf]))
            else:
                parent[leaf] = draw(VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this place
    return doc


YAMLISH = st.lists(
    st.sampled_from(
        [
            "global:",
            "ingestion:",
            "\n",
            "  ",
            "- ",
            ": ",
            "[",
            "]",
            "{",
            "}",
            ",",
            "&a ",
            "*a",
            "&b ",
            "*b",
            "<<: ",
            "!!python/object:os.system ",
            "!!binary ",
            "? ",
            "%YAML 1.1\n",
            "---\n",
            "...\n",
            '"\\0"',
            "'",
            '"',
            "#",
            "|",
            ">",
            "\t",
            "client: acme",
            "objects: [a]",
            "source_name: s",
            "2023-13-45",
            "1e999",
            "9" * 40,
            "~",
            "\ufeff",
            "\x85",
            "\u2028",
        ]
    ),
    max_size=60,
).map("".join)


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


# -- properties ------------------------------------------------------------------------


def shown_key(key: object) -> str:
    text = key if isinstance(key, str) and key.isprintable() and key.strip() else repr(key)
    return text if len(text) <= 40 else f"{text[:37]}..."


def check_config_error(err: ConfigError, doc: Any = None) -> None:
    """Every problem names a field of the document, or is about the file as a whole."""
    text = str(err)
    assert "Traceback" not in text
    assert err.problems, text
    keys = {shown_key(k) for k in doc} if isinstance(doc, dict) else set()
    for p in err.problems:
        assert len(p.message) <= MESSAGE_MAX, p
        assert "\n" not in p.message, p
        if not p.path:
            assert FILE_LEVEL.match(p.message), p
            continue
        named = keys | set(SECTIONS)
        assert any(p.path == k or p.path.startswith((f"{k}.", f"{k}[")) for k in named), (
            p.path,
            sorted(named)[:8],
        )
        assert len(p.path) <= 200, p.path


def load_doc(folder: Path, text: str | bytes) -> PipelineConfig | ConfigError:
    path = folder / "c.yml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    try:
        return load_config(path)
    except ConfigError as e:
        return e


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "shopify").symlink_to(FIXTURES / "shopify")
    return root


@pytest.mark.slow
@fuzz(120)
@given(doc=near_seed())
def test_configs_near_the_seed_get_field_path_messages(folder: Path, doc: dict) -> None:
    outcome = load_doc(folder, dump(doc))
    if isinstance(outcome, ConfigError):
        check_config_error(outcome, doc)


@pytest.mark.slow
@fuzz(150)
@given(doc=VALUES)
def test_random_documents_get_field_path_messages(folder: Path, doc: Any) -> None:
    outcome = load_doc(folder, dump(doc))
    assert isinstance(outcome, ConfigError)
    check_config_error(outcome, doc)
    looks_like_config = isinstance(doc, dict) and any(k in SECTIONS for k in doc)
    if not looks_like_config:
        # Not a pipeline config: one fixed line, nothing of the document in it.
        assert len(outcome.problems) == 1
        assert outcome.problems[0].message.startswith("not a cdp-mcp pipeline config")
        assert str(outcome) == f"{folder / 'c.yml'}: {outcome.problems[0].message}"


@fuzz(200)
@given(text=YAMLISH | st.binary(max_size=400) | st.text(max_size=400))
def test_random_text_and_bytes_never_escape_as_another_error(
    folder: Path, text: str | bytes
) -> None:
    outcome = load_doc(folder, text)
    if isinstance(outcome, ConfigError):
        check_config_error(outcome, None if isinstance(text, bytes) else _parsed(text))


@fuzz(150)
@given(text=YAMLISH | st.text(max_size=300), parser=st.sampled_from(sorted(LOADERS)))
def test_both_yaml_parsers_return_values_or_their_one_error(text: str, parser: str) -> None:
    try:
        load_bounded(text.encode("utf-8", "surrogatepass"), parser)
    except YamlInputError as e:
        assert "Traceback" not in str(e) and len(str(e)) < 400


def _parsed(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except Exception:
        return None


@pytest.mark.slow
@fuzz(40)
@given(doc=near_seed())
def test_init_pipeline_answers_every_config_with_a_result_or_its_words(
    folder: Path, doc: dict
) -> None:
    glob = doc.get("global")
    if isinstance(glob, dict):
        # Never let a mutated config write outside the scratch folder or reach a network.
        glob["workspace"], glob["backend"] = "./ws", "local"
    config = folder / "c.yml"
    config.write_text(dump(doc), encoding="utf-8")
    try:
        result = anyio.run(Pipeline(config).init)
    except PipelineError as e:
        text = str(e)
        assert "Traceback" not in text and "internal error" not in text, text
        assert str(config) in text or "is locked" in text or "source_path" in text, text
    else:
        assert isinstance(result, InitResult)


# -- state files -----------------------------------------------------------------------

STATE_SEED = json.loads(
    PipelineState(
        config_path="/somewhere/acme.yml",
        config_hash="abc",
        client="acme",
        backend="local",
        sources=["shopify"],
    ).model_dump_json()
)
STATE_SEED["stages"]["ingestion:shopify"]["steps"] = {
    "generate": {"name": "generate", "status": "succeeded", "attempts": 1, "details": {}}
}
STATE_PATHS = paths_of(STATE_SEED)[1:]


@st.composite
def near_state(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(STATE_SEED)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(STATE_PATHS))
        parent: Any = doc
        try:
            for step in path[:-1]:
                parent = parent[step]
            if draw(st.booleans()):
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    return doc


@pytest.mark.slow
@fuzz(200)
@given(
    content=near_state().map(lambda d: json.dumps(d, ensure_ascii=False).encode())
    | VALUES.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=300)
)
def test_state_files_load_or_name_the_file(folder: Path, content: bytes) -> None:
    store = StateStore(folder / "state_ws")
    store.directory.mkdir(parents=True, exist_ok=True)
    store.path.write_bytes(content)
    try:
        state = store.load()
    except StateError as e:
        assert str(store.path) in str(e)
        assert len(str(e)) < 600, str(e)
    else:
        assert isinstance(state, PipelineState)
    assert store.path.read_bytes() == content  # never rewritten by a failed load


# -- the real CLI ----------------------------------------------------------------------


@pytest.mark.slow
@fuzz(5)
@given(doc=near_seed() | VALUES)
def test_the_cli_never_prints_a_traceback(folder: Path, doc: Any) -> None:
    if isinstance(doc, dict) and isinstance(doc.get("global"), dict):
        doc["global"]["workspace"], doc["global"]["backend"] = "./ws_cli", "local"
    (folder / "cli.yml").write_text(dump(doc), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("CDP_MCP_TRACEBACK", None)
    done = subprocess.run(
        [sys.executable, "-m", "cdp_mcp.cli.main", "generate", "cli.yml", "all"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    if done.returncode == 1:
        assert done.stderr.startswith("error: "), done.stderr

"""The TD API key is checked at load and never shown, in any spelling, anywhere.

A key with junk around it (a CRLF `.env` file, a pasted space, a NUL, a Unicode space) is
refused with words that name the junk, never the key: in-process, on the CLI's stderr, and
over MCP stdio (the tool result and the server's stderr). The key put into another field is
named as such, not echoed. A valid key that a TD-compatible server quotes back (raw,
URL-encoded, upper-cased, base64; in a 5xx body, a 4xx body and in task logs) is masked in
the CLI's output, the tool results, the server's stderr, state.json, the reports and the run
logs; so is the secret td.apikey read from TD_APIKEY, the other name of a key.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

import anyio
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent
from pydantic import SecretStr
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdp_mcp.backends.td.errors import AuthenticationError
from cdp_mcp.backends.td.transport import Transport
from cdp_mcp.backends.treasuredata import TreasureDataBackend
from cdp_mcp.core import redact
from cdp_mcp.core.config import ConfigError, parse_config
from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.server import BackgroundServer
from cdp_mcp.pipeline.models import PipelineError
from cdp_mcp.pipeline.orchestrator import Pipeline
from tests.conftest import FIXTURES, SENTINEL_KEY

T = TypeVar("T")

# The secret td.apikey's own key (TD_APIKEY), distinct from the config's (TD_API_KEY).
OTHER_KEY = "4343/0ddba11c0ffee5e471e15ab1e5ca1ab1ed0d0f00"

# name -> (key as the environment or file holds it, words the error must use)
JUNK: dict[str, tuple[str, str]] = {
    "trailing LF": (SENTINEL_KEY + "\n", "after it a line feed"),
    "CRLF": (SENTINEL_KEY + "\r\n", "a carriage return (\\r) and a line feed (\\n)"),
    "leading spaces": ("  " + SENTINEL_KEY, "before it a space"),
    "tab": ("\t" + SENTINEL_KEY + "\t", "before it a tab; after it a tab"),
    "NUL": (SENTINEL_KEY + "\x00", "after it a NUL byte"),
    "no-break space": (SENTINEL_KEY + "\u00a0", "no-break space (U+00A0)"),
    "ideographic space": ("\u3000" + SENTINEL_KEY, "Unicode space (U+3000)"),
    "zero-width space": (SENTINEL_KEY + "\u200b", "invisible character (U+200B)"),
    "BOM": ("\ufeff" + SENTINEL_KEY, "byte-order mark"),
    "space inside": (SENTINEL_KEY[:12] + " " + SENTINEL_KEY[12:], "contains a space inside it"),
}
# An environment variable cannot hold a NUL; the rest go through the environment too.
ENV_JUNK = [name for name in JUNK if name != "NUL"]


def leaks(text: str, *keys: str) -> list[str]:
    """The spellings of `keys` found in `text`. A key's secret half (after the `/`) survives
    repr, JSON, URL-encoding and case changes, so it is looked for case-blind; the first 12
    hex digits catch a key cut short; base64 is looked for as well."""
    found = []
    lowered = text.lower()
    for key in keys:
        half = key.split("/", 1)[1]
        for part in (half, half[:12]):
            if part.lower() in lowered:
                found.append(part)
        b64 = base64.b64encode(key.encode()).decode().rstrip("=")
        if b64 in text:
            found.append(b64)
    return found


def files_text(*folders: Path) -> dict[Path, str]:
    out = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix not in (".duckdb", ".wal", ".gz", ".tar"):
                out[path] = path.read_text(encoding="utf-8", errors="replace")
    return out


def seed_config(folder: Path, **global_: Any) -> Path:
    """The seed's example pipeline, copied into `folder`, with `global_` merged in."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "shopify").exists():
        import shutil

        shutil.copytree(FIXTURES / "shopify", folder / "shopify")
    raw = yaml.safe_load((FIXTURES / "acme.yml").read_text())
    raw["global"].update(global_)
    path = folder / "acme.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdp_mcp.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, **env},
    )


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def over_mcp(
    env: dict[str, str], cwd: Path, errlog: Path, talk: Callable[[Client], Awaitable[T]]
) -> T:
    """`talk` to `cdp-mcp serve` over stdio, started with `env`; its stderr goes to errlog."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cdp_mcp.cli.main", "serve"],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), **env},
        cwd=str(cwd),
    )
    with errlog.open("w") as err:
        async with Client(stdio_client(params, errlog=err), read_timeout_seconds=120) as client:
            return await talk(client)


# -- the form of the key ---------------------------------------------------------------


@pytest.mark.parametrize("junk", list(JUNK))
def test_a_key_with_junk_is_refused_by_name_and_never_shown(
    junk: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, words = JUNK[junk]
    monkeypatch.delenv("TD_API_KEY", raising=False)
    raw = yaml.safe_load((FIXTURES / "acme.yml").read_text())
    raw["global"].update(backend="treasuredata", td_api_key=key)  # a literal key
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "acme.yml", tmp_path)
    [problem] = err.value.problems
    assert problem.path == "global.td_api_key"
    assert words in problem.message, problem.message
    assert "TD_API_KEY" in problem.message or "copy it again" in problem.message
    assert leaks(str(err.value), SENTINEL_KEY) == []


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("wire-key", "no '/'"),
        ("1/XXX", "16 or more hexadecimal digits"),
        ("abcd/0123456789abcdef0123", "user id before '/' is not a number"),
    ],
)
def test_a_key_not_in_tds_form_is_refused(
    key: str, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TD_API_KEY", key)
    with pytest.raises(ConfigError) as err:
        parse_config(yaml.safe_load((FIXTURES / "acme.yml").read_text()), "acme.yml", tmp_path)
    assert why in str(err.value) and "<user id>/<hex>" in str(err.value)
    assert key not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("junk", ["CRLF", "trailing LF", "tab", "ideographic space"])
def test_the_cli_refuses_a_key_with_junk_without_showing_it(junk: str, tmp_path: Path) -> None:
    """Before: the key went into the header and httpx's error quoted it on stderr, six times."""
    key, words = JUNK[junk]
    with BackgroundServer(create_app(tmp_path / "td_site", SENTINEL_KEY)) as td:
        config = seed_config(tmp_path, backend="treasuredata", td_endpoint=td.url)
        done = cli("run", str(config), env={"TD_API_KEY": key}, cwd=tmp_path)
    assert done.returncode == 1
    assert "global.td_api_key" in done.stderr and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert leaks(done.stdout + done.stderr, SENTINEL_KEY) == []


@pytest.mark.slow
@pytest.mark.parametrize("junk", ["CRLF", "leading spaces"])
def test_init_pipeline_over_mcp_refuses_a_key_with_junk_without_showing_it(
    junk: str, tmp_path: Path
) -> None:
    key, words = JUNK[junk]
    errlog = tmp_path / "server.stderr"
    with BackgroundServer(create_app(tmp_path / "td_site", SENTINEL_KEY)) as td:
        config = seed_config(tmp_path / "p", backend="treasuredata", td_endpoint=td.url)

        async def talk(client: Client) -> CallToolResult:
            return await client.call_tool("init_pipeline", {"config_path": str(config)})

        result = anyio.run(over_mcp, {"TD_API_KEY": key}, tmp_path, errlog, talk)
    assert result.is_error
    assert "global.td_api_key" in text_of(result) and words in text_of(result)
    assert leaks(result.model_dump_json(), SENTINEL_KEY) == []
    assert leaks(errlog.read_text(errors="replace"), SENTINEL_KEY) == []


def every_spelling(key: str) -> list[str]:
    return [
        key,
        repr(key),
        repr(f"TD1 {key}".encode()),  # httpx/h11 on a bad header value
        json.dumps(key),
        json.dumps(key, ensure_ascii=False),
        quote(key, safe=""),
        quote(key),
        quote_plus(key),
        key.upper(),
        base64.b64encode(key.encode()).decode(),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("junk", ENV_JUNK)
def test_the_scrubber_masks_every_spelling_of_both_key_variables(
    junk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TD_APIKEY (secret td.apikey) carrying junk is masked in every spelling, like the
    config's key; text from a server passes this on its way to any message."""
    key, _ = JUNK[junk]
    other = key.replace(SENTINEL_KEY, OTHER_KEY)  # the same junk around the other key
    monkeypatch.setenv("TD_APIKEY", other)
    transport = Transport(SecretStr(SENTINEL_KEY))
    for spelling in [*every_spelling(SENTINEL_KEY), *every_spelling(other)]:
        text = transport.scrub(f"server said: {spelling}!")
        assert leaks(text, SENTINEL_KEY, OTHER_KEY) == [], (spelling, text)
        assert base64.b64encode(other.encode()).decode().rstrip("=") not in text
        assert text.startswith("server said: ") and text.endswith("!")


def test_a_log_record_carrying_the_key_is_masked_before_any_handler_sees_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the CLI and the server install: a library logging the key (in its arguments or
    in an exception's text) reaches no handler with it; the traceback is kept as text."""
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    redact.install_log_redaction()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("tests.key_secrecy")
    logger.addHandler(handler)
    try:
        logger.warning("calling %s", f"https://h/?k={quote_plus(SENTINEL_KEY)}")
        try:
            raise ValueError(f"Illegal header value {f'TD1 {SENTINEL_KEY}'.encode()!r}")
        except ValueError:
            logger.exception("tool call failed")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "calling https://h/?k=**********" in text
    assert "Traceback" in text and "ValueError: Illegal header value b'TD1 **********'" in text
    assert leaks(text, SENTINEL_KEY) == []


@pytest.mark.parametrize("junk", ["CRLF", "tab", "space inside"])
def test_a_backend_made_directly_never_sends_a_key_with_junk(junk: str) -> None:
    """Past the config (a script, a test): the key is refused before any header holds it."""
    key, _ = JUNK[junk]
    with pytest.raises(AuthenticationError) as err:
        TreasureDataBackend("https://api.treasuredata.com", key)
    assert "whitespace or control characters" in str(err.value)
    assert leaks(str(err.value), SENTINEL_KEY) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "words"),
    [("wire-key", "not in TD's form"), (SENTINEL_KEY + "\n", "after it a line feed")],
)
def test_the_emulator_takes_a_key_only_in_tds_form(key: str, words: str, tmp_path: Path) -> None:
    port = "1"  # never bound: the key is refused first
    done = subprocess.run(
        [sys.executable, "-m", "cdp_mcp.cli.main", "emulate", "--port", port, "--key", key],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and "error: --key: the API key" in done.stderr, done.stderr
    assert words in done.stderr and key.strip() not in done.stdout + done.stderr


# -- the key where it does not belong -------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def put(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value

    return put


# case -> (how the config is changed, the field the error names)
ELSEWHERE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "td_endpoint": (_set("global.td_endpoint", "${TD_API_KEY}"), "global.td_endpoint"),
    "workflow_endpoint": (
        _set("global.workflow_endpoint", "${TD_API_KEY}"),
        "global.workflow_endpoint",
    ),
    # `client` is lower-cased before its check, and so was its echo
    "client": (_set("global.client", "${TD_API_KEY}"), "global.client"),
    "backend": (_set("global.backend", "${TD_API_KEY}"), "global.backend"),
    # valid values: the key would reach folder names and SQL literals
    "workspace": (_set("global.workspace", "./ws_${TD_API_KEY}"), "global.workspace"),
    "invalid_texts": (
        _set("unification.keys.0.invalid_texts", ["", "${TD_API_KEY}"]),
        "unification.keys[0].invalid_texts[1]",
    ),
}


@pytest.mark.parametrize("case", list(ELSEWHERE))
def test_the_key_in_another_field_is_named_never_shown(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    change, path = ELSEWHERE[case]
    monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
    raw = yaml.safe_load((FIXTURES / "acme.yml").read_text())
    change(raw)
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "acme.yml", tmp_path)
    assert [p.path for p in err.value.problems] == [path], str(err.value)
    assert "looks like the TD API key" in str(err.value)
    assert leaks(str(err.value), SENTINEL_KEY) == []


@pytest.mark.slow
def test_a_key_from_any_variable_is_kept_out_of_other_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config's key is masked whatever variable it came from, not just TD_API_KEY."""
    monkeypatch.delenv("TD_API_KEY", raising=False)
    monkeypatch.setenv("ACME_TD_KEY", OTHER_KEY)
    config = seed_config(
        tmp_path, backend="treasuredata", td_api_key="${ACME_TD_KEY}", td_endpoint="${ACME_TD_KEY}"
    )
    done = cli("status", str(config), env={}, cwd=tmp_path)
    assert done.returncode == 1
    assert "global.td_endpoint: this value looks like the TD API key" in done.stderr
    assert leaks(done.stdout + done.stderr, OTHER_KEY) == []


# -- the secret td.apikey, from TD_APIKEY ------------------------------------------------


@pytest.mark.slow
def test_the_secret_td_apikey_with_junk_is_refused_and_nothing_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "td_site"
    with BackgroundServer(create_app(site, SENTINEL_KEY)) as td:
        monkeypatch.setenv("TD_API_KEY", SENTINEL_KEY)
        monkeypatch.setenv("TD_APIKEY", OTHER_KEY + "\r\n")
        config = seed_config(tmp_path, backend="treasuredata", td_endpoint=td.url)

        async def scenario() -> list[str]:
            p = Pipeline(config)
            try:
                await p.init()
                for phase in ("ingestion", "hist_union", "staging"):
                    await p.skip_phase(phase, confirm=True)
                await p.generate_phase("unification")
                await p.push_project("unification")
                with pytest.raises(PipelineError) as err:
                    await p.set_secrets("unification", ["td.apikey"])
                message = str(err.value)
                assert "TD_APIKEY" in message and "carriage return" in message, message
                assert leaks(message, OTHER_KEY, SENTINEL_KEY) == []
                return (await p.push_project("unification")).missing_secrets
            finally:
                await p.aclose()

        assert anyio.run(scenario) == ["td.apikey"]  # the broken value was not uploaded


# -- a valid key that a server quotes back ---------------------------------------------------


def spellings(*keys: str) -> str:
    """How a careless server or proxy quotes credentials: every encoding a client meets."""
    parts = []
    for key in keys:
        parts += [
            f"Authorization: TD1 {key}",
            quote(key, safe=""),
            quote_plus(key),
            key.upper(),
            base64.b64encode(key.encode()).decode(),
            json.dumps({"apikey": key}),
        ]
    return "credentials seen: " + " | ".join(parts)


class QuotingTD:
    """In front of the emulator: a TD-compatible server that quotes the credentials back, in
    the first API v3 answer (HTTP 500, retried), the first push (HTTP 400, one attempt lost)
    and at the end of every task log it serves."""

    def __init__(self, app: ASGIApp, quote_text: str) -> None:
        self.app, self.quote_text = app, quote_text
        self.quoted: list[str] = []

    async def _refuse(self, status: int, scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):  # read the upload first
            pass
        body = {"message": self.quote_text, "status": status}
        await JSONResponse(body, status)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = (scope["method"], "/v3" if scope["path"].startswith("/v3/") else scope["path"])
        if where in {("GET", "/v3"), ("PUT", "/api/projects")} and where[1] not in self.quoted:
            self.quoted.append(where[1])
            await self._refuse(500 if where[1] == "/v3" else 400, scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            if start["status"] == 200 and (b"content-type", b"application/gzip") in headers:
                body = gzip.compress(gzip.decompress(body) + f"\n{self.quote_text}\n".encode())
                self.quoted.append("log")
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)


@pytest.mark.slow
def test_a_server_quoting_the_key_back_never_gets_it_shown_by_the_cli(tmp_path: Path) -> None:
    site = tmp_path / "td_site"
    quoting = QuotingTD(create_app(site, SENTINEL_KEY), spellings(SENTINEL_KEY, OTHER_KEY))
    with BackgroundServer(quoting) as td:
        config = seed_config(tmp_path / "p", backend="treasuredata", td_endpoint=td.url)
        env = {"TD_API_KEY": SENTINEL_KEY, "TD_APIKEY": OTHER_KEY}
        # The refused push stops the run for a decision; run again, as the person would.
        stopped = cli("run", str(config), env=env, cwd=tmp_path)
        state_after_stop = (tmp_path / "p" / "acme_cdp" / ".cdp_state" / "state.json").read_text()
        done = cli("run", str(config), env=env, cwd=tmp_path)
    assert stopped.returncode == 1 and "refused by TD Workflow" in stopped.stdout + stopped.stderr
    assert "retry 1/" in stopped.stderr and "**********" in stopped.stderr  # the 500, masked
    assert "**********" in state_after_stop  # the refused push's error, masked
    assert leaks(stopped.stdout + stopped.stderr + state_after_stop, SENTINEL_KEY, OTHER_KEY) == []
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"/v3", "/api/projects", "log"} <= set(quoting.quoted)  # every quote was served
    assert leaks(done.stdout + done.stderr, SENTINEL_KEY, OTHER_KEY) == []
    written = files_text(tmp_path / "p" / "acme_cdp")
    names = {p.name for p in written}
    assert {"state.json", "cdp_report.md"} <= names
    run_logs = [t for p, t in written.items() if "pipeline_logs" in p.parts]
    assert any("seen: Authorization: TD1 **********" in t for t in run_logs)  # a task log, masked
    for path, text in written.items():
        assert leaks(text, SENTINEL_KEY, OTHER_KEY) == [], path


@pytest.mark.slow
def test_a_server_quoting_the_key_back_never_gets_it_shown_over_mcp(tmp_path: Path) -> None:
    site = tmp_path / "td_site"
    errlog = tmp_path / "server.stderr"
    quoting = QuotingTD(create_app(site, SENTINEL_KEY), spellings(SENTINEL_KEY, OTHER_KEY))
    with BackgroundServer(quoting) as td:
        config = str(seed_config(tmp_path / "p", backend="treasuredata", td_endpoint=td.url))

        async def talk(client: Client) -> list[CallToolResult]:
            async def call(tool: str, **args: Any) -> CallToolResult:
                results.append(await client.call_tool(tool, {"config_path": config, **args}))
                return results[-1]

            results: list[CallToolResult] = []
            assert not (await call("init_pipeline")).is_error
            assert not (await call("generate_phase", phase="ingestion")).is_error
            refused = await call("push_project", phase="ingestion")
            assert refused.is_error and "**********" in text_of(refused)
            assert not (await call("push_project", phase="ingestion")).is_error
            started = await call("start_workflow", phase="ingestion")
            attempt = (started.structured_content or {})["attempt_id"]
            await call("get_session", wait_seconds=120)
            logs = await call("get_logs", attempt_id=attempt)
            assert "seen: Authorization: TD1 **********" in json.dumps(logs.structured_content)
            await call("pipeline_status")
            await call("final_report")
            return results

        env = {"TD_API_KEY": SENTINEL_KEY, "TD_APIKEY": OTHER_KEY}
        results = anyio.run(over_mcp, env, tmp_path, errlog, talk)
    for result in results:
        assert leaks(result.model_dump_json(), SENTINEL_KEY, OTHER_KEY) == [], text_of(result)
    stderr = errlog.read_text(errors="replace")
    assert "retry 1/" in stderr  # the quoted 500 was logged, masked
    assert leaks(stderr, SENTINEL_KEY, OTHER_KEY) == []
    for path, text in files_text(tmp_path / "p" / "acme_cdp").items():
        assert leaks(text, SENTINEL_KEY, OTHER_KEY) == [], path

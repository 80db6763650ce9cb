"""`cdp-mcp serve --transport streamable-http` lets in only what it should: Host and Origin
from an allowed list on every bind, and a bearer token on any bind beyond loopback.

Every test drives the real server process over HTTP on this machine (tests/http_serve.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from cdp_mcp.cli.main import main
from cdp_mcp.server.http_security import TOKEN_ENV, http_access
from tests.http_serve import (
    INITIALIZE,
    MCP_HEADERS,
    free_port,
    serve_command,
    serve_env,
    serve_http,
)

TOKEN = "test-token-Zq8vL1mN4pR7sT0w"  # what the operator put in CDP_MCP_HTTP_TOKEN
WRONG = "wrong-token-Aa1Bb2Cc3Dd4Ee5F"


def _initialize(url: str, **headers: str) -> httpx.Response:
    return httpx.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **headers}, timeout=20)


def _served_initialize(response: httpx.Response) -> None:
    assert response.status_code == 200, (response.status_code, response.text)
    assert '"serverInfo"' in response.text and '"cdp-mcp"' in response.text, response.text


@pytest.mark.slow
def test_loopback_refuses_a_foreign_host_or_origin_and_serves_its_own(tmp_path: Path) -> None:
    with serve_http(tmp_path / "server.log") as served:
        port = served.port
        rebound = _initialize(served.url, Host="attacker.example", Origin="http://attacker.example")
        assert rebound.status_code == 421, rebound.text
        assert _initialize(served.url, Host="attacker.example").status_code == 421
        assert _initialize(served.url, Origin="http://attacker.example").status_code == 403
        # the same names on another port are another origin
        assert _initialize(served.url, Host=f"localhost:{port + 1}").status_code == 421
        assert _initialize(served.url, Origin=f"http://127.0.0.1:{port + 1}").status_code == 403
        for name in ("127.0.0.1", "localhost", "[::1]"):
            _served_initialize(
                _initialize(served.url, Host=f"{name}:{port}", Origin=f"http://{name}:{port}")
            )
        _served_initialize(_initialize(served.url))  # no Origin: not a browser
        assert "no token (loopback)" in served.output()


@pytest.mark.slow
def test_allow_host_and_allow_origin_widen_the_list(tmp_path: Path) -> None:
    extra = ["--allow-host", "mcp.example.com", "--allow-origin", "https://app.example.com"]
    with serve_http(tmp_path / "server.log", extra=extra) as served:
        port = served.port
        _served_initialize(_initialize(served.url, Host="mcp.example.com"))
        _served_initialize(_initialize(served.url, Host=f"mcp.example.com:{port}"))
        _served_initialize(_initialize(served.url, Origin="https://app.example.com"))
        assert _initialize(served.url, Host="other.example.com").status_code == 421
        assert _initialize(served.url, Origin="http://app.example.com").status_code == 403


@pytest.mark.slow
def test_a_bind_beyond_loopback_without_a_token_refuses_to_start() -> None:
    proc = subprocess.run(
        serve_command("0.0.0.0", free_port()),
        env=serve_env(None),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert f"set {TOKEN_ENV}" in proc.stderr and "--host 127.0.0.1" in proc.stderr
    assert proc.stdout == ""


@pytest.fixture
def must_not_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal is decided before serving: serving at all fails the test instead of hanging."""

    async def serve(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server started")

    monkeypatch.setattr(uvicorn.Server, "serve", serve)  # what every HTTP transport runs


@pytest.mark.parametrize(
    ("host", "token", "says"),
    [
        ("::", None, f"set {TOKEN_ENV}"),
        ("myhost.example", None, f"set {TOKEN_ENV}"),  # a name may resolve anywhere
        ("0.0.0.0", "", "is set but empty"),
        ("127.0.0.1", "", "is set but empty"),
        ("0.0.0.0", "tooShortQx7", "shorter than 16 characters"),
        ("0.0.0.0", "spaced Qx7 token 123", "printable ASCII"),
    ],
)
@pytest.mark.usefixtures("must_not_serve")
def test_a_missing_or_unusable_token_is_refused_in_one_line(
    host: str,
    token: str | None,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    if token is not None:
        monkeypatch.setenv(TOKEN_ENV, token)
    port = str(free_port())
    code = main(["serve", "--transport", "streamable-http", "--host", host, "--port", port])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
    assert not token or token not in err


@pytest.mark.parametrize(
    "extra", [["--allow-host", "http://mcp.example.com"], ["--allow-origin", "https://x/"]]
)
@pytest.mark.usefixtures("must_not_serve")
def test_a_malformed_allow_value_is_refused_before_serving(
    extra: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert main(["serve", "--transport", "streamable-http", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {extra[0]} {extra[1]!r}: ") and err.count("\n") == 1, err


@pytest.mark.slow
def test_a_bind_on_every_interface_serves_only_the_token(tmp_path: Path) -> None:
    with serve_http(tmp_path / "server.log", host="0.0.0.0", token=TOKEN) as served:
        missing = _initialize(served.url)
        assert missing.status_code == 401, missing.text
        challenge = missing.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ") and "error=" not in challenge
        wrong = _initialize(served.url, Authorization=f"Bearer {WRONG}")
        assert wrong.status_code == 401
        assert wrong.headers["WWW-Authenticate"].startswith("Bearer ")
        assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
        assert WRONG not in wrong.text
        assert _initialize(served.url, Authorization=f"Bearer {TOKEN}x").status_code == 401
        assert _initialize(served.url, Authorization=f"Basic {TOKEN}").status_code == 401
        assert _initialize(served.url, Authorization=TOKEN).status_code == 401
        twice = [*MCP_HEADERS.items(), *[("Authorization", f"Bearer {TOKEN}")] * 2]
        repeated = httpx.post(served.url, json=INITIALIZE, headers=twice, timeout=20)
        assert repeated.status_code == 400  # RFC 6750 invalid_request: which one is meant?
        assert 'error="invalid_request"' in repeated.headers["WWW-Authenticate"]
        # the token does not stand in for the Host and Origin checks
        bearer = f"Bearer {TOKEN}"
        foreign = _initialize(served.url, Authorization=bearer, Host="attacker.example")
        assert foreign.status_code == 421
        origin = _initialize(served.url, Authorization=bearer, Origin="http://attacker.example")
        assert origin.status_code == 403
        _served_initialize(_initialize(served.url, Authorization=bearer))
        _served_initialize(_initialize(served.url, Authorization=f"bearer {TOKEN}"))

        async def talk() -> set[str]:
            headers = {"Authorization": bearer}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=30) as http,
                Client(streamable_http_client(served.url, http_client=http)) as client,
            ):
                return {t.name for t in (await client.list_tools()).tools}

        assert "init_pipeline" in anyio.run(talk)
    log = served.output()
    assert f"bearer token from {TOKEN_ENV} required" in log
    assert " 401 " in log  # uvicorn's access line: refusals are visible to the operator
    assert TOKEN not in log and WRONG not in log


@pytest.mark.slow
def test_a_token_set_on_loopback_is_asked_for_there_too(tmp_path: Path) -> None:
    with serve_http(tmp_path / "server.log", token=TOKEN) as served:
        assert _initialize(served.url).status_code == 401
        _served_initialize(_initialize(served.url, Authorization=f"Bearer {TOKEN}"))


def test_the_allowed_lists_name_the_bound_address_and_loopback_with_the_port() -> None:
    access = http_access("::", 9000, {TOKEN_ENV: TOKEN}, ["10.0.0.5:9001", "[fd00::5]"])
    assert access.hosts == (
        "[::]:9000",
        "localhost:9000",
        "127.0.0.1:9000",
        "[::1]:9000",
        "10.0.0.5:9001",
        "[fd00::5]",
        "[fd00::5]:9000",
    )
    assert access.origins[:4] == (
        "http://[::]:9000",
        "http://localhost:9000",
        "http://127.0.0.1:9000",
        "http://[::1]:9000",
    )
    assert TOKEN not in repr(access)
    assert http_access("127.0.0.2", 9000, {}).token is None  # all of 127/8 is loopback

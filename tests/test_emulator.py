"""The TD emulator's wire format: TD's JSON shapes, status codes and result encodings."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import pytest
from starlette.applications import Starlette

from cdp_mcp.emulator.app import create_app
from cdp_mcp.emulator.faults import FaultDraw, FaultPlan
from cdp_mcp.emulator.server import BackgroundServer
from tests.conftest import SENTINEL_KEY, SENTINEL_SECRET

KEY = "wire-key"
AUTH = {"Authorization": f"TD1 {KEY}"}


def archive(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Starlette]]:
    app = create_app(tmp_path_factory.mktemp("wire"), KEY)
    with (
        BackgroundServer(app) as server,
        httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as client,
    ):
        yield client, app


@pytest.fixture(scope="module")
def http(served: tuple[httpx.Client, Starlette]) -> httpx.Client:
    return served[0]


def push(http: httpx.Client, name: str, revision: str, files: dict[str, str]) -> httpx.Response:
    return http.put(
        "/api/projects",
        params={"project": name, "revision": revision},
        content=archive(files),
        headers={"Content-Type": "application/gzip"},
    )


def wait_done(http: httpx.Client, path: str, key: str = "done") -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        body: dict[str, object] = http.get(path).json()
        if body[key] in (True, "success", "error", "killed"):
            return body
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.slow
def test_requests_without_the_td1_key_get_401(http: httpx.Client) -> None:
    for headers in ({}, {"Authorization": "TD1 other"}, {"Authorization": KEY}):
        r = httpx.get(f"{http.base_url}/v3/database/list", headers=headers)
        assert r.status_code == 401
        assert r.json() == {
            "error": "Authentication failed",
            "text": "Authentication failed",
            "severity": "error",
        }
        r = httpx.get(f"{http.base_url}/api/projects", headers=headers)
        assert r.status_code == 401
        assert r.json() == {"message": "Authentication failed", "status": 401}


def test_errors_are_each_hosts_body(http: httpx.Client) -> None:
    """Digdag's `{"message", "status"}` on the workflow host's paths, API v3's
    `{"error", "text", "severity"}` (what td-client-java parses) on the api host's."""
    for path in ("/api/attempts/999", "/api/no/such/route"):
        r = http.get(path)
        assert r.status_code == 404 and set(r.json()) == {"message", "status"}
    for path in ("/v3/job/show/999", "/nothing/here"):
        r = http.get(path)
        assert r.status_code == 404 and set(r.json()) == {"error", "text", "severity"}
    assert http.post("/api/projects").status_code == 405


def test_requests_no_route_serves_are_recorded(served: tuple[httpx.Client, Starlette]) -> None:
    http, app = served
    assert http.get("/api/schedules").status_code == 404
    assert http.delete("/api/attempts").status_code == 405
    # a POST to a path no route has (a Route without methods takes only GET and HEAD)
    r = http.post("/v3/bulk_loads/saved_load/jobs", json={"domain_key": "k"})
    assert r.status_code == 404 and set(r.json()) == {"error", "text", "severity"}
    # td_load>'s YAML form: a data connector job, which the emulator does not run
    r = http.post("/v3/job/issue/bulkload/some_db", params={"table": "t"}, json={"config": {}})
    assert r.status_code == 404 and "data connector" in r.json()["text"]
    seen = {f"{u['method']} {u['path']}" for u in app.state.site.unserved}
    assert {"GET /api/schedules", "DELETE /api/attempts"} <= seen
    assert {"POST /v3/bulk_loads/saved_load/jobs", "POST /v3/job/issue/bulkload/some_db"} <= seen
    assert "GET /api/projects" not in seen


@pytest.mark.slow
def test_kill_secrets_listings_and_session_times_answer_as_digdag(http: httpx.Client) -> None:
    wf = "timezone: Asia/Tokyo\n+a:\n  echo>: hi\n"
    project = push(http, "answers_proj", "r1", {"wf.dig": wf}).json()
    (workflow,) = http.get(f"/api/projects/{project['id']}/workflows").json()["workflows"]
    assert http.get(f"/api/workflows/{workflow['id']}").json() == workflow
    assert workflow["config"] == {"+a": {"echo>": "hi"}}  # the definition, without timezone
    path = f"/api/workflows/{workflow['id']}/truncated_session_time"
    for params, expected in [
        ({"session_time": "2026-03-04T05:06:07"}, "2026-03-04T05:06:07+09:00"),  # local time
        ({"session_time": "2026-03-04T20:06:07Z", "mode": "hour"}, "2026-03-05T05:00:00+09:00"),
        ({"session_time": "2026-03-04T20:06:07Z", "mode": "day"}, "2026-03-05T00:00:00+09:00"),
    ]:
        assert http.get(path, params=params).json()["sessionTime"] == expected
    for params in ({}, {"session_time": "soon"}, {"session_time": "2026-03-04", "mode": "week"}):
        assert http.get(path, params=params).status_code == 400
    body = {"workflowId": workflow["id"], "sessionTime": "2026-03-01T00:00:00Z", "params": {}}
    first = http.put("/api/attempts", json=body).json()
    assert first["sessionTime"] == "2026-03-01T09:00:00+09:00"  # in the workflow's zone
    wait_done(http, f"/api/attempts/{first['id']}")
    second = http.put("/api/attempts", json={**body, "retryAttemptName": "again"}).json()
    wait_done(http, f"/api/attempts/{second['id']}")
    listed = http.get("/api/attempts", params={"project": "answers_proj"}).json()["attempts"]
    assert [a["id"] for a in listed] == [second["id"]]  # the session's last attempt
    every = http.get("/api/attempts", params={"project": "answers_proj", "include_retried": "true"})
    assert [a["id"] for a in every.json()["attempts"]] == [second["id"], first["id"]]
    older = http.get("/api/attempts", params={"include_retried": "true", "last_id": second["id"]})
    assert [a["id"] for a in older.json()["attempts"]][:1] == [first["id"]]
    assert http.get("/api/attempts", params={"page_size": 101}).status_code == 400
    assert http.get("/api/attempts", params={"project": "nope"}).status_code == 404
    # a kill answers the attempt as it was read before the kill (AttemptResource.killAttempt)
    slow = (
        "+init:\n  td_ddl>:\n  create_databases: [answers_db]\n+q:\n  td>:\n"
        "  query: SELECT count(*) AS n FROM range(10000000000) t(i)"
        " WHERE to_hex(md5(to_utf8(CAST(i AS VARCHAR)))) LIKE '%ABC%'\n  database: answers_db\n"
    )
    push(http, "answers_proj", "r2", {"wf.dig": slow})
    running = http.put("/api/attempts", json={**body, "sessionTime": "2026-03-02T00:00:00Z"}).json()
    deadline = time.monotonic() + 20
    while not any(
        t["fullName"] == "+wf+q" and t["state"] == "running"
        for t in http.get(f"/api/attempts/{running['id']}/tasks").json()["tasks"]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)  # let the query start (test_td_backend.test_kill_a_running_attempt says why)
    killed = http.post(f"/api/attempts/{running['id']}/kill", json={})
    assert killed.status_code == 200 and killed.json()["id"] == running["id"]
    assert wait_done(http, f"/api/attempts/{running['id']}")["status"] == "killed"
    secret = f"/api/projects/{project['id']}/secrets/td.apikey"
    expected = {"key": "td.apikey", "project": {"id": project["id"], "name": "answers_proj"}}
    assert http.put(secret, json={"value": "v"}).json() == expected
    assert http.delete(secret).json() == expected
    # Digdag's SecretValidation: dotted segments, each letter first and letter/digit last
    base = f"/api/projects/{project['id']}/secrets"
    for key in ("_x", "a.", "a..b", "a_", "1a", "x" * 256):
        assert http.put(f"{base}/{key}", json={"value": "v"}).status_code == 400, key
    for key in ("a", "td.apikey", "shopify.api_key", "a-b.c1"):
        assert http.put(f"{base}/{key}", json={"value": "v"}).status_code == 200, key
    too_big = http.put(f"{base}/big", json={"value": "x" * (16 * 1024 + 1)})
    assert too_big.status_code == 400


def test_push_checks_the_upload_like_digdag(http: httpx.Client) -> None:
    ok = push(http, "wire_proj", "r1", {"wf.dig": "+a:\n  echo>: hi\n"})
    assert ok.status_code == 200
    body = ok.json()
    assert set(body) == {
        "id",
        "name",
        "revision",
        "createdAt",
        "updatedAt",
        "deletedAt",
        "archiveType",
        "archiveMd5",
    }
    assert isinstance(body["id"], str) and body["revision"] == "r1"
    assert push(http, "wire_proj", "r1", {"wf.dig": "+a:\n  echo>: hi\n"}).status_code == 409
    assert push(http, "wire_proj", "", {"wf.dig": ""}).status_code == 400
    bad = push(http, "wire_proj", "r2", {"wf.dig": "+a:\n  echo>: [x\n"})
    assert bad.status_code == 400 and "wf.dig" in bad.json()["message"]
    garbage = http.put(
        "/api/projects",
        params={"project": "p", "revision": "r"},
        content=b"not a tarball",
        headers={"Content-Type": "application/gzip"},
    )
    assert garbage.status_code == 400 and "tar.gz" in garbage.json()["message"]
    wrong_type = http.put("/api/projects", params={"project": "p", "revision": "r"}, content=b"x")
    assert wrong_type.status_code == 415
    too_big = http.put(
        "/api/projects",
        params={"project": "p", "revision": "r"},
        content=os.urandom(2 * 1024 * 1024 + 1),
        headers={"Content-Type": "application/gzip"},
    )
    assert too_big.status_code == 400 and "exceeds limit" in too_big.json()["message"]
    listed = http.get("/api/projects", params={"name": "wire_proj"}).json()
    assert [p["revision"] for p in listed["projects"]] == ["r1"]
    assert http.get("/api/projects", params={"name": "nope"}).json() == {"projects": []}


@pytest.mark.slow
def test_attempts_sessions_tasks_and_logs_in_digdag_shapes(http: httpx.Client) -> None:
    project = push(http, "shape_proj", "r1", {"wf.dig": "+a:\n  echo>: hi\n"}).json()
    (wf,) = http.get(f"/api/projects/{project['id']}/workflows", params={"name": "wf"}).json()[
        "workflows"
    ]
    assert wf["project"] == {"id": project["id"], "name": "shape_proj"}
    assert http.get(f"/api/projects/{project['id']}/workflows/wf").json()["id"] == wf["id"]
    request = {"workflowId": wf["id"], "sessionTime": "2026-03-01T00:00:00Z", "params": {}}
    started = http.put("/api/attempts", json=request)
    assert started.status_code == 200
    attempt = started.json()
    assert attempt["sessionTime"] == "2026-03-01T00:00:00+00:00"
    assert attempt["workflow"] == {"name": "wf", "id": wf["id"]}
    assert all(isinstance(attempt[k], str) for k in ("id", "sessionId", "sessionUuid"))
    again = http.put("/api/attempts", json=request)
    assert again.status_code == 409 and again.json()["id"] == attempt["id"]
    done = wait_done(http, f"/api/attempts/{attempt['id']}")
    assert done["success"] is True and done["status"] == "success"
    assert http.post(f"/api/attempts/{attempt['id']}/kill", json={}).status_code == 409
    session = http.get(f"/api/sessions/{attempt['sessionId']}").json()
    assert session["lastAttempt"]["id"] == attempt["id"] and "index" not in session["lastAttempt"]
    assert [
        a["id"]
        for a in http.get(f"/api/sessions/{attempt['sessionId']}/attempts").json()["attempts"]
    ] == [attempt["id"]]
    tasks = http.get(f"/api/attempts/{attempt['id']}/tasks").json()["tasks"]
    assert {t["fullName"] for t in tasks} == {"+wf", "+wf+a"}
    assert all(t["error"] == {} and isinstance(t["id"], str) for t in tasks)
    (log,) = http.get(f"/api/logs/{attempt['id']}/files").json()["files"]
    # Digdag 0.10 writes `direct` as the URL itself (RestDirectDownloadHandle's @JsonValue)
    assert log["taskName"] == "+wf+a" and log["direct"].startswith(str(http.base_url))
    content = http.get(f"/api/logs/{attempt['id']}/files/{log['fileName']}")
    assert "hi" in gzip.decompress(content.content).decode()
    direct = httpx.get(log["direct"])  # no Authorization header
    assert direct.status_code == 200 and gzip.decompress(direct.content) == gzip.decompress(
        content.content
    )
    forged = httpx.get(log["direct"].split("?")[0] + "?sig=00")
    assert forged.status_code == 403


@pytest.mark.slow
def test_databases_tables_and_job_results(http: httpx.Client) -> None:
    assert http.post("/v3/database/create/wire_db").status_code == 200
    assert http.post("/v3/database/create/wire_db").status_code == 409
    assert http.post("/v3/database/create/No-Good").status_code == 400
    assert (
        http.post("/v3/job/issue/presto/missing_db", data={"query": "SELECT 1"}).status_code == 404
    )
    assert http.post("/v3/job/issue/spark/wire_db", data={"query": "SELECT 1"}).status_code == 400

    def job(expect: str = "success", **body: object) -> str:
        if "json" in body:
            r = http.post("/v3/job/issue/presto/wire_db", json=body["json"])
        elif "files" in body:
            r = http.post("/v3/job/issue/presto/wire_db", files=body["files"])  # type: ignore[arg-type]
        else:
            r = http.post("/v3/job/issue/presto/wire_db", data=body)
        assert r.status_code == 200, r.text
        assert r.json()["job"] == r.json()["job_id"]
        job_id: str = r.json()["job_id"]
        assert wait_done(http, f"/v3/job/status/{job_id}", "status")["status"] == expect
        return job_id

    job(query="CREATE TABLE t AS SELECT range AS n, 'x' AS s, 1.5 AS f FROM range(3)")
    (table,) = http.get("/v3/table/list/wire_db").json()["tables"]
    assert table["count"] == 3 and isinstance(table["schema"], str)
    assert json.loads(table["schema"]) == [["n", "long"], ["s", "string"], ["f", "double"]]

    select = job(json={"query": "SELECT n, s, f FROM t ORDER BY n", "domain_key": "k-1"})
    shown = http.get(f"/v3/job/show/{select}").json()
    assert json.loads(shown["hive_result_schema"]) == [
        ["n", "bigint"],
        ["s", "varchar"],
        ["f", "double"],
    ]
    assert http.get(f"/v3/job/status/{select}").json()["num_records"] == 3
    lines = http.get(f"/v3/job/result/{select}", params={"format": "json"}).text.splitlines()
    assert [json.loads(line) for line in lines] == [[0, "x", 1.5], [1, "x", 1.5], [2, "x", 1.5]]
    packed = http.get(f"/v3/job/result/{select}", params={"format": "msgpack.gz"}).content
    assert list(msgpack.Unpacker(io.BytesIO(gzip.decompress(packed)))) == [
        [0, "x", 1.5],
        [1, "x", 1.5],
        [2, "x", 1.5],
    ]
    csv_text = http.get(f"/v3/job/result/{select}", params={"format": "csv"}).text
    assert csv_text.splitlines()[0] == "0,x,1.5"

    dup = http.post("/v3/job/issue/presto/wire_db", json={"query": "SELECT 1", "domain_key": "k-1"})
    assert dup.status_code == 409 and dup.json()["details"] == {"conflicts_with": select}

    failed = job("error", files={"query": (None, "SELECT * FROM nope")})
    assert "nope" in http.get(f"/v3/job/show/{failed}").json()["debug"]["stderr"]
    assert http.get(f"/v3/job/result/{failed}").status_code == 409
    assert http.post(f"/v3/job/kill/{select}").json()["former_status"] == "success"


def test_fault_draws_repeat_for_a_seed() -> None:
    def draws(seed: int) -> list[str | None]:
        draw = FaultDraw(FaultPlan(rate=0.3, seed=seed))
        return [draw.next("GET", "/v3/database/list") for _ in range(200)]

    first = draws(5)
    assert first == draws(5) and first != draws(6)
    assert 40 < sum(k is not None for k in first) < 80
    assert {k for k in first if k} == {"error", "throttle", "drop", "slow"}
    with pytest.raises(ValueError):
        FaultPlan(rate=1.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_cdp_mcp_emulate_serves_with_the_key_from_the_environment(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "TD_API_KEY": SENTINEL_KEY}
    cmd = [sys.executable, "-m", "cdp_mcp.cli.main", "emulate", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--workspace", str(tmp_path), "--faults", "0.1", "--seed", "3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/api/projects",
                    headers={"Authorization": f"TD1 {SENTINEL_KEY}"},
                )
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}" in out
    assert SENTINEL_SECRET not in out
    missing = subprocess.run(
        [*cmd, "--workspace", str(tmp_path)],
        env={k: v for k, v in os.environ.items() if k != "TD_API_KEY"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 1 and "TD_API_KEY" in missing.stderr


@pytest.mark.slow
def test_a_jobs_scheduled_time_is_td_scheduled_time(http: httpx.Client) -> None:
    """td-client-java (Digdag's td>) sends the session time as `scheduled_time`; TD's UDFs
    see it as TD_SCHEDULED_TIME(), and TD_INTERVAL counts from it."""
    http.post("/v3/database/create/sched_db")
    sql = "SELECT TD_SCHEDULED_TIME(), TD_INTERVAL(1463760000, '-1d', 'JST')"
    issued = http.post(
        "/v3/job/issue/presto/sched_db", data={"query": sql, "scheduled_time": "1463846400"}
    )
    job_id = issued.json()["job_id"]
    assert wait_done(http, f"/v3/job/status/{job_id}", "status")["status"] == "success"
    lines = http.get(f"/v3/job/result/{job_id}", params={"format": "json"}).text.splitlines()
    assert [json.loads(line) for line in lines] == [[1463846400, True]]
    before = int(time.time())
    plain = http.post("/v3/job/issue/presto/sched_db", data={"query": "SELECT TD_SCHEDULED_TIME()"})
    job_id = plain.json()["job_id"]
    assert wait_done(http, f"/v3/job/status/{job_id}", "status")["status"] == "success"
    (line,) = http.get(f"/v3/job/result/{job_id}", params={"format": "json"}).text.splitlines()
    assert before - 2 <= json.loads(line)[0] <= int(time.time())  # issued now: the issue time

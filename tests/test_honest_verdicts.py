"""A verdict says PASS only when nothing was silently lost: rows left out of a load, keys
that name no column, keys with no valid value, contact columns by other names, and junk
values that join people, each surface as a WARN or a config error a person can act on."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from cdp_mcp.core.config import load_config
from cdp_mcp.core.phases import Phase, workflows
from cdp_mcp.pipeline.models import PipelineError, ValidationResult
from cdp_mcp.pipeline.orchestrator import Pipeline

PHASES = (Phase.INGESTION, Phase.HIST_UNION, Phase.STAGING, Phase.UNIFICATION)


def run_phases(config: Path, last: Phase) -> dict[str, ValidationResult]:
    """init, then per phase up to `last`: generate/push/run/validate (warnings accepted)."""
    cfg = load_config(config)

    async def main() -> dict[str, ValidationResult]:
        out = {}
        await Pipeline(config).init()
        for phase in PHASES[: PHASES.index(last) + 1]:
            await Pipeline(config).generate_phase(phase.value)
            await Pipeline(config).push_project(phase.value)
            for wf in workflows(cfg, phase):
                started = await Pipeline(config).start_workflow(phase.value, wf)
                session = await Pipeline(config).get_session(started.session_id, 60)
                assert session.status == "success", session.failed_tasks
            result = await Pipeline(config).validate_tables(phase.value)
            assert result.verdict != "FAIL", result.failures
            if result.verdict == "WARN":
                await Pipeline(config).validate_tables(phase.value, accept_warnings=True)
            out[phase.value] = result
        return out

    return anyio.run(main)


def write_project(tmp_path: Path, config: str, files: dict[str, str]) -> Path:
    (tmp_path / "data").mkdir()
    for name, text in files.items():
        (tmp_path / "data" / name).write_text(text)
    path = tmp_path / "crm.yml"
    path.write_text(config)
    return path


CRM = """
global: {client: crm, backend: local}
ingestion:
  source_name: hs
  connector: file
  source_path: ./data
  objects: [contacts]
  incremental_field: hs_lastmodifieddate
  start_date: "2023-01-01"
  primary_keys: {contacts: vid}
"""


def contacts_csv(iso: int, us: int) -> str:
    lines = ["vid,email,hs_lastmodifieddate"]
    for i in range(iso):
        lines.append(f"{i},p{i}@example.com,2023-02-{1 + i % 28:02d}T10:00:00Z")
    for i in range(iso, iso + us):
        lines.append(f"{i},p{i}@example.com,{1 + i % 12:02d}/06/2023 {1 + i % 12}:05 PM")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_us_timestamps_load_and_unparseable_rows_warn_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TD_API_KEY", raising=False)
    files = {"contacts.csv": contacts_csv(20, 9) + "29,x@example.com,June 5th\n"}
    config = write_project(tmp_path, CRM, files)
    ingestion = run_phases(config, Phase.INGESTION)["ingestion"]
    src = ingestion.metrics["source_rows"]["contacts"]
    # US 'MM/DD/YYYY h:mm AM/PM' is a form the loads parse: only 'June 5th' is left out
    assert (src["source_rows"], src["unparseable_time"], src["loaded"]) == (30, 1, 29)
    assert ingestion.verdict == "WARN"
    warning = next(w for w in ingestion.warnings if "unparseable" in w or "no known" in w)
    assert "1 of 30 rows" in warning and "hs_lastmodifieddate" in warning
    assert "'June 5th'" in warning  # a sample of what did not parse


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["presto", "hive"])
def test_staging_reads_us_and_dotted_timestamps_on_both_engines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    monkeypatch.delenv("TD_API_KEY", raising=False)
    text = (
        "vid,email,hs_lastmodifieddate\n"
        "1,a@example.com,01/06/2023 6:05 PM\n"
        "2,b@example.com,1/16/2023 11:05:09 am\n"
        "3,c@example.com,06.02.2023 18:05\n"
        "4,d@example.com,16.02.2023\n"
    )
    config = write_project(
        tmp_path, CRM + f"staging: {{engine: {engine}}}\n", {"contacts.csv": text}
    )
    run_phases(config, Phase.STAGING)

    async def staged() -> list[tuple[object, ...]]:
        result = await Pipeline(config).backend.query(
            "SELECT vid, hs_lastmodifieddate_std FROM hs_contacts ORDER BY vid", "crm_stg"
        )
        return [tuple(r) for r in result.rows]

    assert anyio.run(staged) == [
        (1, "2023-01-06 18:05:00"),
        (2, "2023-01-16 11:05:09"),
        (3, "2023-02-06 18:05:00"),
        (4, "2023-02-16 00:00:00"),
    ]


DEALS = """
global: {client: crm, backend: local}
ingestion:
  source_name: hs
  connector: file
  source_path: ./data
  objects: [contacts, deals]
  incremental_field: hs_lastmodifieddate
  start_date: "2023-01-01"
  primary_keys: {contacts: vid, deals: dealid}
"""
DEALS_CSV = "deal_id,amount,hs_lastmodifieddate\nd1,10.5,2023-02-01\n"


def init_error(config: Path) -> str:
    with pytest.raises(PipelineError) as caught:
        anyio.run(Pipeline(config).init)
    return str(caught.value)


def test_a_primary_key_that_is_not_a_column_is_refused_at_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TD_API_KEY", raising=False)
    files = {"contacts.csv": contacts_csv(3, 0), "deals.csv": DEALS_CSV}
    message = init_error(write_project(tmp_path, DEALS, files))
    assert "ingestion.primary_keys.deals: 'dealid' is not a column of object 'deals'" in message
    assert "(did you mean 'deal_id'?)" in message
    assert "deal_id, amount, hs_lastmodifieddate" in message
    assert not (tmp_path / "crm_cdp" / "state.json").exists()


def test_a_unification_key_column_that_is_not_a_column_is_refused_at_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TD_API_KEY", raising=False)
    config = CRM + (
        "unification:\n"
        "  keys: [{name: email}]\n"
        "  tables:\n"
        "  - {table: hs_contacts, key_columns: [{column: emial, key: email}]}\n"
        "  - {table: hs_contcts, key_columns: [{column: email, key: email}]}\n"
    )
    message = init_error(write_project(tmp_path, config, {"contacts.csv": contacts_csv(3, 0)}))
    assert "unification.tables[0].key_columns[0].column: 'emial' is not a column" in message
    assert message.count("did you mean 'email'?") == 1
    assert "unification.tables[1].table: 'hs_contcts' is not a staging table" in message
    assert "(did you mean 'hs_contacts'?)" in message


@pytest.mark.slow
def test_a_key_whose_valid_regexp_rejects_every_value_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TD_API_KEY", raising=False)
    # YAML's double quotes turn "\\\\." into the regexp \\. : a backslash, then any character
    config = CRM.replace("[contacts]", "[contacts, deals]") + (
        "unification:\n"
        '  keys: [{name: email, valid_regexp: "^[^@]+@[^@]+\\\\\\\\.[a-z]+$"}, {name: phone}]\n'
        "  tables:\n"
        "  - {table: hs_contacts, key_columns: [{column: email, key: email},"
        " {column: phone, key: phone}]}\n"
        "  - {table: hs_deals, key_columns: [{column: contact_email, key: email}]}\n"
    )
    deals = "id,contact_email,hs_lastmodifieddate\nd1,,2023-02-01\nd2,,2023-02-02\n"
    text = "vid,email,phone,hs_lastmodifieddate\n" + "".join(
        f"{i},p{i}@example.com,{'' if i % 2 else f'555010{i:04d}'},2023-02-01\n" for i in range(6)
    )
    unification = run_phases(
        write_project(tmp_path, config, {"contacts.csv": text, "deals.csv": deals}),
        Phase.UNIFICATION,
    )["unification"]
    assert unification.verdict == "WARN"
    assert unification.metrics["key_values"] == {"email": 0, "phone": 3}
    warning = next(w for w in unification.warnings if "key email" in w)
    assert "none of the 6 non-NULL values" in warning and "valid_regexp" in warning
    assert any(
        "crm_stg.hs_deals: all 2 rows have NULL in every key column (contact_email)" in w
        for w in unification.warnings
    )


@pytest.mark.slow
def test_contact_columns_are_found_by_name_variants_and_by_their_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TD_API_KEY", raising=False)
    config = CRM.replace("[contacts]", "[contacts, deals]").replace(
        "{contacts: vid}", "{contacts: vid, deals: deal_id}"
    )
    deals = "Deal ID,Primary Contact E-mail,Login,Mobile,Mail Frequency,hs_lastmodifieddate\n" + (
        "".join(
            f"d{i},P{i}@Example.com,u{i}@corp.example,+1 (555) 010-{i:04d},weekly,2023-02-01\n"
            for i in range(5)
        )
    )
    files = {"contacts.csv": contacts_csv(5, 0), "deals.csv": deals}
    results = run_phases(write_project(tmp_path, config, files), Phase.UNIFICATION)

    async def staged() -> dict[str, object]:
        result = await Pipeline(tmp_path / "crm.yml").backend.query(
            "SELECT * FROM hs_deals ORDER BY deal_id LIMIT 1", "crm_stg"
        )
        return dict(zip(result.columns, result.rows[0], strict=True))

    row = anyio.run(staged)
    assert row["primary_contact_e_mail"] == "p0@example.com"  # lower-cased: an email
    assert row["primary_contact_e_mail_valid"] is True and row["primary_contact_e_mail_hash"]
    assert row["login_valid"] is True  # no name hint: its values are emails
    assert row["mobile"] == "5550100000" and row["mobile_valid"] is True
    assert row["mail_frequency"] == "weekly" and "mail_frequency_valid" not in row  # values say no
    unification = results["unification"]
    assert unification.metrics["coverage"]["hs_deals"] == 1.0
    # each deal's contact e-mail is a contact's email: one profile per contact
    assert unification.metrics["profiles"] == 5


@pytest.mark.slow
def test_a_shared_noreply_address_is_an_over_merge_suspect_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TD_API_KEY", raising=False)
    rows = ["vid,email,phone,hs_lastmodifieddate"]
    for i in range(60):
        email = "noreply@hubspot.com" if i < 17 else f"person{i}@example.com"
        rows.append(f"{i},{email},555010{i:04d},2023-02-01")
    config = write_project(tmp_path, CRM, {"contacts.csv": "\n".join(rows) + "\n"})
    unification = run_phases(config, Phase.UNIFICATION)["unification"]
    assert unification.verdict == "WARN"
    # the 17 contacts' email and phone values: one key-value record each
    assert unification.metrics["over_merge_suspects"] == [
        {"key": "email", "value": "n***@hubspot.com", "records": 17}
    ]
    warning = next(w for w in unification.warnings if "n***@hubspot.com" in w)
    assert "17 records (over 10)" in warning and "invalid_texts" in warning
    (largest, *_) = unification.metrics["largest_clusters"]
    assert largest["values"] == 18  # noreply and the 17 phones
    assert largest["joined_by"][0] == "email=n***@hubspot.com (17 records)"
    report = "\n".join(unification.warnings) + str(unification.metrics)
    assert "noreply@hubspot.com" not in report and "5550100003" not in report


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["presto", "hive"])
def test_time_formats_read_day_first_dates_in_every_load_and_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    monkeypatch.delenv("TD_API_KEY", raising=False)
    config = (
        CRM.replace(
            "  primary_keys:", '  time_formats: ["DD/MM/YYYY HH:mm", "DD/MM/YYYY"]\n  primary_keys:'
        )
        + f"staging: {{engine: {engine}}}\n"
    )
    text = (
        "vid,email,hs_lastmodifieddate\n"
        "1,a@example.com,13/06/2023 18:05\n"
        "2,b@example.com,06/01/2023 10:00\n"  # 6 January: day first, as the config says
        "3,c@example.com,02/03/2023\n"
        "4,d@example.com,2023-02-01T00:00:00Z\n"  # the built-in forms still apply
        "5,e@example.com,31/12/2022\n"  # before start_date
    )
    config_path = write_project(tmp_path, config, {"contacts.csv": text})
    results = run_phases(config_path, Phase.STAGING)
    src = results["ingestion"].metrics["source_rows"]["contacts"]
    assert (src["unparseable_time"], src["before_start_date"], src["loaded"]) == (0, 1, 4)

    async def staged() -> list[tuple[object, ...]]:
        result = await Pipeline(config_path).backend.query(
            "SELECT vid, hs_lastmodifieddate_std FROM hs_contacts ORDER BY vid", "crm_stg"
        )
        return [tuple(r) for r in result.rows]

    assert anyio.run(staged) == [
        (1, "2023-06-13 18:05:00"),
        (2, "2023-01-06 10:00:00"),
        (3, "2023-03-02 00:00:00"),
        (4, "2023-02-01 00:00:00"),
    ]


def test_time_formats_reach_the_sql_sent_to_treasure_data(tmp_path: Path) -> None:
    from cdp_mcp.generate.ingestion import render as render_ingestion
    from cdp_mcp.generate.schemas import predicted_schemas
    from cdp_mcp.generate.staging import render as render_staging

    config = CRM.replace("backend: local", "backend: treasuredata").replace(
        "  primary_keys:", '  time_formats: ["DD.MM.YYYY HH:mm"]\n  primary_keys:'
    )
    monkeypatch_key = "1/" + "0" * 40
    config = config.replace("global: {", f"global: {{td_api_key: '{monkeypatch_key}', ")
    path = write_project(tmp_path, config, {"contacts.csv": contacts_csv(2, 0)})
    cfg = load_config(path)
    schemas = predicted_schemas(cfg)
    ingestion = render_ingestion(cfg, schemas)
    assert (
        "date_parse(trim(landing.\"hs_lastmodifieddate\"), '%d.%m.%Y %H:%i')"
        in (ingestion["queries/load_landing.sql"])
    )
    hive = render_staging(
        cfg.model_copy(update={"staging": cfg.staging.model_copy(update={"engine": "hive"})}),
        schemas,
    )["queries/hs_contacts_transform.sql"]
    assert (
        "RLIKE '^[0-9]{1,2}[.][0-9]{1,2}[.][0-9]{4} [0-9]{1,2}:[0-9]{2}$' THEN "
        "unix_timestamp(trim(`hs_lastmodifieddate`), 'dd.MM.yyyy HH:mm')"
    ) in hive


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ("DD/MM/YYYY'; DROP TABLE x", "which is no token or separator"),
        ("HH:mm", "needs a year, a month and a day"),
        ("DD/MM/YYYY h:mm", "goes with AM/PM"),
    ],
)
def test_a_time_format_outside_the_tokens_is_a_config_error(
    tmp_path: Path, form: str, said: str
) -> None:
    from cdp_mcp.core.config import ConfigError

    config = CRM.replace("  primary_keys:", f"  time_formats: [{form!r}]\n  primary_keys:")
    with pytest.raises(ConfigError) as caught:
        load_config(write_project(tmp_path, config, {}))
    assert "ingestion.time_formats" in str(caught.value) and said in str(caught.value)


@pytest.mark.slow
def test_day_first_dates_left_out_warn_naming_the_time_format_to_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TD_API_KEY", raising=False)
    text = "vid,email,hs_lastmodifieddate\n" + "".join(
        f"{i},p{i}@example.com,{13 + i}/06/2023 18:05\n" for i in range(10)
    )
    config = write_project(tmp_path, CRM, {"contacts.csv": text})
    ingestion = run_phases(config, Phase.INGESTION)["ingestion"]
    assert ingestion.metrics["source_rows"]["contacts"]["unparseable_time"] == 10
    (warning,) = [w for w in ingestion.warnings if "never loaded" in w]
    assert "10 of 10 rows of contacts.csv (100%)" in warning
    assert "add 'DD/MM/YYYY HH:mm' to ingestion.time_formats" in warning


@pytest.mark.slow
def test_the_td_path_scales_the_over_merge_threshold_and_masks_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tables TD wrote have no cluster report: validation counts unif_input itself."""
    from cdp_mcp.pipeline.validate import Findings, _over_merge

    monkeypatch.delenv("TD_API_KEY", raising=False)
    path = write_project(tmp_path, CRM, {"contacts.csv": contacts_csv(2, 0)})
    cfg = load_config(path)
    values = ", ".join(
        f"('{'noreply@hubspot.com' if i < 17 else f'p{i}@example.com'}')" for i in range(60)
    )

    async def check(explicit: bool) -> Findings:
        backend = Pipeline(path).backend
        await backend.query("CREATE OR REPLACE TABLE unif_input (email VARCHAR)", "crm_stg")
        await backend.query(f"INSERT INTO unif_input VALUES {values}", "crm_stg")
        used = cfg
        if explicit:
            unification = cfg.unification.model_copy(update={"over_merge_threshold": 20})
            unification.model_fields_set.add("over_merge_threshold")
            used = cfg.model_copy(update={"unification": unification})
        found = Findings(tables=[])
        await _over_merge(used, backend, [("email", "email")], found)
        return found

    run_phases(path, Phase.STAGING)  # the staging database the query runs in
    scaled = anyio.run(check, False)
    assert scaled.metrics["over_merge_suspects"] == [
        {"key": "email", "value": "n***@hubspot.com", "records": 17}
    ]
    assert "joins 17 records (over 10)" in scaled.warnings[0]
    assert "noreply@hubspot.com" not in scaled.warnings[0]
    assert anyio.run(check, True).metrics["over_merge_suspects"] == []  # as set: 20

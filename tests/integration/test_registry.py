"""The registry end to end: bureau list imports through the real CLI, effective dates seen by
settlements, full-list strike-offs, the audit trail, and no raw national ID in the database or output."""

from __future__ import annotations

import csv
import datetime as dt
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import openpyxl
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters import identity
from adapters.policy_files import DEFAULT_POLICY_DIR
from adapters.registry_files import write_sample_list
from adapters.settlement_sql import decode_record
from adapters.terminal_keys import load_keys
from gateway.http.app import create_app
from tests.integration.conftest import (
    ADMIN,
    COUNTY,
    KEY_ENCRYPTION_KEY,
    PEPPER,
    SignedClient,
    bill,
    fresh_national_id,
    register,
    row_counts,
)
from tests.integration.test_cli import medsettle

pytestmark = pytest.mark.integration
# What an import writes. The gateways other tests started keep settling and re-adjudicating in the
# background on the same database, so the settle-path tables are no measure of what an import did.
REGISTRY = ("people", "memberships")

ID_PATTERN = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
HEADER = "身份证号码,姓名,类别,认定日期,退出日期\n"


def write_csv(path: Path, *rows: tuple[str, str, str, str, str]) -> Path:
    path.write_text(HEADER + "".join(",".join(row) + "\n" for row in rows), encoding="utf-8")
    return path


async def settle_on(client, national_id: str, day: str) -> dict:
    response = await client.post(
        "/v1/settlements", json=bill(national_id, ("A", 1_000_000), service_date=day), headers=COUNTY
    )
    payload = await response.json()
    assert response.status == 201, payload
    return payload


async def test_large_list_imports_quickly_and_reimport_changes_nothing(database_url, pool, tmp_path):
    path = tmp_path / "civil-affairs-10000.csv"
    write_sample_list(path, "civil-affairs", 10_000, seed=7)
    started = time.perf_counter()
    result = medsettle(database_url, "import", "civil-affairs", str(path))
    elapsed = time.perf_counter() - started
    print(f"imported 10,000 rows in {elapsed:.2f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "added 10000, changed 0, struck off 0, unchanged 0, rejected 0" in result.stdout
    assert elapsed < 60

    before = await row_counts(pool, REGISTRY)
    again = medsettle(database_url, "import", "civil-affairs", str(path))
    assert again.returncode == 0
    assert "added 0, changed 0, struck off 0, unchanged 10000, rejected 0" in again.stdout
    assert await row_counts(pool, REGISTRY) == before


async def test_mixed_file_lands_good_rows_and_reports_each_bad_line(database_url, pool, tmp_path):
    path = tmp_path / "mixed.csv"
    write_sample_list(path, "civil-affairs", 200, seed=11, bad_every=10)
    result = medsettle(database_url, "import", "civil-affairs", str(path))
    assert result.returncode == 1  # some rows rejected; the good ones are written
    rejected_lines = [int(n) for n in re.findall(r"^rejected line (\d+):", result.stdout, re.MULTILINE)]
    assert len(rejected_lines) == 20
    assert rejected_lines == sorted(rejected_lines)
    assert "added 180," in result.stdout and "rejected 20" in result.stdout
    assert not ID_PATTERN.search(result.stdout + result.stderr), "a raw national ID was printed"


async def test_dry_run_writes_nothing(database_url, pool, tmp_path):
    person = fresh_national_id()
    path = write_csv(tmp_path / "dry.csv", (person, "Dry Run", "低保", "2026-01-01", ""))
    before = await row_counts(pool, REGISTRY)
    async with pool.acquire() as connection:
        audit_before = await connection.fetchval("SELECT count(*) FROM audit_log")
    result = medsettle(database_url, "import", "civil-affairs", str(path), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would add: line 2:" in result.stdout
    assert "dry run: nothing written" in result.stdout
    assert await row_counts(pool, REGISTRY) == before
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM audit_log") == audit_before


async def test_a_dry_run_prints_a_summary_and_writes_every_row_to_a_list(database_url, pool, tmp_path):
    """A bureau's list as it comes: a title row, 公民身份号码, a yyyy/m/d date; more changes than a dry
    run prints; the full list in a CSV a clerk opens in Excel, with every row's outcome or reason."""
    kept, changed = fresh_national_id(), fresh_national_id()
    seed = write_csv(
        tmp_path / "seed.csv", (kept, "留", "低保", "2026-01-01", ""), (changed, "变", "低保", "2026-01-01", "")
    )
    assert medsettle(database_url, "import", "civil-affairs", str(seed)).returncode == 0
    new = [fresh_national_id() for _ in range(25)]
    lines = [
        "2026年6月低保对象名册,,,,",  # 1: a title row
        "公民身份号码,姓名,救助类别,认定日期,退出日期",  # 2: the header, in the ID card's wording
        f"{kept},留,低保,2026/1/1,",  # 3: unchanged, the date written the Excel way
        f"{changed},变,特困,2026年6月1日,",  # 4: changed
        f"{new[0][:17]},短,低保,2026/6/1,",  # 5: rejected while reading
        *(f"{person},新{index},低保边缘,2026/6/1," for index, person in enumerate(new[1:])),  # 6-29: added
    ]
    path = tmp_path / "civil-affairs-2026-06.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    listed = tmp_path / "list.csv"
    before = await row_counts(pool, REGISTRY)

    result = medsettle(database_url, "import", "civil-affairs", str(path), "--dry-run", "--write-list", str(listed))

    assert result.returncode == 1, result.stderr  # a rejected row
    assert await row_counts(pool, REGISTRY) == before
    assert result.stdout.count("would add: ") + result.stdout.count("would change: ") == 20
    assert f"... and 5 more changes (every row is in {listed}; --verbose prints them all)" in result.stdout
    assert "added 24, changed 1, struck off 0, unchanged 1, rejected 1 (dry run: nothing written)" in result.stdout
    assert listed.read_bytes().startswith(b"\xef\xbb\xbf")  # so Excel on Chinese Windows reads it as UTF-8
    with listed.open(encoding="utf-8-sig", newline="") as file:
        written = list(csv.DictReader(file))
    assert [row["行号 line"] for row in written] == [str(line) for line in range(3, 30)]
    outcomes = {int(row["行号 line"]): row for row in written}
    assert outcomes[3]["结果 outcome"] == "无变化 unchanged"
    assert outcomes[3]["认定日期 effective_from"] == "2026-01-01"
    assert outcomes[4]["结果 outcome"] == "变更 changed"
    assert outcomes[4]["说明 details"] == "hardship_aid: minimum_allowance -> destitute from 2026-06-01"
    assert outcomes[5]["结果 outcome"] == "拒绝 rejected"
    assert outcomes[5]["说明 details"] == "公民身份号码: must be 18 characters"
    assert (outcomes[6]["结果 outcome"], outcomes[6]["姓名 name"], outcomes[6]["类别 code"]) == (
        "新增 added",
        "新0",
        "marginal",
    )
    assert outcomes[6]["身份证号码 national_id (masked)"] == identity.mask(new[1])
    assert not ID_PATTERN.search(listed.read_text(encoding="utf-8-sig") + result.stdout + result.stderr)

    applied = medsettle(database_url, "import", "civil-affairs", str(path), "--write-list", str(tmp_path / "done.xlsx"))
    assert applied.returncode == 1
    assert "added 24, changed 1, struck off 0, unchanged 1, rejected 1" in applied.stdout
    workbook = openpyxl.load_workbook(tmp_path / "done.xlsx", read_only=True)
    rows = list(workbook["import"].iter_rows(values_only=True))
    workbook.close()
    assert rows[0][:2] == ("行号 line", "结果 outcome")
    assert [row[1] for row in rows[1:4]] == ["无变化 unchanged", "变更 changed", "拒绝 rejected"]


async def test_a_full_list_dry_run_writes_the_people_it_would_strike_off(database_url, pool, tmp_path):
    programme_list = "insurance"
    stays, goes = fresh_national_id(), fresh_national_id()
    first = write_csv(
        tmp_path / "first.csv", (stays, "", "resident", "2026-01-01", ""), (goes, "", "resident", "2026-01-01", "")
    )
    assert medsettle(database_url, "import", programme_list, str(first)).returncode == 0
    full = write_csv(tmp_path / "full.csv", (stays, "", "resident", "2026-01-01", ""))
    listed = tmp_path / "full-list.csv"
    result = medsettle(
        database_url,
        "import",
        programme_list,
        str(full),
        "--full-list",
        "--as-of",
        "2026-07-01",
        "--dry-run",
        "--write-list",
        str(listed),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with listed.open(encoding="utf-8-sig", newline="") as file:
        written = list(csv.DictReader(file))
    assert written[0]["行号 line"] == "2"
    struck = [row for row in written if row["行号 line"] == ""]
    assert identity.mask(goes) in [row["身份证号码 national_id (masked)"] for row in struck]
    assert all(row["结果 outcome"] == "退出 struck off" for row in struck)


async def test_an_old_excel_list_with_title_rows_through_the_command_line(database_url, tmp_path):
    """The committed .xls fixture (tests/fixtures/make_civil_affairs_xls.py): two title rows, 公民身份号码,
    date cells and a date typed 2017/1/26 are read; its impossible date is rejected naming line and cell."""
    listed = tmp_path / "xls-list.xlsx"
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "civil-affairs-2026-06.xls"
    result = medsettle(database_url, "import", "civil-affairs", str(fixture), "--dry-run", "--write-list", str(listed))
    assert result.returncode == 1, result.stderr
    assert "rejected line 7: 认定日期 (cell D7): 2026/13/1 is not a real date" in result.stdout
    assert re.search(
        r"civil-affairs-2026-06\.xls: added \d, changed \d, struck off 0, unchanged \d, rejected 1", result.stdout
    )
    workbook = openpyxl.load_workbook(listed, read_only=True)
    rows = list(workbook["import"].iter_rows(values_only=True))
    workbook.close()
    assert [(row[0], row[3], row[4]) for row in rows[1:]] == [
        (4, "王芳", "minimum_allowance"),
        (5, "李强", "destitute"),
        (6, "张敏", "marginal"),
        (7, None, None),
    ]
    assert rows[2][5] == dt.datetime(2017, 1, 26)  # a date cell in the written workbook


async def test_a_full_list_refused_for_its_rejected_rows_still_writes_the_list(database_url, pool, tmp_path):
    good, short = fresh_national_id(), fresh_national_id()[:17]
    path = write_csv(
        tmp_path / "full.csv", (good, "好", "低保", "2026/6/1", ""), (short, "短", "低保", "2026-06-01", "")
    )
    listed = tmp_path / "to-fix.csv"
    before = await row_counts(pool, REGISTRY)
    result = medsettle(
        database_url, "import", "civil-affairs", str(path), "--full-list", "--yes", "--write-list", str(listed)
    )
    assert result.returncode == 2
    assert "a full list must be clean before anyone is struck off" in result.stderr
    assert await row_counts(pool, REGISTRY) == before
    with listed.open(encoding="utf-8-sig", newline="") as file:
        written = [(row["行号 line"], row["结果 outcome"], row["说明 details"]) for row in csv.DictReader(file)]
    assert written == [
        ("2", "已读取 read, not compared", ""),
        ("3", "拒绝 rejected", "身份证号码: must be 18 characters"),
    ]


async def test_write_list_refuses_other_extensions_and_the_imported_file(database_url, tmp_path):
    path = write_csv(tmp_path / "list.csv", (fresh_national_id(), "", "低保", "2026-01-01", ""))
    for target, message in ((tmp_path / "out.txt", "give a .csv or .xlsx file name"), (path, "would overwrite")):
        result = medsettle(database_url, "import", "civil-affairs", str(path), "--dry-run", "--write-list", str(target))
        assert result.returncode == 2
        assert message in result.stderr
    assert not (tmp_path / "out.txt").exists()


async def test_tier_change_and_strike_off_take_effect_on_their_dates(client, database_url, tmp_path):
    person = fresh_national_id()
    insured = write_csv(tmp_path / "insurance.csv", (person, "Tier Change", "城乡居民", "2026-01-01", ""))
    assert medsettle(database_url, "import", "insurance", str(insured)).returncode == 0
    first = write_csv(tmp_path / "jan.csv", (person, "Tier Change", "低保", "2026-01-01", ""))
    assert medsettle(database_url, "import", "civil-affairs", str(first)).returncode == 0
    change = write_csv(tmp_path / "jun.csv", (person, "Tier Change", "低保边缘", "2026-06-01", ""))
    result = medsettle(database_url, "import", "civil-affairs", str(change))
    assert "changed 1" in result.stdout, result.stdout

    # 10,000.00 county inpatient: insurance (10,000 − 600) × 0.75 = 7,050.00; unpaid 2,950.00.
    before = await settle_on(client, person, "2026-05-31")
    assert before["hardship_aid"] == 206_500  # minimum_allowance 0.70
    after = await settle_on(client, person, "2026-06-01")
    assert after["hardship_aid"] == 177_000  # marginal 0.60

    strike = write_csv(tmp_path / "aug.csv", (person, "Tier Change", "低保边缘", "2026-06-01", "2026-08-01"))
    result = medsettle(database_url, "import", "civil-affairs", str(strike))
    assert "struck off 1" in result.stdout, result.stdout
    assert (await settle_on(client, person, "2026-07-31"))["hardship_aid"] == 177_000
    struck = await settle_on(client, person, "2026-08-01")
    assert struck["hardship_aid"] == 0
    assert struck["warnings"][0]["code"] == "struck_off" and "2026-08-01" in struck["warnings"][0]["message"]

    response = await client.post(
        "/v1/eligibility", json={"person_id": person, "service_date": "2026-07-20"}, headers=COUNTY
    )
    warnings = (await response.json())["warnings"]
    assert any(warning["code"] == "ends_soon" for warning in warnings)


async def test_full_list_strikes_off_the_missing_only_when_confirmed(client, database_url, pool, tmp_path):
    stays, leaves = fresh_national_id(), fresh_national_id()
    first = write_csv(
        tmp_path / "veterans-may.csv",
        (stays, "Stays", "伤残军人", "2026-01-01", ""),
        (leaves, "Leaves", "其他优抚对象", "2026-01-01", ""),
    )
    assert medsettle(database_url, "import", "veterans", str(first)).returncode == 0
    async with pool.acquire() as connection:
        others = await connection.fetchval(
            "SELECT count(*) FROM memberships WHERE programme = 'veteran_subsidy' AND struck_off_on IS NULL"
        )
    full = write_csv(tmp_path / "veterans-jun.csv", (stays, "Stays", "伤残军人", "2026-01-01", ""))

    unconfirmed = medsettle(database_url, "import", "veterans", str(full), "--full-list", "--as-of", "2026-07-01")
    assert unconfirmed.returncode == 1 and "re-run with --yes" in unconfirmed.stderr
    async with pool.acquire() as connection:
        open_now = await connection.fetchval(
            "SELECT count(*) FROM memberships WHERE programme = 'veteran_subsidy' AND struck_off_on IS NULL"
        )
    assert open_now == others

    confirmed = medsettle(
        database_url, "import", "veterans", str(full), "--full-list", "--as-of", "2026-07-01", "--yes"
    )
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert f"struck off {others - 1}," in confirmed.stdout
    response = await client.post(
        "/v1/eligibility", json={"person_id": leaves, "service_date": "2026-07-01"}, headers=COUNTY
    )
    eligibility = await response.json()
    assert eligibility["programmes"] == []
    assert eligibility["warnings"][0]["code"] == "struck_off"


async def test_registry_changes_are_audited(database_url, pool, tmp_path):
    person = fresh_national_id()
    path = write_csv(tmp_path / "audited.csv", (person, "Audited", "特困", "2026-02-01", ""))
    medsettle(database_url, "import", "civil-affairs", str(path))
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT actor, action, subject, source, details FROM audit_log WHERE subject = $1 ORDER BY audit_id DESC",
            identity.mask(person),
        )
    assert row["action"] == "membership.added"
    assert row["actor"].startswith("cli:")
    assert row["source"].startswith("civil-affairs:audited.csv sha256:")
    assert "destitute" in row["details"]


async def test_clinics_import_and_terminals_add(client, database_url, pool, tmp_path):
    path = tmp_path / "clinics.csv"
    path.write_text("code,name,level,region\nV901,Hilltop Village 901 Health Station,village,Chengguan\n", "utf-8")
    result = medsettle(database_url, "clinics", "import", str(path))
    assert result.returncode == 0 and "added 1" in result.stdout, result.stdout + result.stderr
    assert "unchanged 1" in medsettle(database_url, "clinics", "import", str(path)).stdout
    result = medsettle(database_url, "terminals", "add", "--clinic", "V901")
    assert result.returncode == 0 and "term-V901-1" in result.stdout
    key_id = re.search(r"^key_id: (\S+)$", result.stdout, re.MULTILINE).group(1)
    secret = re.search(r"^secret: (\S+)$", result.stdout, re.MULTILINE).group(1)
    async with pool.acquire() as connection:
        stored = await connection.fetchval("SELECT secret_ciphertext FROM terminal_keys WHERE key_id = $1", key_id)
    assert secret.encode() not in bytes(stored)  # kept only encrypted
    refused = medsettle(database_url, "terminals", "add", "--clinic", "NOPE")
    assert refused.returncode == 2 and "no clinic NOPE" in refused.stderr
    # The new terminal can settle at once: the gateway picks up new clinics and terminals.
    person = await register(client, ("insurance", "resident"))
    response = await client.post(
        "/v1/settlements",
        json=bill(person, ("A", 5_000), clinic_id="V901", visit_type="outpatient"),
        headers={"X-Terminal-Key": f"{key_id}:{secret}"},
    )
    assert response.status == 201, await response.text()


async def test_registry_stats_json_and_csv(client):
    await register(client, ("insurance", "resident"), ("hardship_aid", "low_income"))
    response = await client.get("/v1/registry/stats?date=2026-06-01&from=2026-01-01&to=2026-06-30", headers=ADMIN)
    stats = await response.json()
    assert response.status == 200, stats
    low_income = next(row for row in stats["by_programme"] if row["code"] == "low_income")
    assert low_income["in_force"] >= 1 and low_income["added"] >= 1
    response = await client.get("/v1/registry/stats?date=2026-06-01&format=csv", headers={"X-Terminal-Id": "finance-1"})
    text = (await response.read()).decode("utf-8")
    assert response.status == 200 and text.startswith("\ufeffprogramme,code,region,in_force")
    response = await client.get("/v1/registry/stats", headers=COUNTY)
    assert response.status == 403


async def test_no_raw_national_id_in_the_database(client, pool, tmp_path, database_url):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "destitute"))
    await settle_on(client, person, "2026-03-03")
    listed = fresh_national_id()
    medsettle(
        database_url,
        "import",
        "civil-affairs",
        str(write_csv(tmp_path / "x.csv", (listed, "X", "低保", "2026-01-01", ""))),
    )
    found = []
    async with pool.acquire() as connection:
        tables = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert {"people", "memberships", "settlements", "reversals", "audit_log"} <= {
            row["tablename"] for row in tables
        }
        for table in (row["tablename"] for row in tables):
            for row in await connection.fetch(f'SELECT * FROM "{table}"'):
                values = list(row.values())
                if table == "settlements":  # the compressed record: look inside it too
                    values.append(msgspec.json.encode(decode_record(row["record"])))
                for value in values:
                    text = value.decode("utf-8", "ignore") if isinstance(value, bytes) else str(value)
                    for national_id in (person, listed):
                        if national_id in text:
                            found.append(table)
    assert found == []


async def test_full_list_with_rejected_rows_is_refused(database_url, pool, tmp_path):
    good = fresh_national_id()
    path = write_csv(
        tmp_path / "dirty-full.csv",
        (good, "Good", "低保", "2026-01-01", ""),
        (good[:17] + ("1" if good[17] != "1" else "2"), "Bad check character", "低保", "2026-01-01", ""),
    )
    before = await row_counts(pool, REGISTRY)
    result = medsettle(database_url, "import", "civil-affairs", str(path), "--full-list", "--yes")
    assert result.returncode == 2
    assert "rejected line 3" in result.stdout and "must be clean" in result.stderr
    assert await row_counts(pool, REGISTRY) == before


# ---------------------------------------------------------------- programmes beyond the payers'

CHARITY_POLICY_ID = "charity-test-2027"


@pytest.fixture
def charity_policies(tmp_path: Path) -> Path:
    """A policy folder whose latest version, from 2027, names a charity programme beside the payers' two."""
    folder = tmp_path / "policies"
    folder.mkdir()
    default = (DEFAULT_POLICY_DIR / "default.toml").read_text(encoding="utf-8")
    (folder / "default.toml").write_text(default, encoding="utf-8")
    later = (
        default.replace('id = "default-2026"', f'id = "{CHARITY_POLICY_ID}"', 1)
        .replace("effective_from = 2026-01-01", "effective_from = 2027-01-01", 1)
        .replace("[programmes]\n", '[programmes]\ncharity = ["child_major_disease"]\n', 1)
    )
    assert later.count(CHARITY_POLICY_ID) == 1 and "charity = " in later
    (folder / "charity-2027.toml").write_text(later, encoding="utf-8")
    return folder


@pytest.fixture
async def charity_client(
    pool: asyncpg.Pool, database_url: str, settings: Any, charity_policies: Path
) -> AsyncIterator[SignedClient]:
    """The gateway over the same database, serving the policy folder that names charity."""
    app = create_app(msgspec.structs.replace(settings, policy_dir=str(charity_policies)), dsn=database_url)
    async with pool.acquire() as connection:
        keys = await load_keys(connection, KEY_ENCRYPTION_KEY)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield SignedClient(test_client, keys)


async def _memberships(pool: asyncpg.Pool, national_id: str) -> list[tuple[str, str, str, str | None]]:
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT programme, code, effective_from, struck_off_on FROM memberships WHERE person_key = $1"
            " ORDER BY programme, effective_from",
            identity.person_key(national_id, PEPPER),
        )
    return [
        (
            row["programme"],
            row["code"],
            row["effective_from"].isoformat(),
            row["struck_off_on"] and row["struck_off_on"].isoformat(),
        )
        for row in rows
    ]


async def test_a_charity_list_imports_under_the_policy_that_names_the_programme(
    database_url, pool, tmp_path, charity_policies
):
    member, misfiled = fresh_national_id(), fresh_national_id()
    path = write_csv(
        tmp_path / "charity-2027-01.csv",
        (member, "Charity Member", "child_major_disease", "2027-01-01", "2027-07-01"),
        (misfiled, "Wrong Code", "adult_major_disease", "2027-01-01", ""),
    )
    before = await row_counts(pool, REGISTRY)

    # Under the shipped policy there is no charity programme: the kind is refused and nothing is read.
    refused = medsettle(database_url, "import", "charity", str(path))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "unknown list kind 'charity'" in refused.stderr and "names no other programme" in refused.stderr
    assert await row_counts(pool, REGISTRY) == before

    result = medsettle(database_url, "import", "charity", str(path), MEDSETTLE_POLICY_DIR=str(charity_policies))
    assert result.returncode == 1, result.stdout + result.stderr  # one row rejected, the good one written
    assert "rejected line 3: 类别: unknown code 'adult_major_disease'; accepted: child_major_disease" in result.stdout
    assert "added 1, changed 0, struck off 0, unchanged 0, rejected 1" in result.stdout
    assert not ID_PATTERN.search(result.stdout + result.stderr), "a raw national ID was printed"
    assert await _memberships(pool, member) == [("charity", "child_major_disease", "2027-01-01", "2027-07-01")]
    assert await _memberships(pool, misfiled) == []
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT source, details FROM audit_log WHERE subject = $1 AND action = 'membership.added'"
            " ORDER BY audit_id DESC LIMIT 1",  # a masked ID is not unique: the latest row is this import's
            identity.mask(member),
        )
    assert row["source"].startswith("charity:charity-2027-01.csv sha256:")
    assert "charity: child_major_disease from 2027-01-01 until 2027-07-01" in row["details"]

    again = medsettle(database_url, "import", "charity", str(path), MEDSETTLE_POLICY_DIR=str(charity_policies))
    assert "added 0, changed 0, struck off 0, unchanged 1, rejected 1" in again.stdout


async def test_a_person_registered_with_a_charity_membership_reads_back(client, charity_client, pool):
    person = fresh_national_id()
    charity = {
        "programme": "charity",
        "code": "child_major_disease",
        "effective_from": "2027-01-01",
        "struck_off_on": "2027-07-01",
    }
    insurance = {"programme": "insurance", "code": "resident", "effective_from": "2026-01-01"}
    body = {"person_id": person, "name": "慈善", "memberships": [insurance, charity]}

    # The shipped policy names no charity programme: refused, naming the field, and nothing written.
    response = await client.post("/v1/people", json=body, headers=ADMIN)
    problem = await response.json()
    assert (response.status, problem["code"], problem["field"]) == (
        422,
        "invalid_membership",
        "memberships[1].programme",
    )
    assert "veteran_subsidy, hardship_aid" in problem["detail"] and "charity" not in problem["detail"]
    assert await _memberships(pool, person) == []

    response = await charity_client.post("/v1/people", json=body, headers=ADMIN)
    created = await response.json()
    assert response.status == 201, created
    assert created["memberships"] == [charity, {**insurance, "struck_off_on": None}]
    assert created["changes"]["added"] == 2
    assert await _memberships(pool, person) == [
        ("charity", "child_major_disease", "2027-01-01", "2027-07-01"),
        ("insurance", "resident", "2026-01-01", None),
    ]
    response = await charity_client.post("/v1/people", json=body, headers=ADMIN)
    assert (await response.json())["changes"]["unchanged"] == 2  # sending it again changes nothing

    # The terminal sees the membership while it is in force, and the strike-off after it.
    response = await charity_client.post(
        "/v1/eligibility", json={"person_id": person, "service_date": "2027-03-01"}, headers=COUNTY
    )
    in_force = await response.json()
    assert response.status == 200, in_force
    assert in_force["policy_version"] == CHARITY_POLICY_ID
    assert [(p["programme"], p["code"]) for p in in_force["programmes"]] == [
        ("charity", "child_major_disease"),
        ("insurance", "resident"),
    ]
    response = await charity_client.post(
        "/v1/eligibility", json={"person_id": person, "service_date": "2027-07-01"}, headers=COUNTY
    )
    ended = await response.json()
    assert [p["programme"] for p in ended["programmes"]] == ["insurance"]
    assert [(w["code"], w["programme"], w["message"]) for w in ended["warnings"]] == [
        ("struck_off", "charity", "struck off charity (child_major_disease) on 2027-07-01")
    ]

    # A code the policy does not declare, and a programme it does not name, are refused by field.
    for membership, field, detail in (
        ({**charity, "code": "adult_major_disease"}, "memberships[0].code", "expected one of child_major_disease"),
        ({**charity, "programme": "welfare"}, "memberships[0].programme", f"policy {CHARITY_POLICY_ID} names"),
    ):
        response = await charity_client.post(
            "/v1/people", json={"person_id": fresh_national_id(), "memberships": [membership]}, headers=ADMIN
        )
        problem = await response.json()
        assert (response.status, problem["code"], problem["field"]) == (422, "invalid_membership", field), problem
        assert detail in problem["detail"]

"""Clinics and terminals: loading the clinic list and registering terminals, with an audit row each."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import asyncpg

LEVELS = {"village": "village", "township": "township", "county": "county", "村": "village", "镇": "township",
          "乡": "township", "县": "county", "村卫生服务站": "village", "镇卫生服务中心": "township",
          "乡镇卫生院": "township", "社区卫生服务中心": "township", "县级医院": "county"}  # fmt: skip
HEADERS = {
    "code": "code", "机构编码": "code", "clinic_id": "code",
    "name": "name", "机构名称": "name",
    "level": "level", "级别": "level", "机构级别": "level",
    "region": "region", "地区": "region", "所属地区": "region",
}  # fmt: skip


def read_clinics(path: Path) -> list[tuple[str, str, str, str]]:
    """(code, name, level, region) rows; raises ValueError naming the line of the first bad row."""
    text = path.read_bytes().decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    header = [HEADERS.get(cell.strip().lower(), HEADERS.get(cell.strip(), "")) for cell in next(reader, [])]
    missing = {"code", "name", "level", "region"} - set(header)
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(sorted(missing))} (expected code,name,level,region)")
    clinics = []
    seen: dict[str, int] = {}
    for line, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        row = {column: cells[index].strip() for index, column in enumerate(header) if column and index < len(cells)}
        level = LEVELS.get(row.get("level", ""))
        if not row.get("code") or not row.get("name") or level is None:
            raise ValueError(f"{path}: line {line}: needs a code, a name and a level (village, township or county)")
        if row["code"] in seen:
            raise ValueError(f"{path}: line {line}: clinic {row['code']} already on line {seen[row['code']]}")
        seen[row["code"]] = line
        clinics.append((row["code"], row["name"], level, row.get("region", "")))
    return clinics


async def import_clinics(connection: asyncpg.Connection, path: Path, *, actor: str) -> dict[str, int]:
    clinics = read_clinics(path)
    counts = {"added": 0, "changed": 0, "unchanged": 0}
    async with connection.transaction():
        existing = {
            row["clinic_id"]: (row["name"], row["level"], row["region"])
            for row in await connection.fetch("SELECT clinic_id, name, level, region FROM clinics FOR UPDATE")
        }
        for code, name, level, region in clinics:
            before = existing.get(code)
            if before == (name, level, region):
                counts["unchanged"] += 1
                continue
            await connection.execute(
                """INSERT INTO clinics (clinic_id, name, level, region) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (clinic_id) DO UPDATE SET name = $2, level = $3, region = $4""",
                code,
                name,
                level,
                region,
            )
            action = "clinic.added" if before is None else "clinic.changed"
            counts["added" if before is None else "changed"] += 1
            await connection.execute(
                "INSERT INTO audit_log (actor, action, subject, source, details) VALUES ($1, $2, $3, $4, $5)",
                actor,
                action,
                code,
                path.name,
                json.dumps({"name": name, "level": level, "region": region, "before": before}),
            )
    return counts


async def add_terminal(
    connection: asyncpg.Connection, *, clinic_id: str, role: str, terminal_id: str | None, actor: str
) -> str:
    async with connection.transaction():
        if not await connection.fetchval("SELECT EXISTS (SELECT 1 FROM clinics WHERE clinic_id = $1)", clinic_id):
            raise ValueError(f"no clinic {clinic_id}; load it first with: medsettle clinics import FILE")
        if terminal_id is None:
            count = await connection.fetchval("SELECT count(*) FROM terminals WHERE clinic_id = $1", clinic_id)
            terminal_id = f"term-{clinic_id}-{count + 1}"
        inserted = await connection.fetchval(
            "INSERT INTO terminals (terminal_id, clinic_id, role) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING terminal_id",
            terminal_id,
            clinic_id,
            role,
        )
        if inserted is None:
            raise ValueError(f"terminal {terminal_id} already exists")
        await connection.execute(
            "INSERT INTO audit_log (actor, action, subject, details) VALUES ($1, 'terminal.added', $2, $3)",
            actor,
            terminal_id,
            json.dumps({"clinic_id": clinic_id, "role": role}),
        )
    return terminal_id

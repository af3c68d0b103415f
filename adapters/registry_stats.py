"""Registry statistics: people in force on a date, and added or struck off in a period.

Broken down by programme, code (category or tier) and region (the division code
in the ID). People served are also counted by clinic level, from settlements in
the period. Served as JSON or as CSV that opens in a spreadsheet.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import asyncpg

from adapters.report_models import Period, ProgrammeCount, RegionCount, RegistryStats, ServedByLevel

_BY_PROGRAMME = """
SELECT m.programme, m.code, p.region_code AS region,
       count(DISTINCT m.person_key) FILTER (
           WHERE m.effective_from <= $1 AND (m.struck_off_on IS NULL OR m.struck_off_on > $1)) AS in_force,
       count(DISTINCT m.person_key) FILTER (WHERE m.effective_from BETWEEN $2 AND $3) AS added,
       count(DISTINCT m.person_key) FILTER (WHERE m.struck_off_on BETWEEN $2 AND $3) AS struck_off
FROM memberships m JOIN people p USING (person_key)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""

_SERVED_BY_LEVEL = """
SELECT clinic_level, count(DISTINCT person_key) AS people_served, count(*) AS settlements
FROM settlements WHERE service_date BETWEEN $1 AND $2 AND reversal_id IS NULL
GROUP BY 1 ORDER BY 1
"""

COLUMNS = ("programme", "code", "region", "in_force", "added", "struck_off")


async def read_registry_stats(
    connection: asyncpg.Connection, *, on: dt.date, period_from: dt.date, period_to: dt.date
) -> RegistryStats:
    rows = await connection.fetch(_BY_PROGRAMME, on, period_from, period_to)
    served = await connection.fetch(_SERVED_BY_LEVEL, period_from, period_to)
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        total = totals.setdefault((row["programme"], row["code"]), {"in_force": 0, "added": 0, "struck_off": 0})
        for column in ("in_force", "added", "struck_off"):
            total[column] += row[column]
    return RegistryStats(
        on=on,
        period=Period(from_=period_from, to=period_to),
        by_region=[RegionCount(**{column: row[column] for column in COLUMNS}) for row in rows],
        by_programme=[
            ProgrammeCount(programme=programme, code=code, **counts)
            for (programme, code), counts in sorted(totals.items())
        ],
        served_by_clinic_level=[
            ServedByLevel(
                clinic_level=row["clinic_level"], people_served=row["people_served"], settlements=row["settlements"]
            )
            for row in served
        ],
    )


def stats_csv(stats: RegistryStats) -> str:
    """The by-region table as CSV with a BOM, so spreadsheets read the UTF-8 correctly."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow([*COLUMNS, "on", "period_from", "period_to"])
    on, period_from, period_to = stats.on.isoformat(), stats.period.from_.isoformat(), stats.period.to.isoformat()
    for row in stats.by_region:
        writer.writerow([*(getattr(row, column) for column in COLUMNS), on, period_from, period_to])
    return buffer.getvalue()

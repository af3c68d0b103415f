"""Demo data: a county of 100 village stations, 13 township centres and 3 county hospitals,
a terminal for each, and a seeded synthetic population covering every priority-care
category and hardship tier. Seeding is idempotent: running it twice adds nothing.

The demo's item catalogue (samples/catalogue-2026.csv) is opt-in: ``seed_demo(..., catalogue=path)``
or ``seed_demo_catalogue``. Without it the county settles on the terminals' categories, which is
what most tests that seed the county rely on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from adapters import identity
from adapters.catalogue_files import read_catalogue
from adapters.catalogue_store import catalogue_stamp, import_catalogue
from adapters.terminal_keys import create_key, load_keys
from settlement.policy import HARDSHIP_TIERS, VETERAN_CATEGORIES

REGION_CODE = "410102"  # the demo county's administrative division code
COUNTY_NAME = "示范县"  # "demonstration county"
COUNTY_SEAT = "县城"  # the region of the county hospitals
TOWNSHIPS = [
    "城关镇", "东城镇", "西城镇", "南河镇", "北山镇", "柳林镇", "双桥镇",
    "清河镇", "黄坡镇", "白杨镇", "高陵镇", "三河镇", "莲花乡",
]  # fmt: skip
# Village names as a county has them: a family name and a kind of settlement (王庄村, 李营村, ...),
# ten by ten, so that the hundred villages are named once each.
VILLAGE_FAMILIES = "王李张刘陈杨赵黄周吴"
VILLAGE_KINDS = "庄营寨屯店岗湾集楼桥"


@dataclass(frozen=True)
class DemoPerson:
    national_id: str
    name: str  # as the registry holds it, in Chinese
    memberships: list[tuple[str, str, dt.date, dt.date | None]]
    romanised: str = ""  # the name in pinyin, for the README's readers (the named people only)


def village_name(number: int) -> str:
    """The name of village ``number`` (1 to 100): 王庄村 ... 吴桥村."""
    family, kind = divmod(number - 1, len(VILLAGE_KINDS))
    return f"{VILLAGE_FAMILIES[family % len(VILLAGE_FAMILIES)]}{VILLAGE_KINDS[kind]}村"


def demo_clinics() -> list[tuple[str, str, str, str]]:
    """(clinic_id, name, level, region) for 3 county, 13 township and 100 village clinics, named as a
    Chinese county names them: 示范县人民医院, 城关镇卫生院, 城关镇王庄村卫生室."""
    clinics = [
        ("C001", f"{COUNTY_NAME}人民医院", "county", COUNTY_SEAT),
        ("C002", f"{COUNTY_NAME}中医医院", "county", COUNTY_SEAT),
        ("C003", f"{COUNTY_NAME}妇幼保健院", "county", COUNTY_SEAT),
    ]
    for index, town in enumerate(TOWNSHIPS, start=1):
        clinics.append((f"T{index:03d}", f"{town}卫生院", "township", town))
    for number in range(1, 101):
        town = TOWNSHIPS[(number - 1) % len(TOWNSHIPS)]
        clinics.append((f"V{number:03d}", f"{town}{village_name(number)}卫生室", "village", town))
    return clinics


def demo_terminals(clinics: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str]]:
    """(terminal_id, clinic_id, role): one billing terminal per clinic, plus admin and finance desks."""
    terminals = [(f"term-{clinic_id}", clinic_id, "terminal") for clinic_id, *_ in clinics]
    terminals.append(("admin-1", "C001", "admin"))
    terminals.append(("finance-1", "C001", "finance"))
    return terminals


YEAR_START = dt.date(2026, 1, 1)

# Named people the README's example requests use; every programme appears. (Chinese name, pinyin, programmes.)
SHOWCASE = [
    ("张伟", "Zhang Wei", [("insurance", "resident"), ("hardship_aid", "minimum_allowance")]),
    (
        "李娜",
        "Li Na",
        [("insurance", "resident"), ("hardship_aid", "minimum_allowance"), ("veteran_subsidy", "priority_care")],
    ),
    ("王芳", "Wang Fang", [("insurance", "resident"), ("veteran_subsidy", "disabled_veteran")]),
    ("刘洋", "Liu Yang", [("insurance", "resident"), ("hardship_aid", "destitute")]),
    ("陈杰", "Chen Jie", [("insurance", "resident"), ("hardship_aid", "marginal")]),
    ("杨敏", "Yang Min", [("insurance", "resident"), ("hardship_aid", "low_income")]),
    ("赵磊", "Zhao Lei", [("insurance", "resident"), ("hardship_aid", "medical_hardship")]),
    ("黄静", "Huang Jing", [("insurance", "resident")]),
    ("周强", "Zhou Qiang", [("hardship_aid", "destitute")]),  # not enrolled in insurance
    # A child in the charity programme: only a chain with a charity step (policies/examples/three-tier) pays it.
    (
        "孙浩",
        "Sun Hao",
        [("insurance", "resident"), ("hardship_aid", "minimum_allowance"), ("charity", "child_major_disease")],
    ),
]


CHILDREN = {"孙浩": dt.date(2016, 3, 10)}

# The rest of the population is named from common family and given names (synthetic, like their IDs).
FAMILY_NAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘蒋蔡余杜叶程魏苏吕丁任沈"
GIVEN_NAMES = (
    "秀英", "桂英", "秀兰", "玉兰", "桂兰", "秀珍", "凤英", "玉珍", "淑珍", "玉梅", "红梅", "丽娟", "海燕",
    "春梅", "桂芳", "建华", "建国", "建军", "国强", "志强", "永强", "文华", "德明", "振华", "立新", "卫东",
    "志刚", "海涛", "晓东", "俊杰", "子涵", "雨轩", "浩然", "欣怡", "梓萱", "明", "勇", "军", "杰", "磊", "涛",
    "超", "静", "敏", "燕", "艳", "丹", "霞", "刚", "平", "辉", "鹏", "华", "红", "英", "兰", "芳", "强", "伟",
)  # fmt: skip


def demo_name(rng: random.Random) -> str:
    """A synthetic Chinese name: a common family name and a common given name."""
    return rng.choice(FAMILY_NAMES) + rng.choice(GIVEN_NAMES)


def demo_population(size: int = 2000, seed: int = 20260101) -> list[DemoPerson]:
    """Seeded people: mostly insured, about 5 % priority-care, about 15 % in a hardship tier,
    and a few struck off during the year so the warnings show."""
    rng = random.Random(seed)
    # Names from a generator of their own, so that the IDs and programmes drawn from ``rng`` stay as they were.
    names = random.Random(f"{seed} names")
    people = []
    for sequence, (name, romanised, programmes) in enumerate(SHOWCASE, start=1):
        birth = CHILDREN.get(name, dt.date(1950 + sequence * 5, 3, sequence))
        national_id = identity.make_id(REGION_CODE, birth, sequence)
        memberships = [(p, c, YEAR_START, None) for p, c in programmes]
        people.append(DemoPerson(national_id, name, memberships, romanised))
    used = {person.national_id for person in people}
    while len(people) < size:
        birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 90))
        national_id = identity.make_id(REGION_CODE, birth, rng.randrange(0, 1000))
        if national_id in used:
            continue
        used.add(national_id)
        memberships: list[tuple[str, str, dt.date, dt.date | None]] = []
        if rng.random() < 0.96:
            memberships.append(("insurance", "resident", YEAR_START, None))
        roll = rng.random()
        if roll < 0.01:
            memberships.append(("veteran_subsidy", VETERAN_CATEGORIES[0], YEAR_START, None))
        elif roll < 0.05:
            memberships.append(("veteran_subsidy", VETERAN_CATEGORIES[1], YEAR_START, None))
        if rng.random() < 0.15:
            tier = rng.choices(HARDSHIP_TIERS, weights=(1, 4, 3, 4, 2))[0]
            struck_off = YEAR_START + dt.timedelta(days=rng.randrange(60, 300)) if rng.random() < 0.1 else None
            memberships.append(("hardship_aid", tier, YEAR_START, struck_off))
        people.append(DemoPerson(national_id, demo_name(names), memberships))
    return people


async def seed_demo(
    connection: asyncpg.Connection,
    pepper: bytes,
    key_encryption_key: bytes,
    *,
    population: int = 2000,
    catalogue: Path | None = None,
) -> dict[str, int]:
    """Insert the demo county, with a signing key for every terminal that has none, and with
    ``catalogue`` (a catalogue file) its item catalogue too (``seed_demo_catalogue``).
    Existing rows are left alone, so seeding twice changes nothing."""
    clinics = demo_clinics()
    terminals = demo_terminals(clinics)
    people = demo_population(population)
    async with connection.transaction():
        await connection.executemany(
            "INSERT INTO clinics (clinic_id, name, level, region) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            clinics,
        )
        await connection.executemany(
            "INSERT INTO terminals (terminal_id, clinic_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            terminals,
        )
        keys = [identity.person_key(person.national_id, pepper) for person in people]
        inserted = await connection.fetch(
            """INSERT INTO people (person_key, masked_id, name, region_code)
               SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[])
               ON CONFLICT DO NOTHING RETURNING person_key""",
            keys,
            [identity.mask(person.national_id) for person in people],
            [person.name for person in people],
            [person.national_id[:6] for person in people],
        )
        new_keys = {bytes(row["person_key"]) for row in inserted}
        rows = [
            (key, programme, code, start, end)
            for key, person in zip(keys, people, strict=True)
            if key in new_keys
            for programme, code, start, end in person.memberships
        ]
        await connection.copy_records_to_table(
            "memberships",
            records=rows,
            columns=["person_key", "programme", "code", "effective_from", "struck_off_on"],
        )
    keys_created = await ensure_terminal_keys(connection, key_encryption_key)
    catalogue_items = 0 if catalogue is None else await seed_demo_catalogue(connection, catalogue)
    await connection.execute("ANALYZE")  # fresh tables otherwise plan foreign-key checks as scans
    return {
        "clinics": len(clinics),
        "terminals": len(terminals),
        "keys_created": keys_created,
        "people_added": len(new_keys),
        **({"catalogue_items": catalogue_items} if catalogue is not None else {}),
    }


async def seed_demo_catalogue(connection: asyncpg.Connection, path: Path) -> int:
    """Import the catalogue file at ``path`` as the version in force from 1 January of the demo year, when
    the database has no catalogue yet. Returns how many items it imported (0: a catalogue was there)."""
    if await catalogue_stamp(connection) is not None:
        return 0
    rows, rejected = read_catalogue(path)
    if rejected:
        raise ValueError(f"{path.name}: line {rejected[0].line}: {rejected[0].reason}")
    summary = await import_catalogue(
        connection,
        rows,
        effective_from=YEAR_START,
        source=path.name,
        file_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        actor="demo",
    )
    return summary.added.count if summary.outcome == "imported" else 0


async def has_clinics(connection: asyncpg.Connection) -> bool:
    """Whether any clinic is registered: ``serve --demo`` seeds only a database that has none."""
    return bool(await connection.fetchval("SELECT EXISTS (SELECT 1 FROM clinics)"))


async def ensure_terminal_keys(connection: asyncpg.Connection, key_encryption_key: bytes) -> int:
    """Give every active terminal without a usable key one (demo data made before keys existed)."""
    keyless = await connection.fetch(
        """SELECT t.terminal_id FROM terminals t WHERE t.revoked_at IS NULL AND NOT EXISTS (
               SELECT 1 FROM terminal_keys k WHERE k.terminal_id = t.terminal_id AND k.retired_at IS NULL)
           ORDER BY t.terminal_id"""
    )
    for row in keyless:
        await create_key(connection, key_encryption_key, row["terminal_id"], actor="demo")
    return len(keyless)


async def demo_key_file(connection: asyncpg.Connection, key_encryption_key: bytes, path: Path) -> None:
    """Write the demo terminals' keys for `medsettle client` (development only; mode 0600)."""
    keys = await load_keys(connection, key_encryption_key)
    document = {
        key.terminal_id: {"key_id": key.key_id, "secret": key.secret}
        for key in sorted(keys.values(), key=lambda key: key.key_id)
        if key.secret
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(document, indent=1, sort_keys=True), encoding="utf-8")

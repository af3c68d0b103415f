"""A synthetic county for load tests: clinics, people, memberships, terminals and a stream of bills.

    python benchmarks/county.py --seed 1 --people 20000 --out benchmarks/out/county
    python benchmarks/county.py --scale 10 --out benchmarks/out/province    # 10 counties' worth

Everything is drawn from one seed, so the same arguments give the same county, byte
for byte. The default is one county, the size of a real rural one: 100 village
stations, 13 township health centres and 3 county hospitals, and 20,000 people, most of
them enrolled in resident insurance, a few percent in a priority-care category and a few
percent in a hardship tier, some of those struck off during the year.

``load_county`` writes the county into a migrated database the way the gateway's own
code does (``person_key`` is the HMAC of the national ID under the pepper, the masked ID
for display, terminal secrets encrypted under the key-encryption key), in a few
set-based statements, then runs ``ANALYZE`` (a fresh table plans its foreign-key checks
as sequential scans until analysed, which cut throughput to a fifth in early trials).

``bill_stream`` yields ``(terminal_id, settle request body)`` pairs in a realistic mix:
many small outpatient bills at village stations, fewer and larger ones at township
centres, and inpatient admissions (township and county only; villages take none) that
run to tens of thousands of yuan. Lines are category A, B and C items with national
code-style identifiers, a quantity and a unit price; every amount is int fen.

The CLI writes the county as files a person can read, and ``medsettle`` can import:
``clinics.csv`` (for ``medsettle clinics import``), one registry list per bureau in the
layout of ``samples/`` (for ``medsettle import``), ``terminals.csv``, a sample of bills
as JSON lines, and ``summary.json``. It prints counts only, never a national ID.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapters import identity  # noqa: E402

if TYPE_CHECKING:  # asyncpg is imported only where the county is loaded: locust processes never need it
    import asyncpg

CHINA = dt.timezone(dt.timedelta(hours=8), "CST")  # the gateway's day (gateway/service.py china_today)
SOURCE = "benchmark"  # memberships.source and the audit actor, so benchmark rows are easy to tell apart

# One county (a 县) per 13 townships; the division code starts every national ID born there.
DISTRICTS = (
    "Qingshui", "Baima", "Heyang", "Songling", "Yunxi", "Dazhuang", "Lushan", "Fengqiao", "Xinan", "Gucheng",
)  # fmt: skip
TOWNSHIP_NAMES = (
    "Chengguan", "Dongcheng", "Xicheng", "Nanhe", "Beishan", "Liulin", "Shuangqiao",
    "Qinghe", "Huangpo", "Baiyang", "Gaoling", "Sanhe", "Lianhua",
)  # fmt: skip
COUNTY_HOSPITALS = (
    "People's Hospital", "Hospital of Traditional Chinese Medicine", "Maternal and Child Health Hospital",
)  # fmt: skip
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华平刚桂兰玉梅红霞建国志文斌辉玲凤云海林波宁"

# Who is in which programme. Shares of the whole population; docs/settlement-rules.md names the codes.
INSURED_SHARE = 0.95  # resident insurance covers about 95 % of rural residents
INSURANCE_STRUCK_OFF_SHARE = 0.01  # moved away or enrolled elsewhere during the year
VETERAN_SHARES = {"disabled_veteran": 0.005, "priority_care": 0.025}
HARDSHIP_SHARES = {
    "destitute": 0.005,
    "minimum_allowance": 0.025,
    "marginal": 0.01,
    "low_income": 0.015,
    "medical_hardship": 0.005,
}
HARDSHIP_STRUCK_OFF_SHARE = 0.10  # of hardship members: left the tier during the year
ENROLMENT_YEAR = dt.date(2026, 1, 1)  # resident insurance enrols by calendar year; the default policy starts here

# Bills per clinic per day relative to a village station, and the inpatient share of each level's bills.
TRAFFIC_WEIGHT = {"village": 1.0, "township": 4.0, "county": 10.0}
INPATIENT_SHARE = {"village": 0.0, "township": 0.12, "county": 0.30}
# How many lines a bill has, by (level, visit type).
LINES = {
    ("village", "outpatient"): (1, 6),
    ("township", "outpatient"): (2, 12),
    ("county", "outpatient"): (3, 15),
    ("township", "inpatient"): (8, 22),
    ("county", "inpatient"): (12, 30),
}


# ---------------------------------------------------------------- the county


@dataclass(frozen=True, slots=True)
class Clinic:
    clinic_id: str
    name: str
    level: str  # village, township or county
    region: str  # township name, or the county seat for county hospitals
    district: int  # index of the county (县) it belongs to


@dataclass(frozen=True, slots=True)
class Membership:
    programme: str  # insurance, veteran_subsidy or hardship_aid
    code: str  # resident; disabled_veteran, priority_care; destitute ... medical_hardship
    effective_from: dt.date
    struck_off_on: dt.date | None = None


@dataclass(frozen=True, slots=True)
class Person:
    national_id: str  # raw, valid 18-character ID: written to the database only as its HMAC
    name: str
    region: str  # the township they live in
    district: int
    memberships: tuple[Membership, ...]


@dataclass(frozen=True, slots=True)
class Terminal:
    terminal_id: str
    clinic_id: str
    role: str = "terminal"


@dataclass(frozen=True)
class County:
    seed: int
    parameters: dict[str, int]  # the build_county arguments: build_county(seed, **parameters) rebuilds it
    clinics: tuple[Clinic, ...]
    people: tuple[Person, ...]
    terminals: tuple[Terminal, ...]

    @cached_property
    def clinic_by_id(self) -> dict[str, Clinic]:
        return {clinic.clinic_id: clinic for clinic in self.clinics}

    @cached_property
    def terminal_by_clinic(self) -> dict[str, Terminal]:
        return {terminal.clinic_id: terminal for terminal in self.terminals}

    @cached_property
    def clinic_by_terminal(self) -> dict[str, Clinic]:
        return {terminal.terminal_id: self.clinic_by_id[terminal.clinic_id] for terminal in self.terminals}

    @cached_property
    def _residents(self) -> tuple[dict[str, list[int]], dict[int, list[int]]]:
        by_region: dict[str, list[int]] = {}
        by_district: dict[int, list[int]] = {}
        for index, person in enumerate(self.people):
            by_region.setdefault(person.region, []).append(index)
            by_district.setdefault(person.district, []).append(index)
        return by_region, by_district

    def catchment(self, clinic: Clinic) -> Sequence[int]:
        """Indexes of the people who come to this clinic: a village station or township centre serves its
        township, a county hospital its whole county."""
        by_region, by_district = self._residents
        people = by_district.get(clinic.district, []) if clinic.level == "county" else by_region.get(clinic.region, [])
        return people or range(len(self.people))

    @cached_property
    def traffic(self) -> tuple[list[Clinic], list[float]]:
        """Clinics and their relative number of bills a day (cumulative weights for random.choices)."""
        weights = [TRAFFIC_WEIGHT[clinic.level] for clinic in self.clinics]
        return list(self.clinics), list(_cumulative(weights))


def _cumulative(weights: Sequence[float]) -> Iterator[float]:
    total = 0.0
    for weight in weights:
        total += weight
        yield total


def _division_code(district: int) -> str:
    """A 6-digit administrative division code per county: 410102, 410103, ... (the demo county's prefix)."""
    return f"41{1 + district // 98:02d}{2 + district % 98:02d}"


def build_county(
    seed: int = 1, *, villages: int = 100, townships: int = 13, counties: int = 3, people: int = 20_000
) -> County:
    """A county (or, with more of everything, a province) drawn from ``seed``: the same arguments give the
    same clinics, people and memberships. Townships are grouped 13 to a county (县); villages are spread
    over the townships, county hospitals over the counties."""
    if min(villages, townships, counties) < 0 or townships + counties < 1 or people < 1:
        raise ValueError("need at least one township or county clinic and one person")
    rng = random.Random(seed)
    districts = max(1, math.ceil(townships / 13), math.ceil(counties / 3))
    district_names = [
        DISTRICTS[index % len(DISTRICTS)] + (f" {index // len(DISTRICTS) + 1}" if index >= len(DISTRICTS) else "")
        for index in range(districts)
    ]
    clinics: list[Clinic] = []
    width = max(4, len(str(max(villages, townships, counties))))
    for index in range(counties):
        district = index * districts // counties
        kind = COUNTY_HOSPITALS[index % len(COUNTY_HOSPITALS)]
        seat = f"{district_names[district]} county seat"
        clinics.append(
            Clinic(f"C{index + 1:0{width}d}", f"{district_names[district]} County {kind}", "county", seat, district)
        )
    town_regions: list[tuple[str, int]] = []
    for index in range(townships):
        district = min(index // 13, districts - 1)
        name = TOWNSHIP_NAMES[index % 13] + (f" {index // 13 + 1}" if index >= 13 else "")
        town_regions.append((name, district))
        clinics.append(Clinic(f"T{index + 1:0{width}d}", f"{name} Township Health Centre", "township", name, district))
    if not town_regions:  # a county with hospitals only: everyone lives in the county seat
        town_regions = [(clinic.region, clinic.district) for clinic in clinics]
    for index in range(villages):
        town, district = town_regions[index % len(town_regions)]
        clinics.append(
            Clinic(f"V{index + 1:0{width}d}", f"{town} Village {index + 1} Health Station", "village", town, district)
        )

    # A township's population grows with the villages it has.
    village_count = Counter(clinic.region for clinic in clinics if clinic.level == "village")
    town_weights = list(_cumulative([1 + village_count[name] for name, _ in town_regions]))
    used: set[str] = set()
    population: list[Person] = []
    earliest_birth = dt.date(1930, 1, 1)
    birth_span = (dt.date(2025, 12, 31) - earliest_birth).days
    while len(population) < people:
        town, district = rng.choices(town_regions, cum_weights=town_weights)[0]
        birth = earliest_birth + dt.timedelta(days=rng.randrange(birth_span))
        national_id = identity.make_id(_division_code(district), birth, rng.randrange(1000))
        if national_id in used:
            continue
        used.add(national_id)
        name = rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2))))
        population.append(Person(national_id, name, town, district, _memberships(rng, birth)))

    terminals = tuple(Terminal(f"term-{clinic.clinic_id}", clinic.clinic_id) for clinic in clinics)
    parameters = {"villages": villages, "townships": townships, "counties": counties, "people": people}
    return County(seed, parameters, tuple(clinics), tuple(population), terminals)


def _memberships(rng: random.Random, birth: dt.date) -> tuple[Membership, ...]:
    memberships = []
    if rng.random() < INSURED_SHARE:
        struck_off = _day_in_year(rng) if rng.random() < INSURANCE_STRUCK_OFF_SHARE else None
        memberships.append(Membership("insurance", "resident", ENROLMENT_YEAR, struck_off))
    roll = rng.random()
    for category, share in VETERAN_SHARES.items():
        if roll < share and birth.year <= 2000:
            since = dt.date(rng.randrange(max(2000, birth.year + 20), 2026), rng.randrange(1, 13), 1)
            memberships.append(Membership("veteran_subsidy", category, since))
            break
        roll -= share
    roll = rng.random()
    for tier, share in HARDSHIP_SHARES.items():
        if roll < share:
            since = dt.date(rng.randrange(2015, 2026), rng.randrange(1, 13), 1)
            struck_off = _day_in_year(rng) if rng.random() < HARDSHIP_STRUCK_OFF_SHARE else None
            memberships.append(Membership("hardship_aid", tier, since, struck_off))
            break
        roll -= share
    return tuple(memberships)


def _day_in_year(rng: random.Random) -> dt.date:
    """A strike-off date during the enrolment year (after its first month)."""
    return ENROLMENT_YEAR + dt.timedelta(days=rng.randrange(31, 330))


# ---------------------------------------------------------------- loading into PostgreSQL


async def load_county(
    connection: asyncpg.Connection, county: County, *, pepper: bytes, key_encryption_key: bytes
) -> dict[str, tuple[str, str]]:
    """Write the county into a migrated database and return ``terminal_id -> (key_id, secret)``.

    Clinics, people, memberships, terminals and one signing key per terminal, in one transaction, then
    ``ANALYZE``. Rows already there are left alone (people already known keep their memberships,
    terminals with an active key keep it), so loading the same county twice adds nothing."""
    from adapters import signing
    from adapters.terminal_keys import encrypt, load_keys

    person_keys = [identity.person_key(person.national_id, pepper) for person in county.people]
    async with connection.transaction():
        await connection.execute(
            """INSERT INTO clinics (clinic_id, name, level, region)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING""",
            [clinic.clinic_id for clinic in county.clinics],
            [clinic.name for clinic in county.clinics],
            [clinic.level for clinic in county.clinics],
            [clinic.region for clinic in county.clinics],
        )
        await connection.execute(
            """INSERT INTO terminals (terminal_id, clinic_id, role)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING""",
            [terminal.terminal_id for terminal in county.terminals],
            [terminal.clinic_id for terminal in county.terminals],
            [terminal.role for terminal in county.terminals],
        )
        inserted = await connection.fetch(
            """INSERT INTO people (person_key, masked_id, name, region_code)
               SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[])
               ON CONFLICT DO NOTHING RETURNING person_key""",
            person_keys,
            [identity.mask(person.national_id) for person in county.people],
            [person.name for person in county.people],
            [person.national_id[:6] for person in county.people],
        )
        new_people = {bytes(row["person_key"]) for row in inserted}
        # Without statistics the memberships' foreign-key checks scan people: 2x slower at 200k people.
        await connection.execute("ANALYZE people")
        await connection.copy_records_to_table(
            "memberships",
            records=[
                (key, item.programme, item.code, item.effective_from, item.struck_off_on, SOURCE)
                for key, person in zip(person_keys, county.people, strict=True)
                if key in new_people
                for item in person.memberships
            ],
            columns=["person_key", "programme", "code", "effective_from", "struck_off_on", "source"],
        )
        keyless = [
            row["terminal_id"]
            for row in await connection.fetch(
                """SELECT t.terminal_id FROM terminals t
                   WHERE t.terminal_id = ANY($1::text[]) AND t.revoked_at IS NULL AND NOT EXISTS (
                       SELECT 1 FROM terminal_keys k WHERE k.terminal_id = t.terminal_id AND k.retired_at IS NULL)
                   ORDER BY t.terminal_id""",
                [terminal.terminal_id for terminal in county.terminals],
            )
        ]
        # As adapters.terminal_keys.create_key does, one key at a time, but in two statements for them all.
        new_keys = [(terminal_id, *signing.new_key()) for terminal_id in keyless]
        await connection.executemany(
            "INSERT INTO terminal_keys (key_id, terminal_id, secret_ciphertext) VALUES ($1, $2, $3)",
            [
                (key_id, terminal_id, encrypt(key_encryption_key, key_id, secret))
                for terminal_id, key_id, secret in new_keys
            ],
        )
        await connection.executemany(
            "INSERT INTO audit_log (actor, action, subject, details) VALUES ($1, 'terminal.key_created', $2, $3)",
            [(SOURCE, terminal_id, json.dumps({"key_id": key_id})) for terminal_id, key_id, _ in new_keys],
        )
    await connection.execute("ANALYZE")
    ours = {terminal.terminal_id for terminal in county.terminals}
    keys = await load_keys(connection, key_encryption_key)
    result: dict[str, tuple[str, str]] = {}
    for key in sorted(keys.values(), key=lambda key: key.key_id):
        if key.terminal_id in ours and key.secret and key.terminal_id not in result:
            result[key.terminal_id] = (key.key_id, key.secret)
    return result


# ---------------------------------------------------------------- bills


@dataclass(frozen=True, slots=True)
class Item:
    """A catalogue entry: unit price range in fen, quantity range for one bill line."""

    code: str
    name: str
    category: str
    price: tuple[int, int]
    quantity: tuple[int, int] = (1, 1)
    weight: float = 1.0  # how often it is on a bill, relative to the other items of its list


def _items(*rows: tuple[Any, ...]) -> tuple[Item, ...]:
    return tuple(Item(*row) for row in rows)


# Outpatient: consultation, basic drugs (mostly A, some B, a few C), tests and procedures.
OUTPATIENT_CONSULTATION = {
    "village": Item("110200001", "一般诊疗费 general consultation", "A", (500, 1000)),
    "township": Item("110200002", "门诊诊查费 outpatient consultation", "A", (800, 1500)),
    "county": Item("110200003", "副主任医师诊查费 senior consultation", "A", (1500, 3000)),
}
OUTPATIENT_ITEMS = {
    "village": _items(
        ("XJ01CAA040A001", "阿莫西林胶囊 amoxicillin 0.25 g × 24", "A", (800, 1500)),
        ("XN02BEA010A001", "对乙酰氨基酚片 paracetamol 0.5 g × 20", "A", (300, 600)),
        ("XM01AEA010A001", "布洛芬缓释胶囊 ibuprofen SR 0.3 g × 20", "A", (600, 1200)),
        ("XA10BAA020A001", "二甲双胍片 metformin 0.5 g × 48", "A", (900, 1300), (1, 2)),
        ("XC08CAA010A001", "硝苯地平缓释片 nifedipine SR 20 mg × 30", "A", (1500, 2200), (1, 2)),
        ("XB05BBA010B002", "氯化钠注射液 sodium chloride 0.9 % 250 ml", "A", (250, 350), (1, 3)),
        ("XB05BAA020B002", "葡萄糖注射液 glucose 5 % 250 ml", "A", (280, 380), (1, 2)),
        ("120400002", "静脉输液 intravenous infusion", "A", (500, 800)),
        ("120400001", "肌肉注射 intramuscular injection", "A", (150, 300), (1, 3)),
        ("250305001", "血糖测定 blood glucose", "A", (400, 600)),
        ("XR05CBA010A001", "氨溴索口服液 ambroxol oral solution 100 ml", "B", (1500, 2200)),
        ("XJ01DDA090B001", "头孢曲松钠 ceftriaxone 1 g for injection", "B", (1200, 1700), (1, 3)),
        ("ZA04AAA0001", "板蓝根颗粒 banlangen granules 10 g × 20", "B", (1500, 2000)),
        ("ZD01CAA0002", "藿香正气水 huoxiang zhengqi liquid 10 ml × 10", "B", (1000, 1400)),
        ("C-VIT-001", "复合维生素片 multivitamin × 60", "C", (2500, 4500), (1, 1), 0.4),
    ),
    "township": _items(
        ("250101001", "血常规 complete blood count", "A", (1200, 1800)),
        ("250301001", "肝功能 liver function panel", "A", (4000, 5000)),
        ("250302001", "肾功能 kidney function panel", "A", (3000, 4000)),
        ("310701001", "心电图 electrocardiogram", "A", (2000, 3000)),
        ("220600001", "腹部彩超 abdominal ultrasound", "B", (10000, 14000), (1, 1), 0.3),
        ("210100001", "胸部X线摄影 chest X-ray", "A", (5000, 8000), (1, 1), 0.4),
        ("XC10AAA050A001", "阿托伐他汀钙片 atorvastatin 20 mg × 28", "A", (3000, 4000), (1, 2)),
        ("XB01ACA060A001", "阿司匹林肠溶片 aspirin 100 mg × 30", "A", (1400, 1700), (1, 3)),
        ("XC09CAA010A001", "氯沙坦钾片 losartan 50 mg × 28", "B", (2500, 3200), (1, 2)),
        ("XA10BBA090A001", "格列美脲片 glimepiride 2 mg × 30", "B", (1900, 2400)),
        ("ZA12BAA0001", "复方丹参滴丸 compound danshen pills × 180", "B", (2900, 3600)),
        ("340200001", "针灸 acupuncture", "B", (2000, 4000), (1, 5)),
        ("120100001", "门诊换药 dressing change", "A", (800, 1500)),
        ("C-GLU-001", "血糖试纸 glucose test strips × 50", "C", (7000, 9500), (1, 1), 0.3),
    ),
    "county": _items(
        ("210300001", "CT平扫 CT scan", "B", (25000, 40000), (1, 1), 0.2),
        ("210400001", "磁共振 MRI scan", "B", (45000, 80000), (1, 1), 0.1),
        ("310300001", "胃镜检查 gastroscopy", "B", (20000, 35000), (1, 1), 0.1),
        ("250303001", "血脂四项 lipid panel", "A", (3500, 4500)),
        ("250305003", "糖化血红蛋白 HbA1c", "B", (5000, 7000)),
        ("XA10AEA040B001", "甘精胰岛素注射液 insulin glargine 3 ml", "B", (15000, 22000), (1, 2), 0.3),
        ("XB01ACA040A001", "氯吡格雷片 clopidogrel 75 mg × 7", "B", (3000, 9000), (1, 4)),
        ("C-EXP-001", "特需专家门诊 premium expert consultation (self-paid)", "C", (5000, 20000), (1, 1), 0.2),
        ("C-HLT-002", "保健食品 health supplement", "C", (8000, 16000), (1, 1), 0.2),
    ),
}

# Inpatient: per-day charges, tests, drugs by the day, sometimes an operation and its materials.
PER_DAY = _items(
    ("110900001", "住院诊查费 inpatient consultation (per day)", "A", (1500, 2500)),
    ("120100002", "床位费 ward bed (per day)", "A", (2000, 5000)),
    ("120100011", "二级护理 level-2 nursing (per day)", "A", (1500, 2500)),
)
INPATIENT_ITEMS = _items(
    ("250101001", "血常规 complete blood count", "A", (1200, 1800), (1, 5)),
    ("250301001", "肝功能 liver function panel", "A", (4000, 5000), (1, 3)),
    ("250302001", "肾功能 kidney function panel", "A", (3000, 4000), (1, 3)),
    ("250403001", "凝血四项 coagulation panel", "A", (8000, 10000), (1, 2)),
    ("310701001", "心电图 electrocardiogram", "A", (2000, 3000), (1, 2)),
    ("210100001", "胸部X线摄影 chest X-ray", "A", (5000, 8000)),
    ("220600001", "腹部彩超 abdominal ultrasound", "B", (10000, 14000)),
    ("XJ01DDA090B001", "头孢曲松钠 ceftriaxone 1 g for injection", "B", (1200, 1700), (4, 20)),
    ("XJ01XDA010B001", "甲硝唑注射液 metronidazole 0.5 g 100 ml", "A", (500, 700), (4, 20)),
    ("XB05BBA010B002", "氯化钠注射液 sodium chloride 0.9 % 250 ml", "A", (250, 350), (6, 30)),
    ("XB05BAA020B002", "葡萄糖注射液 glucose 5 % 250 ml", "A", (280, 380), (4, 20)),
    ("XA02BCA030B001", "泮托拉唑钠 pantoprazole 40 mg for injection", "B", (2400, 3000), (3, 12)),
    ("XN02AXA060B001", "氟比洛芬酯注射液 flurbiprofen axetil 50 mg", "B", (10000, 13000), (1, 6)),
    ("ZA12BAA0001", "丹参注射液 danshen injection 10 ml", "B", (800, 1500), (4, 14)),
    ("311300001", "一次性输液器 disposable infusion set", "A", (100, 200), (4, 20)),
    ("C-ROOM-001", "单间差价 private room upgrade (per day)", "C", (4000, 8000), (2, 10), 0.2),
    ("C-CARE-001", "陪护费 attendant (self-paid, per day)", "C", (5000, 12000), (2, 10), 0.2),
)
COUNTY_INPATIENT_ITEMS = _items(
    ("210300001", "CT平扫 CT scan", "B", (25000, 40000), (1, 2)),
    ("210400001", "磁共振 MRI scan", "B", (45000, 80000), (1, 1), 0.3),
    ("270300001", "病理检查 histopathology", "A", (20000, 30000)),
    ("XJ01DHA020B001", "美罗培南 meropenem 0.5 g for injection", "B", (6000, 9000), (6, 24)),
    ("250102001", "血气分析 blood gas analysis", "A", (4000, 6000), (1, 4)),
    ("250304001", "心肌酶谱 cardiac enzymes", "A", (6000, 9000), (1, 3)),
    ("310603001", "持续吸氧 oxygen therapy (per hour)", "A", (200, 400), (24, 200)),
    ("310602001", "雾化吸入 nebulisation", "A", (800, 1500), (4, 20)),
    ("340200011", "康复训练 rehabilitation session", "B", (3000, 6000), (2, 10), 0.5),
)
OPERATIONS = {
    "township": (
        _items(
            ("331003001", "阑尾切除术 appendectomy", "A", (150000, 250000)),
            ("331008001", "腹股沟疝修补术 inguinal hernia repair", "A", (150000, 220000)),
            ("330200001", "椎管内麻醉 spinal anaesthesia", "A", (40000, 80000)),
        ),
        _items(("M-MESH-001", "疝修补补片 hernia mesh", "B", (150000, 300000))),
    ),
    "county": (
        _items(
            ("331003002", "腹腔镜阑尾切除术 laparoscopic appendectomy", "A", (350000, 480000)),
            ("331005004", "腹腔镜胆囊切除术 laparoscopic cholecystectomy", "B", (400000, 600000)),
            ("330604001", "白内障超声乳化术 phacoemulsification", "B", (250000, 400000)),
            ("331505001", "股骨骨折内固定术 femoral fracture fixation", "B", (500000, 800000)),
            ("330200003", "全身麻醉 general anaesthesia", "A", (150000, 220000)),
        ),
        _items(
            ("C-IOL-001", "进口人工晶体 imported intraocular lens", "C", (300000, 900000)),
            ("M-PLATE-001", "锁定接骨板 locking bone plate", "B", (800000, 1500000)),
            ("C-TRO-001", "一次性穿刺器 disposable trocar set", "C", (80000, 120000)),
        ),
    ),
}
SURGERY_SHARE = {"township": 0.25, "county": 0.45}


def china_today() -> dt.date:
    return dt.datetime.now(CHINA).date()


def _line(rng: random.Random, item: Item, quantity: int | None = None) -> dict[str, Any]:
    unit_price = rng.randrange(item.price[0] // 10, item.price[1] // 10 + 1) * 10  # prices end in a whole jiao
    count = quantity if quantity is not None else rng.randint(*item.quantity)
    return {
        "code": item.code,
        "name": item.name,
        "category": item.category,
        "amount": count * unit_price,
        "quantity": count,
        "unit_price": unit_price,
    }


def bill_items(rng: random.Random, level: str, visit_type: str) -> list[dict[str, Any]]:
    """The lines of one bill: 1-6 at a village station up to 30 for a county admission."""
    low, high = LINES[(level, visit_type)]
    wanted = rng.randint(low, high)
    if visit_type == "outpatient":
        lines = [_line(rng, OUTPATIENT_CONSULTATION[level])]
        pool = list(OUTPATIENT_ITEMS["village"])
        if level != "village":
            pool += OUTPATIENT_ITEMS["township"]
        if level == "county":
            pool += OUTPATIENT_ITEMS["county"]
        lines += [_line(rng, item) for item in _pick(rng, pool, wanted - 1)]
        return lines
    days = rng.randint(3, 8) if level == "township" else rng.randint(4, 15)
    lines = [_line(rng, item, days) for item in PER_DAY]
    if rng.random() < SURGERY_SHARE[level]:
        operations, materials = OPERATIONS[level]
        lines.append(_line(rng, rng.choice(operations)))
        if rng.random() < 0.3:
            lines.append(_line(rng, rng.choice(materials)))
    pool = list(INPATIENT_ITEMS) + (list(COUNTY_INPATIENT_ITEMS) if level == "county" else [])
    lines += [_line(rng, item) for item in _pick(rng, pool, wanted - len(lines))]
    return lines


def _pick(rng: random.Random, pool: Sequence[Item], count: int) -> list[Item]:
    """``count`` distinct items, each drawn in proportion to its weight (Efraimidis-Spirakis keys)."""
    if count <= 0:
        return []
    return sorted(pool, key=lambda item: -(rng.random() ** (1 / item.weight)))[:count]


def request_id(rng: random.Random, terminal_id: str) -> str:
    return f"{terminal_id}-{rng.getrandbits(64):016x}"


def visit_type_at(rng: random.Random, clinic: Clinic) -> str:
    return "inpatient" if rng.random() < INPATIENT_SHARE[clinic.level] else "outpatient"


def settle_body(
    county: County, clinic: Clinic, rng: random.Random, *, service_date: dt.date | None = None
) -> dict[str, Any]:
    """One settle request body for this clinic: a person from its catchment, a bill of its level."""
    visit_type = visit_type_at(rng, clinic)
    person = county.people[rng.choice(county.catchment(clinic))]
    return {
        "request_id": request_id(rng, county.terminal_by_clinic[clinic.clinic_id].terminal_id),
        "clinic_id": clinic.clinic_id,
        "person_id": person.national_id,
        "visit_type": visit_type,
        "service_date": (service_date or china_today()).isoformat(),
        "items": bill_items(rng, clinic.level, visit_type),
    }


def eligibility_body(
    county: County, clinic: Clinic, rng: random.Random, *, service_date: dt.date | None = None
) -> dict[str, Any]:
    """A card swipe at this clinic: what the person has left this year."""
    person = county.people[rng.choice(county.catchment(clinic))]
    body: dict[str, Any] = {"person_id": person.national_id, "clinic_id": clinic.clinic_id}
    if service_date is not None:
        body["service_date"] = service_date.isoformat()
    return body


def bill_stream(
    county: County, rng: random.Random, *, service_date: dt.date | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Endless ``(terminal_id, settle request body)``: clinics in proportion to their traffic, a bill of
    the clinic's level for one of its people. ``service_date`` defaults to today in China, read per bill."""
    clinics, cumulative = county.traffic
    while True:
        clinic = rng.choices(clinics, cum_weights=cumulative)[0]
        yield (
            county.terminal_by_clinic[clinic.clinic_id].terminal_id,
            settle_body(county, clinic, rng, service_date=service_date),
        )


def terminals_for_users(county: County, users: int, seed: int) -> list[str]:
    """Which terminal each of ``users`` simulated terminals is: distinct while there are enough, drawn in
    proportion to traffic (weighted sampling without replacement), so a few users still see the mix."""
    rng = random.Random(seed)
    clinics, _ = county.traffic
    order = sorted(clinics, key=lambda clinic: -(rng.random() ** (1 / TRAFFIC_WEIGHT[clinic.level])))
    return [county.terminal_by_clinic[order[index % len(order)].clinic_id].terminal_id for index in range(users)]


# ---------------------------------------------------------------- files for people


def describe(county: County) -> dict[str, Any]:
    """Counts, never IDs: clinics by level, people in each programme and code, struck off."""
    in_programme: Counter[str] = Counter()
    struck: Counter[str] = Counter()
    for person in county.people:
        for item in person.memberships:
            in_programme[f"{item.programme}/{item.code}"] += 1
            if item.struck_off_on:
                struck[item.programme] += 1
    return {
        "seed": county.seed,
        **county.parameters,
        "clinics": dict(Counter(clinic.level for clinic in county.clinics)),
        "terminals": len(county.terminals),
        "regions": len({clinic.region for clinic in county.clinics}),
        "memberships": dict(sorted(in_programme.items())),
        "struck_off": dict(sorted(struck.items())),
        "uninsured": sum(not any(m.programme == "insurance" for m in p.memberships) for p in county.people),
    }


def write_files(county: County, folder: Path, *, sample_bills: int = 1000) -> dict[str, Any]:
    """Write the county for people to read and for ``medsettle clinics import`` / ``medsettle import``."""
    from adapters.registry_files import SAMPLE_HEADER, write_table

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "clinics.csv").open("w", encoding="utf-8", newline="") as file:
        file.write("code,name,level,region\n")
        for clinic in county.clinics:
            file.write(
                ",".join(_csv_cell(value) for value in (clinic.clinic_id, clinic.name, clinic.level, clinic.region))
            )
            file.write("\n")
    with (folder / "terminals.csv").open("w", encoding="utf-8", newline="") as file:
        file.write("terminal_id,clinic_id,role\n")
        for terminal in county.terminals:
            file.write(f"{terminal.terminal_id},{terminal.clinic_id},{terminal.role}\n")
    lists = {"insurance": "insurance.csv", "veteran_subsidy": "veterans.csv", "hardship_aid": "civil-affairs.csv"}
    for programme, filename in lists.items():
        rows = [
            (person.national_id, person.name, item.code, item.effective_from, item.struck_off_on)
            for person in county.people
            for item in person.memberships
            if item.programme == programme
        ]
        write_table(folder / filename, SAMPLE_HEADER, rows)
    rng = random.Random(county.seed)
    stream = bill_stream(county, rng)
    with (folder / "bills-sample.jsonl").open("w", encoding="utf-8") as file:
        for _ in range(sample_bills):
            terminal_id, body = next(stream)
            file.write(json.dumps({"terminal_id": terminal_id, "body": body}, ensure_ascii=False) + "\n")
    summary = describe(county)
    summary["files"] = sorted(["clinics.csv", "terminals.csv", *lists.values(), "bills-sample.jsonl", "summary.json"])
    summary["bill_sample"] = _bill_summary(folder / "bills-sample.jsonl")
    (folder / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def _csv_cell(value: str) -> str:
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"\n') else value


def _bill_summary(path: Path) -> dict[str, Any]:
    """Per (level, visit type): how many bills, median total (fen), lines, and the A/B/C share of money."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for text in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(text)
        body = record["body"]
        level = {"V": "village", "T": "township", "C": "county"}[body["clinic_id"][0]]
        groups.setdefault(f"{level} {body['visit_type']}", []).append(body)
    summary = {}
    for name, bills in sorted(groups.items()):
        totals = sorted(sum(item["amount"] for item in bill["items"]) for bill in bills)
        by_category: Counter[str] = Counter()
        for bill in bills:
            for item in bill["items"]:
                by_category[item["category"]] += item["amount"]
        money = sum(by_category.values())
        summary[name] = {
            "bills": len(bills),
            "median_total_fen": totals[len(totals) // 2],
            "max_total_fen": totals[-1],
            "median_lines": sorted(len(bill["items"]) for bill in bills)[len(bills) // 2],
            "category_share_permille": {c: by_category[c] * 1000 // money for c in "ABC"},
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--people", type=int, default=20_000, help="population of one county (times --scale)")
    parser.add_argument("--villages", type=int, default=100)
    parser.add_argument("--townships", type=int, default=13)
    parser.add_argument("--counties", type=int, default=3, help="county hospitals")
    parser.add_argument("--scale", type=int, default=1, help="multiply everything: 10 is a small province")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/county"))
    parser.add_argument("--sample-bills", type=int, default=1000, help="bills written to bills-sample.jsonl")
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error("--scale must be at least 1")
    county = build_county(args.seed, **scaled(args))
    summary = write_files(county, args.out, sample_bills=args.sample_bills)
    print(json.dumps(summary, indent=1, ensure_ascii=False))
    print(f"wrote {', '.join(summary['files'])} to {args.out}", file=sys.stderr)
    return 0


def scaled(args: argparse.Namespace) -> dict[str, int]:
    """build_county's size arguments from --villages/--townships/--counties/--people times --scale."""
    return {name: getattr(args, name) * args.scale for name in ("villages", "townships", "counties", "people")}


def county_from_parameters(document: dict[str, Any]) -> County:
    """Rebuild a county from ``{"seed": ..., "villages": ..., ...}`` (what the load runner writes)."""
    unknown = set(document) - {"seed", "villages", "townships", "counties", "people"}
    if unknown:
        raise ValueError(f"unknown county parameters: {', '.join(sorted(unknown))}")
    return build_county(
        document.get("seed", 1),
        villages=document["villages"],
        townships=document["townships"],
        counties=document["counties"],
        people=document["people"],
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""The README's demo people ("Sandbox", "Demo people") are people the demo registers, holding what the table says."""

from __future__ import annotations

import re
from pathlib import Path

from adapters.demo import demo_population

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_each_demo_person_in_the_readme_holds_the_programmes_it_is_listed_under() -> None:
    section = README.split("\n### Demo people\n", 1)[1].split("\n#", 1)[0]
    people = {person.national_id: person for person in demo_population()}
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \|$", section, re.M)[1:]  # past the heading
    listed = 0
    for programmes, cell in rows:
        for national_id, name in re.findall(r"`(\d{17}[\dX])` ([A-Z][a-z]+(?: \d+| [A-Z][a-z]+)?)", cell):
            person = people[national_id]
            assert person.name == name, national_id
            held = {code for _, code, _, _ in person.memberships}
            assert set(re.findall(r"`([a-z_]+)`", programmes)) <= held, (name, programmes)
            insured = "insurance" in {programme for programme, _, _, _ in person.memberships}
            assert insured == programmes.startswith("insurance"), (name, programmes)
            if programmes in ("insurance only", "no programme at all"):
                assert len(person.memberships) == (1 if insured else 0), (name, programmes)
            listed += 1
    assert listed >= 20

"""The README's demo people ("Sandbox", "Demo people") are people the demo registers, holding what the table says."""

from __future__ import annotations

import re
from pathlib import Path

from adapters.demo import demo_clinics, demo_population

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
# A name as the README lists it: the Chinese name the registry holds, and for the named people its pinyin.
LISTED = re.compile(r"`(\d{17}[\dX])` ([\u4e00-\u9fff]{2,4})(?: \(([A-Z][a-z]+ [A-Z][a-z]+)[;)])?")


def test_each_demo_person_in_the_readme_holds_the_programmes_it_is_listed_under() -> None:
    section = README.split("\n### Demo people\n", 1)[1].split("\n#", 1)[0]
    people = {person.national_id: person for person in demo_population()}
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \|$", section, re.M)[1:]  # past the heading
    listed = 0
    for programmes, cell in rows:
        # Every ID in the cell has a name the pattern reads: none is left unchecked.
        assert len(LISTED.findall(cell)) == len(re.findall(r"`\d{17}[\dX]`", cell)), cell
        for national_id, name, romanised in LISTED.findall(cell):
            person = people[national_id]
            assert (person.name, person.romanised) == (name, romanised), national_id
            held = {code for _, code, _, _ in person.memberships}
            assert set(re.findall(r"`([a-z_]+)`", programmes)) <= held, (name, programmes)
            insured = "insurance" in {programme for programme, _, _, _ in person.memberships}
            assert insured == programmes.startswith("insurance"), (name, programmes)
            if programmes in ("insurance only", "no programme at all"):
                assert len(person.memberships) == (1 if insured else 0), (name, programmes)
            listed += 1
    assert listed >= 20


def test_the_demo_county_is_named_in_chinese_and_prints_on_a_gbk_printer() -> None:
    clinics = demo_clinics()
    names = [name for _, name, _, _ in clinics]
    assert names[:3] == ["示范县人民医院", "示范县中医医院", "示范县妇幼保健院"]
    assert all(name.endswith("卫生院") for _, name, level, _ in clinics if level == "township")
    assert all(name.endswith("村卫生室") for _, name, level, _ in clinics if level == "village")
    assert len(set(names)) == len(names) == 116  # each clinic named once
    people = demo_population()
    for text in [*names, *(region for *_, region in clinics), *(person.name for person in people)]:
        assert re.fullmatch(r"[\u4e00-\u9fff]+", text), text
        text.encode("gbk")  # receipts print clinic and patient names on GBK thermal printers
